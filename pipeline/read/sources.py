"""Turn one input file into a stream of raw *units* (one per record), salvaging what can be salvaged.

A unit is either a parsed object (``obj``) or an ``error`` with the raw text that could not be parsed. Every
record-shaped piece of the file becomes exactly one unit, so nothing is lost: a JSON array with a syntax error
is parsed element by element and only the broken element becomes an error unit.

Fast path: well-formed input is parsed by orjson (a JSONL line, a whole JSON file); only what orjson refuses goes
through the salvaging parser below (Python's ``json``), which then gives exactly the units, messages and raw texts
it always gave. orjson accepts a subset of what ``json`` accepts (no NaN, no lone surrogate escapes, no integers
beyond 64 bits, no invalid UTF-8), and parses that subset to the same objects, so the fast path changes nothing
but the speed.
"""

from __future__ import annotations

import csv
import io
import json
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from pipeline.read.encoding import SAMPLE_BYTES, Detected, detect

RAW_LIMIT = 1000  # characters of raw text kept in a quarantine entry
CONTAINERS = {
    ".json": "json",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".csv": "csv",
    ".tsv": "tsv",
    ".parquet": "parquet",
    ".pq": "parquet",
}
_WRAPPER_KEYS = ("data", "records", "items", "rows", "examples", "instances")
_SURROGATE = re.compile("[\ud800-\udfff]")
_RESYNC = re.compile(r"\n[ \t]*\{")


@dataclass
class Unit:
    row: int  # 0-based position of the unit within its file (the id's row)
    line: int | None  # 1-based line where it starts (None for Parquet)
    obj: Any = None
    error: str | None = None
    raw: str = ""


@dataclass
class FileInfo:
    path: str  # as given (relative if given relative)
    container: str  # json | jsonl | csv | tsv | parquet | unknown
    encoding: str = ""
    format: str = ""
    units: int = 0
    warnings: list[str] | None = None
    layout: str = ""  # how records were mapped (read.layouts), e.g. "belle_eval (question->instruction, …)"
    first_keys: list[str] | None = None  # the keys of its first record (for the fix in a warning)
    rejected: int = 0  # rejected at read
    quarantined: int = 0
    first_error: str | None = None  # the first quarantine error, with its line
    syntax_errors: int = 0  # broken elements of a JSON array (the rest was salvaged element by element)
    repairs: int = 0  # trailing, doubled or missing commas and a missing closing ']' read past
    salvaged: int = 0  # elements read from a JSON array that is not valid JSON

    def warn(self, message: str) -> None:
        self.warnings = [*(self.warnings or []), message]


def container_of(path: Path) -> str:
    return CONTAINERS.get(path.suffix.lower(), "unknown")


def has_bad_chars(text: str) -> bool:
    """Lone surrogates: invalid bytes decoded with surrogateescape, or ``\\ud800`` escapes in JSON."""
    return _SURROGATE.search(text) is not None


def iter_units(path: Path, info: FileInfo) -> Iterator[Unit]:
    """Yield every unit of ``path``; fills ``info.encoding`` (and warnings) as it goes."""
    if info.container == "parquet":
        info.encoding = "binary (Parquet)"
        yield from _parquet_units(path, info)
        return
    with open(path, "rb") as f:
        sample = f.read(SAMPLE_BYTES)
    if not sample:
        info.encoding = "empty"
        info.warn("empty file: no records")
        return
    det = detect(sample)
    info.encoding = det.label
    if det.binary:
        yield Unit(
            0,
            1,
            error="not a text file (binary content); expected JSON, JSONL, CSV or Parquet",
            raw=repr(sample[:200]),
        )
        return
    container = info.container
    if container == "unknown":
        first = sample.lstrip(b"\xef\xbb\xbf \t\r\n")[:1]
        container = "jsonl" if first == b"{" else "json" if first == b"[" else "csv"
        info.warn(f"unknown file extension; read as {container}")
        info.container = container
    if container == "jsonl" and _ascii_compatible(det):
        yield from _jsonl_stream(path, det)
        return
    text = path.read_bytes().decode(det.encoding, errors="surrogateescape" if _ascii_compatible(det) else "replace")
    if container in ("csv", "tsv"):
        yield from _csv_units(text, "\t" if container == "tsv" else ",")
    else:
        yield from _json_text_units(text, info)


def _ascii_compatible(det: Detected) -> bool:
    return det.encoding.replace("_", "-").lower() in (
        "utf-8",
        "utf-8-sig",
        "gb18030",
        "gbk",
        "gb2312",
        "ascii",
    )


