"""report.html: report.json for people, as one self-contained page (inline CSS and SVG charts, no scripts, no
network), in Chinese with English glosses."""

from __future__ import annotations

import html
import json
import re
from typing import Any

from pipeline.report.charts import bar_chart, distribution_charts

_E = html.escape
# detail keys whose (string) values are the matched text to highlight in the record
_MATCH_KEYS = ("term", "terms", "matched", "match", "matches", "keyword", "keywords", "offending", "hit", "hits")
_FIELD_NAMES = {
    "system": "system 系统",
    "instruction": "instruction 指令",
    "input": "input 输入",
    "output": "output 回答",
}

# System fonts first, then the CJK families of macOS, Windows and Linux (apt-get install fonts-noto-cjk), so
# that no Chinese character renders as a box wherever one of them is installed.
FONT_STACK = (
    'system-ui,-apple-system,"Segoe UI","PingFang SC","Hiragino Sans GB","Microsoft YaHei","Noto Sans CJK SC",'
    '"Noto Sans SC","Source Han Sans SC","WenQuanYi Micro Hei","Droid Sans Fallback",sans-serif'
)
CSS = (
    "body{font-family:"
    + FONT_STACK
    + """;
margin:2em auto;max-width:1200px;color:#222;line-height:1.5;padding:0 1em}
h1{margin-bottom:.2em}h2{border-bottom:2px solid #2f6db3;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;margin:.6em 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:left;
vertical-align:top}th{background:#f0f4f9}td.n{text-align:right;font-variant-numeric:tabular-nums}
.cards{display:flex;gap:1em;flex-wrap:wrap}.card{border:1px solid #ccc;border-radius:6px;padding:.6em 1.2em}
.card b{display:block;font-size:1.6em}.ok{color:#060}.bad{color:#a00}.muted{color:#777;font-size:.9em}
.ex{border:1px solid #ddd;border-radius:6px;margin:.6em 0;padding:.5em}.fields{display:grid;
grid-template-columns:repeat(auto-fit,minmax(220px,1fr));gap:.5em}.fields div{background:#fafafa;padding:.3em;
white-space:pre-wrap;word-break:break-all;font-size:.9em}.fields h4{margin:0;color:#555;font-size:.8em}
.pair{display:grid;grid-template-columns:1fr 1fr;gap:.8em}mark{background:#ffe066}.score{font-weight:bold;
color:#b32f2f}.charts{display:flex;flex-wrap:wrap;gap:1.5em}details summary{cursor:pointer;font-weight:bold}
code{font-size:.85em;word-break:break-all}svg{font-family:inherit}
.warn{border:2px solid #d9a400;background:#fff8e0;border-radius:6px;padding:.4em 1em;margin:1em 0}
.warn li{margin:.3em 0}
"""
)


def _highlight(text: str, terms: list[str]) -> str:
    escaped = _E(text)
    terms = sorted({t for t in terms if t and len(t) <= 100}, key=len, reverse=True)
    if not terms:
        return escaped
    rx = re.compile("|".join(re.escape(_E(t)) for t in terms))
    return rx.sub(lambda m: f"<mark>{m.group(0)}</mark>", escaped)


def matched_terms(detail: dict[str, Any]) -> list[str]:
    """The matched text a stage put in ``detail`` (term, matched, offending, …), to highlight."""
    found: list[str] = []
    for key in _MATCH_KEYS:
        value = detail.get(key)
        if isinstance(value, str):
            found.append(value)
        elif isinstance(value, list):
            found.extend(v for v in value if isinstance(v, str))
    return found


def _detail_table(detail: dict[str, Any]) -> str:
    rows = []
    for key, value in detail.items():
        shown = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
        cls = ' class="score"' if isinstance(value, (int, float)) and not isinstance(value, bool) else ""
        rows.append(f"<tr><th>{_E(str(key))}</th><td{cls}>{_E(shown)}</td></tr>")
    return f"<table>{''.join(rows)}</table>" if rows else ""


