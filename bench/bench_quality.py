"""Benchmark and audit the quality stage on the 7 Alpaca-zh files (../shared/data/alpaca_zh).

    python bench/bench_quality.py [--samples 5] [--batch 4096] [--repeat 3] [--reason echo] [--set truncated=true]

Prints records/s of ``QualityStage.process`` (single process, best of ``--repeat`` passes over all records,
after one warm-up batch so numba compilation is not timed; wall clock, and per CPU second of this process,
which is the steadier figure on a shared machine), then for each reason the number of records dropped
and a few samples (instruction, input, output, detail). The data is read leniently: one file has a trailing
comma before its closing bracket (invalid JSON); the comma is removed, nothing else is changed.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections import Counter
from pathlib import Path

import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import alpaca_data

from schemas.record import CANONICAL_SCHEMA
from stages.base import SEQ_COLUMN
from stages.quality.stage import QualityParams, QualityStage

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "alpaca_zh"


def load_table() -> pa.Table:
    rows = []
    for path in sorted(DATA.glob("*.json")):
        for i, r in enumerate(alpaca_data.read_alpaca_file(path)):
            rows.append(
                {
                    "id": f"{path.name}#{i}",
                    "source": str(path),
                    "system": "",
                    "instruction": r.get("instruction", ""),
                    "input": r.get("input", ""),
                    "output": r.get("output", ""),
                    "history": [],
                }
            )
    table = pa.Table.from_pylist(rows, schema=CANONICAL_SCHEMA)
    return table.append_column(SEQ_COLUMN, pa.array(range(len(rows)), type=pa.int64()))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--samples", type=int, default=5)
    ap.add_argument("--batch", type=int, default=4096)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--reason", help="print all records dropped for this reason")
    ap.add_argument(
        "--set", action="append", default=[], metavar="KEY=JSON", help="a stage parameter, e.g. truncated=true"
    )
    args = ap.parse_args()
    if not DATA.is_dir():
        sys.exit(f"no data at {DATA}")
    table = load_table()
    params = {k: json.loads(v) for k, v in (kv.split("=", 1) for kv in args.set)}
    stage = QualityStage(QualityParams(**params))
    stage.process(table.slice(0, 64))  # warm-up: numba compiles (or loads its cache)

    best, best_cpu = float("inf"), float("inf")
    for _ in range(args.repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        results = [stage.process(table.slice(o, args.batch)) for o in range(0, table.num_rows, args.batch)]
        best = min(best, time.perf_counter() - t0)
        best_cpu = min(best_cpu, time.process_time() - c0)
    print(
        f"{table.num_rows} records, batch {args.batch}, single process, best of {args.repeat}: "
        f"{table.num_rows / best:,.0f} records/s wall clock, {table.num_rows / best_cpu:,.0f} records per CPU second"
    )

    reasons = [r for res in results for r in res.reasons]
    details = [d for res in results for d in res.details]
    counters: Counter[str] = Counter()
    for res in results:
        counters.update(res.counters)
    print("dropped:", dict(Counter(r for r in reasons if r)), f"of {table.num_rows}")
    print("counters:", dict(sorted(counters.items())))
    rows = table.select(["id", "instruction", "input", "output"]).to_pylist()
    rng = random.Random(0)
    for reason in sorted({r for r in reasons if r}):
        idx = [i for i, r in enumerate(reasons) if r == reason]
        shown = idx if reason == args.reason else rng.sample(idx, min(args.samples, len(idx)))
        print(f"\n=== {reason}: {len(idx)}")
        for i in shown:
            r = rows[i]
            print(
                f"- {r['id']}  {r['instruction'][:60]!r} | {r['input'][:40]!r}\n    => {r['output'][:120]!r}"
                f"\n    {details[i]}"
            )


if __name__ == "__main__":
    main()
