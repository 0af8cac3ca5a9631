"""Finding the pairs of records whose embeddings are close, with FAISS, and verifying them as they come.

Embeddings are L2-normalized, so cosine similarity is the inner product. Each record asks for its
``max_neighbors`` nearest records (a k-nearest-neighbour search, so memory is bounded by n·k however dense the
data is); partners with cosine >= ``threshold`` are candidates, and an optional ``verify`` function (the hybrid
similarity) scores them chunk by chunk, keeping those that reach ``accept``. Two engines:

* ``flat`` — :class:`faiss.IndexFlatIP`, exact. Its cost grows with n², so ``auto`` uses it up to
  ``flat_max`` = 20,000 records (bench/bench_semantic.py, built-in 384-d model, 2 shared cores: 100k records
  exact 47 s vs IVF 13 s including training; 1M exact ~4,900 s extrapolated vs IVF 431 s; scaled by n², exact
  costs ~2 s at 20k, about what IVF training alone costs there).
* ``ivf`` — an IVF index over inner product (float16 codes for float16 rows, see :func:`train_ivf`): k-means
  (FAISS's, ``train_iterations`` rounds, trained on a seeded sample of 40·nlist vectors) splits the vectors into
  ``nlist`` cells and each query scans its ``nprobe`` nearest cells. Approximate: a pair whose vectors fall into
  far-apart cells can be missed. With the defaults (nlist = 4·√n, nprobe = 16) IVF finds 100 % (100k records) and
  99.86 % (1M) of the verified pairs that the exact search finds for sampled queries.

Why k-NN rather than a range search: with a static embedding model the cosine of unrelated Chinese texts is
often 0.5–0.7, so a range search down to a low candidate cosine returns thousands of partners per record
(measured with a prototype of the built-in model: ~1,750 at 0.6 on Alpaca-zh records), while the pairs that
pass verification are nearly all among the first few dozen neighbours. Vectors are copied into the index one
chunk at a time, so the index's float16 codes are the only full copy besides the caller's float16 matrix.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import pairwise
from typing import Any, Literal

import numba as nb
import numpy as np

IndexKind = Literal["auto", "flat", "ivf"]

# Queries (and vectors added) per FAISS call: bounds the float32 copies and the result buffers.
_CHUNK = 8192

# verify(left, right, cosine) -> similarity of each candidate pair (e.g. the hybrid); float32
Verifier = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]
# keep(left, right, similarity) -> which of a chunk's new pairs (each pair once) are held (bool mask)
Keeper = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]


@dataclass(frozen=True)
class SearchConfig:
    """How to search: candidates are the ``max_neighbors`` nearest records with cosine >= ``threshold``.
    ``nlist=None`` picks ~4·sqrt(n) cells; ``threads=None`` leaves FAISS's setting alone."""

    threshold: float
    index: IndexKind = "auto"
    flat_max: int = 20_000
    nlist: int | None = None
    nprobe: int = 16
    max_neighbors: int = 64
    train_size: int | None = None
    train_iterations: int = 10  # k-means rounds of the IVF training (FAISS's default 25: see train_ivf)
    seed: int = 0
    threads: int | None = None

    def kind_for(self, n: int) -> Literal["flat", "ivf"]:
        """The engine used for ``n`` vectors."""
        if self.index != "auto":
            return self.index
        return "flat" if n <= self.flat_max else "ivf"

    def neighbours_for(self, n: int) -> int:
        """k of the k-NN search over ``n`` vectors: ``max_neighbors`` + the query itself (which the index holds)."""
        return min(n, self.max_neighbors + 1)

    def train_size_for(self, n: int) -> int:
        """How many of ``n`` vectors the IVF quantizer is trained on."""
        wanted = self.train_size if self.train_size is not None else max(40 * self.nlist_for(n), 20_000)
        return min(n, wanted)

    def nlist_for(self, n: int) -> int:
        """Number of IVF cells for ``n`` vectors (at least 39 training points per cell, as FAISS asks)."""
        wanted = self.nlist if self.nlist is not None else int(4 * math.sqrt(n))
        return max(1, min(wanted, n // 39 if n >= 39 else 1))


@dataclass
class Pairs:
    """Unordered pairs of row positions (``left < right``) with their similarity (the cosine, or the verifier's
    score), sorted by (left, right)."""

    left: np.ndarray  # int64
    right: np.ndarray  # int64
    similarity: np.ndarray  # float32
    kind: str  # "flat" or "ivf"
    candidates: int = 0  # candidate pairs scored (before verification; a pair found from both ends twice)

    def __len__(self) -> int:
        return int(self.left.shape[0])


def similar_pairs(
    embeddings: Any,
    config: SearchConfig,
    verify: Verifier | None = None,
    accept: float | None = None,
    keep: Keeper | None = None,
) -> Pairs:
    """Pairs of rows of ``embeddings`` (n × d, unit rows, float16 or float32: an array or a row source of
    :mod:`stages.dedup.semantic_rows`, read a chunk at a time) among each other's
    ``max_neighbors`` nearest with cosine >= ``config.threshold``; with ``verify``, only those whose verified
    similarity is >= ``accept``. Rows of zeros (records with nothing to embed) match nothing.

    With ``keep``, each chunk's new pairs (each pair once, as the result would hold it) go through ``keep`` as
    they come and only those it marks are held and returned: the same pairs as filtering the whole result with
    the same function, without holding every searched pair at once (tens of millions at 1M records).
    """
    import faiss

    n = int(embeddings.shape[0])
    kind = config.kind_for(n)
    if n < 2:
        empty = np.zeros(0, dtype=np.int64)
        return Pairs(empty, empty.copy(), np.zeros(0, dtype=np.float32), kind)
    with faiss_threads(config):
        groups = _groups(embeddings, kind)
        index = _build_index(faiss, embeddings, config, kind, groups)
        search = _searcher(index, embeddings, config.neighbours_for(n), groups)
        # a neighbour table already holds every answer: the index's float16 codes (as large as the matrix) go
        # before the pairs are checked (a chunk-by-chunk search keeps the index until its last chunk)
        del index
        found, sims, candidates = _neighbour_keys(search, embeddings, config, verify, accept, keep)
        del search
    keys = np.concatenate(found)
    del found
    similarity = np.concatenate(sims)
    del sims
    order = np.argsort(keys, kind="stable")
    keys, similarity = keys[order], similarity[order]
    return Pairs(keys // n, keys % n, similarity, kind, candidates)


def _groups(embeddings: Any, kind: str) -> tuple[np.ndarray, np.ndarray] | None:
    """``(first, inverse)`` of the bit-identical rows (:func:`~stages.dedup.semantic_queries.distinct_rows`)
    when the IVF index may add and search each distinct row once, i.e. when rows repeat enough; else None (and
    for the exact flat index, whose search of a chunk of queries is left as it was)."""
    from stages.dedup.semantic_queries import DISTINCT_SHARE, distinct_rows

    if kind != "ivf":
        return None
    first, inverse = distinct_rows(embeddings)
    return (first, inverse) if first.size <= DISTINCT_SHARE * int(embeddings.shape[0]) else None


@contextmanager
def faiss_threads(config: SearchConfig) -> Iterator[None]:
    """FAISS's OpenMP threads set to ``config.threads`` (if given) for the block, restored after."""
    import faiss

    previous_threads = faiss.omp_get_max_threads()
    if config.threads is not None:
        faiss.omp_set_num_threads(config.threads)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(previous_threads)


def training_sample(n: int, config: SearchConfig) -> np.ndarray:
    """Positions (ascending, int64) of the vectors, among ``n``, that the IVF quantizer is trained on: a seeded
    sample, so any engine that trains on the rows at these positions gets the same quantizer."""
    rng = np.random.default_rng(config.seed)
    return np.sort(rng.choice(n, size=config.train_size_for(n), replace=False)).astype(np.int64)


def train_ivf(faiss: Any, sample: np.ndarray, n: int, config: SearchConfig) -> Any:
    """An empty IVF index (inner product) for ``n`` vectors, its quantizer trained by seeded k-means on
    ``sample`` (the rows at :func:`training_sample` positions, in that order).

    Float16 rows (the stage's default ``dtype``) go into an :class:`faiss.IndexIVFScalarQuantizer` that stores
    them as float16 (``QT_fp16``, not residuals): half the memory of :class:`faiss.IndexIVFFlat`'s float32
    copy, and the same scores, since a float16 value converts to float32 exactly (measured: the same neighbours
    and bit-identical distances on 30k vectors, and ~20 % faster). Float32 rows get an ``IndexIVFFlat``.

    k-means runs ``config.train_iterations`` rounds (10; FAISS's default is 25). Training was most of the search
    time; on the 100k near-dup benchmark (bench/bench_semantic_tasks.py) 10 rounds found the same 380,041
    candidate and 165,970 verified pairs as 25 and made the same 61,500 drops, in 18.8 s of resolve CPU against
    28.8 s (notes/semscale.md)."""
    dim = int(sample.shape[1])
    nlist = config.nlist_for(n)
    quantizer = faiss.IndexFlatIP(dim)
    if sample.dtype == np.float16:
        fp16 = faiss.ScalarQuantizer.QT_fp16
        index = faiss.IndexIVFScalarQuantizer(quantizer, dim, nlist, fp16, faiss.METRIC_INNER_PRODUCT, False)
    else:
        index = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
    index.cp.seed = config.seed
    index.cp.niter = config.train_iterations
    index.train(_as_f32(sample))
    index.nprobe = min(config.nprobe, nlist)
    return index


def _as_f32(block: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(block, dtype=np.float32)


def _build_index(
    faiss: Any, embeddings: Any, config: SearchConfig, kind: str, groups: tuple[np.ndarray, np.ndarray] | None = None
) -> Any:
    """The index over every row, added in order; with ``groups`` each distinct row is assigned its IVF cell
    once (:func:`~stages.dedup.semantic_queries.add_grouped`: the same lists)."""
    n, dim = embeddings.shape
    if kind == "flat":
        index = faiss.IndexFlatIP(dim)
    else:
        index = train_ivf(faiss, embeddings[training_sample(n, config)], n, config)
    if groups is not None:
        from stages.dedup.semantic_queries import add_grouped

        add_grouped(faiss, index, embeddings, *groups, _CHUNK)
        return index
    for start in range(0, n, _CHUNK):
        index.add(_as_f32(embeddings[start : start + _CHUNK]))
    return index


def _neighbour_keys(
    search: Callable[[int, int], tuple[np.ndarray, np.ndarray]],
    embeddings: Any,
    config: SearchConfig,
    verify: Verifier | None,
    accept: float | None,
    keep: Keeper | None = None,
) -> tuple[list[np.ndarray], list[np.ndarray], int]:
    """Each chunk's new pair keys (sorted; with ``keep``, those it marks), their similarities, and the number of
    candidates scored; ``search`` (:func:`_searcher`) gives each chunk's ``config.neighbours_for(n)`` nearest."""
    n = int(embeddings.shape[0])
    k = config.neighbours_for(n)
    # Each chunk's pairs, each once, as sorted int64 keys ``left * n + right`` with their scores (12 bytes a
    # pair). A pair is often found from both ends: the copy found first (from the earlier query) is kept.
    # ``seen[c]``: the keys found in chunk c that a later chunk may find again (left record in chunk c, right
    # record after it), the only ones ``_not_found_before`` looks up
    seen: list[np.ndarray] = []
    found: list[np.ndarray] = []
    sims: list[np.ndarray] = []
    candidates = 0
    for number, start in enumerate(range(0, n, _CHUNK)):
        dist, ids = search(start, min(n, start + _CHUNK))
        query = np.repeat(np.arange(start, start + dist.shape[0], dtype=np.int64), k)
        ids, dist = ids.ravel().astype(np.int64, copy=False), dist.ravel()
        hit = (ids != query) & (ids >= 0) & (dist >= config.threshold)
        left, right, sim = np.minimum(query, ids)[hit], np.maximum(query, ids)[hit], dist[hit]
        del query, ids, dist, hit
        candidates += int(left.size)
        if verify is not None:
            sim = verify(left, right, sim)
            ok = sim >= (accept if accept is not None else config.threshold)
            left, right, sim = left[ok], right[ok], sim[ok]
        keys, first = np.unique(left * n + right, return_index=True)
        sim = sim[first].astype(np.float32, copy=False)
        new = _not_found_before(keys, keys // n // _CHUNK, number, seen)
        keys, sim = keys[new], sim[new]
        left_chunk, right_chunk = keys // n // _CHUNK, keys % n // _CHUNK
        seen.append(keys[(left_chunk == number) & (right_chunk > number)])
        if keep is not None:
            held = np.asarray(keep(keys // n, keys % n, sim), dtype=bool)
            keys, sim = keys[held], sim[held]
        found.append(keys)
        sims.append(sim)
    return found, sims, candidates


def _searcher(
    index: Any, embeddings: Any, k: int, groups: tuple[np.ndarray, np.ndarray] | None
) -> Callable[[int, int], tuple[np.ndarray, np.ndarray]]:
    """``search(start, stop) -> (dist, ids)``: the ``k`` nearest of records ``start:stop``. With ``groups``
    FAISS is asked once per distinct row (:class:`~stages.dedup.semantic_queries.NeighbourTable`: the same
    lists); otherwise each chunk of records is searched as it comes."""
    if groups is not None:
        from stages.dedup.semantic_queries import NeighbourTable

        return NeighbourTable(index, embeddings, k, *groups, _CHUNK).search

    def direct(start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        dist, ids = index.search(_as_f32(embeddings[start:stop]), k)
        return dist, ids

    return direct


def _not_found_before(keys: np.ndarray, chunk_of_left: np.ndarray, number: int, found: list[np.ndarray]) -> np.ndarray:
    """Which of chunk ``number``'s sorted pair keys were not already found from their left record's query, in that
    earlier chunk (``found[c]``: chunk c's sorted keys, at least those with their left record in chunk c). A pair
    is found only from the queries of its two records, so each pair is kept once. ``chunk_of_left`` (the chunk of
    each key's left record) is sorted with the keys."""
    new = np.ones(keys.size, dtype=bool)
    bounds = np.searchsorted(chunk_of_left, np.arange(number + 1)).tolist()
    for chunk, (lo, hi) in enumerate(pairwise(bounds)):
        earlier = found[chunk]
        if hi > lo and earlier.size:
            at = np.minimum(np.searchsorted(earlier, keys[lo:hi]), earlier.size - 1)
            new[lo:hi] = earlier[at] != keys[lo:hi]
    return new


@dataclass
class SparseRows:
    """Rows of a sparse matrix in compact, picklable CSR parts (column indices sorted within each row): the char
    n-gram TF-IDF vectors that the hybrid similarity verifies candidate pairs with, without keeping the texts.
    Fingerprints store values as float16; :meth:`stack` joins batches into float32 for :func:`row_dots`."""

    indptr: np.ndarray  # int64 (n + 1,)
    indices: np.ndarray  # int32, sorted within each row
    data: np.ndarray  # float16 (per batch) or float32 (stacked)

    def __len__(self) -> int:
        return int(self.indptr.size - 1)

    @classmethod
    def from_csr(cls, matrix: Any) -> SparseRows:
        matrix = matrix.tocsr()
        matrix.sort_indices()
        return cls(matrix.indptr.astype(np.int64), matrix.indices.astype(np.int32), matrix.data.astype(np.float16))

    @classmethod
    def stack(cls, parts: list[SparseRows]) -> SparseRows:
        """All the parts' rows, in order, with float32 values."""
        offsets = np.cumsum([0] + [int(p.indptr[-1]) for p in parts])
        indptr = np.concatenate(
            [np.zeros(1, np.int64)] + [p.indptr[1:] + o for p, o in zip(parts, offsets, strict=False)]
        )
        indices = np.concatenate([p.indices for p in parts]) if parts else np.zeros(0, np.int32)
        data = np.concatenate([p.data for p in parts]).astype(np.float32) if parts else np.zeros(0, np.float32)
        return cls(indptr, indices, data)

    @classmethod
    def empty(cls) -> SparseRows:
        """No rows (the n-gram rows of an empty batch)."""
        return cls(np.zeros(1, np.int64), np.zeros(0, np.int32), np.zeros(0, np.float16))

    def take(self, rows: np.ndarray) -> SparseRows:
        """The given rows, in that order (values keep their dtype)."""
        rows = np.asarray(rows, dtype=np.int64)
        starts = self.indptr[rows]
        lengths = self.indptr[rows + 1] - starts
        indptr = np.zeros(rows.size + 1, np.int64)
        np.cumsum(lengths, out=indptr[1:])
        at = np.repeat(starts - indptr[:-1], lengths) + np.arange(indptr[-1], dtype=np.int64)
        return SparseRows(indptr, self.indices[at], self.data[at])


def pair_dots(first: SparseRows, left: np.ndarray, second: SparseRows, right: np.ndarray) -> np.ndarray:
    """``first[left[k]] · second[right[k]]`` for every k, float32: :func:`row_dots` across two row sets (the
    same arithmetic, so the same bits as if both were rows of one matrix)."""
    both = SparseRows.stack([first.take(left), second.take(right)])
    m = int(np.asarray(left).size)
    return row_dots(both, np.arange(m, dtype=np.int64), np.arange(m, 2 * m, dtype=np.int64))


def row_dots(rows: SparseRows, left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """``rows[left[k]] · rows[right[k]]`` for every k, float32 (a compiled merge of the sorted index lists)."""
    out = np.empty(left.size, dtype=np.float32)
    data = rows.data if rows.data.dtype == np.float32 else rows.data.astype(np.float32)
    _merge_dots(rows.indptr, rows.indices, data, left.astype(np.int64), right.astype(np.int64), out)
    return out


@nb.njit(parallel=True, cache=True)
def _merge_dots(
    indptr: np.ndarray, indices: np.ndarray, data: np.ndarray, left: np.ndarray, right: np.ndarray, out: np.ndarray
) -> None:  # pragma: no cover - compiled
    for k in nb.prange(left.size):
        a, a_end = indptr[left[k]], indptr[left[k] + 1]
        b, b_end = indptr[right[k]], indptr[right[k] + 1]
        total = 0.0
        while a < a_end and b < b_end:
            ia, ib = indices[a], indices[b]
            if ia == ib:
                total += data[a] * data[b]
                a += 1
                b += 1
            elif ia < ib:
                a += 1
            else:
                b += 1
        out[k] = total
