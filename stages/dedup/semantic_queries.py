"""Each distinct query searched once (:mod:`stages.dedup.semantic_index`).

Perturbed copies and real data repeat requests (the same instruction with other answers, an instruction reused
over many inputs): on the 1M near-duplicate benchmark 267k of the 1M request rows are distinct. Records whose
embedding rows are bit-for-bit equal send FAISS the same query vector, and an IVF search of one query does not
depend on the other queries of its call (each query is scanned on its own), so its neighbour list — ids,
distances, and the order of ties — is the same for every one of them. :class:`NeighbourTable` searches each
distinct row once and hands every record its row's list, so the candidate pairs are exactly those of searching
every record (tests/stages/dedup/test_dedup_semantic_queries.py compares them). Adding the rows to the index
likewise assigns each distinct row its cell once (:func:`add_grouped`).

Rows are grouped by a 64-bit hash of their bytes and every row is compared with its group's first row, so a
hash collision only costs a search, never a wrong list.
"""

from __future__ import annotations

from typing import Any

import numpy as np

DISTINCT_SHARE = 0.8
"""Search distinct rows only when at most this share of the rows is distinct: the table holds k neighbours per
distinct row (8 bytes each), which a search of every record in chunks does not need, for a saving under 20 %."""
_ROWS = 65_536  # rows hashed / compared per pass


def _words(block: np.ndarray) -> np.ndarray:
    """The rows' bytes as uint64 words (zero-padded to a multiple of 8 bytes)."""
    raw = np.ascontiguousarray(block).view(np.uint8).reshape(block.shape[0], -1)
    pad = (-raw.shape[1]) % 8
    if pad:
        raw = np.concatenate([raw, np.zeros((raw.shape[0], pad), np.uint8)], axis=1)
    return raw.view(np.uint64)


def row_hashes(rows: Any) -> np.ndarray:
    """A uint64 hash of each row's bytes (a seeded multiply–add over its 64-bit words), ``_ROWS`` rows a pass."""
    n = int(rows.shape[0])
    out = np.empty(n, dtype=np.uint64)
    multipliers: np.ndarray | None = None
    for start in range(0, n, _ROWS):
        words = _words(rows[start : start + _ROWS])
        if multipliers is None:
            rng = np.random.default_rng(0x5E3A)
            odd = rng.integers(1, 2**63, size=words.shape[1], dtype=np.uint64) * np.uint64(2) + np.uint64(1)
            multipliers = np.asarray(odd, dtype=np.uint64)
        mixed = words * multipliers  # wraps modulo 2**64
        mixed ^= mixed >> np.uint64(31)
        out[start : start + words.shape[0]] = mixed.sum(axis=1, dtype=np.uint64)
    return out


def distinct_rows(rows: Any) -> tuple[np.ndarray, np.ndarray]:
    """``(first, inverse)``: the position of the first row of each group of bit-identical rows (ascending), and
    for each row its group's number, so that ``rows[first[inverse[i]]]`` has the bytes of ``rows[i]``."""
    n = int(rows.shape[0])
    if n == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    _, first, inverse = np.unique(row_hashes(rows), return_index=True, return_inverse=True)
    inverse = inverse.ravel().astype(np.int64, copy=False)
    for start in range(0, n, _ROWS):  # a hash collision: the row gets a group of its own
        stop = min(n, start + _ROWS)
        same = (_words(rows[start:stop]) == _words(rows[first[inverse[start:stop]]])).all(axis=1)
        lonely = np.flatnonzero(~same) + start
        if lonely.size:
            inverse[lonely] = np.arange(first.size, first.size + lonely.size)
            first = np.concatenate([first, lonely])
    order = np.argsort(first, kind="stable")  # groups numbered by first occurrence
    rank = np.empty_like(order)
    rank[order] = np.arange(order.size)
    return first[order].astype(np.int64), rank[inverse]


def add_grouped(faiss: Any, index: Any, rows: Any, first: np.ndarray, inverse: np.ndarray, chunk: int) -> None:
    """Add every row to an (empty, trained) IVF ``index`` in order, as ``index.add`` does, but with each distinct
    row's cell assigned once by the coarse quantizer (``add_core`` with the precomputed cells: the same lists)."""
    cells = np.empty(first.size, dtype=np.int64)
    for start in range(0, first.size, chunk):
        queries = np.ascontiguousarray(rows[first[start : start + chunk]], dtype=np.float32)
        cells[start : start + chunk] = index.quantizer.assign(queries, 1).ravel()
    for start in range(0, int(rows.shape[0]), chunk):
        block = np.ascontiguousarray(rows[start : start + chunk], dtype=np.float32)
        at = np.ascontiguousarray(cells[inverse[start : start + chunk]])
        index.add_core(block.shape[0], faiss.swig_ptr(block), None, faiss.swig_ptr(at))


class NeighbourTable:
    """The ``k`` nearest neighbours of every distinct row, searched once each; :meth:`search` answers for a
    range of records as ``index.search`` would for their rows."""

    def __init__(self, index: Any, rows: Any, k: int, first: np.ndarray, inverse: np.ndarray, chunk: int) -> None:
        n = int(rows.shape[0])
        id_type = np.int32 if n < 2**31 else np.int64
        self.inverse = inverse
        self.dist = np.empty((first.size, k), dtype=np.float32)
        self.ids = np.empty((first.size, k), dtype=id_type)
        for start in range(0, first.size, chunk):
            queries = np.ascontiguousarray(rows[first[start : start + chunk]], dtype=np.float32)
            dist, ids = index.search(queries, k)
            self.dist[start : start + chunk] = dist
            self.ids[start : start + chunk] = ids

    def search(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        """``(dist, ids)`` of records ``start:stop``: float32 and int64, ``(stop - start, k)``."""
        at = self.inverse[start:stop]
        return self.dist[at], self.ids[at].astype(np.int64)
