"""Embedding speed of dedup_semantic, side by side in one process (the machine is shared: compare ratios).

    python bench/bench_semantic_speed.py [--models DIR ...] [--records 20000] [--repeat 3]

For each model directory (default: the built-in one): ``encode`` alone on the Alpaca-zh requests (instruction +
input), records/s; then the stage's ``fingerprint`` (what the runner calls) in each mode on the same records, with
the outputs, records/s. Best of ``--repeat`` runs.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import alpaca_data

from stages.dedup.embedder import DEFAULT_MODEL_DIR, load_model
from stages.dedup.semantic import SemanticDedupParams, SemanticDedupStage


def best(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="*", default=[str(DEFAULT_MODEL_DIR)])
    ap.add_argument("--records", type=int, default=20_000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args(argv)
    rows = alpaca_data.load_alpaca()[: args.records]
    n = len(rows)
    table = alpaca_data.canonical_table(
        "a", [r["instruction"] for r in rows], [r["input"] for r in rows], [r["output"] for r in rows]
    ).append_column("_seq", pa.array(np.arange(n), pa.int64()))
    requests = ["\n".join(p for p in (r["instruction"], r["input"]) if p) for r in rows]
    for model_dir in args.models:
        model = load_model(model_dir)
        out: dict[str, object] = {"model": model_dir, "records": n}
        seconds = best(partial(model.encode, requests, batch_size=4096, normalize_embeddings=True), args.repeat)
        out["encode_requests_per_s"] = round(n / seconds)
        for mode in ("instruction", "pair", "output"):
            params = {"model": model_dir, "threshold": 0.9, "similarity": "cosine", "mode": mode, "device": "cpu"}
            stage = SemanticDedupStage(SemanticDedupParams.model_validate(params))
            stage.setup()
            seconds = best(partial(stage.fingerprint, table), args.repeat)
            out[f"fingerprint_{mode}_per_s"] = round(n / seconds)
        print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
