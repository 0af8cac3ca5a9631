"""``dedup_minhash``: drop near-duplicates by MinHash over character n-grams with LSH banding.

Pipeline, columnar from end to end:

1. ``fingerprint`` (per batch, parallel-safe): the chosen fields joined with a separator go to a compiled
   kernel (:mod:`stages.dedup.minhash_kernel`) that folds each character (NFKC, lower case), skips whitespace and
   punctuation (so full/half-width punctuation and inserted spaces do not matter) and computes
   one-permutation MinHash signatures with densification — a (n, num_perm) uint32 matrix; the texts are not
   kept. If skipping leaves fewer than ``ngram`` characters, whitespace and punctuation are kept; a text still
   shorter than ``ngram`` is fingerprinted whole (one shingle), so distinct short texts never collide.
2. ``resolve``: LSH with ``bands`` × ``rows`` derived from ``threshold`` exactly as datasketch's
   ``MinHashLSH`` does (minimizing the equally weighted false-positive and false-negative areas). For each
   band, rows are sorted by band hash; within a bucket every member is a candidate with the bucket's
   earliest record and with its predecessor. Candidates are verified (estimated Jaccard = fraction of equal
   slots ≥ ``threshold``) before they are linked in a union-find (a candidate pair already in one cluster is
   not verified again), and in each cluster the record with the highest ``quality_score`` (else the
   smallest ``_seq``) is kept.
3. ``decide``: every other record of a cluster is dropped with reason ``duplicate_near`` and a detail naming
   the kept twin (``duplicate_of``), the estimated Jaccard to it (``similarity``) and ``cluster_size``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
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
from stages.dedup.minhash_kernel import band_hashes, int64_array, minhash_signatures, pair_similarity
from stages.dedup.minhash_verify import TextVerification, gather_texts, levenshtein_ratio, sorted_unique, texts_by_row
from stages.dedup.union_find import flatten, link_buckets

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
    """One batch's fingerprint: record keys, (n, num_perm) uint32 signatures, count of short texts."""

    keys: RecordKeys
    signatures: np.ndarray
    short_texts: int


class MinHashDedupStage(GlobalStage):
    """Drop near-duplicates found by MinHash LSH (see the module docstring)."""

    name: ClassVar[str] = "dedup_minhash"
    Params: ClassVar[type[StageParams]] = MinHashParams
    params: MinHashParams

    def fingerprint(self, batch: pa.Table) -> MinHashFingerprint:
        p = self.params
        text = record_text(batch, p.fields)
        sig, short = minhash_signatures(text, p.ngram, p.num_perm, p.seed, p.normalize)
        return MinHashFingerprint(RecordKeys.from_batch(batch), sig, int(short.sum()))

    def resolve(self, fingerprints: Sequence[Any]) -> DuplicateResolution | TextVerification:
        fps: list[MinHashFingerprint] = list(fingerprints)
        p = self.params
        keys = RecordKeys.concat([fp.keys for fp in fps])
        if fps:
            sig = np.concatenate([fp.signatures for fp in fps])
        else:
            sig = np.empty((0, p.num_perm), np.uint32)
        bands, rows = p.bands_rows
        short = {"short_texts": sum(fp.short_texts for fp in fps)}
        if p.verify != "jaccard":  # candidates only; verified on the texts after a second pass (gather)
            left, right = lsh_candidates(sig, bands, rows, keys.seq)
            involved = sorted_unique(np.concatenate([left, right]))
            involved = involved[np.argsort(keys.seq[involved], kind="stable")]  # in _seq order, as on Ray
            sub = RecordKeys(keys.seq[involved], keys.ids.take(int64_array(involved)), keys.quality[involved])
            row = np.empty(len(keys), np.int64)
            row[involved] = np.arange(len(involved))
            left, right = row[left], row[right]
            return self._verify_candidates(sub, sig[involved], left, right, {"candidate_pairs": len(left), **short})
        labels, verified, linked = lsh_clusters(sig, bands, rows, keys.seq, p.threshold)
        stats = {"candidates_verified": verified, "candidates_linked": linked, **short}
        return DuplicateResolution.from_labels(keys, labels, lambda a, b: pair_similarity(sig, a, b), stats)

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


