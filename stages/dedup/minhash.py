"""``dedup_minhash``: drop near-duplicates by MinHash over character n-grams with LSH banding.

Pipeline, columnar from end to end:

1. ``fingerprint`` (per batch, parallel-safe): the chosen fields joined with a separator go to a compiled
   kernel (:mod:`stages.dedup.minhash_kernel`) that folds each character (NFKC, lower case), skips whitespace and
   punctuation (so full/half-width punctuation and inserted spaces do not matter) and computes
   one-permutation MinHash signatures with densification — a (n, num_perm) uint32 matrix; the texts are not
   kept. If skipping leaves fewer than ``ngram`` characters, whitespace and punctuation are kept; a text still
   shorter than ``ngram`` is fingerprinted whole (one shingle), so distinct short texts never collide.
2. Candidates, as data (:mod:`stages.dedup.grouping`): LSH with ``bands`` × ``rows`` (:func:`optimal_bands`);
   ``fingerprint`` also gives each record one key row per band (band number over the band hash's high 32 bits,
   × ``_seq``), and the engine groups the key rows (numpy sort here, Ray Data ``groupby`` on Ray): within a
   bucket every member is a candidate with the bucket's earliest record and with its predecessor.
   ``resolve`` verifies the distinct candidates (estimated Jaccard = fraction of equal slots ≥ ``threshold``),
   clusters the accepted ones (union-find), and in each cluster keeps the record with the highest
   ``quality_score`` (else the smallest ``_seq``) — the same code on every engine.
3. ``decide``: every other record of a cluster is dropped with reason ``duplicate_near`` and a detail naming
   the kept twin (``duplicate_of``), the estimated Jaccard to it (``similarity``) and ``cluster_size``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, ClassVar, Literal

import numpy as np
import pyarrow as pa
from pydantic import Field

from stages.base import GlobalStage, StageParams, StageResult
from stages.dedup.common import (
    DuplicateResolution,
    HashFieldsParams,
    RecordKeys,
    record_text,
)
from stages.dedup.grouping import concat_key_rows, group_pairs, key_rows, pair_rows
from stages.dedup.minhash_kernel import band_hashes, int64_array, minhash_signatures, pair_similarity
from stages.dedup.minhash_verify import TextVerification, gather_texts, levenshtein_ratio, texts_by_row
from stages.numeric import sorted_unique

REASON_NEAR = "duplicate_near"


class MinHashParams(HashFieldsParams):
    """Parameters of ``dedup_minhash`` (defaults chosen on bench/make_near_dups.py's benchmark).

    ``fields``: the fields compared, in order; ``ngram``: characters per shingle; ``num_perm``: signature
    length; ``threshold``: the Jaccard similarity from which two records are duplicates (also sets the LSH
    bands × rows); ``seed``: the hash seed (same seed, same signatures); ``normalize``: NFKC, lower case,
    whitespace and punctuation removed before shingling.
    """

    ngram: int = Field(default=3, ge=1, le=64)
    num_perm: int = Field(default=128, ge=8, le=1024)
    threshold: float = Field(default=0.7, gt=0.0, lt=1.0)
    seed: int = Field(default=42, ge=0, lt=2**63)
    verify: Literal["jaccard", "levenshtein", "both"] = "jaccard"
    levenshtein_threshold: float = Field(default=0.85, gt=0.0, le=1.0)

    @property
    def candidate_threshold(self) -> float:
        """The Jaccard the LSH index is built for: ``threshold``, or with a Levenshtein check at most
        :data:`LEVENSHTEIN_CANDIDATES` (a changed character costs a short text ``ngram`` n-grams: one or two
        changes in 20 characters leave a 3-gram Jaccard of 0.5–0.7)."""
        return self.threshold if self.verify == "jaccard" else min(self.threshold, LEVENSHTEIN_CANDIDATES)

    @property
    def bands_rows(self) -> tuple[int, int]:
        """(bands, rows) of the LSH index for ``candidate_threshold`` and ``num_perm``."""
        return optimal_bands(self.candidate_threshold, self.num_perm)


BAND_CHUNK = 8  # band hashes computed per pass over the signature matrix
LEVENSHTEIN_CANDIDATES = 0.5  # the LSH index's Jaccard when candidates are also compared by edit distance
CANDIDATE_AT_THRESHOLD = 0.98  # chance that a pair exactly at the threshold becomes an LSH candidate


@lru_cache(maxsize=64)
def optimal_bands(threshold: float, num_perm: int, target: float = CANDIDATE_AT_THRESHOLD) -> tuple[int, int]:
    """The (bands, rows) of the LSH index: all ``num_perm`` slots used (bands = num_perm // rows), with the most
    rows per band — the steepest S-curve 1-(1-s^r)^b, so the fewest candidates below ``threshold`` — that still
    make a pair at ``threshold`` a candidate with probability ≥ ``target``.

    Candidates are verified afterwards, so a false positive costs one comparison while a false negative is a
    duplicate lost for good: datasketch's rule (equal weights on both areas, 14 × 9 at 0.7 / 128) finds a pair
    at the threshold only 44 % of the time; this rule (25 × 5) 98 %."""
    best = (num_perm, 1)
    for r in range(1, num_perm + 1):
        b = num_perm // r
        if 1.0 - (1.0 - threshold**r) ** b >= target:
            best = (b, r)
    return best


@dataclass(frozen=True)
class MinHashFingerprint:
    """One batch's fingerprint: record keys, (n, num_perm) uint32 signatures, count of short texts, and the key
    rows (one per record and band: :func:`band_keys` × ``_seq``) that the engine groups into candidates."""

    keys: RecordKeys
    signatures: np.ndarray
    short_texts: int
    key_rows: pa.Table


class MinHashDedupStage(GlobalStage):
    """Drop near-duplicates found by MinHash LSH (see the module docstring)."""

    name: ClassVar[str] = "dedup_minhash"
    Params: ClassVar[type[StageParams]] = MinHashParams
    params: MinHashParams

    def fingerprint(self, batch: pa.Table) -> MinHashFingerprint:
        p = self.params
        text = record_text(batch, p.fields)
        sig, short = minhash_signatures(text, p.ngram, p.num_perm, p.seed, p.normalize)
        keys = RecordKeys.from_batch(batch)
        return MinHashFingerprint(keys, sig, int(short.sum()), key_rows(band_keys(sig, *p.bands_rows), keys.seq))

    def group_keys(self, fingerprints: Sequence[Any]) -> pa.Table:
        return concat_key_rows([fp.key_rows for fp in fingerprints])

    def resolve(
        self, fingerprints: Sequence[Any], pairs: pa.Table | None = None
    ) -> DuplicateResolution | TextVerification:
        """Candidates: records sharing a band's bucket (the engine's grouping of the key rows, or here without
        one), verified on the signatures (``jaccard``) or on the texts after a second pass."""
        fps: list[MinHashFingerprint] = list(fingerprints)
        p = self.params
        keys = RecordKeys.concat([fp.keys for fp in fps])
        if fps:
            sig = np.concatenate([fp.signatures for fp in fps])
        else:
            sig = np.empty((0, p.num_perm), np.uint32)
        left, right = pair_rows(keys.seq, group_pairs(self.group_keys(fps)) if pairs is None else pairs)
        short = {"short_texts": sum(fp.short_texts for fp in fps)}
        if p.verify != "jaccard":  # candidates only; verified on the texts after a second pass (gather)
            involved = sorted_unique(np.concatenate([left, right]))
            involved = involved[np.argsort(keys.seq[involved], kind="stable")]  # in _seq order
            sub = RecordKeys(keys.seq[involved], keys.ids.take(int64_array(involved)), keys.quality[involved])
            row = np.empty(len(keys), np.int64)
            row[involved] = np.arange(len(involved))
            left, right = row[left], row[right]
            return self._verify_candidates(sub, sig[involved], left, right, {"candidate_pairs": len(left), **short})
        ok = pair_similarity(sig, left, right) >= p.threshold
        stats = {"candidates_verified": len(left), "candidates_linked": int(ok.sum()), **short}
        return DuplicateResolution.from_pairs(keys, left[ok], right[ok], lambda a, b: pair_similarity(sig, a, b), stats)

    def _verify_candidates(
        self, keys: RecordKeys, signatures: np.ndarray, left: np.ndarray, right: np.ndarray, stats: dict[str, int]
    ) -> DuplicateResolution | TextVerification:
        """For ``verify: levenshtein | both``: the candidate pairs (rows of ``keys``/``signatures``, the records
        in some pair only, in ``_seq`` order) -> a :class:`TextVerification` waiting for the texts, or the final
        resolution when no pair needs one."""
        p = self.params
        pending = TextVerification.build(
            keys, signatures, left, right, p.threshold if p.verify == "both" else None, stats
        )
        return pending if self.needs_records(pending) else self.complete(pending, [])

    def needs_records(self, resolution: Any) -> bool:
        return isinstance(resolution, TextVerification) and len(resolution.wanted_seq) > 0

    def gather(self, batch: pa.Table, resolution: Any) -> pa.Table:
        """The normalized texts of this batch's records that a pending pair needs (``_seq``, ``text``)."""
        p = self.params
        return gather_texts(batch, p.fields, resolution.wanted_seq, p.ngram, p.normalize)

    def complete(self, resolution: Any, gathered: Sequence[Any]) -> DuplicateResolution:
        """Compare the pending pairs on their texts and cluster every accepted pair. A dropped record's
        ``similarity`` is its Levenshtein ratio to the kept twin where both texts were gathered, else (a pair
        linked on the signatures, ``both``) the estimated Jaccard."""
        v: TextVerification = resolution
        texts = texts_by_row(v.keys, gathered)
        ok = v.accepted.copy()
        threshold = self.params.levenshtein_threshold
        ratio = levenshtein_ratio(texts, v.left[v.pending], v.right[v.pending], cutoff=threshold)
        ok[v.pending] = ratio >= threshold
        stats = {**v.stats, "candidates_linked_levenshtein": int((ratio >= threshold).sum())}

        def similarity(a: np.ndarray, b: np.ndarray) -> np.ndarray:
            lev = levenshtein_ratio(texts, a, b)
            return np.where(np.isnan(lev), pair_similarity(v.signatures, a, b), lev)

        return DuplicateResolution.from_pairs(v.keys, v.left[ok], v.right[ok], similarity, stats)

    def decide(self, batch: pa.Table, resolution: Any) -> StageResult:
        return resolution.decide(batch, REASON_NEAR)

    def resolution_counters(self, resolution: Any) -> dict[str, int]:
        return resolution.counters()


def band_keys(sig: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """A (n, bands) uint64 array of LSH bucket keys: band ``b``'s key is ``b`` over the high 32 bits of the band's
    hash (so buckets of different bands never meet). Band hashes are computed :data:`BAND_CHUNK` bands per pass
    over the signatures (fewer cache misses than one). (32-bit bucket ids add a few false candidates, all
    rejected by the verification.)"""
    out = np.empty((len(sig), bands), np.uint64)
    for first in range(0, bands, BAND_CHUNK):
        hashes = band_hashes(sig, min(BAND_CHUNK, bands - first), rows, first)
        out[:, first : first + hashes.shape[1]] = hashes >> np.uint64(32)
    out |= np.arange(bands, dtype=np.uint64) << np.uint64(32)
    return out
