"""Build canonical record batches for stage tests."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import pyarrow as pa

from schemas.record import CANONICAL_SCHEMA
from stages.base import SEQ_COLUMN

_TEXT = ("system", "instruction", "input", "output")


def canonical_table(rows: Iterable[Mapping[str, Any]], defaults: Mapping[str, str] | None = None) -> pa.Table:
    """Canonical records plus ``_seq`` from dicts of fields; a missing text field takes ``defaults`` or ""."""
    base = dict(defaults or {})
    records = [
        {
            "id": f"t.jsonl#{i}",
            "source": "t.jsonl",
            **{f: r.get(f, base.get(f, "")) for f in _TEXT},
            "history": r.get("history", []),
        }
        for i, r in enumerate(rows)
    ]
    table = pa.Table.from_pylist(records, schema=CANONICAL_SCHEMA)
    return table.append_column(SEQ_COLUMN, pa.array(range(len(records)), pa.int64()))
