"""Atomic files and the per-step checkpoints that make ``--resume`` safe.

Nothing is ever visible under its final name half-written: every file is written to ``<name>.tmp-<pid>`` and
renamed. A step is complete when its ``.stats.json`` exists (written last) and names the same fingerprint.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq


def tmp_name(path: Path) -> Path:
    return path.with_name(f"{path.name}.tmp-{os.getpid()}")


def write_text_atomic(path: Path, text: str) -> None:
    tmp = tmp_name(path)
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def write_json_atomic(path: Path, obj: Any) -> None:
    write_text_atomic(path, json.dumps(obj, ensure_ascii=False, indent=2, default=str))


class ParquetSink:
    """Streams tables into one Parquet file, visible under its name only after :meth:`close`: zstd for the
    outputs, and ``scratch=True`` for a step's parts in the work folder (read once or twice by the next steps):
    uncompressed and without dictionary pages, which writes about 4x faster and reads 1.6x faster for twice the
    size on disk."""

    def __init__(self, path: Path, schema: pa.Schema, scratch: bool = False) -> None:
        self.path, self.schema = path, schema
        self.tmp = tmp_name(path)
        self.writer = (
            pq.ParquetWriter(self.tmp, schema, compression="none", use_dictionary=False)
            if scratch
            else pq.ParquetWriter(self.tmp, schema, compression="zstd")
        )
        self.rows = 0

    def write(self, table: pa.Table) -> None:
        if table.num_rows:
            self.writer.write_table(table.select(self.schema.names).cast(self.schema))
            self.rows += table.num_rows

    def close(self) -> None:
        self.writer.close()
        os.replace(self.tmp, self.path)

    def abort(self) -> None:
        self.writer.close()
        self.tmp.unlink(missing_ok=True)


def fingerprint(*parts: Any) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(json.dumps(part, sort_keys=True, default=str).encode())
        h.update(b"\x00")
    return h.hexdigest()[:24]


def input_fingerprint(files: Iterable[Path]) -> list[list[Any]]:
    """What identifies the input: each file's absolute path, size and modification time."""
    out = []
    for f in files:
        st = f.stat()
        out.append([os.path.abspath(f), st.st_size, st.st_mtime_ns])
    return out


def load_stats(path: Path, expected_fp: str) -> dict[str, Any] | None:
    try:
        stats = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    return stats if stats.get("fingerprint") == expected_fp else None


def clean_tmp(folder: Path) -> None:
    """Remove leftovers of an interrupted run (temporary names only; finished files are kept)."""
    if folder.is_dir():
        for f in folder.iterdir():
            if ".tmp-" in f.name:
                f.unlink(missing_ok=True)


def write_pickle_atomic(path: Path, key: str, obj: Any) -> None:
    """Cached fingerprints (numpy arrays) with the key they were made for."""
    tmp = tmp_name(path)
    with open(tmp, "wb") as f:
        pickle.dump((key, obj), f, protocol=pickle.HIGHEST_PROTOCOL)
    os.replace(tmp, path)


def load_pickle(path: Path, key: str) -> Any:
    """What :func:`write_pickle_atomic` stored under ``key``; None when absent, unreadable or made for another key.
    The file is the runner's own (in the output's checkpoint folder), never user input."""
    try:
        with open(path, "rb") as f:
            stored_key, obj = pickle.load(f)
    except (OSError, EOFError, pickle.UnpicklingError, ValueError):
        return None
    return obj if stored_key == key else None
