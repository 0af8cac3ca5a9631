"""Work units and jobs: what every engine runs — in this process, on the local pool's workers or on Ray's.

A step of a run is a :class:`Job` over *work units*:

* :class:`FileUnit` — one input file, read where the unit runs (Ray: every worker reads its own files);
* :class:`ChunkUnit` — records the driver has just read (the local engine reads the inputs itself, so that one
  big file still spreads over its pool);
* :class:`PartUnit` — a run of whole row groups of one Parquet part of the previous step.

A ``segment`` job runs its record stages (a global stage's ``decide`` is one too: :class:`Decide`) in turn over
each batch of a unit — one pass, each stage getting the records the one before it kept — and writes each
stage's dropped records, and the last stage's kept records, as parts (:mod:`pipeline.engines.parts`); headed by
``read`` it also writes the read-time rejections and the quarantine. It returns one :class:`PartReport` per
step for every part it wrote. A ``collect`` job returns a global stage's ``fingerprint`` (or ``gather``) of every
batch: the small tables that the driver resolves.

What a stage sees is what it would read back from a checkpoint of the stage before it (the same columns, in the
same order and types), so the outcome does not depend on how steps are fused or units are cut.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa

from pipeline.engines.parts import PartReport, PartWriter, ledger_schema, read_row_groups, row_group_runs, split_result
from pipeline.read.reader import SEQ_FILE_SHIFT, WORK_SCHEMA, Reader
from pipeline.read.sources import FileInfo
from schemas.errors import StageError, ZhcurateError
from stages.base import SEQ_COLUMN, GlobalStage, RecordStage, Stage, StageResult


@dataclass(frozen=True)
class ReadSpec:
    """How the ``read`` step reads: the recipe's format, fields and batch size; units per part; and the folder
    relative input paths are given from (the driver's, for workers elsewhere)."""

    fmt: str
    fields: dict[str, str]
    batch_size: int
    part_rows: int
    base_dir: str | None = None


@dataclass(frozen=True)
class FileUnit:
    path: str
    index: int  # the file's position among the inputs (the high bits of its records' _seq)
    prefix: str  # the id prefix of its records


@dataclass
class ChunkUnit:
    """Records read in the driver: one batch of the reader, with its read-time rejections and quarantine."""

    key: int  # the _seq of the chunk's first unit: the name of its parts
    records: pa.Table
    rejected: list[dict[str, Any]]
    quarantine: list[str]  # JSON lines
    units: int
    infos: list[FileInfo] = field(default_factory=list)  # the file's info, on its last chunk


@dataclass(frozen=True)
class PartUnit:
    path: str
    groups: tuple[int, ...]


Unit = FileUnit | ChunkUnit | PartUnit


class Decide(RecordStage):
    """A global stage's ``decide`` with its resolution, as a record stage (the resolution travels with it)."""

    def __init__(self, stage: GlobalStage, resolution: Any) -> None:
        super().__init__(stage.params)
        self.stage, self.resolution = stage, resolution
        self.name = stage.name  # type: ignore[misc]

    def process(self, batch: pa.Table) -> StageResult:
        return self.stage.decide(batch, self.resolution)


@dataclass
class Job:
    """One step's work on every unit (picklable: it travels to the workers once)."""

    kind: Literal["segment", "collect"]
    stages: list[Stage]  # segment: record stages (or Decide); collect: the one global stage
    batch_size: int
    step_dirs: list[str] = field(default_factory=list)  # segment: one folder per step (read's first)
    schemas: list[pa.Schema] = field(default_factory=list)  # segment: the record schema after each stage
    read: ReadSpec | None = None  # segment: headed by the read step
    method: Literal["fingerprint", "gather"] = "fingerprint"  # collect
    context: Any = None  # collect: gather's provisional resolution
    light: bool = False  # cheap work with a big context (decide, gather): an engine may keep it in the driver

    def wants_gpu(self) -> bool:
        """Embeddings may go to GPU workers: fingerprints of a stage whose ``device`` allows it."""
        device = getattr(self.stages[0].params, "device", None) if self.stages else None
        return self.kind == "collect" and self.method == "fingerprint" and device in ("auto", "cuda")


def run_unit(job: Job, unit: Unit) -> Any:
    """The job on one unit: ``segment`` -> a list, per part written, of one PartReport per step; ``collect`` ->
    (the unit's records, the method's result for each of its batches)."""
    if job.kind == "collect":
        table = read_row_groups(unit.path, unit.groups) if isinstance(unit, PartUnit) else unit.records  # type: ignore[union-attr]
        stage = job.stages[0]
        assert isinstance(stage, GlobalStage)
        out = []
        for batch in _slices(table, job.batch_size):
            out.append(stage.fingerprint(batch) if job.method == "fingerprint" else stage.gather(batch, job.context))
        return table.num_rows, out
    if isinstance(unit, FileUnit):
        assert job.read is not None
        return [_segment(job, chunks) for chunks in file_parts(unit, job.read)]
    if isinstance(unit, ChunkUnit):
        return [_segment(job, [unit])]
    table = read_row_groups(unit.path, unit.groups)
    if not table.num_rows:
        return []
    key = int(table.column(SEQ_COLUMN)[0].as_py())
    return [_segment(job, [ChunkUnit(key, batch, [], [], 0) for batch in _slices(table, job.batch_size)])]


def part_units(files: list[Path], rows_per_unit: int) -> list[PartUnit]:
    """The work units over a step's input (its Parquet files, in input order)."""
    return [PartUnit(path, groups) for path, groups in row_group_runs(files, rows_per_unit)]


def _slices(table: pa.Table, size: int) -> Iterator[pa.Table]:
    for start in range(0, table.num_rows, size):
        yield table.slice(start, size)


def read_chunks(unit: FileUnit, spec: ReadSpec) -> Iterator[ChunkUnit]:
    """One input file as chunks (one reader batch each), exactly as a reader of all the inputs reads it (the same
    ``_seq``, ids and outcomes); the last chunk carries the file's info (an empty file gives one empty chunk)."""
    base = Path(spec.base_dir) if spec.base_dir else None
    path = Path(unit.path)
    reader = Reader([path], spec.fmt, spec.fields, spec.batch_size, [unit.prefix], unit.index, base)
    info = reader.infos[0]
    start = unit.index << SEQ_FILE_SHIFT
    held: ChunkUnit | None = None
    done = 0
    for chunk in reader:
        if held is not None:
            yield held
        rejected = [{**r, "stage": "read"} for r in chunk.rejected]
        lines = [json.dumps(q, ensure_ascii=False) + "\n" for q in chunk.quarantine]
        held = ChunkUnit(start + done, chunk.records, rejected, lines, info.units - done)
        done = info.units
    if held is None:
        held = ChunkUnit(start, WORK_SCHEMA.empty_table(), [], [], 0)
    held.infos = [info]
    yield held


def file_parts(unit: FileUnit, spec: ReadSpec) -> Iterator[list[ChunkUnit]]:
    """The chunks of one input file grouped into parts of at least ``spec.part_rows`` units."""
    group: list[ChunkUnit] = []
    for chunk in read_chunks(unit, spec):
        group.append(chunk)
        if sum(c.units for c in group) >= spec.part_rows:
            yield group
            group = []
    if group:
        yield group


def _segment(job: Job, chunks: Sequence[ChunkUnit]) -> list[PartReport]:
    """Run the segment over chunks of records and write them as one part (named after the first chunk's key)
    of every step; returns each step's report."""
    key = chunks[0].key
    dirs = [Path(d) for d in job.step_dirs]
    last = len(dirs) - 1
    offset = 1 if job.read is not None else 0
    schemas = ([WORK_SCHEMA] if job.read is not None else []) + list(job.schemas)
    writers = [
        PartWriter(d, key, s, full_kept=job.read is not None and i == 0)
        for i, (d, s) in enumerate(zip(dirs, schemas, strict=True))
    ]
    try:
        for chunk in chunks:
            batch = chunk.records
            if job.read is not None:
                t0 = time.perf_counter()
                read = writers[0]
                read.report.rows_in += chunk.units
                read.kept(batch, write=last == 0)
                if chunk.rejected:
                    table = pa.Table.from_pylist(chunk.rejected, schema=ledger_schema(WORK_SCHEMA))
                    read.dropped(table, (r["reason"] for r in chunk.rejected))
                read.quarantine(chunk.quarantine)
                read.report.infos.extend(chunk.infos)
                read.report.seconds += time.perf_counter() - t0
            for i, stage in enumerate(job.stages, start=offset):
                batch = _run_stage(stage, batch, writers[i], schemas[i], write_kept=i == last)
        reports = [w.close() for w in writers]
    except BaseException:
        for w in writers:
            w.abort()
        raise
    return reports


def _run_stage(stage: Stage, batch: pa.Table, writer: PartWriter, schema: pa.Schema, write_kept: bool) -> pa.Table:
    """One stage on one batch, booked in its part; returns the records it kept (conformed to ``schema``). A stage
    that gets no records is not called (as a stage reading an empty checkpoint gets no batch)."""
    t0 = time.perf_counter()
    writer.report.rows_in += batch.num_rows
    if batch.num_rows:
        assert isinstance(stage, RecordStage)
        try:
            result = stage.process(batch)
        except ZhcurateError:
            raise
        except Exception as e:  # named here: the pass may run on a worker process
            raise StageError(stage.name, f"{type(e).__name__}: {e}") from e
        missing = [n for n in schema.names if n not in result.table.column_names]
        if missing:
            raise StageError(stage.name, f"returned a batch without the column(s) {missing}")
        writer.report.counters.update(result.counters)
        kept, dropped, codes = split_result(stage.name, result)
        batch = kept.select(schema.names).cast(schema)
        writer.kept(batch, write=write_kept)
        if dropped is not None:
            ledger = ledger_schema(schema)
            writer.dropped(dropped.select(ledger.names).cast(ledger), codes)
    writer.report.seconds += time.perf_counter() - t0
    return batch


__all__ = [
    "ChunkUnit",
    "Decide",
    "FileUnit",
    "Job",
    "PartUnit",
    "ReadSpec",
    "Unit",
    "file_parts",
    "part_units",
    "read_chunks",
    "run_unit",
]
