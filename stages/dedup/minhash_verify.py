"""Candidate verification on the texts for ``dedup_minhash`` (``verify: levenshtein | both``).

MinHash signatures estimate the Jaccard similarity of character n-gram sets. That is the right measure for
reordered or partly rewritten texts, but a few changed characters cost a short text most of its n-grams
(one substitution changes ``ngram`` of them): ``写一首关于春天的小诗`` and ``写一首关于夏天的小诗`` share 5 of
11 3-grams. The normalized Levenshtein ratio, 1 - edits / longer length, measures exactly that case (0.9).

Texts are never part of the fingerprints. Verifying on them is a second, compact pass over the records:

1. ``resolve`` finds the LSH candidate pairs on the signatures and returns a provisional
   :class:`TextVerification`: the candidate pairs, the keys and signatures of their records only, and the
   ``_seq`` of the records whose texts are still needed (with ``both``, pairs accepted on the signatures are
   linked first and a pair already inside one cluster needs no text).
2. ``gather`` (every batch, any engine) returns the normalized texts of just those records: a small table.
3. ``complete`` compares the pending pairs with :func:`levenshtein_ratio` (rapidfuzz) and clusters.

Memory is the texts of the records in unresolved candidate pairs — near-duplicates, not the corpus.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numba as nb
import numpy as np
import pyarrow as pa

from stages.base import SEQ_COLUMN
from stages.dedup.common import RecordKeys, cluster_pairs, record_text
from stages.dedup.minhash_kernel import (
    DROP,
    _decode,
    fold_table,
    int64_array,
    numeric_numpy,
    pair_similarity,
    string_buffers,
)
from stages.numeric import sorted_unique


@dataclass(frozen=True)
class TextVerification:
    """A provisional resolution of ``dedup_minhash``: candidate pairs waiting for some records' texts.

    ``keys`` / ``signatures``: the records in candidate pairs (rows, in ``_seq`` order); ``left`` / ``right``:
    the candidate pairs (row indices); ``accepted``: pairs already accepted on the signatures; ``pending``:
    pairs to compare on the texts; ``wanted_seq``: sorted ``_seq`` of the records whose texts ``gather``
    collects; ``stats``: counters for the report.
    """

    keys: RecordKeys
    signatures: np.ndarray
    left: np.ndarray
    right: np.ndarray
    accepted: np.ndarray
    pending: np.ndarray
    wanted_seq: np.ndarray
    stats: dict[str, int] = field(default_factory=dict)

    @classmethod
    def build(
        cls,
        keys: RecordKeys,
        signatures: np.ndarray,
        left: np.ndarray,
        right: np.ndarray,
        threshold: float | None,
        stats: dict[str, int],
    ) -> TextVerification:
        """From candidate pairs: with a ``threshold`` (``both``), pairs whose estimated Jaccard reaches it are
        accepted and linked first; the others still pending are the pairs between two different clusters."""
        left = np.asarray(left, np.int64)
        right = np.asarray(right, np.int64)
        if threshold is None:
            accepted = np.zeros(len(left), bool)
            pending = np.ones(len(left), bool)
        else:
            accepted = pair_similarity(signatures, left, right) >= threshold
            labels = cluster_pairs(len(keys), left[accepted], right[accepted])
            pending = ~accepted & (labels[left] != labels[right])
        wanted = sorted_unique(np.concatenate([left[pending], right[pending]]))
        stats = {**stats, "candidates_linked_jaccard": int(accepted.sum()), "texts_compared": int(pending.sum())}
        return cls(keys, signatures, left, right, accepted, pending, keys.seq[wanted], stats)


@nb.njit(cache=True, nogil=True)
def _fold(
    data: np.ndarray, offsets: np.ndarray, rows: np.ndarray, strict: np.ndarray, loose: np.ndarray, ngram: int
) -> tuple[np.ndarray, np.ndarray]:
    """UTF-32 code points of each chosen row folded as the signature kernel folds them, with their offsets."""
    out = np.empty(int(offsets[-1] - offsets[0]), np.uint32)  # never more code points than UTF-8 bytes
    starts = np.zeros(len(rows) + 1, np.int64)
    at = 0
    for k in range(len(rows)):
        begin = at
        for attempt in range(2):  # strict first; folded only when fewer than ``ngram`` characters remain
            table = strict if attempt == 0 else loose
            at = begin
            pos, end = offsets[rows[k]], offsets[rows[k] + 1]
            while pos < end:
                c, pos = _decode(data, pos)
                if c < len(table):
                    c = table[c]
                    if c == DROP:
                        continue
                out[at] = c
                at += 1
            if at - begin >= ngram:
                break
        starts[k + 1] = at
    return out[:at], starts


def normalized_texts(texts: pa.Array, ngram: int, normalize: bool, rows: np.ndarray | None = None) -> list[str]:
    """The texts (of ``rows``, default all) as the MinHash kernel shingles them: folded (NFKC, lower case) with
    whitespace and punctuation removed — unless fewer than ``ngram`` characters remain, then only folded (see
    :func:`stages.dedup.minhash_kernel.minhash_signatures`). Without ``normalize`` the texts are unchanged."""
    rows = np.arange(len(texts), dtype=np.int64) if rows is None else np.asarray(rows, np.int64)
    if not normalize:
        return [texts[int(r)].as_py() or "" for r in rows]
    data, offsets = string_buffers(texts)
    points, starts = _fold(data, offsets, rows, fold_table(True), fold_table(False), ngram)
    raw = points.tobytes()
    return [raw[4 * a : 4 * b].decode("utf-32-le") for a, b in zip(starts[:-1].tolist(), starts[1:].tolist())]


def _strings(values: list[str]) -> pa.Array:
    """A large_string array from Python strings (from buffers: ``pa.array`` would import pandas, ~0.4 s)."""
    encoded = [v.encode("utf-8") for v in values]
    offsets = np.zeros(len(encoded) + 1, np.int64)
    np.cumsum([len(e) for e in encoded], out=offsets[1:])
    return pa.Array.from_buffers(
        pa.large_string(), len(encoded), [None, pa.py_buffer(offsets), pa.py_buffer(b"".join(encoded))]
    )


def gather_texts(
    batch: pa.Table, fields: Sequence[str], wanted_seq: np.ndarray, ngram: int, normalize: bool
) -> pa.Table:
    """``_seq`` and normalized text of the batch's records whose ``_seq`` is in ``wanted_seq`` (sorted)."""
    seq = numeric_numpy(batch.column(SEQ_COLUMN)).astype(np.int64, copy=False)
    if len(wanted_seq):
        pos = np.minimum(np.searchsorted(wanted_seq, seq), len(wanted_seq) - 1)
        rows = np.flatnonzero(wanted_seq[pos] == seq)
    else:
        rows = np.empty(0, np.int64)
    texts = normalized_texts(record_text(batch, fields), ngram, normalize, rows) if len(rows) else []
    return pa.table({SEQ_COLUMN: int64_array(seq[rows]), "text": _strings(texts)})


