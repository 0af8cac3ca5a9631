"""Benchmark dedup_semantic: embedding speed, exact vs IVF search time and recall, peak memory.

    python bench/bench_semantic.py --size 100000 --grid --full-flat
    python bench/bench_semantic.py --size 1000000

Records are synthetic, built (seeded) from ``../shared/data/alpaca_zh`` (read-only, never copied): a Chinese
Alpaca-zh instruction with two random sentences of the corpus as its input — so that many records share an
instruction template but differ in their input (they must be kept) — plus ``--dup-rate`` near-copies of
earlier records (a polite prefix, punctuation width, 2 % character edits, a synonym swap) that should go.

Measures, one process per size (peak RSS is per process):

1. ``fingerprint`` (embedding + char n-gram TF-IDF for the hybrid) in batches of ``--batch``: records/s, and
   the model's ``encode`` alone.
2. The stage's ``resolve`` with its defaults (exact up to ``flat_max`` records, else IVF): time, counters, peak
   RSS so far, and how many planted copies were dropped for a record of their own family (and drops outside).
3. Exact (``IndexFlatIP``) vs IVF k-NN for ``--queries`` sampled queries: search time extrapolated to all n
   queries (index build/training included), recall of IVF against exact for candidate pairs and for pairs that
   pass verification; ``--grid`` adds nlist ∈ {√n, 4√n} × nprobe ∈ {8, 16, 32}.
4. ``--full-flat``: the exact search over all records, timed for real.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import resource
import sys
import time
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import alpaca_data  # noqa: E402  (bench/ is on sys.path when run as a script)

from stages.dedup.semantic import SemanticDedupParams, SemanticDedupStage  # noqa: E402
from stages.dedup.semantic_index import SearchConfig, SparseRows, _build_index, row_dots, similar_pairs  # noqa: E402
from stages.dedup.semantic_pairs import _hybrid, _verify_hybrid, embed_texts  # noqa: E402

ALPACA = REPO / ".." / "shared" / "data" / "alpaca_zh"
SENTENCE = re.compile(r"[^。！？\n]{6,60}[。！？]")
PREFIXES = ("请", "帮我", "你能", "麻烦")
SYNONYMS = (("写", "撰写"), ("解释", "说明"), ("描述", "描写"), ("列出", "列举"), ("生成", "创建"))


def load_alpaca() -> list[dict[str, str]]:
    """All Alpaca-zh rows; a file with a trailing comma (one of them has) is read leniently."""
    return alpaca_data.load_alpaca(ALPACA)


def _chinese(text: str) -> bool:
    """Mostly Chinese (Alpaca-zh has untranslated rows; the language stage would drop them before dedup)."""
    cjk = sum("\u4e00" <= ch <= "\u9fff" for ch in text)
    return cjk >= 4 and cjk >= 0.5 * len(text.replace(" ", ""))


def near_copy(instruction: str, text_input: str, rng: random.Random) -> tuple[str, str]:
    kind = rng.randrange(4)
    if kind == 0:
        instruction = rng.choice(PREFIXES) + instruction
    elif kind == 1:
        table = str.maketrans("，。！？：；", ",.!?:;") if rng.random() < 0.5 else str.maketrans(",.!?", "，。！？")
        instruction, text_input = instruction.translate(table), text_input.translate(table)
    elif kind == 2:
        chars = list(instruction + "\u0000" + text_input)
        for _ in range(max(1, len(chars) // 50)):
            at = rng.randrange(len(chars))
            if chars[at] != "\u0000":
                chars[at] = rng.choice("的了是在有和就不人都")
        instruction, text_input = "".join(chars).split("\u0000", 1)
    else:
        for a, b in SYNONYMS:
            if a in instruction:
                instruction = instruction.replace(a, b, 1)
                break
        else:
            instruction = instruction + "。"
    return instruction, text_input


def synthetic_table(size: int, dup_rate: float, seed: int) -> tuple[pa.Table, np.ndarray]:
    """The records, and for each the record it was (transitively) copied from (itself if original)."""
    rng = random.Random(seed)
    rows = load_alpaca()
    instructions = sorted({r["instruction"] for r in rows if _chinese(r["instruction"])})
    sentences = sorted({s for r in rows for s in SENTENCE.findall(r["output"]) if _chinese(s)})
    inst: list[str] = []
    inp: list[str] = []
    root = np.arange(size, dtype=np.int64)
    for i in range(size):
        if i > 0 and rng.random() < dup_rate:
            j = rng.randrange(i)
            a, b = near_copy(inst[j], inp[j], rng)
            root[i] = root[j]
        else:
            a, b = rng.choice(instructions), rng.choice(sentences) + rng.choice(sentences)
        inst.append(a)
        inp.append(b)
    table = alpaca_data.canonical_table("synthetic", inst, inp, [""] * size)
    return table.append_column("_seq", pa.array(np.arange(size, dtype=np.int64))), root


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def knn_pairs(index: Any, emb: np.ndarray, queries: np.ndarray, k: int, threshold: float) -> np.ndarray:
    """Keys (min·n + max) of the (query, neighbour) pairs among each query's k nearest with cosine >= threshold."""
    n = emb.shape[0]
    dist, ids = index.search(np.ascontiguousarray(emb[queries], dtype=np.float32), k + 1)
    q = np.repeat(queries, k + 1)
    ids, dist = ids.ravel().astype(np.int64), dist.ravel()
    keep = (ids != q) & (ids >= 0) & (dist >= threshold)
    q, ids = q[keep], ids[keep]
    return np.unique(np.minimum(q, ids) * n + np.maximum(q, ids))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=100_000)
    ap.add_argument("--dup-rate", type=float, default=0.1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--model", default=None, help="default: the built-in model")
    ap.add_argument("--threshold", type=float, default=None)
    ap.add_argument("--similarity", choices=("hybrid", "cosine"), default=None, help="default: the model's own")
    ap.add_argument("--batch", type=int, default=10_000, help="records per fingerprint batch")
    ap.add_argument("--queries", type=int, default=5000, help="sampled queries for exact-vs-IVF recall")
    ap.add_argument("--full-flat", action="store_true", help="also time the exact search over all records")
    ap.add_argument("--grid", action="store_true", help="IVF recall/time over nlist x nprobe")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)

    import faiss

    table, root = synthetic_table(args.size, args.dup_rate, args.seed)
    params = {"model": args.model, "threshold": args.threshold, "similarity": args.similarity, "device": "cpu"}
    stage = SemanticDedupStage(SemanticDedupParams.model_validate(params))
    stage.check()
    n = args.size
    out: dict[str, Any] = {"size": n, "model": stage.model_name(), "threshold": stage.threshold()}
    out["search_cosine"] = search_cos = stage.search_threshold()

    # 1. fingerprints (embedding + n-gram rows), as the runner calls them
    start = time.perf_counter()
    fps = [stage.fingerprint(table.slice(i, args.batch)) for i in range(0, n, args.batch)]
    out["fingerprint_s"] = time.perf_counter() - start
    out["fingerprint_records_per_s"] = n / out["fingerprint_s"]
    texts = embed_texts(table.slice(0, 20_000), stage.params.fields)
    start = time.perf_counter()
    stage._model.encode(texts, batch_size=stage._batch_size, normalize_embeddings=True)
    out["encode_only_records_per_s"] = len(texts) / (time.perf_counter() - start)
    del table
    print(json.dumps(out), flush=True)

    # 2. the stage's resolve with its defaults (flat up to flat_max, else IVF)
    start = time.perf_counter()
    resolution = stage.resolve(fps)
    out["resolve_s"] = time.perf_counter() - start
    out["resolve_counters"] = stage.resolution_counters(resolution)
    out["peak_rss_mb_after_resolve"] = peak_rss_mb()
    dropped = resolution.duplicates.dropped_seq
    kept = np.array([int(k.split("#")[1]) for k in resolution.duplicates.kept_id.to_pylist()], dtype=np.int64)
    planted = int(np.count_nonzero(root != np.arange(n)))
    same_root = root[dropped] == root[kept]
    out["planted_copies"] = planted
    out["planted_dropped_for_own_family"] = float(np.count_nonzero(same_root) / planted) if planted else 1.0
    out["drops_outside_family"] = int(np.count_nonzero(~same_root))
    print(json.dumps(out), flush=True)

    # 3. exact vs IVF on sampled queries: time (extrapolated to all n queries) and recall
    emb = np.concatenate([fp.embeddings for fp in fps])
    parts = [fp.ngrams for fp in fps if fp.ngrams is not None]
    ngrams = SparseRows.stack(parts) if parts else None
    del fps
    k = stage.params.max_neighbors
    queries = np.sort(np.random.default_rng(args.seed).choice(n, min(args.queries, n), replace=False))

    def verified(keys: np.ndarray) -> np.ndarray:
        left, right = keys // n, keys % n
        cos = np.einsum("ij,ij->i", emb[left].astype(np.float32), emb[right].astype(np.float32))
        sim = cos if ngrams is None else _hybrid(cos, row_dots(ngrams, left, right))
        return keys[sim >= stage.threshold()]

    faiss.omp_set_num_threads(os.cpu_count() or 1)
    base = SearchConfig(threshold=search_cos, max_neighbors=k, seed=stage.params.seed)
    start = time.perf_counter()
    flat = _build_index(faiss, emb, base, "flat")
    build_s = time.perf_counter() - start
    start = time.perf_counter()
    exact = knn_pairs(flat, emb, queries, k, search_cos)
    out["flat_search_s_extrapolated"] = build_s + (time.perf_counter() - start) * n / queries.size
    exact_ok = verified(exact)
    out["exact_candidates_sampled"], out["exact_verified_sampled"] = int(exact.size), int(exact_ok.size)
    del flat
    settings: list[tuple[int | None, int]] = [(stage.params.nlist, stage.params.nprobe)]
    if args.grid:
        side = int(np.sqrt(n))
        settings += [(nl, npb) for nl in (side, 4 * side) for npb in (8, 16, 32)]
    out["ivf"] = []
    for nlist, nprobe in settings:
        config = SearchConfig(threshold=search_cos, nlist=nlist, nprobe=nprobe, max_neighbors=k, seed=args.seed)
        start = time.perf_counter()
        ivf = _build_index(faiss, emb, config, "ivf")
        train_s = time.perf_counter() - start
        start = time.perf_counter()
        found = knn_pairs(ivf, emb, queries, k, search_cos)
        row = {
            "nlist": config.nlist_for(n),
            "nprobe": nprobe,
            "train_add_s": train_s,
            "search_s_extrapolated": train_s + (time.perf_counter() - start) * n / queries.size,
            "recall_candidates": float(np.isin(exact, found).mean()) if exact.size else 1.0,
            "recall_verified": float(np.isin(exact_ok, found).mean()) if exact_ok.size else 1.0,
        }
        out["ivf"].append(row)
        print(json.dumps(row), flush=True)
        del ivf

    # 4. optionally the exact search over everything, as the stage runs it (verification included)
    if args.full_flat:
        start = time.perf_counter()
        config = SearchConfig(threshold=search_cos, index="flat", max_neighbors=k)
        verify = partial(_verify_hybrid, ngrams) if ngrams is not None else None
        pairs = similar_pairs(emb, config, verify, accept=stage.threshold())
        out["flat_search_s_full"] = time.perf_counter() - start
        out["flat_pairs_full"] = len(pairs)
    out["peak_rss_mb_end"] = peak_rss_mb()
    print(json.dumps(out, indent=1))
    if args.json:
        args.json.write_text(json.dumps(out, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
