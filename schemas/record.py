"""The canonical record (contract, see DESIGN.md) and the ledger schemas built on it.

Every stage receives and returns Arrow tables with at least the canonical columns. A stage may add columns;
it declares them in ``Stage.added_columns`` so the runner can build the final schemas up front.

Columns added by stages (documented here so users find them in one place):

| column | type | added by | meaning |
|---|---|---|---|
| safety_refusal | bool | safety | a harmful request answered with a refusal or safe redirection (kept) |
| safety_request_category | string | safety | category of a harmful request (see README); null if benign |
| safety_score | float64 | safety | 0..1 risk of the pair (request risk x compliance, toxicity); higher is riskier |
| language_profile | string | language | zh, zh+terms, zh+code, zh+en (translation task), … |
| quality_score | float64 | quality | 0..1, higher is better; dedup keeps the twin with the highest score |
"""

from __future__ import annotations

import pyarrow as pa

HISTORY_TYPE = pa.list_(pa.struct([("user", pa.string()), ("assistant", pa.string())]))

CANONICAL_SCHEMA = pa.schema(
    [
        ("id", pa.string()),  # "<source file name>#<row index>", unique within a run
        ("source", pa.string()),  # the input file as given
        ("system", pa.string()),
        ("instruction", pa.string()),
        ("input", pa.string()),
        ("output", pa.string()),
        ("history", HISTORY_TYPE),
    ]
)

TEXT_FIELDS: tuple[str, ...] = ("system", "instruction", "input", "output")

# Columns appended to a record in rejected.parquet.
LEDGER_FIELDS = [
    ("stage", pa.string()),  # the stage that dropped it ("read" for records dropped while reading)
    ("reason", pa.string()),  # stable snake_case code
    ("detail", pa.string()),  # JSON text: matched term, score, duplicate_of, similarity, ...
]


def empty_canonical_table() -> pa.Table:
    return CANONICAL_SCHEMA.empty_table()
