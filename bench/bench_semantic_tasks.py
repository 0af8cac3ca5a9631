"""Does dedup_semantic merge only records that are the same task? Wrong merges and recall on real data.

    python bench/bench_semantic_tasks.py --data alpaca                       # the ~20k Alpaca-zh records
    python bench/bench_semantic_tasks.py --data /tmp/near_dups_100k.parquet  # bench/make_near_dups.py output
    python bench/bench_semantic_tasks.py --data alpaca --params '{"mode": "instruction"}' --show 20
    python bench/bench_semantic_tasks.py --data synthetic:100000:0.02 --params '{"verify_model": "e5-small"}'

Runs the stage alone (fingerprint per 10k batch, resolve, decide) with ``--params`` (recipe keys of
``dedup_semantic``) and prints, as JSON:

* ``drops``: records dropped; ``same_input_other_instruction``: drops whose input (non-empty) is the same as its
  kept twin's (char 3-gram Jaccard >= 0.8) while the instructions differ (Jaccard < 0.5) — different tasks over
  one input, the merges the stage must not make (each is listed with ``--show``; read them);
* ``synthetic:N:RATE``: bench/bench_semantic.py's records (Alpaca-zh instructions over random inputs, empty
  outputs, ``RATE`` near-copies; ground truth = the copy family), for what the cascade costs;
* on the near-dup file or synthetic data (ground truth ``group``): ``recall`` = drops whose kept twin is of the
  same group / (records - groups), and ``wrong_group`` = drops whose kept twin is of another group;
* ``fingerprint_s``, ``resolve_s``, records/s of the fingerprint step and the peak RSS.

Timings are from a shared machine (2 cores for several people): compare runs made side by side.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import alpaca_data

from stages.dedup.semantic import SemanticDedupParams, SemanticDedupStage


def load(data: str, limit: int | None) -> pa.Table:
    if data == "alpaca":
        rows = alpaca_data.load_alpaca()
        table = alpaca_data.canonical_table(
            "alpaca", [r["instruction"] for r in rows], [r["input"] for r in rows], [r["output"] for r in rows]
        )
    elif data.startswith("synthetic:"):
        import bench_semantic

        _, size, rate = data.split(":")
        table, root = bench_semantic.synthetic_table(int(size), float(rate), seed=0)
        table = table.drop_columns(["_seq"]).append_column("group", pa.array(root))
    else:
        table = pq.read_table(data)
    if limit:
        table = table.slice(0, limit)
    return table.append_column("_seq", pa.array(np.arange(table.num_rows), pa.int64()))


def grams(text: str, n: int = 3) -> set[str]:
    text = "".join(text.split())
    return {text[i : i + n] for i in range(max(1, len(text) - n + 1))}


def jaccard(a: str, b: str) -> float:
    ga, gb = grams(a), grams(b)
    return len(ga & gb) / max(1, len(ga | gb))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="alpaca", help="'alpaca' or a near-dup Parquet file")
    ap.add_argument("--params", default="{}", help="dedup_semantic recipe keys as JSON")
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--batch", type=int, default=10_000)
    ap.add_argument("--show", type=int, default=0, help="print this many same-input merges and other drops")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    table = load(args.data, args.limit)
    params: dict[str, Any] = {"device": "cpu", **json.loads(args.params)}
    stage = SemanticDedupStage(SemanticDedupParams.model_validate(params))
    stage.check()
    n = table.num_rows
    out: dict[str, Any] = {"data": args.data, "records": n, "params": params}
    start = time.perf_counter()
    fps = [stage.fingerprint(table.slice(i, args.batch)) for i in range(0, n, args.batch)]
    out["fingerprint_s"] = round(time.perf_counter() - start, 2)
    out["fingerprint_records_per_s"] = round(n / out["fingerprint_s"])
    start = time.perf_counter()
    resolution = stage.resolve(fps)
    out["resolve_s"] = round(time.perf_counter() - start, 2)
    results = [stage.decide(table.slice(i, args.batch), resolution) for i in range(0, n, args.batch)]
    out["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    out["counters"] = stage.resolution_counters(resolution)
    row_of = {rid: i for i, rid in enumerate(table.column("id").to_pylist())}
    instruction = table.column("instruction").to_pylist()
    text_input = table.column("input").to_pylist()
    output = table.column("output").to_pylist()
    group = table.column("group").to_numpy() if "group" in table.column_names else None
    drops: list[tuple[int, int, dict[str, Any]]] = []
    offset = 0
    for result in results:
        for row, detail in enumerate(result.details):
            if result.reasons[row] is not None:
                info = json.loads(detail or "{}")
                drops.append((offset + row, row_of[info["duplicate_of"]], info))
        offset += result.table.num_rows
    out["drops"] = len(drops)
    same_input = [
        (a, b, info)
        for a, b, info in drops
        if text_input[a].strip()
        and jaccard(text_input[a], text_input[b]) >= 0.8
        and jaccard(instruction[a], instruction[b]) < 0.5
        and (group is None or group[a] != group[b])
    ]
    out["same_input_other_instruction"] = len(same_input)
    if group is not None:
        own = sum(1 for a, b, _ in drops if group[a] == group[b])
        out["recall"] = round(own / max(1, n - len(np.unique(group))), 4)
        out["wrong_group"] = len(drops) - own
    print(json.dumps(out, ensure_ascii=False), flush=True)
    wrong = [d for d in drops if group is not None and group[d[0]] != group[d[1]] and d not in same_input]
    rest = [d for d in drops if d not in same_input and d not in wrong]
    shown = same_input[: args.show] + wrong[: args.show] + rest[: args.show]
    for a, b, info in shown:
        print(
            json.dumps(
                {
                    "similarity": info.get("similarity"),
                    "dropped": [instruction[a], text_input[a][:60], output[a][:60]],
                    "kept": [instruction[b], text_input[b][:60], output[b][:60]],
                },
                ensure_ascii=False,
            )
        )
    if args.json:
        args.json.write_text(json.dumps(out, ensure_ascii=False, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
