"""What the report costs the runner: ReportCollector throughput on real Chinese records.

    python bench/bench_collect.py [--rows 20000]

Reads alpaca_zh from ../shared/data (skips when absent), repeats it to --rows records, feeds it in batches of
5000 to a collector as kept records, then times :meth:`ReportCollector.result` (the verb–object sample).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import pyarrow as pa

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.read.reader import WORK_SCHEMA  # noqa: E402
from pipeline.report.collect import ReportCollector  # noqa: E402

DATA = ROOT / ".." / "shared" / "data" / "alpaca_zh"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=20000)
    args = ap.parse_args()
    files = sorted(DATA.glob("*已完成.json"))
    if not files:
        print(f"no data in {DATA}; skipped")
        return 0
    base = [r for f in files for r in json.loads(f.read_text(encoding="utf-8"))]
    rows = [
        {
            "id": f"x#{i}",
            "source": "x",
            "system": "",
            "instruction": r["instruction"],
            "input": r.get("input", ""),
            "output": r["output"],
            "history": [],
            "_seq": i,
        }
        for i, r in enumerate(base[i % len(base)] for i in range(args.rows))
    ]
    table = pa.Table.from_pylist(rows, schema=WORK_SCHEMA)
    col = ReportCollector()
    t0 = time.perf_counter()
    for start in range(0, table.num_rows, 5000):
        col.add_kept(table.slice(start, 5000))
    t1 = time.perf_counter()
    col.result()
    t2 = time.perf_counter()
    print(f"add_kept: {table.num_rows / (t1 - t0):,.0f} records/s over {table.num_rows} records")
    print(f"result (verb-object sample of {col.sample_size}, incl. jieba load on first use): {t2 - t1:.2f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
