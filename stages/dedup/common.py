"""Machinery shared by the deduplication stages (exact, MinHash, semantic).

A dedup stage finds *pairs* of duplicate records; everything after that is the same for every stage and lives
here, columnar throughout (numpy / Arrow arrays, no per-record Python objects):

1. :class:`RecordKeys` — what a fingerprint carries to name records: ``_seq``, ``id`` and ``quality_score``
   (NaN where the quality stage did not run). ``RecordKeys.from_batch(batch)`` in ``fingerprint``,
   ``RecordKeys.concat(...)`` in ``resolve``.
2. :func:`cluster_pairs` — union-find over the verified pairs (a compiled kernel) -> labels.
3. :func:`choose_kept` — the kept record of each cluster: highest ``quality_score``, then smallest ``_seq``.
   It depends only on those values, never on batch order, so a shuffled input keeps the same records.
4. :class:`DuplicateResolution` — dropped ``_seq`` -> (kept twin's id, similarity to it, cluster size);
   ``resolution.decide(batch, reason)`` turns it into a :class:`StageResult` for one batch. ``duplicate_of``
   always names the record this stage keeps for the cluster, never a record it drops.

Typical use in a stage::

    def resolve(self, fingerprints):
        keys = RecordKeys.concat([fp.keys for fp in fingerprints])
        left, right = ...                                  # verified duplicate pairs, row indices into keys
        return DuplicateResolution.from_pairs(keys, left, right, similarity=my_similarity)

    def decide(self, batch, resolution):
        return resolution.decide(batch, "duplicate_near")
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field, field_validator

from stages.base import SEQ_COLUMN, StageParams, StageResult, detail_json
from stages.dedup.minhash_kernel import empty_strings, int64_array, numeric_numpy, string_scalar
from stages.dedup.union_find import union_find

QUALITY_COLUMN = "quality_score"

# similarity(rows, kept_rows) -> similarity of each dropped row to its kept twin (rows index RecordKeys).
SimilarityFn = Callable[[np.ndarray, np.ndarray], np.ndarray]


@dataclass(frozen=True)
class RecordKeys:
    """The identity of the records behind a block of fingerprints (picklable, no texts).

    ``seq`` (int64) is the ``_seq`` column, ``ids`` the ``id`` column (Arrow strings), ``quality`` the
    ``quality_score`` column as float64 with NaN where missing (all NaN if the quality stage did not run).
    """

    seq: np.ndarray
    ids: pa.Array
    quality: np.ndarray

    def __len__(self) -> int:
        return len(self.seq)

    @classmethod
    def from_batch(cls, batch: pa.Table) -> RecordKeys:
        if SEQ_COLUMN not in batch.column_names:
            raise ValueError(f"a dedup stage needs the {SEQ_COLUMN!r} column that the runner adds to batches")
        seq = numeric_numpy(batch.column(SEQ_COLUMN)).astype(np.int64, copy=False)
        ids = batch.column("id").combine_chunks().cast(pa.large_string())
        if QUALITY_COLUMN in batch.column_names:
            q = batch.column(QUALITY_COLUMN).cast(pa.float64())
            quality = numeric_numpy(q).astype(np.float64, copy=False)  # nulls become NaN
        else:
            quality = np.full(batch.num_rows, np.nan)
        return cls(seq, ids, quality)

    @classmethod
    def concat(cls, parts: Sequence[RecordKeys]) -> RecordKeys:
        if not parts:
            return cls(np.empty(0, np.int64), empty_strings(), np.empty(0))
        return cls(
            np.concatenate([p.seq for p in parts]),
            pa.concat_arrays([p.ids for p in parts]),
            np.concatenate([p.quality for p in parts]),
        )


def cluster_pairs(n: int, left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Cluster ``n`` records given undirected duplicate pairs ``(left[k], right[k])`` (row indices).

    Returns int64 labels of length ``n``: rows with the same label are transitively connected; a row in
    no pair is alone in its cluster.
    """
    left = np.asarray(left, dtype=np.int64)
    right = np.asarray(right, dtype=np.int64)
    if len(left) and (min(left.min(), right.min()) < 0 or max(left.max(), right.max()) >= n):
        raise ValueError(f"cluster_pairs: pair indices must lie in [0, {n})")
    labels: np.ndarray = union_find(n, left, right)
    return labels


