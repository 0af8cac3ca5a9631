"""MinHash dedup: zhcurate's ``dedup_minhash`` stage against datasketch's documented usage.

Build the benchmark first (see bench/make_near_dups.py), then:

    python bench/bench_minhash.py speed   --data /tmp/near_dups_100k.parquet   # both, each as a whole process
    python bench/bench_minhash.py quality --data /tmp/near_dups_100k.parquet   # zhcurate over a parameter grid
    python bench/bench_minhash.py zhcurate --data /tmp/near_dups_1m.parquet    # one process (for time -v)

``speed`` runs each side in its own fresh interpreter (``python bench_minhash.py _datasketch|_zhcurate``),
timed from the parent (start-up and imports included) and reports each side's peak RSS and precision /
recall against the benchmark's ground truth. Both sides read the same Parquet file, shingle the same text
(the chosen fields joined by U+001F, characters folded with NFKC + lower case, whitespace and punctuation
dropped — the same table, :func:`stages.dedup.minhash_kernel.fold_table`) with the same ``ngram``, ``num_perm``,
``threshold`` and LSH bands. datasketch follows its README: one ``MinHash(num_perm, permutations=shared)``
per record, ``update_batch`` of the shingles, ``MinHashLSH.query`` then ``insert`` when nothing is found
(the dropped record's twin is the earliest result). zhcurate runs fingerprint → resolve → decide over
batches of 10,000 records in one process (``--workers`` 1), reading the columns the stage uses (id,
instruction, input, output, history; the decide pass reads ids only, as datasketch's side writes nothing).

Metrics: a dropped record is correct when its twin is in its group. precision = correct / dropped;
recall = correct / (records − groups), the share of all removable copies that were removed.

Measured (2026-11, 2-core machine shared with ~8 other jobs, load average ~10; defaults ngram 3,
num_perm 128, threshold 0.7 → 14 bands × 9 rows, the LSH rule before issue 22; since then 25 × 5 and recall
0.908 at precision 0.9998 on the same 100k file — bench/bench_peers.py has the current comparison):

* 100k records (``speed``, two runs): datasketch 51.0 / 66.0 s wall, 21.0 / 20.2 s CPU, 577 MiB peak,
  precision 0.9995, recall 0.865; zhcurate 5.6 / 5.1 s wall, 1.46 / 1.70 s CPU, 448 MiB peak, precision
  0.9998, recall 0.883 — 9.1x / 13.0x faster wall, 14.4x / 11.9x CPU (the load swings the wall figures).
  About 0.5 s CPU of zhcurate's ~1.5 s is numba's import and start-up.
* 1M records (``/usr/bin/time -v python bench/bench_minhash.py _zhcurate --data .../near_dups_1m.parquet
  --params '{}' --out /tmp/1m.npz``): 28.8 s wall, 8.9 s CPU, 1.5 GB peak RSS (the 512 MB signature matrix
  is held twice: by the fingerprints and concatenated in ``resolve``); precision 0.99995, recall 0.960.
* Defaults (``quality``, 100k): ngram 3 / threshold 0.7 is the best recall whose drops on the raw
  Alpaca-zh originals are all true near-duplicates (at 0.6 different tasks on one shared paragraph and
  "sort ascending" vs "descending" pairs start to merge; 2-grams merge unrelated English texts):
  ngram=3 t=0.6 P 0.9994 R 0.929 | t=0.7 P 0.9998 R 0.883 | t=0.8 P 1.0 R 0.778;
  ngram=4 t=0.7 P 0.9998 R 0.851; ngram=5 t=0.7 P 0.9999 R 0.817; num_perm 64 / 256 at t=0.7: R 0.868 / 0.891.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
FINGERPRINT_COLUMNS = ["id", "instruction", "input", "output", "history"]  # what dedup_minhash reads


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def cpu_s() -> float:
    """CPU seconds (user + system) this process used, start-up and imports included."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run_zhcurate(data: Path, params: dict[str, object], out: Path | None, batch_size: int = 10_000) -> dict:
    """fingerprint → resolve → decide over the file's batches; returns counts, writes decisions to ``out``."""
    from stages.dedup.minhash import MinHashDedupStage, MinHashParams
    from stages.dedup.minhash_kernel import int64_array, numeric_numpy

    stage = MinHashDedupStage(MinHashParams(**params))  # type: ignore[arg-type]
    pf = pq.ParquetFile(data, pre_buffer=False)  # pre-buffering keeps every chunk read until pf is closed

    def batches(columns: list[str]) -> Iterator[pa.Table]:
        seq0 = 0
        for rb in pf.iter_batches(batch_size=batch_size, columns=columns):
            batch = pa.Table.from_batches([rb])
            yield batch.append_column("_seq", int64_array(np.arange(seq0, seq0 + len(batch))))
            seq0 += len(batch)

    resolution = stage.resolve([stage.fingerprint(batch) for batch in batches(FINGERPRINT_COLUMNS)])
    if stage.needs_records(resolution):  # verify: levenshtein | both — the second pass, texts of candidates only
        resolution = stage.complete(resolution, [stage.gather(b, resolution) for b in batches(FINGERPRINT_COLUMNS)])
    dropped, records = 0, 0
    for batch in batches(["id"]):  # decide reads _seq only
        records += batch.num_rows
        dropped += sum(r is not None for r in stage.decide(batch, resolution).reasons)
    if out is not None:
        rows = pc.extract_regex(resolution.kept_id, r"#(?P<row>\d+)$").field("row")  # ids are name#row
        kept = numeric_numpy(rows.cast(pa.int64()))
        np.savez(out, dropped=resolution.dropped_seq, kept=kept)
    return {"records": records, "dropped": dropped, **stage.resolution_counters(resolution)}


