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
from functools import lru_cache

import numpy as np
import pyarrow as pa

from stages.base import SEQ_COLUMN
from stages.dedup_common import RecordKeys, cluster_pairs, record_text
from stages.minhash_kernel import DROP, fold_table, int64_array, numeric_numpy, pair_similarity


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
        wanted = np.unique(np.concatenate([left[pending], right[pending]]))
        stats = {**stats, "candidates_linked_jaccard": int(accepted.sum()), "texts_compared": int(pending.sum())}
        return cls(keys, signatures, left, right, accepted, pending, keys.seq[wanted], stats)


@lru_cache(maxsize=2)
def _translation(strip: bool) -> dict[int, int | None]:
    """:func:`stages.minhash_kernel.fold_table` as a ``str.translate`` table (only the code points it changes)."""
    table = fold_table(strip)
    changed = np.flatnonzero(table != np.arange(len(table), dtype=np.uint32))
    return {int(c): (None if table[c] == DROP else int(table[c])) for c in changed}


def normalized_texts(texts: Sequence[str], ngram: int, normalize: bool) -> list[str]:
    """The texts as the MinHash kernel shingles them: folded (NFKC, lower case), whitespace and punctuation
    removed — unless fewer than ``ngram`` characters remain, then only folded (see
    :func:`stages.minhash_kernel.minhash_signatures`). Without ``normalize`` the texts are unchanged."""
    if not normalize:
        return list(texts)
    strict, loose = _translation(True), _translation(False)
    out = []
    for text in texts:
        folded = text.translate(strict)
        out.append(folded if len(folded) >= ngram else text.translate(loose))
    return out


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
    texts = record_text(batch.take(int64_array(rows)), fields).to_pylist() if len(rows) else []
    return pa.table(
        {
            SEQ_COLUMN: int64_array(seq[rows]),
            "text": pa.array(normalized_texts(texts, ngram, normalize), pa.large_string()),
        }
    )


def texts_by_row(keys: RecordKeys, gathered: Sequence[pa.Table]) -> list[str | None]:
    """The gathered texts by row of ``keys`` (None for a record whose text was not needed)."""
    out: list[str | None] = [None] * len(keys)
    for table in gathered:
        seq = numeric_numpy(table.column(SEQ_COLUMN)).astype(np.int64, copy=False)
        rows = np.searchsorted(keys.seq, seq)
        for row, text in zip(rows.tolist(), table.column("text").to_pylist(), strict=True):
            out[row] = text
    return out


def levenshtein_ratio(texts: Sequence[str | None], left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """1 - Levenshtein distance / longer length for each pair of rows (rapidfuzz; 1.0 for two empty texts);
    NaN where a text is missing."""
    from rapidfuzz.distance import Levenshtein

    out = np.full(len(left), np.nan)
    for k, (a, b) in enumerate(zip(left.tolist(), right.tolist(), strict=True)):
        ta, tb = texts[a], texts[b]
        if ta is not None and tb is not None:
            out[k] = Levenshtein.normalized_similarity(ta, tb)
    return out
