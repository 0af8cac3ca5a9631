"""Whole-run speed: inputs for timing ``zhcurate run`` as a whole process, and the pandas floor to compare with.

    python bench/bench_speed.py make --copies 5 --out /tmp/speed_in     # ~101k Alpaca-zh-derived JSONL records
    python bench/bench_speed.py floor --input /tmp/speed_in --out /tmp/floor.parquet
    python bench/bench_speed.py steps /tmp/out                           # per-step seconds of a finished run
    python bench/bench_speed.py io-floor --input /tmp/nd100k.parquet --kept 27363 --out /tmp/io   # dedup's I/O floor

``make`` writes one JSONL file (``all.jsonl``) of Alpaca-zh replicated ``--copies`` times, every copy after the
first perturbed as in ``bench/bench_ray.py`` (exact, near and new duplicates). ``floor`` is the least a tool can
do with that file: pandas ``read_json(lines=True)`` then ``to_parquet`` (zstd). Time both as whole processes,
side by side, e.g. with ``/usr/bin/time -v`` or ``hyperfine``::

    zhcurate run bench/recipes/no_stages.yaml --input /tmp/speed_in/all.jsonl --output /tmp/o --quiet

The dedup stages alone against datasketch's documented usage, both as whole processes on the same records::

    python bench/make_near_dups.py --size 100000 --out /tmp/nd100k.parquet
    zhcurate run bench/recipes/dedup_only.yaml --input /tmp/nd100k.parquet --output /tmp/o2 --quiet
    python bench/bench_minhash.py _datasketch --data /tmp/nd100k.parquet

``io-floor`` is what any whole-process dedup run must at least do besides deduplicating: start Python, import
pyarrow, read the Parquet file and write its rows back split into the kept (``--kept``, the first rows) and the
removed ones, zstd, as ``cleaned.parquet`` and ``rejected.parquet``. datasketch's CPU divided by this one's is
the most any tool's whole run can gain over datasketch's whole run on that file.

And ``--workers 1`` against ``--workers 2`` with ``bench/recipes/per_record.yaml`` (then ``steps`` on each).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def make(out: Path, copies: int, seed: int) -> int:
    from bench_ray import perturbed_copies

    out.mkdir(parents=True, exist_ok=True)
    n = 0
    with open(out / "all.jsonl", "w", encoding="utf-8") as f:
        for _, rec in perturbed_copies(copies, seed):
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")
            n += 1
    return n


def floor(inp: Path, out: Path) -> None:
    import pandas as pd

    files = sorted(inp.glob("*.jsonl")) if inp.is_dir() else [inp]
    frame = pd.concat([pd.read_json(f, lines=True, dtype=False) for f in files], ignore_index=True)
    frame.to_parquet(out, compression="zstd")


def io_floor(inp: Path, kept: int, out: Path) -> None:
    import pyarrow.parquet as pq

    out.mkdir(parents=True, exist_ok=True)
    table = pq.read_table(inp)
    pq.write_table(table.slice(0, kept), out / "cleaned.parquet", compression="zstd")
    pq.write_table(table.slice(kept), out / "rejected.parquet", compression="zstd")


def steps(folder: Path) -> None:
    report = json.loads((folder / "report.json").read_text(encoding="utf-8"))
    for s in report["stages"]:
        print(f"{s['stage']:>16} {s['seconds']:8.2f}s  in {s['input']:>8}  kept {s['kept']:>8}")
    print(f"{'total':>16} {report['seconds']:8.2f}s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("make")
    m.add_argument("--copies", type=int, default=5)
    m.add_argument("--seed", type=int, default=0)
    m.add_argument("--out", type=Path, required=True)
    f = sub.add_parser("floor")
    f.add_argument("--input", type=Path, required=True)
    f.add_argument("--out", type=Path, required=True)
    io = sub.add_parser("io-floor")
    io.add_argument("--input", type=Path, required=True)
    io.add_argument("--kept", type=int, required=True)
    io.add_argument("--out", type=Path, required=True)
    s = sub.add_parser("steps")
    s.add_argument("folder", type=Path)
    args = ap.parse_args()
    if args.cmd == "make":
        print(make(args.out, args.copies, args.seed), "records in", args.out / "all.jsonl")
    elif args.cmd == "floor":
        floor(args.input, args.out)
    elif args.cmd == "io-floor":
        io_floor(args.input, args.kept, args.out)
    else:
        steps(args.folder)


if __name__ == "__main__":
    main()
