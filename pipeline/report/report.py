"""report.json: built only from the steps' statistics (counters and what :mod:`pipeline.report.collect` gathered while
the runner booked each batch) and the ledger (the output files' row counts, the first lines of
quarantine.jsonl, and the kept twin of each duplicate *example*, looked up by id). Nothing is re-read and diffed.

Sections: ``counts`` and ``balance``; ``stages`` (the funnel: in / kept / dropped per step, reasons, seconds,
records/s); ``reasons``; ``examples`` (a few dropped records per reason, duplicates with their twin);
``distributions`` (lengths before/after, quality_score, language profile, safety, duplicate clusters);
``diversity`` (task types and leading verb–object pairs, before/after); inputs, versions, recipe hash.
"""

from __future__ import annotations

import json
import platform
import shlex
from collections import Counter
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from pipeline import __version__
from pipeline.recipe import Recipe
from pipeline.report.collect import LENGTH_EDGES, SCORE_BINS, TEXT_FIELDS
from pipeline.report.html import render_html
from pipeline.report.run_warnings import file_warnings
from pipeline.report.tasktypes import RULES, TASK_TYPES

_VERSIONED = (
    "pyarrow",
    "numpy",
    "pydantic",
    "opencc",
    "rjieba",
    "datasketch",
    "faiss-cpu",
    "sentence-transformers",
    "torch",
    "pyahocorasick",
    "numba",
    "ray",
)
QUARANTINE_EXAMPLES = 5
TOP_PAIRS = 25


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


def _collect(step: dict[str, Any]) -> dict[str, Any]:
    """A step's collected report material ({} for a checkpoint written before the collector existed)."""
    return step.get("collect") or {}


def _side(step: dict[str, Any], side: str) -> dict[str, Any]:
    return _collect(step).get(side) or {}


def _sum_lists(lists: list[list[int]], n: int) -> list[int]:
    out = [0] * n
    for values in lists:
        for i, v in enumerate(values[:n]):
            out[i] += v
    return out


