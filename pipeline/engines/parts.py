"""Steps written as Parquet *parts* by the workers that compute them (the Ray engine's checkpoints).

With the local engine a step's checkpoint is one file per kind (``NN_stage.parquet``, ``NN_stage.rejected.parquet``).
On a cluster every worker writes the records it computed itself, so a step's checkpoint is a folder::

    NN_stage/kept/part-<first _seq, 20 digits>.parquet        records the step kept
    NN_stage/rejected/part-<first _seq>.parquet               records it dropped (+ stage, reason, detail)
    00_read/quarantine/part-<first _seq>.jsonl                 (read only) units that could not be parsed

A part is named after the first ``_seq`` of the input it was made from, so the parts sorted by name are in input
order, and a task that Ray retries (its worker died) rewrites the same names (atomically: temporary name, then
rename). The worker also sends back a :class:`PartReport` — counts, reasons, counters and a
:class:`~pipeline.report.collect.ReportCollector` — so the driver keeps the books without seeing a record.

The functions here run on the workers; they only need the stage and a shared file system (the output folder
must be one that every node of the cluster sees, e.g. NFS).
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipeline.checkpoint import ParquetSink, write_text_atomic
from pipeline.read.reader import SEQ_FILE_SHIFT, WORK_SCHEMA, Reader
from pipeline.read.sources import FileInfo
from pipeline.report.collect import ReportCollector
from schemas.errors import StageError
from schemas.record import LEDGER_FIELDS
from stages.base import SEQ_COLUMN, Stage, StageResult

PART_ROWS = 65_536
"""Records per part (the unit of work of a Ray task, and of a checkpoint file)."""
KEPT, REJECTED, QUARANTINE = "kept", "rejected", "quarantine"


def ledger_schema(record_schema: pa.Schema) -> pa.Schema:
    """The schema of dropped records: the record columns + stage, reason, detail."""
    return pa.schema(list(record_schema) + [pa.field(n, t) for n, t in LEDGER_FIELDS])


def part_name(first_seq: int, suffix: str = ".parquet") -> str:
    return f"part-{first_seq:020d}{suffix}"


def part_files(folder: Path, suffix: str = ".parquet") -> list[Path]:
    """The finished parts of one kind, in input order (temporary files of unfinished writes are not parts)."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.name.startswith("part-") and p.name.endswith(suffix))


def parquet_files(path: Path) -> list[Path]:
    """A checkpoint's Parquet files in input order: the file itself, or the parts of a folder of parts (which does
    not exist when the step wrote none of that kind)."""
    return [path] if path.suffix == ".parquet" else part_files(path)


def count_rows(path: Path) -> int:
    """Records in a checkpoint (file or folder of parts), from the Parquet footers."""
    return sum(pq.ParquetFile(f).metadata.num_rows for f in parquet_files(path))


def iter_batches(path: Path, batch_size: int) -> Iterator[pa.Table]:
    """A checkpoint's records in input order, ``batch_size`` at a time (per file)."""
    for f in parquet_files(path):
        pf = pq.ParquetFile(f, pre_buffer=False)  # pre-buffered chunks would stay in memory until close
        for batch in pf.iter_batches(batch_size=batch_size):
            yield pa.Table.from_batches([batch])


UNIT_PATH, UNIT_GROUPS = "__zh_unit_path", "__zh_unit_groups"


def plan_units(files: list[Path], rows_per_unit: int) -> list[dict[str, Any]]:
    """Work units over checkpoint files: runs of consecutive row groups of one file holding about
    ``rows_per_unit`` records (at least one row group), in input order. A unit is what one task reads."""
    units: list[dict[str, Any]] = []
    for f in files:
        meta = pq.ParquetFile(f).metadata
        groups: list[int] = []
        rows = 0
        for g in range(meta.num_row_groups):
            groups.append(g)
            rows += meta.row_group(g).num_rows
            if rows >= rows_per_unit:
                units.append({UNIT_PATH: str(f.resolve()), UNIT_GROUPS: groups})
                groups, rows = [], 0
        if rows:
            units.append({UNIT_PATH: str(f.resolve()), UNIT_GROUPS: groups})
    return units