def choose_kept(labels: np.ndarray, seq: np.ndarray, quality: np.ndarray) -> np.ndarray:
    """For every row, the row index of the record kept in its cluster.

    The kept record has the highest ``quality`` (NaN counts as lowest), ties broken by the smallest ``seq``.
    A row whose result is its own index is kept.
    """
    n = len(labels)
    if n == 0:
        return np.empty(0, np.int64)
    q = np.where(np.isnan(quality), -np.inf, quality)
    order = np.lexsort((seq, -q, labels))
    sorted_labels = labels[order]
    first = np.empty(n, bool)
    first[0] = True
    first[1:] = sorted_labels[1:] != sorted_labels[:-1]
    group_start = np.maximum.accumulate(np.where(first, np.arange(n), 0))
    kept = np.empty(n, np.int64)
    kept[order] = order[group_start]
    return kept


def duplicate_detail(kept_id: str, similarity: float, cluster_size: int) -> str:
    """``detail_json(duplicate_of=kept_id, similarity=similarity, cluster_size=cluster_size)``, formatted
    directly (a dedup run may write a million of these): the same text, ~20x faster."""
    if '"' in kept_id or "\\" in kept_id or not kept_id.isprintable():
        return detail_json(duplicate_of=kept_id, similarity=similarity, cluster_size=cluster_size)
    return f'{{"cluster_size": {cluster_size}, "duplicate_of": "{kept_id}", "similarity": {similarity!r}}}'


@dataclass(frozen=True)
class DuplicateResolution:
    """Which records a dedup stage drops, and for each the kept twin (picklable, sorted by ``dropped_seq``).

    ``dropped_seq`` (int64, ascending), ``kept_id`` (Arrow strings: the id of the kept record of the cluster),
    ``similarity`` (float64: of the dropped record to that kept record), ``cluster_size`` (int64);
    ``stats``: extra counters of the stage (e.g. candidate pairs), reported by :meth:`counters`.
    """

    dropped_seq: np.ndarray
    kept_id: pa.Array
    similarity: np.ndarray
    cluster_size: np.ndarray
    stats: dict[str, int] = field(default_factory=dict)

    @classmethod
    def from_pairs(
        cls,
        keys: RecordKeys,
        left: np.ndarray,
        right: np.ndarray,
        similarity: SimilarityFn,
        stats: dict[str, int] | None = None,
    ) -> DuplicateResolution:
        """Cluster the verified pairs, choose each cluster's kept record, and record the dropped ones.
        ``similarity(rows, kept_rows)`` gives each dropped row's similarity to its kept twin."""
        labels = cluster_pairs(len(keys), left, right)
        return cls.from_labels(keys, labels, similarity, stats)

    @classmethod
    def from_labels(
        cls,
        keys: RecordKeys,
        labels: np.ndarray,
        similarity: SimilarityFn,
        stats: dict[str, int] | None = None,
    ) -> DuplicateResolution:
        """Like :meth:`from_pairs` for stages that already have cluster labels (e.g. equal content hashes)."""
        kept = choose_kept(labels, keys.seq, keys.quality)
        rows = np.flatnonzero(kept != np.arange(len(kept)))
        _, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
        kept_rows = kept[rows]
        sim = np.asarray(similarity(rows, kept_rows), dtype=np.float64) if len(rows) else np.empty(0)
        order = np.argsort(keys.seq[rows], kind="stable")
        rows, kept_rows, sim = rows[order], kept_rows[order], sim[order]
        return cls(
            dropped_seq=keys.seq[rows],
            kept_id=keys.ids.take(int64_array(kept_rows)),
            similarity=sim,
            cluster_size=counts[inverse[rows]].astype(np.int64),
            stats=dict(stats or {}),
        )

    def __len__(self) -> int:
        return len(self.dropped_seq)

    def lookup(self, seq: np.ndarray) -> np.ndarray:
        """For each ``_seq``, its index in this resolution, or -1 if that record is kept."""
        seq = np.asarray(seq, dtype=np.int64)
        pos = np.searchsorted(self.dropped_seq, seq)
        pos_clipped = np.minimum(pos, max(len(self.dropped_seq) - 1, 0))
        hit = (pos < len(self.dropped_seq)) & (self.dropped_seq[pos_clipped] == seq) if len(self) else pos < 0
        return np.where(hit, pos, -1)

    def decide(self, batch: pa.Table, reason: str) -> StageResult:
        """The decisions for one batch: each dropped record gets ``reason`` and a detail with ``duplicate_of``
        (the kept twin's id), ``similarity`` and ``cluster_size``."""
        if SEQ_COLUMN not in batch.column_names:
            raise ValueError(f"a dedup stage needs the {SEQ_COLUMN!r} column that the runner adds to batches")
        idx = self.lookup(numeric_numpy(batch.column(SEQ_COLUMN)))
        hits = np.flatnonzero(idx >= 0)
        reasons: list[str | None] = [None] * batch.num_rows
        details: list[str | None] = [None] * batch.num_rows
        if len(hits):
            at = idx[hits]
            kept_ids = pc.take(self.kept_id, int64_array(at)).to_pylist()
            sims = np.round(self.similarity[at], 4).tolist()
            for row, kid, sim, size in zip(hits.tolist(), kept_ids, sims, self.cluster_size[at].tolist(), strict=True):
                reasons[row] = reason
                details[row] = duplicate_detail(kid, sim, size)
        return StageResult(batch, reasons, details)

    def counters(self) -> dict[str, int]:
        """Statistics for report.json: duplicates dropped, clusters with duplicates, largest cluster."""
        if not len(self):
            return {"duplicates": 0, "clusters": 0, "largest_cluster": 0, **self.stats}
        return {
            "duplicates": len(self),
            "clusters": int(pc.count_distinct(self.kept_id).as_py()),
            "largest_cluster": int(self.cluster_size.max()),
            **self.stats,
        }