def funnel(steps: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for s in steps:
        secs = float(s.get("seconds", 0.0))
        rows.append(
            {
                "stage": s["name"],
                "kind": s["kind"],
                "input": s["input"],
                "kept": s["kept"],
                "dropped": s["dropped"],
                "quarantined": s.get("quarantined", 0),
                "reasons": dict(sorted(s["reasons"].items(), key=lambda kv: -kv[1])),
                "counters": s.get("counters", {}),
                "seconds": secs,
                "records_per_s": round(s["input"] / secs, 1) if secs > 0 else None,
                "report_seconds": _collect(s).get("seconds"),
                "reused": bool(s.get("reused")),
                "params": s.get("params", {}),
            }
        )
    return rows


def distributions(steps: list[dict[str, Any]], final: dict[str, Any]) -> dict[str, Any]:
    """Before (what ``read`` kept) and after (the cleaned records), plus what each step dropped."""
    before, after = _side(steps[0], "kept"), final.get("kept") or {}
    dropped = [_side(s, "dropped") for s in steps]
    n_len = len(LENGTH_EDGES)
    languages: Counter[str] = Counter()
    categories: dict[str, Counter[str]] = {}
    signals: dict[str, Counter[str]] = {}
    clusters: dict[str, dict[str, int]] = {}
    for s in steps:
        languages.update(_side(s, "dropped").get("language_profile", {}))
        for reason, cats in _collect(s).get("categories", {}).items():
            categories.setdefault(f"{s['name']}/{reason}", Counter()).update(cats)
        for reason, sigs in _collect(s).get("signals", {}).items():
            signals.setdefault(f"{s['name']}/{reason}", Counter()).update(sigs)
        if _collect(s).get("cluster_sizes"):
            clusters[s["name"]] = _collect(s)["cluster_sizes"]
    return {
        "length_edges": list(LENGTH_EDGES),
        "safety_drops": safety_drops(steps),
        "instruction_length": {
            "before": before.get("instruction_len", [0] * n_len),
            "after": after.get("instruction_len", [0] * n_len),
        },
        "output_length": {
            "before": before.get("output_len", [0] * n_len),
            "after": after.get("output_len", [0] * n_len),
        },
        "quality_score": {
            "bins": SCORE_BINS,
            "kept": after.get("quality_score", [0] * SCORE_BINS),
            "dropped": _sum_lists([d.get("quality_score", []) for d in dropped], SCORE_BINS),
        },
        "language_profile": {"kept": after.get("language_profile", {}), "dropped": dict(languages)},
        "safety": {
            "refusals_kept": after.get("refusals", 0),
            "categories": {k: dict(v) for k, v in categories.items()},
            "signals": {k: dict(v) for k, v in signals.items()},
            "refusal_categories": after.get("refusal_categories", {}),
            "score": {
                "bins": SCORE_BINS,
                "kept": after.get("safety_score", [0] * SCORE_BINS),
                "dropped": _sum_lists([d.get("safety_score", []) for d in dropped], SCORE_BINS),
            },
        },
        "duplicate_clusters": clusters,
    }


def safety_drops(steps: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Every ``harmful_*`` drop, from the ledger's reason counts (so a chart of them adds up to the drops), with
    how many each detector (lexicon, classifier) made where the details say."""
    out: dict[str, dict[str, Any]] = {}
    for s in steps:
        detectors = _collect(s).get("detectors", {})
        for reason, n in sorted(s["reasons"].items(), key=lambda kv: -kv[1]):
            if reason.startswith("harmful_"):
                out[f"{s['name']}/{reason}"] = {"n": n, "detectors": detectors.get(reason, {})}
    return out


def by_file(steps: list[dict[str, Any]], final: dict[str, Any]) -> list[dict[str, Any]]:
    """Per input file: its records, how they were read, what each stage dropped of them, and how many are kept."""
    dropped: dict[str, Counter[str]] = {}
    for s in steps:
        for source, reasons in _collect(s).get("by_source", {}).items():
            counter = dropped.setdefault(source, Counter())
            for reason, n in reasons.items():
                counter[f"{s['name']}/{reason}"] += n
    kept = final.get("kept_by_source") or {}
    rows = []
    for f in steps[0].get("files", []):
        path = str(f.get("path"))
        reasons = dropped.get(path, Counter())
        rows.append(
            {
                "file": path,
                "layout": f.get("layout", ""),
                "format": f.get("format", ""),
                "records": f.get("units", 0),
                "quarantined": f.get("quarantined", 0),
                "rejected": sum(reasons.values()),
                "cleaned": kept.get(path, 0),
                "reasons": dict(sorted(reasons.items(), key=lambda kv: -kv[1])),
            }
        )
    return rows


def inspect_commands(reasons: dict[str, int], out: Path | None) -> dict[str, str]:
    """For each ``stage/reason``, the command that lists all its records."""
    where = shlex.quote(str(out)) if out is not None else "OUTPUT"
    return {key: f"zhcurate inspect {where} --reason {key} --limit {n}" for key, n in reasons.items()}


def diversity(steps: list[dict[str, Any]], final: dict[str, Any]) -> dict[str, Any]:
    def pairs(collected: dict[str, Any]) -> dict[str, Any]:
        vo = collected.get("verb_object") or {"sample": 0, "no_verb": 0, "pairs": []}
        return {**vo, "pairs": vo["pairs"][:TOP_PAIRS]}

    def types(collected: dict[str, Any]) -> dict[str, int]:
        counts = (collected.get("kept") or {}).get("task_types", {})
        return {t: counts.get(t, 0) for t in TASK_TYPES}

    before = _collect(steps[0])
    return {
        "task_types": {"before": types(before), "after": types(final)},
        "rules": [{"task": r.task, "why": r.why, "pattern": r.pattern} for r in RULES]
        + [
            {"task": "多轮对话", "why": "has earlier turns (history); checked first", "pattern": ""},
            {"task": "其他", "why": "no rule matched", "pattern": ""},
        ],
        "verb_object": {"before": pairs(before), "after": pairs(final)},
    }


def lookup(out: Path, ids: list[str]) -> dict[str, dict[str, Any]]:
    """Records by id from cleaned.parquet, else rejected.parquet (for a twin a later stage dropped)."""
    found: dict[str, dict[str, Any]] = {}
    for name in ("cleaned.parquet", "rejected.parquet"):
        want = [i for i in ids if i not in found]
        path = out / name
        if not want or not path.is_file():
            continue
        table = pq.read_table(path, filters=[("id", "in", want)])  # streams; keeps only the matches
        for row in table.to_pylist():
            row.pop("history", None)
            row["where"] = name.split(".")[0]
            found.setdefault(row["id"], row)
    return found


def examples(steps: list[dict[str, Any]], out: Path | None, kind: str = "examples") -> dict[str, list[dict[str, Any]]]:
    """Examples of every ``stage/reason``; a duplicate's example carries its kept twin (``twin``). ``kind``
    ``near_threshold``: the duplicates of lowest similarity instead (dedup_semantic)."""
    result = {f"{s['name']}/{reason}": list(rows) for s in steps for reason, rows in _collect(s).get(kind, {}).items()}
    ids = [
        str(ex["detail"]["duplicate_of"])
        for rows in result.values()
        for ex in rows
        if isinstance(ex.get("detail"), dict) and ex["detail"].get("duplicate_of")
    ]
    twins = lookup(out, ids) if out is not None and ids else {}
    for rows in result.values():
        for ex in rows:
            twin_id = (ex.get("detail") or {}).get("duplicate_of")
            if twin_id:
                twin = twins.get(str(twin_id))
                ex["twin"] = (
                    {k: twin.get(k) for k in ("id", "source", "where", *TEXT_FIELDS)} if twin else {"id": twin_id}
                )
    return result


def quarantine_examples(out: Path | None) -> list[dict[str, Any]]:
    path = out / "quarantine.jsonl" if out is not None else None
    if path is None or not path.is_file():
        return []
    rows = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            rows.append(json.loads(line))
            if len(rows) >= QUARANTINE_EXAMPLES:
                break
    return rows


def build_report(
    recipe: Recipe,
    options: Any,
    steps: list[dict[str, Any]],
    totals: dict[str, int],
    started: float,
    finished: float,
    final: dict[str, Any] | None = None,
    skipped: list[str] | None = None,
) -> dict[str, Any]:
    """The whole report.json of a finished run. ``steps`` are the steps' statistics (with what
    :class:`~pipeline.report.collect.ReportCollector` gathered in ``collect``); ``final`` is the collector's result over
    cleaned.parquet as it was written (the "after" side); ``options.output`` is where the ledger lives (for the
    quarantine examples and the duplicate twins)."""
    final = final or {}
    read = steps[0]
    out = Path(options.output) if getattr(options, "output", None) is not None else None
    reasons = {f"{s['name']}/{r}": n for s in steps for r, n in s["reasons"].items()}
    total_out = totals["cleaned"] + totals["rejected"] + totals["quarantined"]
    where = shlex.quote(str(out)) if out is not None else "OUTPUT"
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
        "skipped_inputs": list(skipped or []),
        "steps_run": [s["name"] for s in steps] + ["write"],
        "warnings": file_warnings(read.get("files", []), list(skipped or []), where),
        "counts": totals,
        "balance": {
            "ok": totals["input"] == total_out,
            "equation": "input = cleaned + rejected + quarantined",
            "input": totals["input"],
            "cleaned_plus_rejected_plus_quarantined": total_out,
        },
        "stages": funnel(steps),
        "reasons": dict(sorted(reasons.items(), key=lambda kv: -kv[1])),
        "inspect": {
            **inspect_commands(dict(sorted(reasons.items(), key=lambda kv: -kv[1])), out),
            **({"quarantine": f"zhcurate inspect {where} --quarantine"} if totals["quarantined"] else {}),
        },
        "by_file": by_file(steps, final),
        "examples": examples(steps, out),
        "near_threshold": examples(steps, out, "near_threshold"),
        "quarantine_examples": quarantine_examples(out),
        "distributions": distributions(steps, final),
        "diversity": diversity(steps, final),
        "reused_stages": [s["name"] for s in steps if s.get("reused")],
        "versions": versions(),
    }


__all__ = ["build_report", "render_html", "versions"]