def lsh_clusters(
    sig: np.ndarray, bands: int, rows: int, seq: np.ndarray, threshold: float
) -> tuple[np.ndarray, int, int]:
    """Cluster labels from the signatures: (labels, candidates verified, candidates linked).

    Band by band (:func:`_band_orders`: each row's key packs the band hash's high 32 bits over the row's rank
    in ``_seq`` order; one sort groups the buckets with members in ``_seq`` order). Each member is a candidate
    with the bucket's first (earliest) member and with its predecessor — linear in the bucket size — verified
    on the signatures and linked in a union-find (:func:`stages.dedup.union_find.link_buckets`). Candidates
    depend only on ``_seq``, not on the order of the rows, so neither do the clusters. (32-bit bucket ids add
    a few false candidates, all rejected by the verification.)
    """
    parent = np.arange(len(seq))
    verified = linked = 0
    for keys, by_seq in _band_keys(sig, bands, rows, seq):
        v, k = link_buckets(keys, by_seq, sig, parent, threshold)
        verified += v
        linked += k
    return flatten(parent), verified, linked


def lsh_candidates(sig: np.ndarray, bands: int, rows: int, seq: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct candidate pairs of :func:`lsh_clusters`' rule (each bucket member with the bucket's first
    member and with its predecessor, members in ``_seq`` order), unverified: row pairs (earlier, later)."""
    n = len(seq)
    found: list[np.ndarray] = []
    for order, same in _band_orders(sig, bands, rows, seq):
        members = np.flatnonzero(same)
        head = np.maximum.accumulate(np.where(same, 0, np.arange(n)))
        for other in (order[head[members]], order[members - 1]):
            a, b = np.minimum(other, order[members]), np.maximum(other, order[members])
            found.append(a.astype(np.int64) * n + b)
    pairs = sorted_unique(np.concatenate(found)) if found else np.empty(0, np.int64)
    return pairs // max(n, 1), pairs % max(n, 1)


def _band_orders(sig: np.ndarray, bands: int, rows: int, seq: np.ndarray) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """For each band: (rows grouped bucket by bucket with members in ``_seq`` order, whether each row shares the
    bucket of the one before)."""
    same = np.zeros(len(seq), bool)
    for keys, by_seq in _band_keys(sig, bands, rows, seq):
        bucket = keys >> np.uint64(32)
        np.equal(bucket[1:], bucket[:-1], out=same[1:])
        yield by_seq[(keys & np.uint64(0xFFFFFFFF)).astype(np.int64)], same


def _band_keys(sig: np.ndarray, bands: int, rows: int, seq: np.ndarray) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """For each band: its sorted keys — the band hash's high 32 bits (the bucket) over the row's rank in ``_seq``
    order, so one sort groups the buckets with members in ``_seq`` order — and the rows by rank. Band hashes
    are computed :data:`BAND_CHUNK` bands per pass over the signatures (fewer cache misses than one)."""
    n = len(seq)
    if n >= 2**32:
        raise ValueError("dedup_minhash handles at most 2**32 - 1 records in one run")
    by_seq = np.argsort(seq, kind="stable")
    rank = np.empty(n, np.uint64)
    rank[by_seq] = np.arange(n, dtype=np.uint64)
    high = ~np.uint64(0xFFFFFFFF)
    for first in range(0, bands, BAND_CHUNK):
        hashes = band_hashes(sig, min(BAND_CHUNK, bands - first), rows, first)
        for j in range(hashes.shape[1]):
            keys = hashes[:, j] & high
            keys |= rank
            keys.sort()
            yield keys, by_seq
