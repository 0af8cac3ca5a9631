"""The books of a step: its parts checked against the units' reports, and its ``.stats.json``."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from pipeline.engines.parts import PartReport, on_disk, remove_orphans
from schemas.errors import BalanceError
from stages.base import GlobalStage, Stage


def check_parts(
    step_dirs: list[Path], per_step: list[list[PartReport]], totals: list[PartReport], expected: int | None
) -> None:
    """For the steps of one pass (the last one writes kept records): the parts on disk hold exactly what the units
    reported (parts no reported unit wrote are removed first), and each step got what the one before it kept
    (``expected``: what the step before the pass kept; None for the read step)."""
    for i, (step_dir, reports, total) in enumerate(zip(step_dirs, per_step, totals, strict=True)):
        remove_orphans(step_dir, {r.key for r in reports})
        found = on_disk(step_dir)
        want = (total.kept if i == len(step_dirs) - 1 else 0, total.dropped, total.quarantined)
        if found != want:
            raise BalanceError(
                f"step '{step_dir.name}': the workers reported {want[0]} kept, {want[1]} dropped and {want[2]} "
                f"quarantined records, but its parts in {step_dir} hold {found[0]}, {found[1]} and {found[2]}. "
                "This is a bug; please report it with that folder."
            )
        records_in = total.rows_in - (total.quarantined if expected is None else 0)
        if (expected is not None and total.rows_in != expected) or total.kept + total.dropped != records_in:
            raise BalanceError(
                f"step '{step_dir.name}' received {total.rows_in} of {expected} records and returned "
                f"{total.kept} kept + {total.dropped} dropped"
            )
        expected = total.kept


def step_stats(
    stage: Stage | None, fp: str, files: dict[str, str | None], total: PartReport, seconds: float, info: dict[str, Any]
) -> dict[str, Any]:
    """A finished step's statistics (``stage`` None: the read step), from its merged books; ``info`` may hold the
    resolution's counters (``resolution_counters``, listed before the units')."""
    counters = Counter(info.pop("resolution_counters", {}))
    counters.update(total.counters)
    stats: dict[str, Any] = {
        "name": stage.name if stage else "read",
        "kind": "read" if stage is None else "global" if isinstance(stage, GlobalStage) else "record",
        **files,
        "fingerprint": fp,
        "input": total.rows_in,
        "kept": total.kept,
        "dropped": total.dropped,
        "reasons": dict(total.reasons),
        "counters": dict(counters),
        "seconds": round(seconds, 3),
        "reused": False,
        **info,
    }
    if stage is None:
        stats["quarantined"] = total.quarantined
        stats["files"] = [vars(x) for x in total.infos]
    else:
        stats["params"] = stage.params.model_dump(mode="json")
    stats["collect"] = total.collector.result()
    return stats


__all__ = ["check_parts", "step_stats"]
