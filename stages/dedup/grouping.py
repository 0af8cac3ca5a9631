"""Group by key: the one operation every engine implements for the lexical dedup stages.

A stage states its candidates as *key rows* — a table of ``key`` (uint64) and ``seq`` (int64, a record's
``_seq``), several rows per record when it has several keys (``dedup_minhash``: one per LSH band;
``dedup_exact``: its content hash). Records that share a key are candidates: :func:`group_pairs` sorts the rows by
(key, seq) and pairs each member of a key group with the group's first (earliest) member and with its predecessor
— linear in the group size, and enough to connect every group. The result depends only on the rows, never on
their order, so an engine may split the rows any way that keeps each key in one piece: the local engine sorts
them all here; the Ray engine hash-partitions them by key with a Ray Data ``groupby`` and runs this function on
each partition (:meth:`pipeline.engines.ray_engine.RayEngine.group_pairs`).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from stages.numeric import sorted_unique

KEY, SEQ, LEFT, RIGHT = "key", "seq", "left", "right"
KEY_ROWS_SCHEMA = pa.schema([(KEY, pa.uint64()), (SEQ, pa.int64())])
PAIRS_SCHEMA = pa.schema([(LEFT, pa.int64()), (RIGHT, pa.int64())])


def key_rows(keys: np.ndarray, seq: np.ndarray) -> pa.Table:
    """Key rows of a batch: ``keys`` is (n,) or (n, k) uint64 (k keys per record), ``seq`` the n records' ``_seq``."""
    keys = np.asarray(keys, np.uint64)
    per = 1 if keys.ndim == 1 else keys.shape[1]
    seqs = np.repeat(np.asarray(seq, np.int64), per)
    return pa.table([pa.array(keys.ravel()), pa.array(seqs)], schema=KEY_ROWS_SCHEMA)


def concat_key_rows(tables: list[pa.Table]) -> pa.Table:
    return pa.concat_tables(tables) if tables else KEY_ROWS_SCHEMA.empty_table()


def group_pairs(rows: pa.Table) -> pa.Table:
    """The distinct pairs ``(left, right)`` of ``seq`` (left the earlier) within the key groups of ``rows``: every
    member with the group's first member and with its predecessor, members in ``seq`` order. (Pairs from
    different calls may repeat: the caller keeps the distinct ones.) Rows in no group with another give none.

    One in-place sort of ``key`` packed over the row's rank among the distinct ``seq`` when the key leaves room
    (``dedup_minhash``'s band keys do), else a lexsort."""
    key = rows.column(KEY).to_numpy().astype(np.uint64, copy=False)
    seqs, rank = _ranks(rows.column(SEQ).to_numpy().astype(np.int64, copy=False))
    if len(key) < 2:
        return PAIRS_SCHEMA.empty_table()
    bits = max(1, (len(seqs) - 1).bit_length())
    if bits < 64 and int(key.max()) >> (64 - bits) == 0:
        packed = (key << np.uint64(bits)) | rank.astype(np.uint64)
        packed.sort()
        key = packed >> np.uint64(bits)
        rank = (packed & np.uint64((1 << bits) - 1)).astype(np.int64)
    else:
        order = np.lexsort((rank, key))
        key, rank = key[order], rank[order]
    n = len(key)
    same = np.zeros(n, bool)
    np.equal(key[1:], key[:-1], out=same[1:])
    members = np.flatnonzero(same)
    head = np.maximum.accumulate(np.where(same, 0, np.arange(n)))
    second = members[head[members] != members - 1]  # the predecessor is not the head: a pair of its own
    left = np.concatenate([rank[head[members]], rank[second - 1]])
    right = np.concatenate([rank[members], rank[second]])
    m = len(seqs)
    packed_pairs = sorted_unique((left * m + right)[left != right])
    return pa.table([pa.array(seqs[packed_pairs // m]), pa.array(seqs[packed_pairs % m])], schema=PAIRS_SCHEMA)


def _ranks(seq: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct values of ``seq`` (ascending) and each row's index among them (one pass when sorted)."""
    if len(seq) and bool(np.all(seq[1:] >= seq[:-1])):
        new = np.empty(len(seq), bool)
        new[0] = True
        np.not_equal(seq[1:], seq[:-1], out=new[1:])
        return seq[new], np.cumsum(new) - 1
    distinct, rank = np.unique(seq, return_inverse=True)
    return distinct, rank.reshape(-1)


def pair_rows(seq: np.ndarray, pairs: pa.Table) -> tuple[np.ndarray, np.ndarray]:
    """The distinct pairs of ``pairs`` (``_seq`` values) as row pairs ``(a, b)``, ``a < b``, into the records whose
    ``_seq`` are ``seq`` (every ``_seq`` of a pair must be among them), sorted by (a, b)."""
    n = len(seq)
    ordered = bool(np.all(seq[1:] >= seq[:-1]))
    order = np.arange(n) if ordered else np.argsort(seq, kind="stable")
    found = []
    for name in (LEFT, RIGHT):
        wanted = pairs.column(name).to_numpy()
        at = np.searchsorted(seq, wanted, sorter=None if ordered else order) if n else np.empty(0, np.int64)
        rows = order[np.minimum(at, max(n - 1, 0))]
        if len(rows) and not np.array_equal(seq[rows], wanted):
            raise ValueError("a candidate pair names a _seq that no fingerprint has")
        found.append(rows.astype(np.int64))
    a, b = np.minimum(*found), np.maximum(*found)
    packed = sorted_unique((a * n + b)[a != b])
    return packed // max(n, 1), packed % max(n, 1)


__all__ = [
    "KEY",
    "KEY_ROWS_SCHEMA",
    "LEFT",
    "PAIRS_SCHEMA",
    "RIGHT",
    "SEQ",
    "concat_key_rows",
    "group_pairs",
    "key_rows",
    "pair_rows",
]
