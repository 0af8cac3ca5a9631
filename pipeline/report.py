"""report.json and report.html, built only from the steps' statistics and the ledger totals."""

from __future__ import annotations

import html
import platform
from datetime import datetime, timezone
from importlib import metadata
from typing import Any

from pipeline import __version__
from pipeline.recipe import Recipe

_VERSIONED = ("pyarrow", "numpy", "pydantic", "opencc", "jieba", "datasketch", "faiss-cpu",
              "sentence-transformers", "torch", "pyahocorasick", "numba", "ray")


def versions() -> dict[str, str]:
    out = {"zhcurate": __version__, "python": platform.python_version()}
    for name in _VERSIONED:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=timezone.utc).isoformat(timespec="seconds")


def build_report(recipe: Recipe, options: Any, steps: list[dict[str, Any]], totals: dict[str, int],
                 started: float, finished: float) -> dict[str, Any]:
    read = steps[0]
    funnel = []
    for s in steps:
        secs = float(s.get("seconds", 0.0))
        funnel.append({
            "stage": s["name"], "kind": s["kind"], "input": s["input"], "kept": s["kept"],
            "dropped": s["dropped"], "quarantined": s.get("quarantined", 0),
            "reasons": dict(sorted(s["reasons"].items(), key=lambda kv: -kv[1])),
            "counters": s.get("counters", {}), "seconds": secs,
            "records_per_s": round(s["input"] / secs, 1) if secs > 0 else None,
            "reused": bool(s.get("reused")), "params": s.get("params", {}),
        })
    reasons = {f"{s['name']}/{r}": n for s in steps for r, n in s["reasons"].items()}
    balance_ok = totals["input"] == totals["cleaned"] + totals["rejected"] + totals["quarantined"]
    return {
        "zhcurate_version": __version__,
        "started_at": _iso(started),
        "finished_at": _iso(finished),
        "seconds": round(finished - started, 3),
        "recipe": recipe.to_dict(),
        "recipe_source": recipe.source,
        "recipe_hash": recipe.hash(),
        "engine": getattr(options, "engine_name", "local"),
        "workers": getattr(options, "workers", 1),
        "inputs": read.get("files", []),
        "counts": totals,
        "balance": {
            "ok": balance_ok,
            "equation": "input = cleaned + rejected + quarantined",
            "input": totals["input"],
            "cleaned_plus_rejected_plus_quarantined": totals["cleaned"] + totals["rejected"] + totals["quarantined"],
        },
        "stages": funnel,
        "reasons": reasons,
        "reused_stages": [s["name"] for s in steps if s.get("reused")],
        "versions": versions(),
    }


def render_html(report: dict[str, Any]) -> str:
    """A self-contained page (no network): the balance and the funnel."""
    e = html.escape
    rows = []
    for s in report["stages"]:
        reasons = ", ".join(f"{e(k)}: {v}" for k, v in s["reasons"].items()) or "—"
        rows.append(
            f"<tr><td>{e(s['stage'])}</td><td>{s['input']}</td><td>{s['kept']}</td><td>{s['dropped']}</td>"
            f"<td>{s['quarantined']}</td><td>{reasons}</td><td>{s['seconds']:.2f}</td></tr>"
        )
    c = report["counts"]
    ok = "✓ 平衡 balanced" if report["balance"]["ok"] else "✗ NOT balanced"
    files = "".join(
        f"<tr><td>{e(f['path'])}</td><td>{e(f['container'])}</td><td>{e(f['format'])}</td>"
        f"<td>{e(f['encoding'])}</td><td>{f['units']}</td></tr>" for f in report["inputs"]
    )
    return f"""<!doctype html>
<html lang="zh-CN"><head><meta charset="utf-8"><title>zhcurate 质量报告</title>
<style>body{{font-family:system-ui,"Noto Sans CJK SC",sans-serif;margin:2em;color:#222}}
table{{border-collapse:collapse;margin:1em 0}}td,th{{border:1px solid #ccc;padding:4px 8px;text-align:left}}
th{{background:#f3f3f3}}.ok{{color:#060}}.bad{{color:#a00}}</style></head><body>
<h1>zhcurate 质量报告 / quality report</h1>
<p>recipe hash {e(report['recipe_hash'])} · {e(report['finished_at'])} · zhcurate {e(report['zhcurate_version'])}</p>
<h2>平衡 Balance</h2>
<p class="{'ok' if report['balance']['ok'] else 'bad'}">{ok}: input {c['input']} = cleaned {c['cleaned']}
 + rejected {c['rejected']} + quarantined {c['quarantined']}</p>
<h2>漏斗 Funnel</h2>
<table id="funnel"><tr><th>stage</th><th>in</th><th>kept</th><th>dropped</th><th>quarantined</th>
<th>reasons</th><th>seconds</th></tr>{''.join(rows)}</table>
<h2>输入 Inputs</h2>
<table><tr><th>file</th><th>container</th><th>format</th><th>encoding</th><th>records</th></tr>{files}</table>
</body></html>
"""