def _fields(record: dict[str, Any], terms: list[str]) -> str:
    cells = []
    for f in ("system", "instruction", "input", "output"):
        text = record.get(f) or ""
        if text or f in ("instruction", "output"):
            cells.append(f"<div><h4>{_FIELD_NAMES[f]}</h4>{_highlight(text, terms)}</div>")
    turns = record.get("history_turns")
    extra = f'<p class="muted">{turns} earlier turn(s) 多轮</p>' if turns else ""
    return f'<div class="fields">{"".join(cells)}</div>{extra}'


def _example(ex: dict[str, Any]) -> str:
    detail = ex.get("detail") or {}
    terms = matched_terms(detail)
    head = f'<p class="muted">{_E(str(ex.get("id")))} · {_E(str(ex.get("source") or ""))}</p>'
    twin = ex.get("twin")
    if twin is not None:
        sim = detail.get("similarity", detail.get("cosine", detail.get("jaccard")))
        sim_txt = f' · 相似度 similarity <span class="score">{sim}</span>' if sim is not None else ""
        where = twin.get("where", "not found")
        body = (
            f'<div class="pair"><div><b>丢弃 dropped</b>{head}{_fields(ex, terms)}</div>'
            f"<div><b>保留的孪生 kept twin</b> ({_E(str(where))}){sim_txt}"
            f'<p class="muted">{_E(str(twin.get("id")))}</p>{_fields(twin, terms)}</div></div>'
        )
    else:
        body = head + _fields(ex, terms)
    return f'<div class="ex">{body}{_detail_table(detail)}</div>'


def _funnel(report: dict[str, Any]) -> str:
    rows = []
    for s in report["stages"]:
        reasons = "<br>".join(f"{_E(k)}: {v}" for k, v in s["reasons"].items()) or "—"
        rps = f"{s['records_per_s']:,.0f}" if s.get("records_per_s") else "—"
        reused = " (resumed 复用)" if s.get("reused") else ""
        rows.append(
            f"<tr><td>{_E(s['stage'])}{reused}</td><td class='n'>{s['input']}</td><td class='n'>{s['kept']}</td>"
            f"<td class='n'>{s['dropped']}</td><td class='n'>{s['quarantined']}</td><td>{reasons}</td>"
            f"<td class='n'>{s['seconds']:.2f}</td><td class='n'>{rps}</td></tr>"
        )
    labels = [s["stage"] for s in report["stages"]]
    chart = bar_chart(
        "每步保留与丢弃 kept / dropped per step",
        labels,
        [
            ("保留 kept", [s["kept"] for s in report["stages"]]),
            ("丢弃 dropped", [s["dropped"] for s in report["stages"]]),
        ],
    )
    return (
        '<table id="funnel"><tr><th>步骤 step</th><th>输入 in</th><th>保留 kept</th><th>丢弃 dropped</th>'
        "<th>隔离 quarantined</th><th>原因 reasons</th><th>秒 s</th><th>条/秒 rec/s</th></tr>"
        f"{''.join(rows)}</table>{chart}"
    )


def _similarity_hists(report: dict[str, Any]) -> str:
    """Per stage whose counters hold ``similarity_hist.<bin>`` (dedup_semantic): the searched pairs by
    similarity, below and at/above the threshold, so a user sees what moving the threshold would change."""
    charts = []
    for s in report["stages"]:
        counters = s.get("counters") or {}
        bins = sorted((k.split(".", 1)[1], v) for k, v in counters.items() if k.startswith("similarity_hist."))
        if not bins:
            continue
        threshold = counters.get("threshold_milli", 0) / 1000
        below = [v if float(b) + 0.01 <= threshold + 1e-9 else 0 for b, v in bins]
        above = [v - lo for (_, v), lo in zip(bins, below, strict=True)]
        charts.append(
            bar_chart(
                f"{s['stage']}: 候选对相似度 pair similarity (threshold {threshold:g})",
                [f"{b}–{float(b) + 0.01:.2f}" for b, _ in bins],
                [("低于阈值 below (kept)", below), ("达到阈值 at/above (merged if the sides agree)", above)],
            )
            + "<p class='muted'>"
            + ", ".join(f"{_E(k)}: {v}" for k, v in counters.items() if k.startswith("rejected_by_"))
            + "</p>"
        )
        for key, rows in report.get("near_threshold", {}).items():
            if key.startswith(f"{s['stage']}/") and rows:
                charts.append(
                    f"<details><summary>{_E(key)}: 最接近阈值的合并 merges nearest the threshold ({len(rows)})"
                    "</summary>" + "".join(_example(ex) for ex in rows) + "</details>"
                )
    return "".join(charts)


