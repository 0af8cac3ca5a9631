"""Local engine vs Ray engine on ~100k records: wall time, and a check that both give the same outputs.

The input is Alpaca-zh (../shared/data/alpaca_zh, 20,277 records) replicated ``--copies`` times; every copy
after the first perturbs each record with a seeded random number of character edits (0 edits: an exact
duplicate, a few: a near duplicate, many: a new record), so the dedup stages have real work.

    python bench/bench_ray.py                       # 5 copies (~101k records): local (1, 2 workers), ray (2 CPUs)
    python bench/bench_ray.py --local-workers 1     # the same without the local 2-worker run
    python bench/bench_ray.py --copies 1 --num-cpus 2 --stages normalize,dedup_minhash

Prints one JSON object: records, seconds per engine and per stage, and whether the outputs are identical.
Ray runs on a private local cluster (``ray.init(num_cpus=N)``) that is shut down at the end.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import alpaca_data  # noqa: E402  (bench/ is on sys.path when run as a script)

from pipeline.engines.ray_engine import RayEngine  # noqa: E402
from pipeline.recipe import build_recipe  # noqa: E402
from pipeline.runner import Runner, RunOptions  # noqa: E402

ALPACA_ZH = ROOT / ".." / "shared" / "data" / "alpaca_zh"
DEFAULT_STAGES = "normalize,safety,language,quality,dedup_exact,dedup_minhash,dedup_semantic"  # the default recipe
FILLERS = "的了是在和，。！？ 一二三"


def perturb(text: str, rng: random.Random) -> str:
    """A seeded copy of ``text`` with 0 to ~15% of its characters replaced, deleted or inserted."""
    if not text:
        return text
    chars = list(text)
    edits = rng.choice([0, 0, 1, 2, 3, max(1, len(chars) // 7)])
    for _ in range(edits):
        i = rng.randrange(len(chars))
        op = rng.random()
        if op < 0.4:
            chars[i] = rng.choice(FILLERS)
        elif op < 0.7 and len(chars) > 1:
            del chars[i]
        else:
            chars.insert(i, rng.choice(FILLERS))
    return "".join(chars)


def perturbed_copies(copies: int, seed: int) -> Iterator[tuple[int, dict[str, Any]]]:
    """(copy number, record) for every Alpaca-zh record ``copies`` times; copies after the first are perturbed."""
    records: list[dict[str, Any]] = []
    for path in sorted(ALPACA_ZH.glob("*.json")):
        records += alpaca_data.read_alpaca_file(path)
    rng = random.Random(seed)
    for copy in range(copies):
        for r in records:
            out = {k: r.get(k, "") for k in ("instruction", "input", "output")}
            if copy:
                out["instruction"] = perturb(out["instruction"], rng)
                out["output"] = perturb(out["output"], rng)
            yield copy, out


def make_input(folder: Path, copies: int, seed: int) -> int:
    """Write the replicated, perturbed records as JSONL files (one per copy); returns the record count."""
    files = [open(folder / f"copy{c}.jsonl", "w", encoding="utf-8") for c in range(copies)]
    n = 0
    try:
        for copy, out in perturbed_copies(copies, seed):
            files[copy].write(json.dumps(out, ensure_ascii=False) + "\n")
            n += 1
    finally:
        for f in files:
            f.close()
    return n


def run(
    folder: Path, out: Path, stages: list[str], engine: Any = None, workers: int = 1
) -> tuple[float, dict[str, Any]]:
    raw = {"input": [str(folder)], "output": str(out), "stages": [{s: {}} for s in stages]}
    recipe = build_recipe(raw, base_dir=None, source="bench")
    opts = RunOptions(output=out, progress=False, workers=workers, engine_name="ray" if engine else "local", force=True)
    t0 = time.perf_counter()
    report = Runner(recipe, opts, engine=engine).run()
    return time.perf_counter() - t0, report


def same_outputs(a: Path, b: Path) -> bool:
    cols = ["id", "stage", "reason", "detail"]
    ra = sorted(zip(*pq.read_table(a / "rejected.parquet", columns=cols).to_pydict().values()))
    rb = sorted(zip(*pq.read_table(b / "rejected.parquet", columns=cols).to_pydict().values()))
    ca = pq.read_table(a / "cleaned.parquet", columns=["id"]).column("id").to_pylist()
    cb = pq.read_table(b / "cleaned.parquet", columns=["id"]).column("id").to_pylist()
    return ca == cb and ra == rb


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--copies", type=int, default=5, help="copies of Alpaca-zh (5: ~101k records)")
    ap.add_argument("--num-cpus", type=int, default=2, help="CPUs of the local Ray cluster")
    ap.add_argument("--stages", default=DEFAULT_STAGES, help="comma-separated stages (default: %(default)s)")
    ap.add_argument("--local-workers", default="1,2", help="local engine runs, by worker processes (%(default)s)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if not ALPACA_ZH.is_dir():
        sys.exit(f"bench_ray: {ALPACA_ZH} is absent")
    stages = args.stages.split(",")
    with tempfile.TemporaryDirectory(prefix="zhcurate-bench-ray-") as tmp:
        folder = Path(tmp) / "in"
        folder.mkdir()
        n = make_input(folder, args.copies, args.seed)
        local: dict[str, Any] = {}
        local_s: dict[str, float] = {}
        for w in (int(x) for x in args.local_workers.split(",")):
            local_s[f"local_workers_{w}"], local = run(folder, Path(tmp) / f"local{w}", stages, workers=w)
        t0 = time.perf_counter()
        with RayEngine(num_cpus=args.num_cpus) as engine:
            start_s = time.perf_counter() - t0
            ray_s, ray = run(folder, Path(tmp) / "ray", stages, engine)
        same = all(same_outputs(Path(tmp) / d.name, Path(tmp) / "ray") for d in Path(tmp).glob("local*"))
    result = {
        "records": n,
        "stages": stages,
        "ray_cpus": args.num_cpus,
        **{f"{k}_seconds": round(v, 1) for k, v in local_s.items()},
        "ray_seconds": round(ray_s, 1),
        "ray_start_seconds": round(start_s, 1),
        "per_stage_seconds": {
            s["stage"]: {"local (last run)": s["seconds"], "ray": r["seconds"]}
            for s, r in zip(local["stages"], ray["stages"])
        },
        "counts": local["counts"],
        "identical_outputs": same,
    }
    print(json.dumps(result, ensure_ascii=False, indent=2))


if __name__ == "__main__":
    main()
