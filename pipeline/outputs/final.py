"""The run's outputs from its checkpoints: cleaned.parquet, rejected.parquet and quarantine.jsonl, and the balance.

``cleaned.parquet`` is the last step's kept parts, ``rejected.parquet`` every step's dropped parts (in step order,
each in input order), ``quarantine.jsonl`` the read step's quarantine parts. All three are written in batches of
the recipe's ``batch_size`` records (whatever the parts' sizes), so the files do not depend on how the engine cut
its work units.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.checkpoint import ParquetSink, write_text_atomic
from pipeline.engines.parts import iter_batches, ledger_schema, part_files
from pipeline.report.collect import ReportCollector
from schemas.errors import BalanceError
from stages.base import SEQ_COLUMN


def rebatched(path: Path, batch_size: int) -> Iterator[pa.Table]:
    """A checkpoint's records in input order, in batches of exactly ``batch_size`` (the last one fewer)."""
    held: list[pa.Table] = []
    rows = 0
    for batch in iter_batches(path, batch_size):
        held.append(batch)
        rows += batch.num_rows
        while rows >= batch_size:
            table = pa.concat_tables(held)
            yield table.slice(0, batch_size).combine_chunks()  # one chunk a column: the pages do not depend on parts
            rest = table.slice(batch_size)
            held, rows = ([rest] if rest.num_rows else []), rest.num_rows
    if rows:
        yield pa.concat_tables(held).combine_chunks()


def write_outputs(
    out: Path, work: Path, steps: list[dict[str, Any]], schema: pa.Schema, batch_size: int
) -> tuple[dict[str, int], dict[str, Any]]:
    """Write the outputs; returns the totals (checked: input = cleaned + rejected + quarantined) and the report
    material of the cleaned records (the "after" side of the report)."""
    final_schema = pa.schema([f for f in schema if f.name != SEQ_COLUMN])
    cleaned = ParquetSink(out / "cleaned.parquet", final_schema)
    final = ReportCollector()
    last = next(s for s in reversed(steps) if s.get("file"))
    # With no stage after read the cleaned records are read's, whose report material read collected already.
    same = last is steps[0] and bool(last.get("collect"))
    for batch in rebatched(work / last["file"], batch_size):
        cleaned.write(batch)
        if not same:
            final.add_kept(batch)
    cleaned.close()
    rejected_schema = ledger_schema(final_schema)
    rejected = ParquetSink(out / "rejected.parquet", rejected_schema)
    for step in steps:
        for batch in rebatched(work / step["rejected_file"], batch_size):
            for f in rejected_schema:
                if f.name not in batch.column_names:
                    batch = batch.append_column(f.name, pa.nulls(batch.num_rows, f.type))
            rejected.write(batch)
    rejected.close()
    src = work / steps[0]["quarantine_file"]  # (one file in the checkpoints of older versions)
    sources = [src] if src.suffix == ".jsonl" else part_files(src, ".jsonl")
    write_text_atomic(out / "quarantine.jsonl", "".join(f.read_text(encoding="utf-8") for f in sources))
    with open(out / "quarantine.jsonl", "rb") as f:
        n_quarantined = sum(1 for _ in f)
    totals = {
        "input": steps[0]["input"],
        "cleaned": pq.ParquetFile(out / "cleaned.parquet").metadata.num_rows,
        "rejected": pq.ParquetFile(out / "rejected.parquet").metadata.num_rows,
        "quarantined": n_quarantined,
    }
    if totals["input"] != totals["cleaned"] + totals["rejected"] + totals["quarantined"]:
        raise BalanceError(
            f"records were lost: input {totals['input']} != cleaned {totals['cleaned']} + rejected "
            f"{totals['rejected']} + quarantined {totals['quarantined']}. This is a bug; please report it "
            f"with the checkpoint folder {work}."
        )
    return totals, (dict(last["collect"]) if same else final.result())


__all__ = ["rebatched", "write_outputs"]