def records_of(block: pa.Table) -> pa.Table:
    """The records a worker is to work on: ``block`` itself, or, for a block of work units (see
    :func:`plan_units`), the row groups they name, read here from the shared file system."""
    if UNIT_PATH not in block.column_names:
        return block
    paths, groups = block.column(UNIT_PATH).to_pylist(), block.column(UNIT_GROUPS).to_pylist()
    tables = [pq.ParquetFile(p, pre_buffer=False).read_row_groups(g) for p, g in zip(paths, groups, strict=True)]
    return pa.concat_tables(tables)


@dataclass
class PartReport:
    """What a worker tells the driver about one part it wrote."""

    key: int  # the first _seq of the part's input
    rows_in: int = 0
    kept: int = 0
    dropped: int = 0
    quarantined: int = 0
    reasons: Counter[str] = field(default_factory=Counter)
    counters: Counter[str] = field(default_factory=Counter)
    collector: ReportCollector = field(default_factory=ReportCollector)
    infos: list[FileInfo] = field(default_factory=list)  # read only: the files it read
    seconds: float = 0.0


def split_result(stage_name: str, result: StageResult) -> tuple[pa.Table, pa.Table | None, list[str]]:
    """A stage's decisions on one batch as (kept records, dropped records with stage/reason/detail or None,
    reason codes of the dropped ones) — the one place that turns decisions into ledger rows."""
    table = result.table
    drop = [r is not None for r in result.reasons]
    if not any(drop):
        return table, None, []
    mask = pa.array(drop, type=pa.bool_())
    codes = [r for r in result.reasons if r is not None]
    details = [d for d, r in zip(result.details, result.reasons, strict=True) if r is not None]
    dropped = table.filter(mask)
    dropped = dropped.append_column("stage", pa.array([stage_name] * len(codes), pa.string()))
    dropped = dropped.append_column("reason", pa.array(codes, pa.string()))
    dropped = dropped.append_column("detail", pa.array(details, pa.string()))
    return table.filter(pc.invert(mask)), dropped, codes


class _PartWriter:
    """Kept and dropped records of one part, each written only if it has rows."""

    def __init__(self, step_dir: Path, key: int, schema: pa.Schema, full_kept: bool) -> None:
        self.step_dir, self.key, self.schema = step_dir, key, schema
        self.sinks: dict[str, ParquetSink] = {}
        self.report = PartReport(key, collector=ReportCollector(full_kept=full_kept))

    def _sink(self, kind: str, schema: pa.Schema) -> ParquetSink:
        if kind not in self.sinks:
            folder = self.step_dir / kind
            folder.mkdir(parents=True, exist_ok=True)
            self.sinks[kind] = ParquetSink(folder / part_name(self.key), schema)
        return self.sinks[kind]

    def kept(self, table: pa.Table) -> None:
        if table.num_rows:
            self._sink(KEPT, self.schema).write(table)
            self.report.kept += table.num_rows
            self.report.collector.add_kept(table)

    def dropped(self, table: pa.Table, codes: Iterable[str]) -> None:
        if table.num_rows:
            self._sink(REJECTED, ledger_schema(self.schema)).write(table)
            self.report.dropped += table.num_rows
            self.report.reasons.update(codes)
            self.report.collector.add_dropped(table)

    def close(self) -> PartReport:
        for sink in self.sinks.values():
            sink.close()
        return self.report

    def abort(self) -> None:
        for sink in self.sinks.values():
            sink.abort()


def book_part(
    stage: Stage, method: str, table: pa.Table, context: Any, step_dir: Path, schema: pa.Schema, batch_size: int
) -> PartReport:
    """Run ``stage`` (``process``, or ``decide`` with the resolution ``context``) over one part of a step's input
    in batches of ``batch_size`` — as the local runner batches — and write its kept and dropped records."""
    from pipeline.engines.local import call

    t0 = time.perf_counter()
    if not table.num_rows:  # Ray Data may hand an actor an empty block: nothing to write
        return PartReport(-1)
    seq = table.column(SEQ_COLUMN)
    if table.num_rows > 1 and not pc.all(pc.greater(seq[1:], seq[:-1])).as_py():
        table = table.sort_by(SEQ_COLUMN)  # parts hold records in input order
    writer = _PartWriter(step_dir, int(pc.min(table.column(SEQ_COLUMN)).as_py()), schema, full_kept=False)
    try:
        for start in range(0, table.num_rows, batch_size):
            batch = table.slice(start, batch_size)
            result = call(stage, method, batch, context)  # type: ignore[arg-type]
            missing = [n for n in schema.names if n not in result.table.column_names]
            if missing:
                raise StageError(stage.name, f"returned a batch without the column(s) {missing}")
            kept, dropped, codes = split_result(stage.name, result)
            writer.kept(kept)
            if dropped is not None:
                writer.dropped(dropped, codes)
            writer.report.counters.update(result.counters)
    except BaseException:
        writer.abort()
        raise
    report = writer.close()
    report.rows_in = table.num_rows
    report.seconds = time.perf_counter() - t0
    return report


