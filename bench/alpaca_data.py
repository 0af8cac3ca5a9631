"""Alpaca-zh for the bench scripts, read by zhcurate's own salvaging reader (one file has a trailing comma)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa

from pipeline.read.sources import FileInfo, container_of, iter_units
from schemas.record import CANONICAL_SCHEMA

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "alpaca_zh"


def read_alpaca_file(path: Path) -> list[dict[str, Any]]:
    """The records of one JSON file, salvaged element by element; unparseable elements are skipped."""
    info = FileInfo(path=str(path), container=container_of(path))
    return [u.obj for u in iter_units(path, info) if u.error is None and isinstance(u.obj, dict)]


def load_alpaca(folder: Path = DATA) -> list[dict[str, str]]:
    """Every Alpaca-zh record in file order, as instruction/input/output strings."""
    rows: list[dict[str, str]] = []
    for path in sorted(folder.glob("*.json")):
        rows += [{k: str(r.get(k) or "") for k in ("instruction", "input", "output")} for r in read_alpaca_file(path)]
    return rows


def canonical_table(name: str, instruction: Sequence[str], input_: Sequence[str], output: Sequence[str]) -> pa.Table:
    """Single-turn records in the canonical schema, ids ``<name>#<row>``."""
    n = len(instruction)
    return pa.Table.from_pydict(
        {
            "id": [f"{name}#{i}" for i in range(n)],
            "source": [name] * n,
            "system": [""] * n,
            "instruction": list(instruction),
            "input": list(input_),
            "output": list(output),
            "history": [[] for _ in range(n)],
        },
        schema=CANONICAL_SCHEMA,
    )
