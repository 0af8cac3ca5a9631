"""``dedup_minhash``: drop near-duplicates by MinHash over character n-grams with LSH banding.

Pipeline, columnar from end to end:

1. ``fingerprint`` (per batch, parallel-safe): the chosen fields joined with a separator go to a compiled
   kernel (:mod:`stages.minhash_kernel`) that folds each character (NFKC, lower case), skips whitespace and
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

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa
from pydantic import Field

from stages.base import GlobalStage, StageParams, StageResult
from stages.dedup_common import (
    DuplicateResolution,
    HashFieldsParams,
    RecordKeys,
    record_text,
)
from stages.minhash_kernel import band_hashes, flatten, link_buckets, minhash_signatures, pair_similarity

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

    @property
    def bands_rows(self) -> tuple[int, int]:
        """(bands, rows) of the LSH index for this threshold and num_perm."""
        return optimal_bands(self.threshold, self.num_perm)


@lru_cache(maxsize=64)
def optimal_bands(threshold: float, num_perm: int) -> tuple[int, int]:
    """The (bands, rows) with bands*rows <= num_perm that minimize the false-positive area below
    ``threshold`` plus the false-negative area above it of the S-curve 1-(1-s^r)^b (datasketch's rule),
    integrated numerically for all (b, r) at once."""
    s = np.linspace(0.0, 1.0, 2001)
    below, above = s <= threshold, s >= threshold
    best, best_err = (1, 1), np.inf
    for r in range(1, num_perm + 1):
        b = np.arange(1, num_perm // r + 1)[:, None]
        p = 1.0 - (1.0 - s**r) ** b
        fp_area = np.asarray(np.trapezoid(p[:, below], s[below], axis=1))
        err = fp_area + np.asarray(np.trapezoid(1.0 - p[:, above], s[above], axis=1))
        i = int(np.argmin(err))
        if err[i] < best_err - 1e-12 or (abs(err[i] - best_err) <= 1e-12 and (i + 1, r) < best):
            best, best_err = (i + 1, r), float(err[i])
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

    def resolve(self, fingerprints: Sequence[Any]) -> DuplicateResolution:
        fps: list[MinHashFingerprint] = list(fingerprints)
        p = self.params
        keys = RecordKeys.concat([fp.keys for fp in fps])
        if fps:
            sig = np.concatenate([fp.signatures for fp in fps])
        else:
            sig = np.empty((0, p.num_perm), np.uint32)
        bands, rows = p.bands_rows
        labels, verified, linked = lsh_clusters(sig, bands, rows, keys.seq, p.threshold)
        stats = {
            "candidates_verified": verified,
            "candidates_linked": linked,
            "short_texts": sum(fp.short_texts for fp in fps),
        }
        return DuplicateResolution.from_labels(keys, labels, lambda a, b: pair_similarity(sig, a, b), stats)

    def decide(self, batch: pa.Table, resolution: Any) -> StageResult:
        return resolution.decide(batch, REASON_NEAR)

    def resolution_counters(self, resolution: Any) -> dict[str, int]:
        return resolution.counters()

    # Optional banding hooks: an engine that groups band buckets on its own workers (the Ray engine, see
    # pipeline/ray_lsh.py) uses them instead of ``resolve`` and reaches the same resolution.

    def band_buckets(self, signatures: np.ndarray) -> np.ndarray:
        """(n, bands) uint32 bucket ids: the high 32 bits of each band hash, the buckets ``resolve`` uses."""
        bands, rows = self.params.bands_rows
        return (band_hashes(signatures, bands, rows) >> np.uint64(32)).astype(np.uint32)

    def signature_similarity(self, signatures: np.ndarray, left: np.ndarray, right: np.ndarray) -> np.ndarray:
        return pair_similarity(signatures, left, right)

    def accepts(self, similarity: np.ndarray) -> np.ndarray:
        return similarity >= self.params.threshold

    def fingerprint_counters(self, fingerprint: MinHashFingerprint) -> dict[str, int]:
        return {"short_texts": fingerprint.short_texts}

    def resolve_verified(
        self, keys: RecordKeys, signatures: np.ndarray, left: np.ndarray, right: np.ndarray, stats: dict[str, int]
    ) -> DuplicateResolution:
        """``resolve``'s last step, from verified pairs (rows of ``keys``/``signatures``)."""
        return DuplicateResolution.from_pairs(keys, left, right, lambda a, b: pair_similarity(signatures, a, b), stats)


def lsh_clusters(
    sig: np.ndarray, bands: int, rows: int, seq: np.ndarray, threshold: float
) -> tuple[np.ndarray, int, int]:
    """Cluster labels from the signatures: (labels, candidates verified, candidates linked).

    Band by band (one column of band hashes in memory at a time), each row's key packs the band hash's high
    32 bits over the row's rank in ``_seq`` order; one sort groups the buckets with members in ``_seq``
    order. Each member is a candidate with the bucket's first (earliest) member and with its predecessor —
    linear in the bucket size — verified on the signatures and linked in a union-find
    (:func:`stages.minhash_kernel.link_buckets`). Candidates depend only on ``_seq``, not on the order of
    the rows, so neither do the clusters. (32-bit bucket ids add a few false candidates, all rejected by
    the verification.)
    """
    n = len(seq)
    if n >= 2**32:
        raise ValueError("dedup_minhash handles at most 2**32 - 1 records in one run")
    by_seq = np.argsort(seq, kind="stable")
    rank = np.empty(n, np.uint64)
    rank[by_seq] = np.arange(n, dtype=np.uint64)
    low = np.uint64(0xFFFFFFFF)
    parent = np.arange(n)
    verified = linked = 0
    same = np.zeros(n, bool)
    for b in range(bands):
        keys = band_hashes(sig, 1, rows, b)[:, 0]
        keys &= ~low
        keys |= rank
        keys.sort()
        bucket = keys >> np.uint64(32)
        np.equal(bucket[1:], bucket[:-1], out=same[1:])
        order = by_seq[(keys & low).astype(np.int64)]
        v, k = link_buckets(order, same, sig, parent, threshold)
        verified += v
        linked += k
    return flatten(parent), verified, linked