def texts_by_row(keys: RecordKeys, gathered: Sequence[pa.Table]) -> list[str | None]:
    """The gathered texts by row of ``keys`` (None for a record whose text was not needed)."""
    out: list[str | None] = [None] * len(keys)
    for table in gathered:
        seq = numeric_numpy(table.column(SEQ_COLUMN)).astype(np.int64, copy=False)
        rows = np.searchsorted(keys.seq, seq)
        for row, text in zip(rows.tolist(), table.column("text").to_pylist(), strict=True):
            out[row] = text
    return out


def levenshtein_ratio(
    texts: Sequence[str | None], left: np.ndarray, right: np.ndarray, cutoff: float = 0.0
) -> np.ndarray:
    """1 - Levenshtein distance / longer length for each pair of rows (rapidfuzz, in C++; 1.0 for two empty
    texts); 0.0 where below ``cutoff`` (which lets rapidfuzz skip pairs of very different lengths), NaN where a
    text is missing."""
    from rapidfuzz.distance import Levenshtein
    from rapidfuzz.process import cpdist

    out = np.full(len(left), np.nan)
    have = [
        k
        for k, (a, b) in enumerate(zip(left.tolist(), right.tolist(), strict=True))
        if texts[a] is not None and texts[b] is not None
    ]
    if have:
        rows = np.asarray(have, np.int64)
        a = [texts[i] for i in left[rows].tolist()]
        b = [texts[i] for i in right[rows].tolist()]
        # rapidfuzz turns the cutoff into a whole number of edits and drops a ratio exactly at it (17/20 at 0.85):
        # a hair lower keeps those; the caller compares the exact ratios with its threshold
        cut = max(0.0, cutoff - 1e-6)
        scores = cpdist(a, b, scorer=Levenshtein.normalized_similarity, score_cutoff=cut, dtype=np.float64)
        out[rows] = scores
    return out
