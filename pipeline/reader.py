"""The ``read`` step: input paths -> canonical record batches, read-time rejections and quarantine entries.

Every unit that :mod:`pipeline.sources` yields ends in exactly one of: a canonical record, a rejection at
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

import pyarrow as pa

from pipeline.errors import ConfigError
from pipeline.formats import (
    MalformedRecord,
    ReadRejection,
    detect_format,
    rename_fields,
    to_canonical,
    type_name,
)
from pipeline.sources import CONTAINERS, RAW_LIMIT, FileInfo, container_of, has_bad_chars, iter_units
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


def expand_inputs(patterns: list[str] | tuple[str, ...]) -> list[Path]:
    """Files named, globbed or found under directories (recursively, by known extension), in a stable order."""
    files: list[Path] = []
    for pat in patterns:
        p = Path(pat)
        if p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in CONTAINERS)
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
        rows: list[dict[str, Any]] = []
        rejected: list[dict[str, Any]] = []
        quarantine: list[dict[str, Any]] = []
        for k, (path, info, prefix) in enumerate(zip(self.files, self.infos, self.prefixes, strict=True)):
            seq = (self.first_index + k) << SEQ_FILE_SHIFT
            fmt: str | None = None if self.fmt == "auto" else self.fmt
            info.format = fmt or ""
            for unit in iter_units(path if self.base_dir is None else self.base_dir / path, info):
                info.units += 1
                base = {"id": f"{prefix}#{unit.row}", "source": info.path, SEQ_COLUMN: seq}
                seq += 1
                outcome = self._convert(unit.obj, unit.error, unit.raw, fmt)
                if isinstance(outcome, str):  # quarantine
                    quarantine.append(
                        {
                            "source": info.path,
                            "line": unit.line,
                            "row": unit.row,
                            "id": base["id"],
                            "error": outcome,
                            "raw": (unit.raw or _raw_repr(unit.obj))[:RAW_LIMIT],
                        }
                    )
                elif isinstance(outcome, ReadRejection):
                    row = {"system": "", "instruction": "", "input": "", "output": "", "history": []}
                    row.update(outcome.row)
                    rejected.append({**base, **row, "reason": outcome.reason, "detail": detail_json(**outcome.detail)})
                else:
                    if fmt is None:
                        fmt = outcome.pop("_format")
                        info.format = fmt
                    outcome.pop("_format", None)
                    rows.append({**base, **outcome})
                if len(rows) + len(rejected) + len(quarantine) >= self.batch_size:
                    yield self._chunk(rows, rejected, quarantine)
                    rows, rejected, quarantine = [], [], []
        if rows or rejected or quarantine:
            yield self._chunk(rows, rejected, quarantine)

    def _convert(self, obj: Any, error: str | None, raw: str, fmt: str | None) -> Any:
        if error is not None:
            return error
        if raw:  # the unit parsed but holds invalid bytes
            return "invalid bytes for the file's encoding (or a lone surrogate escape) inside the record"
        if not isinstance(obj, dict):
            return f"a record is {type_name(obj)}, expected an object with named fields"
        obj = rename_fields(obj, self.fields)
        use = fmt or detect_format(obj)
        if use is None:
            keys = ", ".join(list(obj)[:12])
            return (
                f"cannot tell the record format from its keys ({keys}): expected instruction/output "
                "(Alpaca), conversations (ShareGPT) or messages (OpenAI); map your columns with "
                "'fields: {instruction: your_question_column, output: your_answer_column}' in the recipe"
            )
        try:
            out = to_canonical(obj, use)  # type: ignore[arg-type]
        except MalformedRecord as e:
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

    @staticmethod
    def _chunk(rows: list[dict[str, Any]], rejected: list[dict[str, Any]], q: list[dict[str, Any]]) -> ReadChunk:
        table = pa.Table.from_pylist(rows, schema=WORK_SCHEMA) if rows else WORK_SCHEMA.empty_table()
        return ReadChunk(table, rejected, q)


def _raw_repr(obj: Any) -> str:
    if obj is None:
        return ""
    try:
        import json

        return json.dumps(obj, ensure_ascii=False, default=str)[:RAW_LIMIT]
    except (TypeError, ValueError, RecursionError):
        return repr(obj)[:RAW_LIMIT]
