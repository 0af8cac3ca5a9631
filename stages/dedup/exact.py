"""``dedup_exact``: drop records whose normalized content equals that of a record kept earlier.

The content is the chosen fields (default instruction, input, output and history) joined with a separator,
normalized (each character NFKC-folded and lower-cased, whitespace runs read as one space and trimmed; see
:func:`stages.dedup.minhash_kernel.fold_table`) and hashed to 128 bits inside a compiled kernel — fingerprints
are two uint64 per record plus its keys, never the text. Records with equal hashes form a cluster; the
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
    record_text,
)
from stages.dedup.minhash_kernel import content_hashes

REASON_EXACT = "duplicate_exact"


class ExactDedupParams(HashFieldsParams):
    """Parameters of ``dedup_exact``.

    ``fields``: which fields make up the content (in this order); ``normalize``: compare after NFKC, lower
    case and whitespace collapsing (false: compare the raw text byte for byte).
    """


@dataclass(frozen=True)
class ExactFingerprint:
    """One batch's fingerprint: record keys and a (n, 2) uint64 array of 128-bit content hashes."""

    keys: RecordKeys
    hashes: np.ndarray


class ExactDedupStage(GlobalStage):
    """Drop exact duplicates of the normalized content (see the module docstring)."""

    name: ClassVar[str] = "dedup_exact"
    Params: ClassVar[type[StageParams]] = ExactDedupParams
    params: ExactDedupParams

    def fingerprint(self, batch: pa.Table) -> ExactFingerprint:
        text = record_text(batch, self.params.fields)
        hashes = content_hashes(text, normalize=self.params.normalize)
        return ExactFingerprint(RecordKeys.from_batch(batch), hashes)

    def resolve(self, fingerprints: Sequence[Any]) -> DuplicateResolution:
        fps: list[ExactFingerprint] = list(fingerprints)
        keys = RecordKeys.concat([fp.keys for fp in fps])
        hashes = np.concatenate([fp.hashes for fp in fps]) if fps else np.empty((0, 2), np.uint64)
        labels = _equal_row_labels(hashes)
        return DuplicateResolution.from_labels(keys, labels, lambda rows, kept: np.ones(len(rows)))

    def decide(self, batch: pa.Table, resolution: Any) -> StageResult:
        return resolution.decide(batch, REASON_EXACT)

    def resolution_counters(self, resolution: Any) -> dict[str, int]:
        return resolution.counters()


def _equal_row_labels(hashes: np.ndarray) -> np.ndarray:
    """Labels that are equal exactly for equal rows of a (n, 2) uint64 array (sort, then group)."""
    n = len(hashes)
    if n == 0:
        return np.empty(0, np.int64)
    order = np.lexsort((hashes[:, 1], hashes[:, 0]))
    sorted_h = hashes[order]
    new_group = np.empty(n, bool)
    new_group[0] = True
    new_group[1:] = np.any(sorted_h[1:] != sorted_h[:-1], axis=1)
    labels = np.empty(n, np.int64)
    labels[order] = np.cumsum(new_group) - 1
    return labels
