"""Consecutive per-record stages as one pass over each batch (a *segment*), each stage's books kept apart.

The runner groups the recipe's consecutive :class:`~stages.base.RecordStage` s (normalize → safety → language →
quality in the default recipe) into one segment: every batch of the segment's input goes through all of them in
turn, each stage getting the records the one before it kept, and only the segment's last stage writes a
checkpoint of kept records. Every stage still gets its own ledger (its rejected records with stage, reason and
detail), counters, reasons, report material and time: :func:`run_segment` returns them per stage for one batch,
and the runner adds them up in input order. What a stage sees is exactly what it would read back from the
checkpoint of the stage before it (the same columns, in the same order, with the same types), so the outcome does
not depend on whether stages are fused.

:func:`run_segment` is a plain function of picklable arguments and results, so that the local engine can run it
in this process or on its worker processes.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import pyarrow as pa

from pipeline.collect import ReportCollector
from pipeline.errors import StageError
from pipeline.parts import ledger_schema, split_result
from stages.base import RecordStage


@dataclass
class StageBooks:
    """One stage's books for one batch of a segment."""

    rows_in: int = 0
    kept: int = 0
    dropped: pa.Table | None = None  # the ledger rows of the records it dropped (None when it dropped none)
    reasons: Counter[str] = field(default_factory=Counter)
    counters: Counter[str] = field(default_factory=Counter)
    collector: ReportCollector = field(default_factory=lambda: ReportCollector(full_kept=False))
    seconds: float = 0.0


def conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """``table`` as a checkpoint with ``schema`` would give it back: those columns, in that order and type."""
    return table.select(schema.names).cast(schema)


def run_segment(
    stages: Sequence[RecordStage], schemas: Sequence[pa.Schema], batch: pa.Table
) -> tuple[pa.Table, list[StageBooks]]:
    """Run ``stages`` in turn over one batch; ``schemas[i]`` is the record schema after stage ``i``. Returns the
    records the last stage kept and every stage's books. A stage that gets no records is not called (as a stage
    reading an empty checkpoint gets no batch)."""
    books: list[StageBooks] = []
    for stage, schema in zip(stages, schemas, strict=True):
        t0 = time.perf_counter()
        b = StageBooks(rows_in=batch.num_rows)
        if batch.num_rows:
            result = stage.process(batch)
            missing = [n for n in schema.names if n not in result.table.column_names]
            if missing:
                raise StageError(stage.name, f"returned a batch without the column(s) {missing}")
            b.counters.update(result.counters)
            kept, dropped, codes = split_result(stage.name, result)
            batch = conform(kept, schema)
            b.kept = batch.num_rows
            b.collector.add_kept(batch)
            if dropped is not None:
                b.dropped = conform(dropped, ledger_schema(schema))
                b.reasons.update(codes)
                b.collector.add_dropped(b.dropped)
        b.seconds = time.perf_counter() - t0
        books.append(b)
    return batch, books


__all__ = ["StageBooks", "conform", "run_segment"]
