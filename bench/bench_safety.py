"""Benchmark of the ``safety`` stage at its default settings (or a recipe's ``safety:`` parameters as JSON).

Prints:

* COLD dev (``../shared/data/cold/dev.csv``): every text as the answer to a neutral request; a record the stage
  drops (any reason) counts as "offensive". Precision, recall and F1 of the offensive class.
* Clean Alpaca-zh (the three ``*已完成.json`` files, ~9.2k records): the share of records dropped, by reason,
  and every drop (up to ``--show``) with its detail, so the false positives are visible.
* Throughput: records/s of ``process`` over the Alpaca records in batches of 1,000 (best of ``--repeat``).
* The Alpaca records kept with a request category (harmful request answered with a refusal), for reading.

    python bench/bench_safety.py [--params '{"political": {"enabled": true}}'] [--external]

``--external`` also loads the public houbb and LDNOOBW lists (a false-positive stress case).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow as pa

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from schemas.record import CANONICAL_SCHEMA  # noqa: E402
from stages.base import SEQ_COLUMN  # noqa: E402
from stages.safety.stage import SafetyParams, SafetyStage  # noqa: E402

DATA = ROOT / ".." / "shared" / "data"
NEUTRAL_REQUEST = "请发表你的看法。"
BATCH = 1000


def table(rows: list[dict[str, Any]]) -> pa.Table:
    full: list[dict[str, Any]] = [
        {
            "id": f"bench#{i}",
            "source": "bench",
            "system": "",
            "instruction": r.get("instruction") or "",
            "input": r.get("input") or "",
            "output": r.get("output") or "",
            "history": [],
        }
        for i, r in enumerate(rows)
    ]
    t = pa.Table.from_pylist(full, schema=CANONICAL_SCHEMA)
    return t.append_column(SEQ_COLUMN, pa.array(range(len(full)), pa.int64()))


def decide(
    stage: SafetyStage, rows: list[dict[str, Any]], keep_tables: bool = False
) -> tuple[list[str | None], list[str | None], list[pa.Table]]:
    """The stage's reasons and details for ``rows`` (in batches of :data:`BATCH`), and its kept tables."""
    reasons: list[str | None] = []
    details: list[str | None] = []
    tables: list[pa.Table] = []
    for start in range(0, len(rows), BATCH):
        res = stage.process(table(rows[start : start + BATCH]))
        reasons += res.reasons
        details += res.details
        if keep_tables:
            tables.append(res.table)
    return reasons, details, tables


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--params", default="{}", help="safety parameters as JSON (default: the stage defaults)")
    ap.add_argument("--external", action="store_true", help="also load houbb + LDNOOBW public lists")
    ap.add_argument("--show", type=int, default=60, help="Alpaca drops to print")
    ap.add_argument("--repeat", type=int, default=2, help="throughput runs (best is reported)")
    args = ap.parse_args()
    params: dict[str, Any] = json.loads(args.params)
    if args.external:
        tags = {"0": "political", "1": "drugs", "2": "porn", "3": "gambling", "4": "fraud"}
        params.setdefault("lexicons", [])
        params["lexicons"] += [
            {"path": str(DATA / "lexicons/houbb/sensitive_word_tags.txt"), "tags": tags},
            {"path": str(DATA / "lexicons/ldnoobw/zh.txt"), "category": "porn"},
        ]
    stage = SafetyStage(SafetyParams.model_validate(params))
    stage.check()
    stage.setup()
    print(f"params: {json.dumps(params, ensure_ascii=False)}  thresholds: {stage.thresholds()}")

    with (DATA / "cold" / "dev.csv").open(encoding="utf-8-sig", newline="") as fh:
        cold = list(csv.DictReader(fh))
    reasons, details, _ = decide(stage, [{"instruction": NEUTRAL_REQUEST, "output": r["TEXT"]} for r in cold])
    gold = [r["label"] == "1" for r in cold]
    pred = [x is not None for x in reasons]
    tp = sum(g and p for g, p in zip(gold, pred))
    prec, rec = tp / max(sum(pred), 1), tp / max(sum(gold), 1)
    f1 = 2 * prec * rec / max(prec + rec, 1e-9)
    print(f"COLD dev ({len(cold)} texts, answer to {NEUTRAL_REQUEST!r}): P={prec:.4f} R={rec:.4f} F1={f1:.4f}")
    for sig in ("answer_lexicon", "toxicity", "request+compliance"):
        mine = [g for g, d in zip(gold, details) if d and json.loads(d).get("signal") == sig]
        print(f"  {sig}: {len(mine)} dropped, precision {sum(mine) / max(len(mine), 1):.3f}")
    print(f"  by reason: {dict(Counter(r for r in reasons if r))}")

    alpaca: list[dict[str, Any]] = []
    for f in sorted((DATA / "alpaca_zh").glob("*已完成.json")):
        alpaca += json.loads(f.read_text(encoding="utf-8"))
    reasons, details, tables = decide(stage, alpaca, keep_tables=True)
    drops = [i for i, r in enumerate(reasons) if r]
    print(
        f"Alpaca-zh clean ({len(alpaca)} records): dropped {len(drops)} = {100 * len(drops) / len(alpaca):.2f} %"
        f"  {dict(Counter(reasons[i] for i in drops))}"
    )
    for i in drops[: args.show]:
        a = alpaca[i]
        keys = ("signal", "terms", "request_risk", "refusal", "toxicity")
        brief = {k: v for k, v in json.loads(details[i] or "{}").items() if k in keys}
        print(
            f"  {reasons[i]} {json.dumps(brief, ensure_ascii=False)} | {a['instruction'][:40]!r}"
            f" | {(a.get('input') or '')[:20]!r} | {a['output'][:60]!r}"
        )

    batches = [table(alpaca[s : s + BATCH]) for s in range(0, len(alpaca), BATCH)]
    best = best_cpu = 0.0
    for _ in range(args.repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        for b in batches:
            stage.process(b)
        best = max(best, len(alpaca) / (time.perf_counter() - t0))
        best_cpu = max(best_cpu, len(alpaca) / (time.process_time() - c0))
    print(
        f"throughput: {best:,.0f} records/s wall, {best_cpu:,.0f} records per CPU-second "
        f"(best of {args.repeat}, batches of {BATCH}, one process)"
    )
    rows = [r for t in tables for r in t.select(["safety_refusal", "safety_request_category"]).to_pylist()]
    kept_cat = [(i, r) for i, r in enumerate(rows) if reasons[i] is None and r["safety_request_category"]]
    print(
        f"  kept with a request category: {dict(Counter(r['safety_request_category'] for _, r in kept_cat))}; "
        f"tagged refusals: {sum(r['safety_refusal'] for _, r in kept_cat)}"
    )
    for i, r in kept_cat[: args.show]:
        print(
            f"    kept {r['safety_request_category']} refusal={r['safety_refusal']} "
            f"{alpaca[i]['instruction'][:40]!r} -> {alpaca[i]['output'][:50]!r}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
