"""MinHash near-dedup side by side: zhcurate against the MinHash tools that are installed.

Build the benchmark first (bench/make_near_dups.py), then:

    python bench/bench_peers.py --data /tmp/near_dups_100k.parquet
    python bench/bench_peers.py --data /tmp/near_dups_100k.parquet --tools zhcurate,zhcurate-both,rensa

Every tool runs as its own fresh process (``python bench_peers.py _TOOL``), timed from here: wall and CPU
seconds are the whole process, start-up, imports and reading the Parquet file included. A tool that is not
installed is skipped with a message. All get the same text, the same shingles and the same parameters:
the fields joined by U+001F, characters folded with NFKC + lower case and whitespace and punctuation dropped
(zhcurate's fold table), character 3-grams, 128 permutations, threshold 0.7.

* ``zhcurate`` — the ``dedup_minhash`` stage with its defaults (``verify: jaccard``); ``zhcurate-both`` with
  ``verify: both`` (Jaccard estimate or Levenshtein ratio ≥ 0.85).
* ``datasketch`` — its README: ``MinHash`` per record, ``MinHashLSH(threshold=0.7)``, ``query`` then
  ``insert`` when nothing is found (bench/bench_minhash.py's code).
* ``rensa`` — its README's deduplication: ``RMinHash``, ``RMinHashLSH(0.7, 128, num_bands=16)``, candidates
  confirmed with ``jaccard >= 0.7``, query then insert.
* ``datatrove`` — its four steps (``MinhashDedupSignature`` → ``Buckets`` → ``Cluster``), 14 buckets × 9
  hashes (its LSH for 0.7), shingles = our character 3-grams (``get_shingles`` overridden; the word tokenizer,
  which needs spaCy, is never used). No verification: every bucket collision is linked.
* ``text-dedup`` — ``text_dedup.minhash``'s ``embed_func`` (sha1, 64-bit config, the datasketch-optimal 14 × 9
  bands) over the characters as tokens, its ``UnionFind`` over all bucket members. No verification. It pins
  ``rich<14`` and ``urllib3<=2.0`` and pulls pyspark: install it apart, ``pip install --no-deps --target
  DIR text-dedup bitarray click-option-group fire`` and pass ``--site DIR``.

Metrics as bench/bench_minhash.py: precision = dropped records whose twin is in their group / dropped;
recall = of all removable copies; per perturbation kind, and per edit-rate band when the file has the
``edit_rate`` column (``make_near_dups.py --edit-rates``).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

NGRAM, NUM_PERM, THRESHOLD, SEED = 3, 128, 0.7, 42
TOOLS = ("zhcurate", "zhcurate-both", "datasketch", "rensa", "datatrove", "text-dedup")
MODULES = {"datasketch": "datasketch", "rensa": "rensa", "datatrove": "datatrove", "text-dedup": "text_dedup"}


def normalized(data: Path) -> list[str]:
    """Each record's compared text, normalized as zhcurate's kernel does (what every peer shingles)."""
    from stages.dedup.common import record_text
    from stages.dedup.minhash_verify import normalized_texts

    table = pq.read_table(data, columns=["instruction", "input", "output", "history"])
    return normalized_texts(record_text(table), NGRAM, True)


def shingles(text: str) -> list[str]:
    return [text[j : j + NGRAM] for j in range(len(text) - NGRAM + 1)] if len(text) >= NGRAM else [text]


def run_zhcurate(data: Path, verify: str) -> tuple[np.ndarray, np.ndarray]:
    from bench_minhash import run_zhcurate as run

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "z.npz"
        run(data, {"ngram": NGRAM, "num_perm": NUM_PERM, "threshold": THRESHOLD, "verify": verify}, out)
        z = np.load(out)
        return z["dropped"], z["kept"]


def run_datasketch(data: Path) -> tuple[np.ndarray, np.ndarray]:
    from bench_minhash import run_datasketch as run

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "d.npz"
        run(data, {"ngram": NGRAM, "num_perm": NUM_PERM, "threshold": THRESHOLD, "seed": SEED}, out)
        z = np.load(out)
        return z["dropped"], z["kept"]


def run_rensa(data: Path) -> tuple[np.ndarray, np.ndarray]:
    from rensa import RMinHash, RMinHashLSH

    lsh = RMinHashLSH(threshold=THRESHOLD, num_perm=NUM_PERM, num_bands=16)
    kept_hashes: dict[int, RMinHash] = {}
    dropped, kept = [], []
    for i, text in enumerate(normalized(data)):
        m = RMinHash(num_perm=NUM_PERM, seed=SEED)
        m.update(shingles(text))
        twins = [j for j in lsh.query(m) if m.jaccard(kept_hashes[j]) >= THRESHOLD]
        if twins:
            dropped.append(i)
            kept.append(min(twins))
        else:
            lsh.insert(i, m)
            kept_hashes[i] = m
    return np.array(dropped, np.int64), np.array(kept, np.int64)


def run_datatrove(data: Path) -> tuple[np.ndarray, np.ndarray]:
    import datatrove.pipeline.dedup.minhash as dm
    from datatrove.data import Document

    dm.load_word_tokenizer = lambda language: None  # type: ignore[assignment]  # never used: shingles below
    bands, rows = 14, 9
    config = dm.MinhashConfig(n_grams=NGRAM, num_buckets=bands, hashes_per_bucket=rows)

    class CharSignature(dm.MinhashDedupSignature):
        def get_shingles(self, text: str) -> np.ndarray:
            grams = shingles(text)
            return np.fromiter((self._hash_func(g.encode()) for g in grams), np.uint64, len(grams)).reshape(-1, 1)

    with tempfile.TemporaryDirectory() as tmp:
        docs = (Document(text=t, id=str(i)) for i, t in enumerate(normalized(data)))
        CharSignature(output_folder=f"{tmp}/sig", config=config).run(docs, rank=0, world_size=1)
        buckets = dm.MinhashDedupBuckets(input_folder=f"{tmp}/sig", output_folder=f"{tmp}/buckets", config=config)
        for b in range(bands):
            buckets.run(None, rank=b, world_size=bands)
        dm.MinhashDedupCluster(
            input_folder=f"{tmp}/buckets", output_folder=f"{tmp}/out", config=config, save_cluster_id=True
        ).run(None, 0, 1)
        pairs = np.fromfile(f"{tmp}/out/000000.clusters", dtype="<u4").reshape(-1, 2).astype(np.int64)
        removed = np.fromfile(f"{tmp}/out/000000.remove", dtype="<u4").astype(np.int64)
    cluster = dict(zip(pairs[:, 0].tolist(), pairs[:, 1].tolist(), strict=True))  # doc -> cluster number
    gone = set(removed.tolist())
    root = {c: d for d, c in cluster.items() if d not in gone}  # the one record a cluster keeps
    return removed, np.array([root[cluster[d]] for d in removed.tolist()], np.int64)


def run_text_dedup(data: Path) -> tuple[np.ndarray, np.ndarray]:
    from text_dedup.minhash import embed_func
    from text_dedup.utils import UnionFind, optimal_param, sha1_hash

    bands, rows = optimal_param(THRESHOLD, NUM_PERM, 0.5, 0.5)
    dtype, max_hash, prime = np.uint64, np.uint32((1 << 32) - 1), np.uint64((1 << 61) - 1)
    rng = np.random.RandomState(SEED)
    perms = (rng.randint(1, prime, size=(NUM_PERM,), dtype=dtype), rng.randint(0, prime, size=(NUM_PERM,), dtype=dtype))
    ranges = [(i * rows, (i + 1) * rows) for i in range(bands)]
    tables: list[dict[bytes, list[int]]] = [{} for _ in range(bands)]
    for i, text in enumerate(normalized(data)):
        sig = embed_func(
            " ".join(text),  # characters as tokens: its n-grams of tokens are character 3-grams
            i,
            num_perm=NUM_PERM,
            ngram_size=NGRAM,
            min_length=0,
            hashranges=ranges,
            permutations=perms,
            hash_func=lambda b: sha1_hash(b, d=32),
            dtype=dtype,
            max_hash=max_hash,
            modulo_prime=prime,
        )
        for table, h in zip(tables, sig["__signatures__"], strict=True):
            table.setdefault(h, []).append(i)
    uf = UnionFind()
    for table in tables:
        for members in table.values():
            if len(members) > 1:
                for x in members:
                    uf.union(x, members[0])
    n = sum(len(m) for m in tables[0].values())  # every record is in one bucket of each band
    root = np.array([uf.find(i) for i in range(n)], np.int64)
    first = np.full(n, n, np.int64)
    np.minimum.at(first, root, np.arange(n))  # the kept record of a cluster: its earliest
    kept_of = first[root]
    dropped = np.flatnonzero(kept_of != np.arange(n))
    return dropped, kept_of[dropped]


def evaluate(data: Path, dropped: np.ndarray, kept: np.ndarray) -> dict[str, float]:
    from bench_minhash import evaluate as base

    res = base(data, dropped, kept)
    schema = pq.read_schema(data)
    if "edit_rate" in schema.names:  # recall per band of edit rates: copies clustered with their original
        t = pq.read_table(data, columns=["group", "perturbation", "edit_rate"])
        group, rate = t.column("group").to_numpy(), t.column("edit_rate").to_numpy()
        kind = np.array(t.column("perturbation").to_pylist())
        rep = np.arange(len(group))
        rep[dropped] = kept
        rep = rep[rep]  # kept twins are kept: one step reaches the cluster's representative
        orig = np.full(group.max() + 1, -1)
        orig[group[kind == "original"]] = np.flatnonzero(kind == "original")
        for lo, hi in ((0.01, 0.02), (0.03, 0.05), (0.06, 0.08)):
            rows = np.flatnonzero((rate >= lo - 1e-9) & (rate <= hi + 1e-9) & (kind != "original"))
            if len(rows):
                res[f"recall.edits_{round(lo * 100)}-{round(hi * 100)}%"] = float(
                    (rep[rows] == rep[orig[group[rows]]]).mean()
                )
    return res


def child(tool: str, data: Path, out: Path) -> None:
    runners = {
        "zhcurate": lambda: run_zhcurate(data, "jaccard"),
        "zhcurate-both": lambda: run_zhcurate(data, "both"),
        "datasketch": lambda: run_datasketch(data),
        "rensa": lambda: run_rensa(data),
        "datatrove": lambda: run_datatrove(data),
        "text-dedup": lambda: run_text_dedup(data),
    }
    dropped, kept = runners[tool]()
    np.savez(out, dropped=dropped, kept=kept)


def installed(tool: str, env: dict[str, str]) -> bool:
    module = MODULES.get(tool)
    if module is None:
        return True
    probe = subprocess.run([sys.executable, "-c", f"import {module}"], env=env, capture_output=True)
    return probe.returncode == 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("tool", nargs="?", help=argparse.SUPPRESS)
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--tools", default=",".join(TOOLS))
    ap.add_argument("--site", help="an extra folder for PYTHONPATH (a peer installed with pip --target)")
    ap.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.tool:
        child(args.tool[1:], args.data, args.out)
        return 0
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, args.site, env.get("PYTHONPATH")) if p)
    rows = []
    for tool in args.tools.split(","):
        if not installed(tool, env):
            print(f"{tool}: not installed, skipped (pip install {tool}; see this script's docstring)", flush=True)
            continue
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "out.npz"
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            t0 = time.perf_counter()
            cmd = [sys.executable, __file__, f"_{tool}", "--data", str(args.data), "--out", str(out)]
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
            wall = time.perf_counter() - t0
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            if proc.returncode:
                print(f"{tool}: failed\n{proc.stderr[-2000:]}", flush=True)
                continue
            z = np.load(out)
            m = evaluate(args.data, z["dropped"], z["kept"])
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        rows.append((tool, m, wall, cpu))
        print(json.dumps({"tool": tool, "wall_s": round(wall, 2), "cpu_s": round(cpu, 2), **m}), flush=True)
    extra = sorted({k for _, m, _, _ in rows for k in m if k.startswith("recall.")})
    print("\n| tool | precision | recall | wall s | CPU s | " + " | ".join(k[7:] for k in extra) + " |")
    print("|---" * (5 + len(extra)) + "|")
    for tool, m, wall, cpu in sorted(rows, key=lambda r: -r[1]["recall"]):
        cells = " | ".join(f"{m.get(k, float('nan')):.3f}" for k in extra)
        print(f"| {tool} | {m['precision']:.4f} | {m['recall']:.4f} | {wall:.1f} | {cpu:.1f} | {cells} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