def run_datasketch(data: Path, params: dict, out: Path | None) -> dict:
    """datasketch's documented usage: MinHash per record, MinHashLSH query, insert if new."""
    from datasketch import MinHash, MinHashLSH

    from stages.dedup.minhash_kernel import DROP, fold_table

    n, num_perm, threshold, seed = params["ngram"], params["num_perm"], params["threshold"], params["seed"]
    strict = {cp: (None if v == DROP else chr(v)) for cp, v in enumerate(fold_table(True).tolist()) if v != cp}
    loose = {cp: chr(v) for cp, v in enumerate(fold_table(False).tolist()) if v != cp}
    template = MinHash(num_perm=num_perm, seed=seed)
    perms, scheme = template.permutations, template.scheme
    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
    table = pq.ParquetFile(data).read(columns=["instruction", "input", "output"])
    cols = [table.column(c).to_pylist() for c in ("instruction", "input", "output")]
    dropped, kept = [], []
    for i, fields in enumerate(zip(*cols, strict=True)):
        raw = "\x1f".join((*fields, ""))  # history is empty in the benchmark: same text as record_text
        text = raw.translate(strict)
        if len(text) < n:
            text = raw.translate(loose)
        shingles = {text[j : j + n] for j in range(len(text) - n + 1)} if len(text) >= n else {text}
        m = MinHash(num_perm=num_perm, seed=seed, permutations=perms, scheme=scheme)
        m.update_batch([s.encode("utf-8") for s in shingles])
        result = lsh.query(m)
        if result:
            dropped.append(i)
            kept.append(min(result))
        else:
            lsh.insert(i, m)
    if out is not None:
        np.savez(out, dropped=np.array(dropped, np.int64), kept=np.array(kept, np.int64))
    return {"records": len(cols[0]), "dropped": len(dropped)}


