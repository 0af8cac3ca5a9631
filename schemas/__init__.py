"""Arrow schemas shared by every stage: the canonical record, the rejected ledger, the quarantine entry."""

from schemas.record import (
    CANONICAL_SCHEMA,
    HISTORY_TYPE,
    LEDGER_FIELDS,
    QUARANTINE_FIELDS,
    empty_canonical_table,
    rejected_schema,
)

__all__ = [
    "CANONICAL_SCHEMA",
    "HISTORY_TYPE",
    "LEDGER_FIELDS",
    "QUARANTINE_FIELDS",
    "empty_canonical_table",
    "rejected_schema",
]
