"""The books of dropped records whose detail is a plain duplicate's, kept by Arrow instead of one ``json.loads``
a drop (a dedup step drops most of its input; parsing each detail cost about 0.25 s per 70k drops).

:class:`pipeline.report.collect.ReportCollector` parses every other detail one by one, and these only for the
few rows it shows (examples, the drops nearest the threshold).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

NEAR_THRESHOLD = 6
"""The drops of lowest similarity kept per reason (the pairs that raising the threshold would keep)."""

DUPLICATE_DETAIL = (
    r'^\{"cluster_size": (?P<size>[0-9]+), "duplicate_of": "(?:[^"\\]|\\.)*", '
    r'"similarity": (?P<similarity>-?[0-9]+(?:\.[0-9]+(?:e[-+][0-9]+)?|e[-+][0-9]+))\}$'
)
"""A duplicate's whole detail as :func:`stages.base.detail_json` writes it (sorted keys, an int cluster size, a
float similarity) and nothing else."""


def int64_indices(rows: np.ndarray) -> pa.Array:
    """Row indices for ``take`` (from the buffer: ``pa.array`` on numpy imports pandas)."""
    rows = np.ascontiguousarray(rows, dtype=np.int64)
    return pa.Array.from_buffers(pa.int64(), len(rows), [None, pa.py_buffer(rows)])


def duplicate_details(
    detail: Any,
    rows: np.ndarray,
    reasons: list[Any],
    buckets: dict[str, list[dict[str, Any]]],
    near: dict[str, list[tuple[Any, int]]],
) -> Counter[int]:
    """For the ``rows`` whose detail matches :data:`DUPLICATE_DETAIL`: the drops per cluster size (what
    ``ReportCollector._count_detail`` counts), and, added to ``near``, the ``(similarity, row)`` of those that
    ``ReportCollector._is_near`` takes against the reason's current ``buckets``; each reason's candidates are
    left in input order."""
    fields = pc.extract_regex(detail.take(int64_indices(rows)), DUPLICATE_DETAIL)
    if isinstance(fields, pa.ChunkedArray):
        fields = fields.combine_chunks()
    sizes = fields.field("size").cast(pa.int64()).to_numpy(zero_copy_only=False)
    sims = fields.field("similarity").cast(pa.float64()).to_numpy(zero_copy_only=False)
    values, counts = np.unique(sizes[sizes >= 2], return_counts=True)
    of_reason: dict[Any, list[int]] = {}
    for k, i in enumerate(rows.tolist()):
        of_reason.setdefault(reasons[i], []).append(k)
    for reason, ks in of_reason.items():
        at = np.asarray(ks)
        bucket = buckets.get(reason, [])
        if len(bucket) >= NEAR_THRESHOLD:
            at = at[sims[at] < bucket[-1]["detail"]["similarity"]]
        near.setdefault(reason, []).extend(zip(sims[at].tolist(), rows[at].tolist()))
    for cands in near.values():
        cands.sort(key=lambda c: c[1])  # input order, as the drops came
    return Counter(dict(zip(values.tolist(), counts.tolist())))