def evaluate(data: Path, dropped: np.ndarray, kept: np.ndarray) -> dict[str, float]:
    """Precision / recall against the groups, and per perturbation kind the share of copies clustered with
    their group's original."""
    t = pq.read_table(data, columns=["group", "perturbation"])
    group = t.column("group").to_numpy()
    kind = np.array(t.column("perturbation").to_pylist())
    n, n_groups = len(group), len(np.unique(group))
    correct = int((group[dropped] == group[kept]).sum())
    rep = np.arange(n)
    rep[dropped] = kept
    orig_of_group = np.full(group.max() + 1, -1)
    is_orig = kind == "original"
    orig_of_group[group[is_orig]] = np.flatnonzero(is_orig)
    res: dict[str, float] = {
        "precision": correct / max(len(dropped), 1),
        "recall": correct / max(n - n_groups, 1),
        "dropped": len(dropped),
    }
    for k in sorted(set(kind.tolist()) - {"original"}):
        rows = np.flatnonzero((kind == k) & (orig_of_group[group] >= 0))
        res[f"recall.{k}"] = float((rep[rows] == rep[orig_of_group[group[rows]]]).mean())
    return res


def child(side: str, data: Path, params: dict, out: Path) -> None:
    t0 = time.perf_counter()
    counts = (run_datasketch if side == "datasketch" else run_zhcurate)(data, params, out)
    inner = time.perf_counter() - t0
    print(json.dumps({"side": side, "inner_s": inner, "cpu_s": cpu_s(), "peak_rss_mib": peak_rss_mib(), **counts}))


def speed(data: Path, params: dict, sides: list[str]) -> None:
    results = {}
    for side in sides:
        out = Path(f"/tmp/bench_minhash_{side}.npz")
        t0 = time.perf_counter()
        proc = subprocess.run(
            [
                sys.executable,
                __file__,
                f"_{side}",
                "--data",
                str(data),
                "--params",
                json.dumps(params),
                "--out",
                str(out),
            ],
            check=True,
            capture_output=True,
            text=True,
        )
        wall = time.perf_counter() - t0
        info = json.loads(proc.stdout.strip().splitlines()[-1])
        z = np.load(out)
        info.update(wall_s=wall, **evaluate(data, z["dropped"], z["kept"]))
        results[side] = info
        print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in info.items()}, ensure_ascii=False))
    if len(results) == 2:
        ds, zh = results["datasketch"], results["zhcurate"]
        print(
            f"params {params}\n"
            f"datasketch {ds['wall_s']:.2f} s wall, {ds['cpu_s']:.2f} s CPU, {ds['peak_rss_mib']:.0f} MiB peak | "
            f"zhcurate {zh['wall_s']:.2f} s wall, {zh['cpu_s']:.2f} s CPU, {zh['peak_rss_mib']:.0f} MiB peak | "
            f"zhcurate is {ds['wall_s'] / zh['wall_s']:.1f}x faster (wall), {ds['cpu_s'] / zh['cpu_s']:.1f}x (CPU)"
        )


def quality(data: Path, grid: dict[str, list]) -> None:
    for ngram in grid["ngram"]:
        for num_perm in grid["num_perm"]:
            for threshold in grid["threshold"]:
                params = {"ngram": ngram, "num_perm": num_perm, "threshold": threshold}
                out = Path("/tmp/bench_minhash_grid.npz")
                t0 = time.perf_counter()
                run_zhcurate(data, params, out)
                z = np.load(out)
                m = evaluate(data, z["dropped"], z["kept"])
                line = " ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in m.items())
                print(
                    f"ngram={ngram} num_perm={num_perm} threshold={threshold} {line} ({time.perf_counter() - t0:.1f}s)"
                )


def main() -> int:
    from stages.dedup.minhash import MinHashParams

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mode", choices=["speed", "quality", "zhcurate", "datasketch", "_zhcurate", "_datasketch"])
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--params", default="{}", help="JSON overrides of dedup_minhash's parameters")
    ap.add_argument("--out", type=Path)
    ap.add_argument("--grid", default='{"ngram": [3, 4, 5], "num_perm": [128], "threshold": [0.7, 0.75, 0.8]}')
    args = ap.parse_args()
    params = MinHashParams(**json.loads(args.params)).model_dump(exclude={"fields", "normalize"})
    if args.mode == "speed":
        speed(args.data, params, ["datasketch", "zhcurate"])
    elif args.mode in ("zhcurate", "datasketch"):
        speed(args.data, params, [args.mode])
    elif args.mode == "quality":
        quality(args.data, json.loads(args.grid))
    else:
        child(args.mode[1:], args.data, params, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
