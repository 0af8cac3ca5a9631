"""Finding every pair of records whose embeddings are closer than a cosine threshold, with FAISS.

Embeddings are L2-normalized, so cosine similarity is the inner product. Two engines answer the same question
("which pairs have cosine >= threshold?") by a *range search*, so no neighbour above the threshold is cut off
by a fixed k:

* ``flat`` — :class:`faiss.IndexFlatIP`, exact. Its cost grows with n², so it is used up to ``flat_max``
  records (measured in bench/bench_semantic.py: beyond a few tens of thousands, IVF is much faster).
* ``ivf`` — :class:`faiss.IndexIVFFlat` over inner product: k-means (trained on a seeded sample) splits
  the vectors into ``nlist`` cells and each query scans the ``nprobe`` nearest cells. Approximate: a pair
  whose two vectors fall into far-apart cells can be missed. Near-duplicates at a high threshold are close enough that
  recall against the exact search stays above 0.95 at the default ``nprobe`` (see the bench).

Vectors are copied into the index one chunk at a time, so the float32 copy inside FAISS is the only full copy
besides the caller's (possibly float16) matrix.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

IndexKind = Literal["auto", "flat", "ivf"]

# Queries (and vectors added) per FAISS call: bounds the float32 copies and range-search result buffers.
_CHUNK = 8192


@dataclass(frozen=True)
class SearchConfig:
    """How to search. ``nlist=None`` picks ~4·sqrt(n) cells; ``threads=None`` leaves FAISS's setting alone."""

    threshold: float
    index: IndexKind = "auto"
    flat_max: int = 20_000
    nlist: int | None = None
    nprobe: int = 16
    max_neighbors: int = 64
    train_size: int | None = None
    seed: int = 0
    threads: int | None = None

    def kind_for(self, n: int) -> Literal["flat", "ivf"]:
        """The engine used for ``n`` vectors."""
        if self.index != "auto":
            return self.index
        return "flat" if n <= self.flat_max else "ivf"

    def nlist_for(self, n: int) -> int:
        """Number of IVF cells for ``n`` vectors (at least 39 training points per cell, as FAISS asks)."""
        wanted = self.nlist if self.nlist is not None else int(4 * math.sqrt(n))
        return max(1, min(wanted, n // 39 if n >= 39 else 1))


@dataclass
class Pairs:
    """Unordered pairs of row positions (``left < right``) with their cosine, sorted by (left, right)."""

    left: np.ndarray  # int64
    right: np.ndarray  # int64
    cosine: np.ndarray  # float32
    kind: str  # "flat" or "ivf"

    def __len__(self) -> int:
        return int(self.left.shape[0])


def similar_pairs(embeddings: np.ndarray, config: SearchConfig) -> Pairs:
    """All pairs of rows of ``embeddings`` (n × d, unit rows, float16 or float32) with cosine >= threshold.

    Each row keeps at most ``max_neighbors`` partners (the most similar ones), which bounds memory when a
    large group of records is nearly identical. Rows of zeros (records with nothing to embed) match nothing.
    """
    import faiss

    n = int(embeddings.shape[0])
    kind = config.kind_for(n)
    if n < 2:
        empty = np.zeros(0, dtype=np.int64)
        return Pairs(empty, empty.copy(), np.zeros(0, dtype=np.float32), kind)
    previous_threads = faiss.omp_get_max_threads()
    if config.threads is not None:
        faiss.omp_set_num_threads(config.threads)
    try:
        index = _build_index(faiss, embeddings, config, kind)
        return _range_pairs(index, embeddings, config, kind)
    finally:
        faiss.omp_set_num_threads(previous_threads)


def _as_f32(block: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(block, dtype=np.float32)


def _build_index(faiss: Any, embeddings: np.ndarray, config: SearchConfig, kind: str) -> Any:
    n, dim = embeddings.shape
    if kind == "flat":
        index = faiss.IndexFlatIP(dim)
    else:
        nlist = config.nlist_for(n)
        quantizer = faiss.IndexFlatIP(dim)
        index = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
        index.cp.seed = config.seed
        train_size = min(n, config.train_size if config.train_size is not None else max(64 * nlist, 20_000))
        rng = np.random.default_rng(config.seed)
        sample = np.sort(rng.choice(n, size=train_size, replace=False))
        index.train(_as_f32(embeddings[sample]))
        index.nprobe = min(config.nprobe, nlist)
    for start in range(0, n, _CHUNK):
        index.add(_as_f32(embeddings[start : start + _CHUNK]))
    return index


def _range_pairs(index: Any, embeddings: np.ndarray, config: SearchConfig, kind: str) -> Pairs:
    n = int(embeddings.shape[0])
    # FAISS keeps inner products strictly above the radius; a hair below the threshold, then filter exactly.
    radius = float(config.threshold) - 1e-6
    lefts: list[np.ndarray] = []
    rights: list[np.ndarray] = []
    sims: list[np.ndarray] = []
    for start in range(0, n, _CHUNK):
        queries = _as_f32(embeddings[start : start + _CHUNK])
        lims, dist, ids = index.range_search(queries, radius)
        query = np.repeat(np.arange(start, start + queries.shape[0], dtype=np.int64), np.diff(lims).astype(np.int64))
        ids = ids.astype(np.int64, copy=False)
        keep = (ids != query) & (ids >= 0) & (dist >= config.threshold)
        query, ids, dist = query[keep], ids[keep], dist[keep]
        query, ids, dist = _top_per_query(query, ids, dist, config.max_neighbors)
        lefts.append(np.minimum(query, ids))
        rights.append(np.maximum(query, ids))
        sims.append(dist.astype(np.float32, copy=False))
    left = np.concatenate(lefts)
    right = np.concatenate(rights)
    cosine = np.concatenate(sims)
    # Each pair is usually found from both ends: keep one copy, in (left, right) order.
    key = left * n + right
    _, first = np.unique(key, return_index=True)
    return Pairs(left[first], right[first], cosine[first], kind)


def _top_per_query(
    query: np.ndarray, ids: np.ndarray, dist: np.ndarray, limit: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Keep each query's ``limit`` most similar partners (ties: smaller id), grouped by query."""
    if query.size == 0:
        return query, ids, dist
    order = np.lexsort((ids, -dist, query))
    query, ids, dist = query[order], ids[order], dist[order]
    group_start = np.flatnonzero(np.r_[True, query[1:] != query[:-1]])
    rank = np.arange(query.size) - np.repeat(group_start, np.diff(np.r_[group_start, query.size]))
    keep = rank < limit
    return query[keep], ids[keep], dist[keep]


@dataclass
class SparseRows:
    """Rows of a sparse matrix in compact, picklable form (CSR parts, float16 values): the char n-gram TF-IDF
    vectors that the hybrid similarity verifies candidate pairs with, without keeping the texts."""

    indptr: np.ndarray  # int64 (n + 1,)
    indices: np.ndarray  # int32
    data: np.ndarray  # float16
    width: int

    @classmethod
    def from_csr(cls, matrix: Any) -> SparseRows:
        matrix = matrix.tocsr()
        return cls(
            matrix.indptr.astype(np.int64),
            matrix.indices.astype(np.int32),
            matrix.data.astype(np.float16),
            int(matrix.shape[1]),
        )

    @staticmethod
    def stack(parts: list[SparseRows]) -> Any:
        """One float32 CSR matrix of all the parts' rows, in order."""
        from scipy.sparse import csr_matrix

        offsets = np.cumsum([0] + [int(p.indptr[-1]) for p in parts])
        indptr = np.concatenate([[0]] + [p.indptr[1:] + off for p, off in zip(parts, offsets, strict=False)])
        indices = np.concatenate([p.indices for p in parts])
        data = np.concatenate([p.data for p in parts]).astype(np.float32)
        width = parts[0].width if parts else 1
        return csr_matrix((data, indices, indptr), shape=(indptr.size - 1, width))


def row_dots(matrix: Any, left: np.ndarray, right: np.ndarray, chunk: int = 200_000) -> np.ndarray:
    """``matrix[left[k]] · matrix[right[k]]`` for every k (a sparse CSR matrix; float32 result)."""
    out = np.empty(left.size, dtype=np.float32)
    for start in range(0, left.size, chunk):
        a = matrix[left[start : start + chunk]]
        b = matrix[right[start : start + chunk]]
        out[start : start + chunk] = np.asarray(a.multiply(b).sum(axis=1)).ravel()
    return out
