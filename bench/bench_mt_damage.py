"""Throughput and decisions of the mt_damage stage on the 7 Alpaca-zh files (../shared/data/alpaca_zh).

    python bench/bench_mt_damage.py [--repeat 3] [--samples 30] [--batch 4096] [--seed 0]

The records go through ``normalize`` first (as in the default recipe: HTML entities such as ``&gt;`` decoded),
then records/s of ``MTDamageStage.process`` is measured (single process, best of ``--repeat``), and the count
of each reason with random samples (the offending line quoted in ``detail``) is printed.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections import Counter
from pathlib import Path

import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_quality import load_table

from stages.mt_damage import MTDamageStage
from stages.normalize.stage import NormalizeStage


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--samples", type=int, default=30)
    ap.add_argument("--batch", type=int, default=4096)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    table = load_table()
    norm = NormalizeStage()
    norm.setup()
    table = pa.concat_tables(
        norm.process(table.slice(i, args.batch)).table for i in range(0, table.num_rows, args.batch)
    )
    batches = [table.slice(i, args.batch) for i in range(0, table.num_rows, args.batch)]
    stage = MTDamageStage()
    best, results = float("inf"), []
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        results = [stage.process(b) for b in batches]
        best = min(best, time.perf_counter() - t0)
    n = table.num_rows
    print(f"records: {n}   best of {args.repeat}: {best:.3f} s   {n / best:,.0f} records/s (single process)")
    counters: Counter[str] = Counter()
    for r in results:
        counters.update(r.counters)
    print(f"counters: {dict(sorted(counters.items()))}")
    rows = []
    for r in results:
        d = r.table.select(["id", "instruction", "output"]).to_pydict()
        for i in range(r.table.num_rows):
            if r.reasons[i]:
                rows.append((d["id"][i], d["instruction"][i], r.reasons[i], r.details[i]))
    print(f"dropped: {dict(Counter(x[2] for x in rows).most_common())} of {n}")
    rng = random.Random(args.seed)
    for reason in sorted({x[2] for x in rows}):
        pool = [x for x in rows if x[2] == reason]
        print(f"\n=== {reason}: {len(pool)} (showing {min(args.samples, len(pool))}) ===")
        for rid, ins, _, det in sorted(rng.sample(pool, min(args.samples, len(pool)))):
            print(f"- {rid}  I: {ins[:60]}\n    {det}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
