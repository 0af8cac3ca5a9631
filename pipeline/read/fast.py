"""The vectorized path for well-formed Alpaca JSONL: blocks of lines parsed by Arrow's JSON reader into columns.

The reader uses it for a ``.jsonl`` / ``.ndjson`` file in UTF-8 whose records are plain Alpaca (the first
record's layout is ``alpaca``, or the recipe says ``format: alpaca``, and no ``fields`` are mapped). Each block
of lines (one reader batch) is parsed by ``pyarrow.json`` with the Alpaca text columns as its schema; the
canonical columns, ids and ``_seq`` are then built with Arrow compute, with no Python object per record.

A line goes back to the per-record path of :mod:`pipeline.read.reader` (the salvaging parser and the checks of
:mod:`pipeline.read.formats`, which give its outcome, id and message exactly as before) whenever this path could
decide differently, found from the bytes or the columns, never guessed:

* the block does not parse (a syntax error, a value of the wrong type, a key given twice, a line holding two
  objects …): it is split at the line Arrow names, until the lines that fail stand alone;
* invalid UTF-8 anywhere in the line (Arrow does not check keys or the values of ignored keys), a ``\\uD800``-
  style escape (a lone surrogate), or enough brackets to be nested past the salvaging parser's limit;
* a missing or null ``instruction`` / ``output`` (quarantined with the record's keys named), a non-empty
  ``history``, or a record whose instruction, input and output are all whitespace (``empty_record``).
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.read.encoding import SAMPLE_BYTES, Detected, detect
from pipeline.read.sources import FileInfo
from schemas.record import HISTORY_TYPE

_TEXT = ("system", "instruction", "input", "output")
_SCHEMA = pa.schema([(k, pa.string()) for k in _TEXT])
_WITH_HISTORY = _SCHEMA.append(pa.field("history", pa.list_(pa.list_(pa.string()))))
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
_DEEP = 500  # brackets in one line from which the line takes the per-record path (orjson stops at 1024 levels)
SPACES = (*range(9, 14), *range(28, 33), 133, 160, 5760, *range(8192, 8203), 8232, 8233, 8239, 8287, 12288)
"""The code points ``str.isspace`` (and so ``str.strip``) takes for whitespace (a test checks the list)."""
_BLANK = "^[" + "".join(f"\\x{{{c:x}}}" for c in SPACES) + "]*$"
_READ_BLOCK = 1 << 24


def utf8_jsonl(path: Path, info: FileInfo) -> Detected | None:
    """The detected encoding when ``path`` is a non-empty JSONL file in UTF-8 (the only files this path reads)."""
    if info.container != "jsonl":
        return None
    with open(path, "rb") as f:
        sample = f.read(SAMPLE_BYTES)
    if not sample:
        return None
    det = detect(sample)
    if det.binary or det.encoding.replace("_", "-").lower() not in ("utf-8", "utf-8-sig"):
        return None
    return det


def line_blocks(path: Path, first: int, size: int) -> Iterator[tuple[list[bytes], list[int]]]:
    """The file's non-blank lines, stripped (and the first one without its BOM), with their 1-based line
    numbers, in blocks of ``first`` lines, then ``size``: exactly the units the per-line reader would yield."""
    lines: list[bytes] = []
    numbers: list[int] = []
    want, lineno, rest = first, 0, b""
    with open(path, "rb") as f:
        while True:
            data = f.read(_READ_BLOCK)
            if not data:
                parts = [rest] if rest else []
            else:
                parts = (rest + data).split(b"\n")
                rest = parts.pop()
            for raw in parts:
                lineno += 1
                if lineno == 1 and raw.startswith(b"\xef\xbb\xbf"):
                    raw = raw[3:]
                stripped = raw.strip()
                if stripped:
                    lines.append(stripped)
                    numbers.append(lineno)
                    if len(lines) == want:
                        yield lines, numbers
                        lines, numbers, want = [], [], size
            if not data:
                break
    if lines:
        yield lines, numbers


def first_line(path: Path) -> tuple[bytes, int] | None:
    """The first non-blank line of the file, stripped (without a BOM), and its line number."""
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, 1):
            stripped = (raw[3:] if lineno == 1 and raw.startswith(b"\xef\xbb\xbf") else raw).strip()
            if stripped:
                return stripped, lineno
    return None


def _utf8_ok(data: bytes) -> bool:
    arr = pa.Array.from_buffers(
        pa.large_binary(), 1, [None, pa.py_buffer(np.array([0, len(data)], dtype=np.int64)), pa.py_buffer(data)]
    )
    try:
        arr.cast(pa.large_string())
    except pa.ArrowInvalid:
        return False
    return True


def _parse(data: bytes, schema: pa.Schema) -> pa.Table:
    import pyarrow.json as pj

    return pj.read_json(
        io.BytesIO(data),
        read_options=pj.ReadOptions(use_threads=False, block_size=len(data) + 1),
        parse_options=pj.ParseOptions(explicit_schema=schema, unexpected_field_behavior="ignore"),
    )


_ROW = re.compile(r"in row (\d+)")


def _parse_lines(
    lines: list[bytes], index: list[int], schema: pa.Schema, slow: set[int], data: bytes | None = None
) -> list[pa.Table]:
    """Tables of the lines that parse (in order); the indices of lines that do not are added to ``slow``.
    ``data``: all the lines joined, when ``index`` is all of them."""
    if not index:
        return []
    try:
        table = _parse(
            data if data is not None and len(index) == len(lines) else b"\n".join(lines[i] for i in index), schema
        )
    except (pa.ArrowException, ValueError) as e:  # ArrowInvalid; a message with invalid UTF-8
        if len(index) == 1:
            slow.add(index[0])
            return []
        m = _ROW.search(str(e))
        cut = int(m.group(1)) if m else len(index) // 2
        cut = min(max(cut, 1), len(index) - 1)
        return _parse_lines(lines, index[:cut], schema, slow) + _parse_lines(lines, index[cut:], schema, slow)
    if table.num_rows != len(index):  # e.g. two objects on one line: let the per-line path say what it is
        if len(index) == 1:
            slow.add(index[0])
            return []
        half = len(index) // 2
        return _parse_lines(lines, index[:half], schema, slow) + _parse_lines(lines, index[half:], schema, slow)
    return [table.append_column("_i", pa.array(np.asarray(index, dtype=np.int64)))]


def parse_alpaca(lines: list[bytes]) -> tuple[pa.Table, set[int]]:
    """The Alpaca text columns of the lines this path can decide (with their index in ``lines`` as ``_i``),
    and the indices of those the per-record path must read."""
    slow: set[int] = set()
    data = b"\n".join(lines)
    if _SURROGATE_ESCAPE.search(data):
        slow.update(i for i, line in enumerate(lines) if _SURROGATE_ESCAPE.search(line))
    if not _utf8_ok(data):
        slow.update(i for i, line in enumerate(lines) if not _utf8_ok(line))
    # a line Arrow parses nested _DEEP deep holds 2 * _DEEP brackets
    slow.update(
        i for i, line in enumerate(lines) if len(line) >= 2 * _DEEP and line.count(b"{") + line.count(b"[") >= _DEEP
    )
    schema = _WITH_HISTORY if b'"history"' in data else _SCHEMA
    parts = _parse_lines(lines, [i for i in range(len(lines)) if i not in slow], schema, slow, data)
    if not parts:
        return pa.table({**{k: pa.array([], pa.string()) for k in _TEXT}, "_i": pa.array([], pa.int64())}), slow
    table, more = _undecided(pa.concat_tables(parts))
    return table, slow | more


def _undecided(table: pa.Table) -> tuple[pa.Table, set[int]]:
    """The rows whose outcome the columns decide, and the ``_i`` of those the per-record path must read: a null
    instruction or output, a non-empty history, or a record of whitespace only (``empty_record``)."""
    bad = pc.or_(pc.is_null(table.column("instruction")), pc.is_null(table.column("output")))
    if "history" in table.column_names:
        bad = pc.or_(bad, pc.fill_null(pc.greater(pc.list_value_length(table.column("history")), 0), False))
    blank = pc.match_substring_regex(table.column("instruction"), _BLANK)
    if pc.any(blank).as_py():
        for key in ("input", "output"):
            if key in table.column_names:
                blank = pc.and_(blank, pc.fill_null(pc.match_substring_regex(table.column(key), _BLANK), True))
        bad = pc.or_(bad, pc.fill_null(blank, False))
    if not pc.any(bad).as_py():
        return table, set()
    return table.filter(pc.invert(bad)), set(table.column("_i").filter(bad).to_pylist())


_STRINGS = (pa.string(), pa.large_string())
_HISTORIES = (pa.list_(pa.list_(pa.string())), pa.list_(pa.struct([("user", pa.string()), ("assistant", pa.string())])))


def parquet_alpaca_columns(schema: pa.Schema) -> bool:
    """Whether a Parquet file's columns are plain Alpaca that this path reads: string ``instruction`` and
    ``output``, optional string ``input`` / ``system``, an optional list ``history`` (other columns are ignored,
    as the per-record path ignores them)."""
    names = schema.names
    if "instruction" not in names or "output" not in names or len(set(names)) != len(names):
        return False
    for key in ("instruction", "output", "input", "system"):
        if key in names and schema.field(key).type not in _STRINGS:
            return False
    if "history" in names:
        kind = schema.field("history").type
        if not any(kind.equals(h, check_metadata=False) or _same_shape(kind, h) for h in _HISTORIES):
            return False
    return True


def _same_shape(kind: pa.DataType, expected: pa.DataType) -> bool:
    """List types equal up to the name of the list item (Parquet files name it ``element`` or ``item``)."""
    if not (pa.types.is_list(kind) and pa.types.is_list(expected)):
        return kind.equals(expected)
    return _same_shape(kind.value_type, expected.value_type)


def parquet_alpaca(table: pa.Table) -> tuple[pa.Table, set[int]]:
    """Like :func:`parse_alpaca`, for a slice of a Parquet file whose columns passed
    :func:`parquet_alpaca_columns` (the strings were checked to be valid UTF-8 by Arrow)."""
    names = table.column_names
    cols = {
        k: table.column(k).cast(pa.string()) if k in names else pa.nulls(table.num_rows, pa.string()) for k in _TEXT
    }
    if "history" in names:
        cols["history"] = table.column("history")
    cols["_i"] = pa.array(np.arange(table.num_rows, dtype=np.int64))
    return _undecided(pa.table(cols))


def canonical(table: pa.Table, row0: int, seq0: int, prefix: str, source: str) -> pa.Table:
    """The work table (canonical columns + ``_seq``) of the rows :func:`parse_alpaca` decided."""
    n = table.num_rows
    at = table.column("_i").to_numpy()
    rows = pa.array(at + row0)
    empty = pa.array(np.zeros(n + 1, dtype=np.int32))
    history = pa.ListArray.from_arrays(empty, pa.array([], HISTORY_TYPE.value_type), type=HISTORY_TYPE)
    return pa.table(
        {
            "id": pc.binary_join_element_wise(pa.scalar(prefix), pc.cast(rows, pa.string()), "#"),
            "source": pa.repeat(pa.scalar(source, pa.string()), n) if n else pa.array([], pa.string()),
            "system": pc.fill_null(table.column("system"), ""),
            "instruction": table.column("instruction"),
            "input": pc.fill_null(table.column("input"), ""),
            "output": table.column("output"),
            "history": history,
            "_seq": pa.array(at + seq0),
        }
    )