def _jsonl_stream(path: Path, det: Detected) -> Iterator[Unit]:
    row = 0
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, 1):
            if lineno == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]
            stripped = raw.strip()
            if not stripped:
                continue
            yield jsonl_unit(stripped, row, lineno, det)
            row += 1


def jsonl_unit(stripped: bytes, row: int, lineno: int, det: Detected) -> Unit:
    """The unit of one non-blank JSONL line (stripped, in an ASCII-compatible encoding)."""
    enc = "utf-8" if det.encoding == "utf-8-sig" else det.encoding
    if enc.replace("_", "-").lower() == "utf-8":  # orjson reads UTF-8 bytes itself (and refuses invalid ones)
        try:
            return Unit(row, lineno, obj=orjson.loads(stripped))
        except ValueError:  # orjson.JSONDecodeError
            pass
    try:
        text = stripped.decode(enc)
    except UnicodeDecodeError as e:
        return Unit(
            row,
            lineno,
            error=f"invalid {det.label} bytes at byte {e.start} of the line",
            raw=stripped.decode(enc, errors="replace")[:RAW_LIMIT],
        )
    return _json_unit(text, row, lineno)


def _json_unit(text: str, row: int, lineno: int) -> Unit:
    try:
        return Unit(row, lineno, obj=orjson.loads(text))  # strict text: a lone surrogate cannot parse here
    except ValueError:  # orjson.JSONDecodeError
        pass
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        if e.pos >= len(text) - 1 or e.msg.startswith("Unterminated"):
            msg = f"truncated JSON (the line ends early): {e.msg}"
        else:
            msg = f"JSON syntax error: {e.msg}"
        return Unit(row, lineno, error=f"{msg} at column {e.colno}", raw=text[:RAW_LIMIT])
    except RecursionError:
        return Unit(row, lineno, error="JSON nested too deeply", raw=text[:RAW_LIMIT])
    return Unit(row, lineno, obj=obj, raw=text[:RAW_LIMIT] if has_bad_chars(text) else "")


class _Lines:
    """Line numbers for positions in a text, counted incrementally (positions only move forward)."""

    def __init__(self, text: str) -> None:
        self.text, self.pos, self.line = text, 0, 1

    def at(self, pos: int) -> int:
        if pos < self.pos:
            return self.text.count("\n", 0, pos) + 1
        self.line += self.text.count("\n", self.pos, pos)
        self.pos = pos
        return self.line


def _skip(text: str, pos: int, chars: str) -> int:
    n = len(text)
    while pos < n and text[pos] in chars:
        pos += 1
    return pos


class _ElementLines:
    """The 1-based line where each element of a well-formed JSON array starts, found (by the salvaging parser)
    only when one is asked for: the reader needs a line only for a record it quarantines."""

    def __init__(self, text: str, start: int) -> None:
        self.text, self.start = text, start
        self.lines: list[int | None] | None = None

    def __call__(self, row: int) -> int | None:
        if self.lines is None:
            units = _elements(self.text, self.start, json.JSONDecoder(), _Lines(self.text), closing="]", info=None)
            self.lines = [u.line for u in units]
        return self.lines[row]


class _ArrayElement(Unit):
    """A unit of the fast path for a JSON array: its line is looked up when asked for."""

    def __init__(self, row: int, obj: Any, where: _ElementLines) -> None:
        self._where = where
        super().__init__(row, None, obj=obj)

    @property
    def line(self) -> int | None:
        return self._where(self.row)

    @line.setter
    def line(self, value: int | None) -> None:  # set (to None) by Unit's __init__: the line is looked up instead
        pass


def _json_text_units(text: str, info: FileInfo | None = None) -> Iterator[Unit]:
    """A JSON array (salvaged element by element), a wrapper object, a single record or concatenated objects."""
    pos = _skip(text, 0, "\ufeff \t\r\n")
    if pos >= len(text):
        return
    if text[pos] in "[{":  # the fast path: a well-formed file is parsed whole
        try:
            whole = orjson.loads(text[pos:] if pos else text)
        except ValueError:  # orjson.JSONDecodeError: salvage below
            pass
        else:
            if isinstance(whole, list):
                where = _ElementLines(text, pos + 1)
                for i, item in enumerate(whole):
                    yield _ArrayElement(i, item, where)
                return
            if isinstance(whole, dict):
                wrapped = next((k for k in _WRAPPER_KEYS if isinstance(whole.get(k), list)), None)
                if wrapped is None:
                    yield Unit(0, 1, obj=whole)
                else:
                    for i, item in enumerate(whole[wrapped]):
                        yield Unit(i, None, obj=item)
                return
    dec = json.JSONDecoder()
    lines = _Lines(text)
    if text[pos] == "{":
        try:
            obj, end = dec.raw_decode(text, pos)
        except (json.JSONDecodeError, RecursionError):
            obj, end = None, -1
        if end != -1 and _skip(text, end, " \t\r\n") >= len(text) and isinstance(obj, dict):
            wrapped = next((k for k in _WRAPPER_KEYS if isinstance(obj.get(k), list)), None)
            if wrapped is None:
                yield Unit(0, 1, obj=obj)
            else:
                for i, item in enumerate(obj[wrapped]):
                    yield Unit(i, None, obj=item)
            return
        yield from _elements(text, pos, dec, lines, "", info)  # concatenated objects (JSONL in a .json)
        return
    if text[pos] != "[":
        yield Unit(
            0,
            lines.at(pos),
            error="not JSON: expected '[' or '{' at the start of the file",
            raw=text[pos : pos + RAW_LIMIT],
        )
        return
    yield from _elements(text, pos + 1, dec, lines, "]", info)


