"""Consecutive per-record stages as one pass over each batch (a *segment*), each stage's books kept apart.

The runner groups the recipe's consecutive :class:`~stages.base.RecordStage` s (normalize → safety → language →
quality in the default recipe) into one segment, headed by the ``read`` step when they come first
(:class:`ReadPass`): every batch goes through all of them in turn, each stage getting the records the one before
it kept, and only the segment's last stage writes a checkpoint of kept records. Every stage still gets its own
ledger (its rejected records with stage, reason and detail), counters, reasons, report material and time:
:func:`run_segment` returns them per stage for one batch, and the runner adds them up in input order. What a
stage sees is exactly what it would read back from the checkpoint of the stage before it (the same columns, in
the same order, with the same types), so the outcome does not depend on whether stages are fused.

:func:`run_segment` is a plain function of picklable arguments and results, so that the local engine can run it
in this process or on its worker processes.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from pipeline.checkpoint import ParquetSink, tmp_name
from pipeline.engines.parts import PartReport, ledger_schema, split_result
from pipeline.read.reader import WORK_SCHEMA, Reader
from pipeline.report.collect import ReportCollector
from schemas.errors import StageError, ZhcurateError
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
            try:
                result = stage.process(batch)
            except ZhcurateError:
                raise
            except Exception as e:  # named here: the pass may run on a worker process
                raise StageError(stage.name, f"{type(e).__name__}: {e}") from e
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


class ReadPass:
    """The local ``read`` step as the head of a pass: reads the inputs, writes the read-time rejections and the
    quarantine, gathers the step's report material, and hands on the records it keeps, batch by batch
    (:meth:`records`) — to its checkpoint, or straight into the fused record stages after it."""

    def __init__(self, reader: Reader, work: Path) -> None:
        self.reader = reader
        self.rej = ParquetSink(work / "00_read.rejected.parquet", ledger_schema(WORK_SCHEMA))
        self.qpath = work / "quarantine.jsonl"
        self.qtmp = tmp_name(self.qpath)
        self.qfile = open(self.qtmp, "w", encoding="utf-8")  # closed by close() / abort()
        self.total = PartReport(0, collector=ReportCollector())
        self.seconds = 0.0  # time spent reading and booking (not waiting for the consumer)

    def records(self, on_units: Callable[[int], Any] | None = None) -> Iterator[pa.Table]:
        total, it = self.total, iter(self.reader)
        while True:
            t0 = time.perf_counter()
            chunk = next(it, None)
            if chunk is None:
                self.seconds += time.perf_counter() - t0
                return
            total.kept += chunk.records.num_rows
            total.collector.add_kept(chunk.records)
            if chunk.rejected:
                for r in chunk.rejected:
                    r["stage"] = "read"
                    total.reasons[r["reason"]] += 1
                rejected = pa.Table.from_pylist(chunk.rejected, schema=self.rej.schema)
                self.rej.write(rejected)
                total.dropped += rejected.num_rows
                total.collector.add_dropped(rejected)
            for q in chunk.quarantine:
                self.qfile.write(json.dumps(q, ensure_ascii=False) + "\n")
            total.quarantined += len(chunk.quarantine)
            if on_units is not None:
                on_units(chunk.records.num_rows + len(chunk.rejected) + len(chunk.quarantine))
            self.seconds += time.perf_counter() - t0
            if chunk.records.num_rows:
                yield chunk.records

    def close(self) -> PartReport:
        self.rej.close()
        self.qfile.close()
        self.qtmp.replace(self.qpath)
        self.total.rows_in = sum(info.units for info in self.reader.infos)
        self.total.infos = self.reader.infos
        return self.total

    def abort(self) -> None:
        self.rej.abort()
        self.qfile.close()
        self.qtmp.unlink(missing_ok=True)


__all__ = ["ReadPass", "StageBooks", "conform", "run_segment"]
