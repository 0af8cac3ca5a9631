"""Throughput of the normalize stage on the Alpaca-zh data in ../shared/data (single process).

    python bench/bench_normalize.py [--batch-size 10000] [--repeat 3] [--t2s t2s|tw2sp|hk2s|off]

Prints records/s of ``NormalizeStage.process`` (best of ``--repeat`` passes over all files, batches of
``--batch-size``), excluding JSON reading and the one-off OpenCC load, and the ``changed.*`` counters.
Wall-clock and CPU-time figures are both printed: on a shared machine the CPU-time one is the steadier.
The file with a trailing comma is loaded after removing it.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import alpaca_data

from schemas.record import CANONICAL_SCHEMA
from stages.base import SEQ_COLUMN
from stages.normalize.stage import NormalizeParams, NormalizeStage

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "alpaca_zh"


def load_alpaca(folder: Path) -> pa.Table:
    rows: list[dict[str, object]] = []
    for path in sorted(folder.glob("*.json")):
        records = alpaca_data.read_alpaca_file(path)
        for i, r in enumerate(records):
            rows.append(
                {
                    "id": f"{path.name}#{i}",
                    "source": path.name,
                    "system": "",
                    "instruction": r.get("instruction") or "",
                    "input": r.get("input") or "",
                    "output": r.get("output") or "",
                    "history": [],
                }
            )
    table = pa.Table.from_pylist(rows, schema=CANONICAL_SCHEMA)
    return table.append_column(SEQ_COLUMN, pa.array(range(len(rows)), pa.int64()))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch-size", type=int, default=10_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--t2s", default="t2s", choices=["t2s", "tw2sp", "hk2s", "off"])
    args = ap.parse_args()
    if not DATA.is_dir():
        sys.exit(f"no data at {DATA.resolve()}")
    table = load_alpaca(DATA)
    stage = NormalizeStage(NormalizeParams(t2s=args.t2s))
    stage.setup()
    batches = [table.slice(i, args.batch_size) for i in range(0, table.num_rows, args.batch_size)]
    best = best_cpu = float("inf")
    counters: dict[str, int] = {}
    rejected = 0
    for _ in range(args.repeat):
        counters, rejected = {}, 0
        t0, c0 = time.perf_counter(), time.process_time()
        for b in batches:
            res = stage.process(b)
            rejected += sum(r is not None for r in res.reasons)
            for k, v in res.counters.items():
                counters[k] = counters.get(k, 0) + v
        best = min(best, time.perf_counter() - t0)
        best_cpu = min(best_cpu, time.process_time() - c0)
    n = table.num_rows
    print(f"records: {n}  batch: {args.batch_size}  t2s: {args.t2s}  best of {args.repeat}")
    print(f"throughput: {n / best:,.0f} records/s wall ({best:.3f}s), {n / best_cpu:,.0f} records/s CPU")
    print(f"rejected: {rejected}  counters: {json.dumps(counters, sort_keys=True)}")


if __name__ == "__main__":
    main()
