"""The ``read`` step: input paths -> canonical record batches, read-time rejections and quarantine entries.

Every unit that :mod:`pipeline.read.sources` yields ends in exactly one of: a canonical record, a rejection at
``read`` (well-formed but unusable, e.g. a conversation that ends on a user turn), or a quarantine entry
(unparseable: file, line, error, raw text).
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.read import fast
from pipeline.read.encoding import Detected
from pipeline.read.formats import MalformedRecord, ReadRejection, detect_format, to_canonical, type_name
from pipeline.read.layouts import Layout, apply_fields, detect_layout, suggest_fields
from pipeline.read.sources import (
    CONTAINERS,
    RAW_LIMIT,
    FileInfo,
    Unit,
    container_of,
    has_bad_chars,
    iter_units,
    jsonl_unit,
)
from schemas.errors import ConfigError
from schemas.record import CANONICAL_SCHEMA
from stages.base import SEQ_COLUMN, detail_json

WORK_SCHEMA = CANONICAL_SCHEMA.append(pa.field(SEQ_COLUMN, pa.int64()))
SEQ_FILE_SHIFT = 40
"""``_seq`` = (input file's index << 40) + the unit's position in its file: the input order, and known without
reading the files before it (so that files can be read in parallel, as on Ray, with the same ``_seq``)."""
_TEXT_KEYS = ("system", "instruction", "input", "output")


@dataclass
class ReadChunk:
    """One batch of read results."""

    records: pa.Table
    rejected: list[dict[str, Any]] = field(default_factory=list)  # canonical row + _seq + reason + detail
    quarantine: list[dict[str, Any]] = field(default_factory=list)


def expand_inputs(patterns: list[str] | tuple[str, ...], skipped: list[str] | None = None) -> list[Path]:
    """Files named, globbed or found under directories (recursively, by known extension), in a stable order.
    Files of a directory that are not read (README.md, images, YAML …; not hidden ones) go to ``skipped``."""
    files: list[Path] = []
    for pat in patterns:
        p = Path(pat)
        if p.is_dir():
            every = sorted(f for f in p.rglob("*") if f.is_file())
            found = [f for f in every if f.suffix.lower() in CONTAINERS]
            if skipped is not None:
                skipped.extend(
                    str(f)
                    for f in every
                    if f.suffix.lower() not in CONTAINERS
                    and not any(part.startswith(".") for part in f.relative_to(p).parts)
                )
            if not found:
                raise ConfigError(f"input directory {pat} holds no .json/.jsonl/.csv/.tsv/.parquet files")
            files.extend(found)
        elif p.is_file():
            files.append(p)
        elif glob.has_magic(pat):
            found = sorted(Path(f) for f in glob.glob(pat, recursive=True) if Path(f).is_file())
            if not found:
                raise ConfigError(f"input pattern {pat} matches no files")
            files.extend(found)
        else:
            raise ConfigError(f"input not found: {pat} (give a file, a directory or a glob pattern)")
    seen: set[str] = set()
    unique = []
    for f in files:
        key = os.path.abspath(f)
        if key not in seen:
            seen.add(key)
            unique.append(f)
    if not unique:
        raise ConfigError("no input: give --input PATH or 'input:' in the recipe")
    return unique


def id_prefixes(files: list[Path]) -> list[str]:
    """``<file name>`` for each file; where two inputs share a name, their path below the common folder."""
    names = [f.name for f in files]
    clash = {n for n in names if names.count(n) > 1}
    if not clash:
        return names
    absolute = [os.path.abspath(f) for f in files]
    common = os.path.commonpath([os.path.dirname(a) for a in absolute])
    return [os.path.relpath(a, common) if n in clash else n for n, a in zip(names, absolute)]


class Reader:
    """Reads every input file into canonical batches of ``batch_size`` records."""

    def __init__(
        self,
        files: list[Path],
        fmt: str,
        fields: dict[str, str],
        batch_size: int,
        prefixes: list[str] | None = None,
        first_index: int = 0,
        base_dir: Path | None = None,
    ) -> None:
        """``prefixes`` (the record id prefixes), ``first_index`` (the first file's index among all inputs) and
        ``base_dir`` (the folder relative paths were given from: the driver's) let a worker read some of the
        inputs exactly as a reader of all of them would; records keep the paths as the user gave them."""
        self.files = files
        self.fmt = fmt
        self.fields = fields
        self.batch_size = batch_size
        self.infos = [FileInfo(path=str(f), container=container_of(f)) for f in files]
        self.prefixes = prefixes if prefixes is not None else id_prefixes(files)
        self.first_index = first_index
        self.base_dir = base_dir

    def __iter__(self) -> Iterator[ReadChunk]:
        batch = _Batch()
        for k, (path, info, prefix) in enumerate(zip(self.files, self.infos, self.prefixes, strict=True)):
            seq = (self.first_index + k) << SEQ_FILE_SHIFT
            fmt: str | None = None if self.fmt == "auto" else self.fmt
            info.format = fmt or ""
            # the layout is chosen from the file's first record, unless the recipe says the format or the fields
            layout: Layout | None = None
            decided = fmt is not None or bool(self.fields)
            info.layout = _fields_label(self.fields) if self.fields else (fmt or "")
            where = path if self.base_dir is None else self.base_dir / path
            det = None if self.fields or fmt not in (None, "alpaca") else fast.utf8_jsonl(where, info)
            if det is not None and self._fast_file(where, info, det, decided):
                yield from self._read_fast(where, info, det, prefix, seq, batch)
                continue
            simple = not self.fields and fmt in (None, "alpaca") and info.container == "parquet"
            pf = self._parquet_file(where, info, decided) if simple else None
            if pf is not None:
                yield from self._read_parquet(pf, info, prefix, seq, batch)
                continue
            for unit in iter_units(where, info):
                info.units += 1
                if isinstance(unit.obj, dict) and not info.first_keys:
                    info.first_keys = [str(key) for key in list(unit.obj)[:20]]
                if not decided and unit.error is None and isinstance(unit.obj, dict):
                    decided = True
                    layout = detect_layout(unit.obj)
                    info.layout = layout.describe() if layout is not None else "per record"
                    if layout is not None:
                        fmt = info.format = layout.format
                fmt = self._book(unit, info, prefix, seq, fmt, layout, batch)
                seq += 1
                if batch.count >= self.batch_size:
                    yield batch.chunk()
            if info.syntax_errors or info.repairs:
                info.salvaged = info.units - info.syntax_errors
        if batch.count:
            yield batch.chunk()

    def _fast_file(self, path: Path, info: FileInfo, det: Detected, decided: bool) -> bool:
        """Whether the file's records are plain Alpaca (its first line, read as the per-line path reads it)."""
        first = fast.first_line(path)
        if first is None:
            return False
        unit = jsonl_unit(first[0], 0, first[1], det)
        if unit.error is not None or unit.raw or not isinstance(unit.obj, dict) or not unit.obj:
            return False
        if not decided:
            layout = detect_layout(unit.obj)
            if layout is None or layout.name != "alpaca" or layout.fields or layout.convert is not None:
                return False
            info.layout = layout.describe()
        info.format = "alpaca"
        info.encoding = det.label
        info.first_keys = [str(key) for key in list(unit.obj)[:20]]
        return True

    def _read_fast(
        self, path: Path, info: FileInfo, det: Detected, prefix: str, seq: int, batch: _Batch
    ) -> Iterator[ReadChunk]:
        """A plain Alpaca UTF-8 JSONL file through :mod:`pipeline.read.fast`, a reader batch at a time; lines it
        cannot decide take the per-record path (same outcome, id and message)."""
        row0 = 0
        for lines, numbers in fast.line_blocks(path, self.batch_size - batch.count, self.batch_size):
            info.units += len(lines)
            table, slow = fast.parse_alpaca(lines)
            units = [(i, jsonl_unit(lines[i], row0 + i, numbers[i], det)) for i in sorted(slow)]
            self._add_decided(fast.canonical(table, row0, seq, prefix, info.path), units, info, prefix, seq, batch)
            row0 += len(lines)
            seq += len(lines)
            if batch.count >= self.batch_size:
                yield batch.chunk()

    def _parquet_file(self, path: Path, info: FileInfo, decided: bool) -> Any:
        """The open Parquet file when its columns are plain Alpaca (else None: the per-record path reads it)."""
        import pyarrow.parquet as pq

        try:
            pf = pq.ParquetFile(path, pre_buffer=False)
        except Exception:  # pyarrow raises several types for a non-Parquet file: the per-record path says which
            return None
        names = pf.schema_arrow.names
        if pf.metadata.num_rows == 0 or not fast.parquet_alpaca_columns(pf.schema_arrow):
            return None
        if not decided:
            layout = detect_layout(dict.fromkeys(names))  # a layout is chosen by the keys of the first record
            if layout is None or layout.name != "alpaca" or layout.fields or layout.convert is not None:
                return None
            info.layout = layout.describe()
        info.encoding = "binary (Parquet)"
        info.format = "alpaca"
        info.first_keys = [str(key) for key in names[:20]]
        return pf

    def _read_parquet(self, pf: Any, info: FileInfo, prefix: str, seq: int, batch: _Batch) -> Iterator[ReadChunk]:
        """A Parquet file of plain Alpaca columns, in slices that fill the reader's batches; rows the columns do
        not decide take the per-record path."""
        row0 = 0
        for rb in pf.iter_batches(batch_size=8192):
            part = pa.Table.from_batches([rb])
            at = 0
            while at < part.num_rows:
                piece = part.slice(at, min(part.num_rows - at, self.batch_size - batch.count))
                n = piece.num_rows
                info.units += n
                table, slow = fast.parquet_alpaca(piece)
                rows = piece.take(pa.array(np.asarray(sorted(slow), dtype=np.int64))).to_pylist() if slow else []
                units = [(i, Unit(row0 + i, None, obj=obj)) for i, obj in zip(sorted(slow), rows)]
                self._add_decided(fast.canonical(table, row0, seq, prefix, info.path), units, info, prefix, seq, batch)
                at, row0, seq = at + n, row0 + n, seq + n
                if batch.count >= self.batch_size:
                    yield batch.chunk()

    def _add_decided(
        self, good: pa.Table, units: list[tuple[int, Unit]], info: FileInfo, prefix: str, seq: int, batch: _Batch
    ) -> None:
        """The records a fast path decided, and its undecided units (position in the block, unit) booked one by
        one; the block's records go to the batch in input order."""
        rows: list[dict[str, Any]] = []
        for i, unit in units:
            self._book(unit, info, prefix, seq + i, "alpaca", None, batch, rows)
        if rows:
            good = pa.concat_tables([good, pa.Table.from_pylist(rows, schema=WORK_SCHEMA)])
            good = good.take(pc.sort_indices(good, [(SEQ_COLUMN, "ascending")]))
        batch.add_table(good)

    def _book(
        self,
        unit: Unit,
        info: FileInfo,
        prefix: str,
        seq: int,
        fmt: str | None,
        layout: Layout | None,
        batch: _Batch,
        rows: list[dict[str, Any]] | None = None,
    ) -> str | None:
        """One unit's outcome into the batch (a record into ``rows`` when given); returns the file's format."""
        base = {"id": f"{prefix}#{unit.row}", "source": info.path, SEQ_COLUMN: seq}
        outcome = self._convert(unit.obj, unit.error, unit.raw, fmt, layout)
        if isinstance(outcome, str):  # quarantine
            info.quarantined += 1
            if info.first_error is None:
                info.first_error = f"line {unit.line}: {outcome}" if unit.line else f"row {unit.row}: {outcome}"
            batch.quarantine.append(
                {
                    "source": info.path,
                    "line": unit.line,
                    "row": unit.row,
                    "id": base["id"],
                    "error": outcome,
                    "raw": (unit.raw or _raw_repr(unit.obj))[:RAW_LIMIT],
                }
            )
            batch.count += 1
        elif isinstance(outcome, ReadRejection):
            info.rejected += 1
            row = {"system": "", "instruction": "", "input": "", "output": "", "history": []}
            row.update(outcome.row)
            batch.rejected.append({**base, **row, "reason": outcome.reason, "detail": detail_json(**outcome.detail)})
            batch.count += 1
        else:
            if fmt is None:
                fmt = outcome.pop("_format")
                info.format = fmt
            outcome.pop("_format", None)
            if rows is not None:
                rows.append({**base, **outcome})
            else:
                batch.add_row({**base, **outcome})
        return fmt

    def _convert(self, obj: Any, error: str | None, raw: str, fmt: str | None, layout: Layout | None) -> Any:
        if error is not None:
            return error
        if raw:  # the unit parsed but holds invalid bytes
            return "invalid bytes for the file's encoding (or a lone surrogate escape) inside the record"
        if not isinstance(obj, dict):
            return f"a record is {type_name(obj)}, expected an object with named fields"
        keys = [str(key) for key in obj]
        obj = layout.map(obj) if layout is not None else apply_fields(obj, self.fields)
        use = fmt or detect_format(obj)
        if use is None:
            return (
                f"cannot tell the record format from its keys ({', '.join(keys[:12])}): expected instruction/output "
                "(Alpaca), conversations (ShareGPT) or messages (OpenAI); map your keys with "
                f"{suggest_fields(keys)} (or 'fields:' in the recipe)"
            )
        try:
            out = to_canonical(obj, use)  # type: ignore[arg-type]
        except MalformedRecord as e:
            mapped = dict(layout.fields) if layout is not None else self.fields
            missing = str(e).removeprefix("missing key '").partition("'")[0] if str(e).startswith("missing") else ""
            if missing in mapped:
                return f"{e} ({use} format): mapped from '{mapped[missing]}', which this record does not have"
            if missing:
                hint = suggest_fields(keys)
                return f"{e} ({use} format); the record's keys: {', '.join(keys[:12])}; map them with {hint}"
            return f"{e} ({use} format)"
        except RecursionError:
            return "record nested too deeply"
        if isinstance(out, ReadRejection):
            return out
        if any(has_bad_chars(out[k]) for k in _TEXT_KEYS) or any(
            has_bad_chars(t["user"]) or has_bad_chars(t["assistant"]) for t in out["history"]
        ):
            return "a lone surrogate (invalid character) in a text field"
        out["_format"] = use
        return out


class _Batch:
    """The reader batch being filled: its records (tables and pending rows, in input order), rejections and
    quarantine entries; ``count`` is its units."""

    def __init__(self) -> None:
        self.tables: list[pa.Table] = []
        self.rows: list[dict[str, Any]] = []
        self.rejected: list[dict[str, Any]] = []
        self.quarantine: list[dict[str, Any]] = []
        self.count = 0

    def add_row(self, row: dict[str, Any]) -> None:
        self.rows.append(row)
        self.count += 1

    def add_table(self, table: pa.Table) -> None:
        self._flush()
        if table.num_rows:
            self.tables.append(table)
        self.count += table.num_rows

    def _flush(self) -> None:
        if self.rows:
            self.tables.append(pa.Table.from_pylist(self.rows, schema=WORK_SCHEMA))
            self.rows = []

    def chunk(self) -> ReadChunk:
        self._flush()
        if not self.tables:
            table = WORK_SCHEMA.empty_table()
        elif len(self.tables) == 1:
            table = self.tables[0]
        else:
            table = pa.concat_tables(self.tables)
        out = ReadChunk(table, self.rejected, self.quarantine)
        self.__init__()  # type: ignore[misc]
        return out


def _fields_label(fields: dict[str, str]) -> str:
    return "fields (" + ", ".join(f"{theirs}->{canonical}" for canonical, theirs in fields.items()) + ")"


def _raw_repr(obj: Any) -> str:
    if obj is None:
        return ""
    try:
        import json

        return json.dumps(obj, ensure_ascii=False, default=str)[:RAW_LIMIT]
    except (TypeError, ValueError, RecursionError):
        return repr(obj)[:RAW_LIMIT]
