"""Embedding rows of ``dedup_semantic`` kept compact: no second copy of a matrix, no rows for absent texts.

Two row sources, read like a numpy matrix (``rows[positions]`` and ``rows[a:b]`` give the rows as a new array in
the stored dtype, ``shape``, ``dtype``, ``len``), so that the search and the pair checks take any of them, or a
plain array:

* :class:`BlockRows` — the per-batch matrices of the fingerprints read as one ``(n, d)`` matrix. ``resolve``
  gathers only the rows it needs (one chunk of queries, the records of one block of pairs), so the batches'
  float16 matrices are the only full copy (``np.concatenate`` would make a second one the size of them all).
* :class:`PresentRows` — the side rows of only the records that have that side (the instruction alone is
  embedded only for records with an input or a history, a few per cent of Alpaca-style data); absent rows read
  as zero rows, as a dense side matrix had them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

RowSource = Any
"""A matrix-like source of rows: ``np.ndarray``, :class:`BlockRows` or :class:`PresentRows`."""


def _positions(index: Any, size: int) -> np.ndarray:
    """Row positions of an integer array or a slice, as int64."""
    if isinstance(index, slice):
        return np.arange(*index.indices(size), dtype=np.int64)
    return np.asarray(index, dtype=np.int64)


class BlockRows:
    """Several ``(n_i, d)`` matrices of one dtype read as one ``(sum n_i, d)`` matrix, without copying them."""

    def __init__(self, blocks: Sequence[np.ndarray], dim: int | None = None, dtype: Any = np.float32) -> None:
        self.blocks = [block for block in blocks if block.shape[0]]
        first = self.blocks[0] if self.blocks else None
        self.dim = int(first.shape[1]) if first is not None else int(dim or 1)
        self.dtype = first.dtype if first is not None else np.dtype(dtype)
        sizes = [int(block.shape[0]) for block in self.blocks]
        self.offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)

    @property
    def shape(self) -> tuple[int, int]:
        return int(self.offsets[-1]), self.dim

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def __getitem__(self, index: Any) -> np.ndarray:
        positions = _positions(index, len(self))
        if len(self.blocks) == 1:
            return self.blocks[0][positions]
        out = np.empty((positions.size, self.dim), dtype=self.dtype)
        if not positions.size:
            return out
        block = np.searchsorted(self.offsets, positions, side="right") - 1
        order = np.argsort(block, kind="stable")
        bounds = np.searchsorted(block[order], np.arange(len(self.blocks) + 1))
        for number, (lo, hi) in enumerate(zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=True)):
            if hi > lo:
                at = order[lo:hi]
                out[at] = self.blocks[number][positions[at] - self.offsets[number]]
        return out


@dataclass
class PresentRows:
    """The rows of the records that have one (``positions``, ascending) among ``size`` records; every other row
    is a zero row that is never stored."""

    positions: np.ndarray  # int64, ascending
    rows: Any  # (len(positions), d): an array, or a BlockRows over the batches' arrays (stack)
    size: int

    @classmethod
    def from_dense(cls, matrix: np.ndarray, present: Sequence[bool] | np.ndarray | None = None) -> PresentRows:
        """The rows of ``matrix`` marked ``present`` (default: the non-zero rows)."""
        keep = matrix.any(axis=1) if present is None else np.asarray(present, dtype=bool)
        positions = np.flatnonzero(keep).astype(np.int64)
        return cls(positions, np.ascontiguousarray(matrix[positions]), int(matrix.shape[0]))

    @classmethod
    def stack(cls, parts: Sequence[PresentRows], dim: int = 1, dtype: Any = np.float32) -> PresentRows:
        """All the parts' records, in order. Their rows are read in place (a :class:`BlockRows` over them), not
        copied: the answers of nearly every record are a side too, and a copy would double their memory."""
        if not parts:
            return cls(np.zeros(0, np.int64), np.zeros((0, dim), dtype), 0)
        offsets = np.cumsum([0] + [part.size for part in parts[:-1]])
        positions = np.concatenate([part.positions + o for part, o in zip(parts, offsets, strict=True)])
        rows = parts[0].rows if len(parts) == 1 else BlockRows([part.rows for part in parts], dim, dtype)
        return cls(positions, rows, int(sum(p.size for p in parts)))

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.pop("_slots", None)  # a lookup table, rebuilt on use
        return state

    def slots(self) -> np.ndarray:
        """For each of the ``size`` records, the number of its stored row, or -1 (built once, 4 bytes a record)."""
        table = self.__dict__.get("_slots")
        if table is None:
            table = np.full(self.size, -1, dtype=np.int32 if self.positions.size < 2**31 else np.int64)
            table[self.positions] = np.arange(self.positions.size)
            self.__dict__["_slots"] = table
        return table

    def stored(self, positions: np.ndarray) -> np.ndarray:
        """Whether each record of ``positions`` has a stored row (False: it reads as a zero row)."""
        return self.slots()[np.asarray(positions, dtype=np.int64)] >= 0

    @property
    def shape(self) -> tuple[int, int]:
        return self.size, int(self.rows.shape[1])

    @property
    def dtype(self) -> Any:
        return self.rows.dtype

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: Any) -> np.ndarray:
        positions = _positions(index, self.size)
        out = np.zeros((positions.size, self.rows.shape[1]), dtype=self.rows.dtype)
        if not self.positions.size or not positions.size:
            return out
        at = self.slots()[positions]
        hit = at >= 0
        out[hit] = self.rows[at[hit]]
        return out

    def dense(self) -> np.ndarray:
        """The ``(size, d)`` matrix with zero rows for the records without this side."""
        out = np.zeros(self.shape, dtype=self.rows.dtype)
        out[self.positions] = self.rows[0 : self.positions.size]
        return out


def stack_rows(parts: Sequence[Any], dim: int, dtype: Any) -> RowSource:
    """One row source over the batches' rows of one side: :class:`PresentRows` parts are stacked (compact);
    dense parts (fingerprints cached by an earlier version, or engine blocks) are read in place."""
    if parts and all(isinstance(part, PresentRows) for part in parts):
        return PresentRows.stack(parts, dim, dtype)
    dense = [part.dense() if isinstance(part, PresentRows) else part for part in parts]
    return BlockRows(dense, dim, dtype)


def dense_rows(rows: RowSource) -> np.ndarray:
    """Every row as one array (what an engine that ships fingerprints as Arrow columns stores)."""
    if isinstance(rows, PresentRows):
        return rows.dense()
    return np.asarray(rows[0 : len(rows)])
