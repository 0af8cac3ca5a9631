"""Steps written as Parquet *parts* by the work units that compute them (every engine's checkpoints).

A step's checkpoint is a folder::

    NN_stage/kept/part-<first _seq, 20 digits>.parquet        records the step kept
    NN_stage/rejected/part-<first _seq>.parquet               records it dropped (+ stage, reason, detail)
    00_read/quarantine/part-<first _seq>.jsonl                 (read only) units that could not be parsed

A part is named after the first ``_seq`` of the input it was made from, so the parts sorted by name are in input
order, and a unit that is run again (its worker died) rewrites the same names (atomically: temporary name, then
rename). The unit also sends back a :class:`PartReport` — counts, reasons, counters and a
:class:`~pipeline.report.collect.ReportCollector` — so the driver keeps the books without seeing a record.
Inside a fused run of record stages only the last step writes ``kept/``.

On a cluster the output folder must be one that every node sees (e.g. NFS).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipeline.checkpoint import ParquetSink, write_text_atomic
from pipeline.read.sources import FileInfo
from pipeline.report.collect import ReportCollector
from schemas.record import LEDGER_FIELDS
from stages.base import StageResult

PART_ROWS = 65_536
"""Records per part of a step read on a cluster (the unit of a Ray task, and of a checkpoint file)."""
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


class PartWriter:
    """One part of one step: its kept records (when the step writes them), its dropped records and (read) its
    quarantine lines, each written only if it has rows; :meth:`close` returns the part's report."""

    def __init__(self, step_dir: Path, key: int, schema: pa.Schema, full_kept: bool = False) -> None:
        self.step_dir, self.key, self.schema = step_dir, key, schema
        self.sinks: dict[str, ParquetSink] = {}
        self.lines: list[str] = []
        self.report = PartReport(key, collector=ReportCollector(full_kept=full_kept))

    def _sink(self, kind: str, schema: pa.Schema) -> ParquetSink:
        if kind not in self.sinks:
            folder = self.step_dir / kind
            folder.mkdir(parents=True, exist_ok=True)
            self.sinks[kind] = ParquetSink(folder / part_name(self.key), schema, scratch=True)
        return self.sinks[kind]

    def kept(self, table: pa.Table, write: bool = True) -> None:
        if table.num_rows:
            if write:
                self._sink(KEPT, self.schema).write(table)
            self.report.kept += table.num_rows
            self.report.collector.add_kept(table)

    def dropped(self, table: pa.Table, codes: Iterable[str]) -> None:
        if table.num_rows:
            self._sink(REJECTED, ledger_schema(self.schema)).write(table)
            self.report.dropped += table.num_rows
            self.report.reasons.update(codes)
            self.report.collector.add_dropped(table)

    def quarantine(self, lines: list[str]) -> None:
        self.lines.extend(lines)
        self.report.quarantined += len(lines)

    def close(self) -> PartReport:
        for sink in self.sinks.values():
            sink.close()
        if self.lines:
            folder = self.step_dir / QUARANTINE
            folder.mkdir(parents=True, exist_ok=True)
            write_text_atomic(folder / part_name(self.key, ".jsonl"), "".join(self.lines))
        return self.report

    def abort(self) -> None:
        for sink in self.sinks.values():
            sink.abort()


def count_lines(path: Path) -> int:
    with open(path, "rb") as f:
        return sum(1 for _ in f)


def on_disk(step_dir: Path) -> tuple[int, int, int]:
    """Kept, dropped and quarantined records in a step's parts."""
    quarantined = sum(count_lines(f) for f in part_files(step_dir / QUARANTINE, ".jsonl"))
    return count_rows(step_dir / KEPT), count_rows(step_dir / REJECTED), quarantined


def row_group_runs(files: list[Path], rows_per_unit: int) -> list[tuple[str, tuple[int, ...]]]:
    """Runs of consecutive row groups of one file holding about ``rows_per_unit`` records (at least one row
    group), in input order: what one work unit reads."""
    units: list[tuple[str, tuple[int, ...]]] = []
    for f in files:
        meta = pq.ParquetFile(f).metadata
        groups: list[int] = []
        rows = 0
        for g in range(meta.num_row_groups):
            groups.append(g)
            rows += meta.row_group(g).num_rows
            if rows >= rows_per_unit:
                units.append((str(f.resolve()), tuple(groups)))
                groups, rows = [], 0
        if groups:
            units.append((str(f.resolve()), tuple(groups)))
    return units


def read_row_groups(path: str, groups: Iterable[int]) -> pa.Table:
    return pq.ParquetFile(path, pre_buffer=False).read_row_groups(list(groups))


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
    "PartWriter",
    "count_rows",
    "iter_batches",
    "ledger_schema",
    "merge_reports",
    "on_disk",
    "parquet_files",
    "part_files",
    "read_row_groups",
    "remove_orphans",
    "row_group_runs",
    "split_result",
]
