"""Memory and time of dedup_semantic at scale, old code against new side by side (the machine is shared).

    python bench/bench_semantic_scale.py --data /tmp/near_dups_1m.parquet --limit 200000
    python bench/bench_semantic_scale.py --data cleaned.parquet --code /tmp/old_checkout --code .

Each run is a fresh process (``--code`` DIR: a checkout of zhcurate, run from there; default this one; several
are run in turn, ``--repeat`` times) that runs the stage alone as the runner does — ``fingerprint`` per batch
of ``--batch`` records, ``resolve``, ``decide`` — on the records of ``--data`` (a Parquet file with the canonical
columns, e.g. bench/make_near_dups.py output or a run's cleaned.parquet; ``--limit`` takes the first N) and
prints one JSON line: wall and CPU seconds of fingerprint, of the search (``similar_pairs``) and of the rest of
resolve; peak RSS (``ru_maxrss``, the figure ``/usr/bin/time -v`` prints); drops; the counters; and a digest of
every decision (dropped ``_seq``, kept id, similarity), so that equal digests mean equal decisions.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve()


class Clock:
    """Wall and CPU seconds of named phases."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    def add(self, name: str, wall: float, cpu: float) -> None:
        self.seconds[f"{name}_s"] = round(self.seconds.get(f"{name}_s", 0.0) + wall, 2)
        self.seconds[f"{name}_cpu_s"] = round(self.seconds.get(f"{name}_cpu_s", 0.0) + cpu, 2)


def one(args: argparse.Namespace) -> dict[str, Any]:
    """Run the stage in this process (the code on ``sys.path`` is the checkout under test)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from stages.dedup import semantic

    clock = Clock()
    search = semantic.similar_pairs

    def timed_search(*a: Any, **k: Any) -> Any:
        wall, cpu = time.perf_counter(), time.process_time()
        out = search(*a, **k)
        clock.add("search", time.perf_counter() - wall, time.process_time() - cpu)
        return out

    semantic.similar_pairs = timed_search  # type: ignore[assignment]
    table = pq.read_table(args.data)
    if args.limit:
        table = table.slice(0, args.limit)
    table = table.append_column("_seq", pa.array(np.arange(table.num_rows), pa.int64()))
    params = {"device": "cpu", **json.loads(args.params)}
    stage = semantic.SemanticDedupStage(semantic.SemanticDedupParams.model_validate(params))
    stage.check()
    n, size = table.num_rows, args.batch
    wall, cpu = time.perf_counter(), time.process_time()
    fps = [stage.fingerprint(table.slice(i, size)) for i in range(0, n, size)]
    clock.add("fingerprint", time.perf_counter() - wall, time.process_time() - cpu)
    wall, cpu = time.perf_counter(), time.process_time()
    resolution = stage.resolve(fps)
    clock.add("resolve", time.perf_counter() - wall, time.process_time() - cpu)
    digest = hashlib.sha256()
    drops = 0
    for i in range(0, n, size):
        result = stage.decide(table.slice(i, size), resolution)
        for row, (reason, detail) in enumerate(zip(result.reasons, result.details, strict=True)):
            if reason is not None:
                info = json.loads(detail or "{}")
                digest.update(f"{i + row}:{info['duplicate_of']}:{info['similarity']}\n".encode())
                drops += 1
    counters = {k: v for k, v in stage.resolution_counters(resolution).items() if not k.startswith("similarity_")}
    return {
        "records": n,
        **clock.seconds,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "drops": drops,
        "decisions_sha256": digest.hexdigest()[:16],
        "counters": counters,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, type=Path, help="a Parquet file of canonical records")
    ap.add_argument("--limit", type=int, default=None, help="only the first N records")
    ap.add_argument("--params", default="{}", help="dedup_semantic recipe keys as JSON")
    ap.add_argument("--batch", type=int, default=10_000, help="records per fingerprint call (the runner's batch)")
    ap.add_argument("--code", action="append", type=Path, help="checkout(s) to run, in turn (default: this one)")
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.one:
        print(json.dumps(one(args)), flush=True)
        return 0
    codes = [code.resolve() for code in (args.code or [HERE.parents[1]])]
    child = [sys.executable, str(HERE), "--one", "--data", str(args.data.resolve()), "--params", args.params]
    child += ["--batch", str(args.batch)] + (["--limit", str(args.limit)] if args.limit else [])
    for _ in range(args.repeat):
        for code in codes:
            env = {**os.environ, "PYTHONPATH": str(code)}
            done = subprocess.run(child, cwd=code, env=env, capture_output=True, text=True, check=False)
            if done.returncode:
                sys.stderr.write(done.stderr)
                return done.returncode
            print(json.dumps({"code": str(code), **json.loads(done.stdout.strip().splitlines()[-1])}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
