"""The charts of report.html: horizontal bar charts as inline SVG, and the sections drawn with them (lengths,
scores, cluster sizes, safety categories and signals)."""

from __future__ import annotations

import html
from typing import Any

_E = html.escape
COLORS = ("#8fb3d9", "#2f6db3", "#d98f8f", "#b32f2f")


def bar_chart(title: str, labels: list[str], series: list[tuple[str, list[float]]], width: int = 520) -> str:
    """Horizontal grouped bars as inline SVG: one row per label, one bar per series."""
    n_series = max(1, len(series))
    row_h = 6 + 13 * n_series
    label_w, value_w = 130, 60
    top = 40 if len(series) > 1 else 24
    height = top + row_h * len(labels) + 8
    peak = max([v for _, values in series for v in values] or [0]) or 1
    span = width - label_w - value_w
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
        f'aria-label="{_E(title)}" font-size="12"><text x="0" y="14" font-weight="bold">{_E(title)}</text>'
    ]
    for k, (name, _) in enumerate(series if len(series) > 1 else []):
        x = label_w + k * 110
        parts.append(
            f'<rect x="{x}" y="22" width="10" height="10" fill="{COLORS[(k * 2 + 1) % 4]}"/>'
            f'<text x="{x + 14}" y="31">{_E(name)}</text>'
        )
    for i, label in enumerate(labels):
        y = top + i * row_h
        parts.append(f'<text x="{label_w - 6}" y="{y + row_h / 2 + 4:.0f}" text-anchor="end">{_E(label)}</text>')
        for k, (_, values) in enumerate(series):
            v = values[i] if i < len(values) else 0
            w = span * v / peak
            by = y + 3 + 13 * k
            parts.append(
                f'<rect x="{label_w}" y="{by}" width="{w:.1f}" height="11" fill="{COLORS[(k * 2 + 1) % 4]}">'
                f"<title>{_E(label)}: {v:g}</title></rect>"
                f'<text x="{label_w + w + 4:.1f}" y="{by + 10}" fill="#444">{v:g}</text>'
            )
    parts.append("</svg>")
    return "".join(parts)


def length_labels(edges: list[int]) -> list[str]:
    out = []
    for i, lo in enumerate(edges):
        if i + 1 < len(edges):
            hi = edges[i + 1] - 1
            out.append(str(lo) if hi == lo else f"{lo}–{hi}")
        else:
            out.append(f"≥{lo}")
    return out


def distribution_charts(d: dict[str, Any]) -> str:
    labels = length_labels(d["length_edges"])
    charts = [
        bar_chart(
            "指令长度（字符）instruction length",
            labels,
            [("清洗前 before", d["instruction_length"]["before"]), ("清洗后 after", d["instruction_length"]["after"])],
        ),
        bar_chart(
            "回答长度（字符）output length",
            labels,
            [("清洗前 before", d["output_length"]["before"]), ("清洗后 after", d["output_length"]["after"])],
        ),
    ]
    q = d["quality_score"]
    if sum(q["kept"]) + sum(q["dropped"]):
        width = 1 / q["bins"]
        qlabels = [f"{i * width:.2f}–{(i + 1) * width:.2f}" for i in range(q["bins"])]
        charts.append(
            bar_chart(
                f"质量分 quality_score (dropped: the {sum(q['dropped'])} with a score)",
                qlabels,
                [("保留 kept", q["kept"]), ("丢弃 dropped", q["dropped"])],
            )
        )
    lang = d["language_profile"]
    if lang["kept"] or lang["dropped"]:
        keys = sorted(set(lang["kept"]) | set(lang["dropped"]), key=lambda k: -lang["kept"].get(k, 0))
        charts.append(
            bar_chart(
                f"语言类型 language profile (dropped: the {sum(lang['dropped'].values())} profiled)",
                keys,
                [
                    ("保留 kept", [lang["kept"].get(k, 0) for k in keys]),
                    ("丢弃 dropped", [lang["dropped"].get(k, 0) for k in keys]),
                ],
            )
        )
    charts.extend(safety_charts(d))
    charts += safety_signal_charts(d["safety"])
    for stage, sizes in d["duplicate_clusters"].items():
        keys = sorted(sizes, key=int)
        charts.append(bar_chart(f"重复簇大小 cluster sizes ({stage})", keys, [("clusters", [sizes[k] for k in keys])]))
    refusals = d["safety"]["refusals_kept"]
    note = f"<p>保留的拒答（有害请求 + 安全拒绝）refusals kept: <b>{refusals}</b></p>"
    return note + '<div class="charts">' + "".join(charts) + "</div>"


def safety_charts(d: dict[str, Any]) -> list[str]:
    """Safety drops per reason from the ledger's counts (every drop is in a bar), split by detector when the
    details name one; a report without ``safety_drops`` (older) shows the categories of the details."""
    drops = d.get("safety_drops")
    if drops is None:
        charts = []
        for reason, cats in d["safety"]["categories"].items():
            keys = sorted(cats, key=lambda k: -cats[k])
            values = [cats[k] for k in keys]
            charts.append(bar_chart(f"安全类别 safety categories ({reason})", keys, [("dropped", values)]))
        return charts
    if not drops:
        return []
    keys = list(drops)
    labels = [k.split("/", 1)[-1].removeprefix("harmful_") for k in keys]
    detectors = sorted({det for v in drops.values() for det in v["detectors"]})
    series = [(f"{det}", [drops[k]["detectors"].get(det, 0) for k in keys]) for det in detectors]
    other = [drops[k]["n"] - sum(drops[k]["detectors"].values()) for k in keys]
    if any(other) or not series:
        series.append(("其他 other" if series else "dropped", other))
    total = sum(v["n"] for v in drops.values())
    return [bar_chart(f"安全丢弃 safety drops by category (all {total})", labels, series)]


def safety_signal_charts(safety: dict[str, Any]) -> list[str]:
    """Drops by signal, refusals kept by request category, and the ``safety_score`` histogram (when present)."""
    charts = []
    for reason, sigs in safety.get("signals", {}).items():
        keys = sorted(sigs, key=lambda k: -sigs[k])
        charts.append(bar_chart(f"安全信号 safety signals ({reason})", keys, [("dropped", [sigs[k] for k in keys])]))
    refused = safety.get("refusal_categories", {})
    if refused:
        keys = sorted(refused, key=lambda k: -refused[k])
        charts.append(
            bar_chart("拒答的请求类别 refusals kept by request category", keys, [("kept", [refused[k] for k in keys])])
        )
    score = safety.get("score")
    if score and sum(score["kept"]) + sum(score["dropped"]):
        width = 1 / score["bins"]
        labels = [f"{i * width:.2f}–{(i + 1) * width:.2f}" for i in range(score["bins"])]
        charts.append(
            bar_chart("安全分 safety_score", labels, [("保留 kept", score["kept"]), ("丢弃 dropped", score["dropped"])])
        )
    return charts