def _warnings(report: dict[str, Any]) -> str:
    items = "".join(
        f"<li><b>{_E(w['code'])}</b>: {_E(w['message'])}"
        + (f"<br><span class='muted'>fix: <code>{_E(w['fix'])}</code></span>" if w.get("fix") else "")
        + "</li>"
        for w in report.get("warnings") or []
    )
    return f'<div class="warn" id="warnings"><b>⚠ 警告 Warnings</b><ul>{items}</ul></div>' if items else ""


def _by_file(report: dict[str, Any]) -> str:
    rows = []
    for f in report.get("by_file") or []:
        reasons = "<br>".join(f"{_E(k)}: {v}" for k, v in f["reasons"].items()) or "—"
        rows.append(
            f"<tr><td>{_E(f['file'])}</td><td>{_E(str(f.get('layout') or ''))}</td><td class='n'>{f['records']}</td>"
            f"<td class='n'>{f['cleaned']}</td><td class='n'>{f['rejected']}</td><td class='n'>{f['quarantined']}</td>"
            f"<td>{reasons}</td></tr>"
        )
    if not rows:
        return ""
    return (
        '<h2 id="by-file">各文件 Per input file</h2><table><tr><th>文件 file</th><th>布局 layout</th><th>记录 records'
        "</th><th>保留 cleaned</th><th>丢弃 rejected</th><th>隔离 quarantined</th><th>原因 reasons</th></tr>"
        f"{''.join(rows)}</table>"
    )


def _diversity(dv: dict[str, Any]) -> str:
    tt = dv["task_types"]
    labels = list(tt["before"])
    chart = bar_chart(
        "任务类型 task types",
        labels,
        [("清洗前 before", list(tt["before"].values())), ("清洗后 after", list(tt["after"].values()))],
    )
    rules = "".join(
        f"<tr><td>{_E(r['task'])}</td><td>{_E(r['why'])}</td><td><code>{_E(r['pattern'])}</code></td></tr>"
        for r in dv["rules"]
    )
    tables = []
    for side, title in (("before", "清洗前 before"), ("after", "清洗后 after")):
        vo = dv["verb_object"][side]
        rows = "".join(
            f"<tr><td>{_E(v)}</td><td>{_E(o) or '—'}</td><td class='n'>{n}</td></tr>" for v, o, n in vo["pairs"]
        )
        tables.append(
            f"<div><h3>{title}</h3><p class='muted'>sample {vo['sample']} instructions, {vo['no_verb']} without a "
            f"leading verb</p><table><tr><th>动词 verb</th><th>宾语 object</th><th>n</th></tr>{rows}</table></div>"
        )
    return (
        f'<div class="charts">{chart}</div><details><summary>分类规则 rules (first match wins)</summary>'
        f"<table><tr><th>type</th><th>rule</th><th>pattern</th></tr>{rules}</table></details>"
        f"<h3>高频动宾搭配 top leading verb–object pairs</h3><div class='pair'>{''.join(tables)}</div>"
    )