def read_part(
    path: Path,
    index: int,
    prefix: str,
    fmt: str,
    fields: dict[str, str],
    batch_size: int,
    step_dir: Path,
    part_rows: int = PART_ROWS,
    base_dir: Path | None = None,
) -> list[PartReport]:
    """Read input file number ``index`` into parts of about ``part_rows`` units (whole read batches): kept records,
    read-time rejections and quarantine entries, exactly as the local reader would (same ``_seq``, ids and
    outcomes). A relative ``path`` is opened below ``base_dir`` (the driver's working folder)."""
    reader = Reader([path], fmt, fields, batch_size, prefixes=[prefix], first_index=index, base_dir=base_dir)
    info = reader.infos[0]
    reports: list[PartReport] = []
    writer: _PartWriter | None = None
    quarantine: list[str] = []
    units_at_start = 0
    t0 = time.perf_counter()

    def flush() -> None:
        nonlocal writer, quarantine, units_at_start, t0
        if writer is None:
            return
        report = writer.close()
        if quarantine:
            folder = step_dir / QUARANTINE
            folder.mkdir(parents=True, exist_ok=True)
            write_text_atomic(folder / part_name(writer.key, ".jsonl"), "".join(quarantine))
        report.quarantined = len(quarantine)
        report.rows_in = info.units - units_at_start
        report.seconds = time.perf_counter() - t0
        reports.append(report)
        writer, quarantine, units_at_start, t0 = None, [], info.units, time.perf_counter()

    try:
        for chunk in reader:
            if writer is None:
                writer = _PartWriter(step_dir, (index << SEQ_FILE_SHIFT) + units_at_start, WORK_SCHEMA, True)
            writer.kept(chunk.records)
            if chunk.rejected:
                for r in chunk.rejected:
                    r["stage"] = "read"
                table = pa.Table.from_pylist(chunk.rejected, schema=ledger_schema(WORK_SCHEMA))
                writer.dropped(table, (r["reason"] for r in chunk.rejected))
            quarantine.extend(json.dumps(q, ensure_ascii=False) + "\n" for q in chunk.quarantine)
            if info.units - units_at_start >= part_rows:
                flush()
        if writer is None and info.units == 0:  # an empty file: no part, but its FileInfo (and warnings)
            reports.append(PartReport(index << SEQ_FILE_SHIFT))
        flush()
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    reports[0].infos = [info]
    return reports


def merge_reports(reports: Iterable[PartReport]) -> PartReport:
    """One step's books from its parts' reports (merged in input order, whatever order they arrived in)."""
    ordered = sorted(reports, key=lambda r: r.key)
    total = PartReport(ordered[0].key if ordered else 0)
    for r in ordered:
        total.rows_in += r.rows_in
        total.kept += r.kept
        total.dropped += r.dropped
        total.quarantined += r.quarantined
        total.reasons.update(r.reasons)
        total.counters.update(r.counters)
        total.collector.merge(r.collector)
        total.infos.extend(r.infos)
        total.seconds += r.seconds
    return total


def remove_orphans(step_dir: Path, keys: set[int]) -> None:
    """Delete parts no reported task wrote (left by an attempt that died and was retried differently)."""
    for kind, suffix in ((KEPT, ".parquet"), (REJECTED, ".parquet"), (QUARANTINE, ".jsonl")):
        for f in part_files(step_dir / kind, suffix):
            if int(f.name[len("part-") : -len(suffix)]) not in keys:
                f.unlink(missing_ok=True)
        folder = step_dir / kind
        if folder.is_dir():
            for f in folder.iterdir():
                if ".tmp-" in f.name:
                    f.unlink(missing_ok=True)


__all__ = [
    "PART_ROWS",
    "PartReport",
    "book_part",
    "count_rows",
    "iter_batches",
    "ledger_schema",
    "merge_reports",
    "parquet_files",
    "part_files",
    "plan_units",
    "read_part",
    "records_of",
    "remove_orphans",
    "split_result",
]
