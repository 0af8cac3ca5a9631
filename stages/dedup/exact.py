"""``dedup_exact``: drop records whose normalized content equals that of a record kept earlier.

The content is the chosen fields (default instruction, input, output and history) joined with a separator,
normalized (each character NFKC-folded and lower-cased, whitespace runs read as one space and trimmed; see
:func:`stages.dedup.minhash_kernel.fold_table`) and hashed to 128 bits inside a compiled kernel — fingerprints
are two uint64 per record plus its keys, never the text. Records with equal hashes form a cluster (found
by grouping on the hash's first half, :mod:`stages.dedup.grouping`, the second half verifying each pair); the
kept one has the highest ``quality_score``, then the smallest ``_seq``; every other one is dropped with
reason ``duplicate_exact`` and a detail naming the kept twin (``duplicate_of``), ``similarity`` 1.0 and
``cluster_size``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa

from stages.base import GlobalStage, StageParams, StageResult
from stages.dedup.common import (
    DuplicateResolution,
    HashFieldsParams,
    RecordKeys,
    cluster_pairs,
    record_text,
)
from stages.dedup.grouping import concat_key_rows, group_pairs, key_rows, pair_rows
from stages.dedup.minhash_kernel import content_hashes

REASON_EXACT = "duplicate_exact"


class ExactDedupParams(HashFieldsParams):
    """Parameters of ``dedup_exact``.

    ``fields``: which fields make up the content (in this order); ``normalize``: compare after NFKC, lower
    case and whitespace collapsing (false: compare the raw text byte for byte).
    """


@dataclass(frozen=True)
class ExactFingerprint:
    """One batch's fingerprint: record keys, a (n, 2) uint64 array of 128-bit content hashes and the key rows
    (the hashes' first half × ``_seq``) that the engine groups."""

    keys: RecordKeys
    hashes: np.ndarray
    key_rows: pa.Table


class ExactDedupStage(GlobalStage):
    """Drop exact duplicates of the normalized content (see the module docstring)."""

    name: ClassVar[str] = "dedup_exact"
    Params: ClassVar[type[StageParams]] = ExactDedupParams
    params: ExactDedupParams

    def fingerprint(self, batch: pa.Table) -> ExactFingerprint:
        text = record_text(batch, self.params.fields)
        hashes = content_hashes(text, normalize=self.params.normalize)
        keys = RecordKeys.from_batch(batch)
        return ExactFingerprint(keys, hashes, key_rows(hashes[:, 0], keys.seq))

    def group_keys(self, fingerprints: Sequence[Any]) -> pa.Table:
        return concat_key_rows([fp.key_rows for fp in fingerprints])

    def resolve(self, fingerprints: Sequence[Any], pairs: pa.Table | None = None) -> DuplicateResolution:
        """Candidates: records whose hashes share the first half (the engine's grouping, or here without one);
        a pair is a duplicate when the second half is equal too."""
        fps: list[ExactFingerprint] = list(fingerprints)
        keys = RecordKeys.concat([fp.keys for fp in fps])
        hashes = np.concatenate([fp.hashes for fp in fps]) if fps else np.empty((0, 2), np.uint64)
        a, b = pair_rows(keys.seq, group_pairs(self.group_keys(fps)) if pairs is None else pairs)
        same = hashes[a, 1] == hashes[b, 1]
        labels = cluster_pairs(len(keys), a[same], b[same])
        return DuplicateResolution.from_labels(keys, labels, lambda rows, kept: np.ones(len(rows)))

    def decide(self, batch: pa.Table, resolution: Any) -> StageResult:
        return resolution.decide(batch, REASON_EXACT)

    def resolution_counters(self, resolution: Any) -> dict[str, int]:
        return resolution.counters()