HashField = Literal["system", "instruction", "input", "output", "history"]
DEFAULT_HASH_FIELDS: tuple[HashField, ...] = ("instruction", "input", "output", "history")
FIELD_SEPARATOR = "\x1f"  # ASCII unit separator: never in real text


class HashFieldsParams(StageParams):
    """Parameters shared by the lexical dedup stages: ``fields`` compared (in this order, each once) and
    ``normalize`` (compare normalized text rather than raw bytes; each stage says what it normalizes)."""

    fields: tuple[HashField, ...] = Field(default=DEFAULT_HASH_FIELDS, min_length=1)
    normalize: bool = True

    @field_validator("fields")
    @classmethod
    def _unique(cls, v: tuple[HashField, ...]) -> tuple[HashField, ...]:
        if len(set(v)) != len(v):
            raise ValueError(f"fields must not repeat a field, got {list(v)}")
        return v


def history_text(history: pa.Array | pa.ChunkedArray, separator: str = FIELD_SEPARATOR) -> pa.Array:
    """Each record's earlier turns as one string: user, assistant, user, … joined by ``separator``."""
    if isinstance(history, pa.ChunkedArray):
        history = history.combine_chunks()
    lengths = numeric_numpy(pc.list_value_length(history), null=0).astype(np.int64)  # a null list: 0
    turns = pc.list_flatten(history)
    m = len(turns)
    users = pc.struct_field(turns, "user").cast(pa.large_string()).fill_null(string_scalar(""))
    assistants = pc.struct_field(turns, "assistant").cast(pa.large_string()).fill_null(string_scalar(""))
    interleave = np.column_stack((np.arange(m), np.arange(m) + m)).ravel()
    values = pa.concat_arrays([users, assistants]).take(int64_array(interleave))
    offsets = np.concatenate(([0], np.cumsum(2 * lengths)))
    lists = pa.LargeListArray.from_arrays(int64_array(offsets), values)
    return pc.binary_join(lists, string_scalar(separator))


def record_text(
    batch: pa.Table, fields: Sequence[str] = DEFAULT_HASH_FIELDS, separator: str = FIELD_SEPARATOR
) -> pa.Array:
    """The text a dedup stage compares: the chosen fields of each record joined by ``separator``
    (nulls read as ""; ``history`` as its turns in order). Columnar, one Arrow string array."""
    parts: list[pa.Array] = []
    for name in fields:
        if name == "history":
            parts.append(history_text(batch.column("history"), separator))
        else:
            parts.append(batch.column(name).combine_chunks().cast(pa.large_string()).fill_null(string_scalar("")))
    if len(parts) == 1:
        return parts[0]
    return pc.binary_join_element_wise(*parts, string_scalar(separator))
