"""A per-record filter: answer keep, or drop with a reason and a detail, and the base class does the rest.

    class MinCharsParams(StageParams):
        min_chars: int = Field(default=2, ge=1)

    class MinCharsFilter(RecordFilter):
        name = "min_chars"
        Params = MinCharsParams
        reads = ("output",)

        def judge(self, record: Record) -> Drop | None:
            n = len(record["output"].strip())
            if n >= self.params.min_chars:
                return None
            return Drop("output_too_short", {"chars": n, "threshold": self.params.min_chars})

:meth:`RecordFilter.judge` sees one record: a dict of the columns named in :attr:`RecordFilter.reads`, text
nulls as ``""`` and a null history as ``[]``. A filter that can decide a whole batch at once with Arrow or numpy
overrides :meth:`RecordFilter.judge_batch` instead (one ``Drop | None`` per row). Either may add to the stage's
counters with :meth:`RecordFilter.count` (``self.count("code_answers")``). The base class builds the
:class:`~stages.base.StageResult`: the batch unchanged, the reasons, the details as
:func:`~stages.base.detail_json` text and the counters of this batch. A filter adds no columns; a stage that
also annotates records (a score, a tag) is a :class:`~stages.base.RecordStage`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import pyarrow as pa
import pyarrow.compute as pc

from schemas.record import TEXT_FIELDS
from stages.base import RecordStage, StageParams, StageResult, detail_json

Record = dict[str, Any]
"""One record as :meth:`RecordFilter.judge` sees it: column name -> value."""


@dataclass(frozen=True)
class Drop:
    """Drop this record: a stable snake_case ``reason`` code and what shows why (``detail``, written to the
    ledger as JSON text: the matched term, the measured value and its threshold, the field)."""

    reason: str
    detail: Mapping[str, Any] = field(default_factory=dict)


class RecordFilter(RecordStage):
    """A :class:`RecordStage` that only keeps or drops: override :meth:`judge` (or :meth:`judge_batch`)."""

    # The columns :meth:`judge` reads (the canonical text fields and the history unless narrowed).
    reads: ClassVar[tuple[str, ...]] = (*TEXT_FIELDS, "history")

    def __init__(self, params: StageParams | None = None) -> None:
        super().__init__(params)
        self._counts: dict[str, int] = {}

    def judge(self, record: Record) -> Drop | None:
        """Why to drop one record, or None to keep it."""
        raise NotImplementedError(f"stage {self.name!r}: a RecordFilter overrides judge() or judge_batch()")

    def judge_batch(self, batch: pa.Table) -> list[Drop | None]:
        """The decision on every row of ``batch``, in order (by default :meth:`judge` on each record)."""
        columns = [_values(batch, name) for name in self.reads]
        names = self.reads
        return [self.judge(dict(zip(names, row, strict=True))) for row in zip(*columns, strict=True)]

    def count(self, counter: str, value: int = 1) -> None:
        """Add ``value`` to this batch's counter ``counter`` (summed over batches into report.json)."""
        self._counts[counter] = self._counts.get(counter, 0) + value

    def process(self, batch: pa.Table) -> StageResult:
        self.setup()
        self._counts = {}
        drops = self.judge_batch(batch)
        reasons = [None if d is None else d.reason for d in drops]
        details = [None if d is None else detail_json(**d.detail) for d in drops]
        counters, self._counts = self._counts, {}
        return StageResult(batch, reasons, details, counters)


def _values(batch: pa.Table, name: str) -> list[Any]:
    """A column as Python values: text nulls as "", a null history as []."""
    column = batch.column(name)
    if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
        return pc.fill_null(column, "").to_pylist()
    values = column.to_pylist()
    return [[] if v is None else v for v in values] if name == "history" else values