def render_html(report: dict[str, Any]) -> str:
    """The whole page."""
    c = report["counts"]
    ok = report["balance"]["ok"]
    cards = "".join(
        f'<div class="card">{label}<b>{c[key]:,}</b></div>'
        for key, label in (
            ("input", "输入 input"),
            ("cleaned", "保留 cleaned"),
            ("rejected", "丢弃 rejected"),
            ("quarantined", "隔离 quarantined"),
        )
    )
    commands = report.get("inspect", {})
    reasons = "".join(
        f"<tr><td>{_E(k)}</td><td class='n'>{v}</td><td class='n'>{100 * v / max(1, c['input']):.1f}%</td>"
        f"<td><code>{_E(commands.get(k, ''))}</code></td></tr>"
        for k, v in report["reasons"].items()
    )
    groups = []
    for k, (key, rows) in enumerate(report.get("examples", {}).items()):
        opened = " open" if k == 0 or any("twin" in ex for ex in rows) else ""  # duplicates side by side
        n = report["reasons"].get(key, len(rows))
        more = (
            f'<p class="muted">{len(rows)} of {n} shown; all of them: <code>{_E(commands[key])}</code></p>'
            if key in commands
            else ""
        )
        groups.append(
            f"<details{opened}><summary>{_E(key)} ({n})</summary>{more}"
            + "".join(_example(ex) for ex in rows)
            + "</details>"
        )
    examples = "".join(groups)
    quarantine = "".join(
        f"<tr><td>{_E(str(q.get('source')))}</td><td class='n'>{_E(str(q.get('line')))}</td>"
        f"<td>{_E(str(q.get('error')))}</td><td><code>{_E(str(q.get('raw'))[:200])}</code></td></tr>"
        for q in report.get("quarantine_examples", [])
    )
    if quarantine:
        all_q = commands.get("quarantine", "")
        quarantine = (
            f"<h3>隔离 Quarantine</h3><p class='muted'>the first entries; all of them: <code>{_E(all_q)}</code></p>"
            f"<table><tr><th>source</th><th>line</th><th>error</th><th>raw</th></tr>{quarantine}</table>"
        )
    files = "".join(
        f"<tr><td>{_E(str(f.get('path')))}</td><td>{_E(str(f.get('container')))}</td><td>{_E(str(f.get('format')))}"
        f"</td><td>{_E(str(f.get('layout') or ''))}</td><td>{_E(str(f.get('encoding')))}</td>"
        f"<td class='n'>{f.get('units')}</td></tr>"
        for f in report["inputs"]
    )
    vers = " · ".join(f"{_E(k)} {_E(v)}" for k, v in report.get("versions", {}).items())
    dist = distribution_charts(report["distributions"]) if "distributions" in report else ""
    div = _diversity(report["diversity"]) if "diversity" in report else ""
    return f"""<!doctype html>
<html lang="zh-CN"><head><meta charset="utf-8"><title>zhcurate 质量报告</title><style>{CSS}</style></head><body>
<h1>zhcurate 数据质量报告 <span class="muted">quality report</span></h1>
<p class="muted">配方 recipe {_E(str(report.get("recipe_source")))} · hash {_E(report["recipe_hash"])} ·
{_E(report["finished_at"])} · {report["seconds"]:.1f}s · engine {_E(str(report.get("engine")))}</p>
<div class="cards">{cards}</div>
{_warnings(report)}
<p class="muted">步骤 steps: {_E(" → ".join(report.get("steps_run") or []))}</p>
<h2 id="balance">平衡 Balance</h2>
<p class="{"ok" if ok else "bad"}">{"✓ 平衡 balanced" if ok else "✗ 不平衡 NOT balanced"}:
输入 input {c["input"]} = 保留 cleaned {c["cleaned"]} + 丢弃 rejected {c["rejected"]} + 隔离 quarantined
{c["quarantined"]}</p>
<h2>漏斗 Funnel</h2>{_funnel(report)}
<h2>丢弃原因 Reasons</h2><table><tr><th>步骤/原因 stage/reason</th><th>n</th><th>占输入 of input</th>
<th>查看全部 list them all</th></tr>
{reasons}</table>
{_similarity_hists(report)}
{_by_file(report)}
<h2>示例 Examples</h2><p class="muted">每个原因的前几条被丢弃记录；重复项与其保留的孪生并排显示。</p>{examples}
{quarantine}
<h2>分布 Distributions</h2>{dist}
<h2>多样性 Diversity</h2>{div}
<h2>输入 Inputs</h2>
<table><tr><th>file</th><th>container</th><th>format</th><th>layout</th><th>encoding</th><th>records</th></tr>
{files}</table>
<p class="muted">{vers}</p>
</body></html>
"""
