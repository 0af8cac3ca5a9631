"""Benchmark dedup_semantic: embedding speed, exact vs IVF search time and recall, peak memory.

    python bench/bench_semantic.py --size 100000              # flat and IVF over all 100k records
    python bench/bench_semantic.py --size 1000000 --flat-sample 5000
    python bench/bench_semantic.py --size 100000 --grid       # IVF recall/time for several nlist x nprobe

Records are synthetic, built (seeded) from ``../shared/data/alpaca_zh`` (read-only, never copied): an
Alpaca-zh instruction with a random sentence of the corpus as its input, so that many records share an
instruction template but differ in their input (they must be kept), plus ``--dup-rate`` near-copies of earlier
records (a polite prefix, punctuation width, 2 % character edits, a synonym swap) that the stage should drop.

Measures, in this order, one process per size (peak RSS is per process):

1. ``fingerprint`` (embedding + char n-gram TF-IDF for the hybrid) in batches of ``--batch``: records/s.
2. FAISS search at the stage's search cosine: exact ``IndexFlatIP`` (over all records, or for
   ``--flat-sample`` random queries against all records and extrapolated by n/queries) vs IVF; time of each and
   recall of IVF against exact (candidate pairs, and pairs that pass the hybrid verification).
3. The whole ``resolve`` (search + verification + grouping) with the stage's defaults: time and drops.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import resource
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from schemas.record import CANONICAL_SCHEMA  # noqa: E402
from stages.dedup_semantic import SemanticDedupParams, SemanticDedupStage, embed_texts  # noqa: E402
from stages.semantic_index import SearchConfig, SparseRows, row_dots, similar_pairs  # noqa: E402

ALPACA = REPO / ".." / "shared" / "data" / "alpaca_zh"
SENTENCE = re.compile(r"[^。！？\n]{6,60}[。！？]")
PREFIXES = ("请", "帮我", "你能", "麻烦")
SYNONYMS = (("写", "撰写"), ("解释", "说明"), ("描述", "描写"), ("列出", "列举"), ("生成", "创建"))


def load_alpaca() -> list[dict[str, str]]:
    """All Alpaca-zh rows; a file with a trailing comma (one of them has) is read leniently."""
    rows: list[dict[str, str]] = []
    for path in sorted(ALPACA.glob("*.json")):
        text = path.read_text(encoding="utf-8")
        try:
            data = json.loads(text)
        except json.JSONDecodeError:
            data = json.loads(re.sub(r",\s*([\]}])", r"\1", text))
        rows += [{k: str(r.get(k) or "") for k in ("instruction", "input", "output")} for r in data]
    return rows


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
    instructions = sorted({r["instruction"] for r in rows if r["instruction"].strip()})
    sentences = sorted({s for r in rows for s in SENTENCE.findall(r["output"])})
    inst: list[str] = []
    inp: list[str] = []
    root = np.arange(size, dtype=np.int64)
    for i in range(size):
        if i > 0 and rng.random() < dup_rate:
            j = rng.randrange(i)
            a, b = near_copy(inst[j], inp[j], rng)
            root[i] = root[j]
        else:
            a, b = rng.choice(instructions), rng.choice(sentences)
        inst.append(a)
        inp.append(b)
    table = pa.Table.from_pydict(
        {
            "id": [f"synthetic#{i}" for i in range(size)],
            "source": ["synthetic"] * size,
            "system": [""] * size,
            "instruction": inst,
            "input": inp,
            "output": [""] * size,
            "history": [[] for _ in range(size)],
        },
        schema=CANONICAL_SCHEMA,
    )
    return table.append_column("_seq", pa.array(np.arange(size, dtype=np.int64))), root


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def pair_keys(left: np.ndarray, right: np.ndarray, n: int) -> np.ndarray:
    return np.minimum(left, right) * n + np.maximum(left, right)


def exact_for_queries(emb: np.ndarray, queries: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """All (query, other) pairs with cosine >= threshold, by an exact flat range search of the queries."""
    import faiss

    index = faiss.IndexFlatIP(emb.shape[1])
    for start in range(0, emb.shape[0], 8192):
        index.add(np.ascontiguousarray(emb[start : start + 8192], dtype=np.float32))
    lims, dist, ids = index.range_search(np.ascontiguousarray(emb[queries], dtype=np.float32), threshold - 1e-6)
    q = np.repeat(queries, np.diff(lims).astype(np.int64))
    keep = (ids != q) & (dist >= threshold)
    return q[keep], ids[keep].astype(np.int64)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=100_000)
    ap.add_argument("--dup-rate", type=float, default=0.1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--model", default=None, help="default: the built-in model")
    ap.add_argument("--threshold", type=float, default=None)
    ap.add_argument("--similarity", choices=("hybrid", "cosine"), default="hybrid")
    ap.add_argument("--batch", type=int, default=10_000, help="records per fingerprint batch")
    ap.add_argument("--flat-sample", type=int, default=0, help="exact search for this many queries only")
    ap.add_argument("--grid", action="store_true", help="IVF over nlist x nprobe")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)

    table, root = synthetic_table(args.size, args.dup_rate, args.seed)
    params = {"model": args.model, "threshold": args.threshold, "similarity": args.similarity, "device": "cpu"}
    stage = SemanticDedupStage(SemanticDedupParams.model_validate(params))
    stage.check()
    out: dict[str, Any] = {"size": args.size, "model": stage.model_name(), "threshold": stage.threshold()}

    start = time.perf_counter()
    fps = [stage.fingerprint(table.slice(i, args.batch)) for i in range(0, args.size, args.batch)]
    out["fingerprint_s"] = time.perf_counter() - start
    out["fingerprint_records_per_s"] = args.size / out["fingerprint_s"]
    texts = embed_texts(table.slice(0, 20_000), stage.params.fields)
    start = time.perf_counter()
    stage._model.encode(texts, batch_size=stage._batch_size, normalize_embeddings=True)
    out["encode_only_records_per_s"] = len(texts) / (time.perf_counter() - start)
    print(json.dumps(out), flush=True)

    emb = np.concatenate([fp.embeddings for fp in fps])
    parts = [fp.ngrams for fp in fps if fp.ngrams is not None]
    ngrams = SparseRows.stack(parts) if parts else None
    out["embedding_mb"] = emb.nbytes / 2**20
    search_cos = stage.search_threshold()
    n = args.size

    def verified(left: np.ndarray, right: np.ndarray) -> np.ndarray:
        cos = np.einsum("ij,ij->i", emb[left].astype(np.float32), emb[right].astype(np.float32))
        if ngrams is None:
            return cos >= stage.threshold()
        from stages.dedup_semantic import _hybrid

        return _hybrid(cos, row_dots(ngrams, left, right)) >= stage.threshold()

    # exact reference
    rng = np.random.default_rng(args.seed)
    queries = np.sort(rng.choice(n, args.flat_sample, replace=False)) if args.flat_sample else np.arange(n)
    start = time.perf_counter()
    q, other = exact_for_queries(emb, queries, search_cos)
    flat_s = time.perf_counter() - start
    out["flat_search_s"] = flat_s * n / queries.size
    out["flat_search_extrapolated"] = bool(args.flat_sample)
    exact_keys = np.unique(pair_keys(q, other, n))
    ok = verified(q, other)
    exact_verified = np.unique(pair_keys(q[ok], other[ok], n))
    out["exact_candidate_pairs_in_sample"] = int(exact_keys.size)
    out["exact_verified_pairs_in_sample"] = int(exact_verified.size)
    print(json.dumps(out), flush=True)

    settings: list[tuple[int | None, int]] = [(None, stage.params.nprobe)]
    if args.grid:
        side = int(np.sqrt(n))
        settings = [(nl, npb) for nl in (side, 4 * side) for npb in (8, 16, 32)]
    out["ivf"] = []
    for nlist, nprobe in settings:
        config = SearchConfig(threshold=search_cos, index="ivf", nlist=nlist, nprobe=nprobe, max_neighbors=10**6)
        start = time.perf_counter()
        pairs = similar_pairs(emb, config)
        ivf_s = time.perf_counter() - start
        keys = pair_keys(pairs.left, pairs.right, n)
        ok = verified(pairs.left, pairs.right)
        row = {
            "nlist": config.nlist_for(n),
            "nprobe": nprobe,
            "search_s": ivf_s,
            "candidate_pairs": len(pairs),
            "recall_candidates": float(np.isin(exact_keys, keys).mean()) if exact_keys.size else 1.0,
            "recall_verified": float(np.isin(exact_verified, keys[ok]).mean()) if exact_verified.size else 1.0,
        }
        out["ivf"].append(row)
        print(json.dumps(row), flush=True)

    start = time.perf_counter()
    resolution = stage.resolve(fps)
    out["resolve_s"] = time.perf_counter() - start
    out["resolve_counters"] = stage.resolution_counters(resolution)
    dropped = resolution.duplicates.dropped_seq
    kept = np.array([int(k.split("#")[1]) for k in resolution.duplicates.kept_id.to_pylist()], dtype=np.int64)
    planted = int(np.count_nonzero(root != np.arange(n)))
    same_root = root[dropped] == root[kept]
    # a planted copy is "found" when it is dropped for a record of its own family
    out["planted_copies"] = planted
    out["planted_recall"] = float(np.count_nonzero(same_root) / planted) if planted else 1.0
    out["drops_outside_family"] = int(np.count_nonzero(~same_root))
    out["peak_rss_mb"] = peak_rss_mb()
    print(json.dumps(out, indent=1))
    if args.json:
        args.json.write_text(json.dumps(out, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