def _elements(
    text: str, pos: int, dec: json.JSONDecoder, lines: _Lines, closing: str, info: FileInfo | None
) -> Iterator[Unit]:
    n, row = len(text), 0
    clean = True  # the previous element parsed: the separator after it can be checked
    while True:
        before = pos
        pos = _skip(text, pos, " \t\r\n,")
        if info is not None and clean:  # a trailing, doubled or missing comma is repaired, and noted
            commas = text.count(",", before, pos)
            expected = 0 if not closing or row == 0 or pos >= n or text[pos] == closing else 1
            info.repairs += commas != expected
        if pos >= n:  # a missing closing ']' loses nothing: every element before it was read
            if info is not None and closing and clean:
                info.repairs += 1
            return
        if closing and text[pos] == closing:
            rest = _skip(text, pos + 1, " \t\r\n")
            if rest < n:
                yield Unit(
                    row,
                    lines.at(rest),
                    error="unexpected text after the closing ']'",
                    raw=text[rest : rest + RAW_LIMIT],
                )
            return
        try:
            obj, end = dec.raw_decode(text, pos)
        except json.JSONDecodeError as e:
            if info is not None:
                info.syntax_errors += 1
            clean = False
            m = _RESYNC.search(text, max(e.pos, pos + 1))
            nxt = m.start() + 1 if m else n
            line = lines.at(pos)
            yield Unit(
                row,
                line,
                error=f"JSON syntax error: {e.msg} (line {text.count(chr(10), 0, e.pos) + 1})",
                raw=text[pos:nxt][:RAW_LIMIT],
            )
            row, pos = row + 1, nxt
            continue
        except RecursionError:
            if info is not None:
                info.syntax_errors += 1
            clean = False
            m = _RESYNC.search(text, pos + 1)
            nxt = m.start() + 1 if m else n
            yield Unit(row, lines.at(pos), error="JSON nested too deeply", raw=text[pos:nxt][:RAW_LIMIT])
            row, pos = row + 1, nxt
            continue
        clean = True
        chunk_bad = has_bad_chars(text[pos:end])
        yield Unit(row, lines.at(pos), obj=obj, raw=text[pos:end][:RAW_LIMIT] if chunk_bad else "")
        row, pos = row + 1, end


def _csv_units(text: str, delimiter: str) -> Iterator[Unit]:
    csv.field_size_limit(sys.maxsize)
    if text.startswith("\ufeff"):
        text = text[1:]
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        header = next(reader)
    except StopIteration:
        return
    except csv.Error as e:
        yield Unit(0, 1, error=f"CSV header cannot be parsed: {e}", raw=text[:RAW_LIMIT])
        return
    header = [h.strip() for h in header]
    row = 0
    start_line = reader.line_num + 1
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as e:
            yield Unit(row, start_line, error=f"CSV syntax error: {e}", raw="")
            row, start_line = row + 1, reader.line_num + 1
            continue
        if not cells or (len(cells) == 1 and not cells[0].strip()):
            start_line = reader.line_num + 1
            continue
        if len(cells) != len(header):
            yield Unit(
                row,
                start_line,
                error=f"CSV row has {len(cells)} fields, the header has {len(header)}",
                raw=delimiter.join(cells)[:RAW_LIMIT],
            )
        else:
            yield Unit(row, start_line, obj=dict(zip(header, cells)))
        row, start_line = row + 1, reader.line_num + 1


def _parquet_units(path: Path, info: FileInfo) -> Iterator[Unit]:
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path, pre_buffer=False)
    except Exception as e:  # pyarrow raises several types for a non-Parquet file
        yield Unit(0, None, error=f"not a readable Parquet file: {e}", raw="")
        return
    row = 0
    for batch in pf.iter_batches(batch_size=8192):
        for obj in batch.to_pylist():
            yield Unit(row, None, obj=obj)
            row += 1
