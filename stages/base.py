"""The whole contract between a stage and the runner.

A stage is a small class with typed parameters (a pydantic model, validated when the recipe loads) that works
on Arrow tables (one batch of records at a time). It returns *decisions*; the runner keeps the books (counts,
ledger, timings, checkpoints, progress). A stage never writes files and never prints.

Two shapes cover every stage:

* :class:`RecordStage` — decides each record on its own: ``process(batch) -> StageResult``. A stage that only
  keeps or drops is a :class:`stages.filter.RecordFilter`: ``judge(record) -> Drop | None``, the base does the rest.
* :class:`GlobalStage` — needs to see all records first (deduplication):
  ``fingerprint(batch)`` on every batch (may run in parallel), ``resolve(fingerprints)`` once over all of them,
  then ``decide(batch, resolution)`` on every batch.

The same shape runs in-process, on a process pool and on Ray Data without the stage knowing which.

Heavy resources (lexicons, models, a segmenter) are loaded in ``setup()`` into the attributes a stage names in
``resources``; those are never pickled, so a worker gets the stage without them and loads its own.

Besides the canonical columns (schemas/record.py) every batch carries ``_seq`` (int64): the record's position
in the whole input (file order, then row). Use it for "earliest record" tie-breaks; it is dropped on write.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import pyarrow as pa
from pydantic import BaseModel, ConfigDict

SEQ_COLUMN = "_seq"


class StageParams(BaseModel):
    """Base for every stage's parameters: unknown keys are errors, values are validated on load."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def detail_json(**fields: Any) -> str:
    """The ``detail`` column's JSON text: stable key order, Chinese kept readable."""
    return json.dumps(fields, ensure_ascii=False, sort_keys=True, default=str)


@dataclass
class StageResult:
    """What a stage decided about one batch.

    ``table`` holds every input row, in input order, possibly with changed or added columns.
    ``reasons[i]`` is None to keep row i, else the stable snake_case reason code it is dropped for;
    ``details[i]`` is then a JSON text (see :func:`detail_json`). ``counters`` are additive statistics
    (e.g. ``{"changed.width": 12}``) that the runner sums over batches into report.json.
    """

    table: pa.Table
    reasons: list[str | None]
    details: list[str | None]
    counters: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = self.table.num_rows
        if len(self.reasons) != n or len(self.details) != n:
            raise ValueError(f"StageResult: {n} rows but {len(self.reasons)} reasons and {len(self.details)} details")


class Stage(ABC):
    """Common part of both stage shapes."""

    name: ClassVar[str]
    Params: ClassVar[type[StageParams]]
    # Columns this stage adds to records, with their Arrow types (documented in schemas/record.py).
    added_columns: ClassVar[tuple[tuple[str, pa.DataType], ...]] = ()
    # The attributes :meth:`setup` loads (lexicons, models, a segmenter): never pickled. A copy of the stage (a
    # pool worker, a Ray actor) gets them as None and loads its own when the engine calls ``setup()`` there.
    resources: ClassVar[tuple[str, ...]] = ()

    def __init__(self, params: StageParams | None = None) -> None:
        self.params = params if params is not None else self.Params()

    def check(self) -> None:
        """Fail fast, before any work starts, if the stage cannot run (e.g. a model that cannot be loaded
        offline). Raise :class:`schemas.errors.ConfigError` with a message that says what to do."""

    def setup(self) -> None:
        """Load heavy resources (lexicons, models) into the attributes named in :attr:`resources`. Engines call it
        once per process before the first batch; it must return at once when they are loaded (a stage may call
        it again itself, e.g. at the start of ``process``, to work without an engine)."""

    def __getstate__(self) -> dict[str, Any]:
        """The stage without its :attr:`resources` (set to None): what a worker receives."""
        state = dict(self.__dict__)
        for name in self.resources:
            if name in state:
                state[name] = None
        return state

    def fingerprint_params(self) -> dict[str, Any]:
        """What identifies this stage's behaviour for checkpoints: its parameters (override to add e.g. a
        model's hash)."""
        return self.params.model_dump(mode="json")


class RecordStage(Stage):
    """A stage that decides each record on its own."""

    @abstractmethod
    def process(self, batch: pa.Table) -> StageResult: ...


class GlobalStage(Stage):
    """A stage that must see every record before deciding (deduplication)."""

    @abstractmethod
    def fingerprint(self, batch: pa.Table) -> Any:
        """Compact, picklable fingerprints of one batch (e.g. a uint32 matrix and the ``_seq`` column).
        Never keep the texts."""

    @abstractmethod
    def resolve(self, fingerprints: Sequence[Any], pairs: pa.Table | None = None) -> Any:
        """Decide over all fingerprints (in input order). Returns a picklable resolution for :meth:`decide`.
        ``pairs``: for a stage with :meth:`group_keys`, the engine's grouping of those key rows (the candidate
        pairs, :func:`stages.dedup.grouping.group_pairs`); ``None`` otherwise."""

    def group_keys(self, fingerprints: Sequence[Any]) -> pa.Table | None:
        """Key rows (``key`` uint64, ``seq`` int64) made in :meth:`fingerprint`, whose groups the engine turns into
        the candidate pairs given to :meth:`resolve` (on every engine the same pairs); ``None`` (the default):
        the stage finds its candidates in :meth:`resolve` itself."""
        return None

    @abstractmethod
    def decide(self, batch: pa.Table, resolution: Any) -> StageResult:
        """Apply the resolution to one batch."""

    def fingerprint_cache_params(self) -> dict[str, Any] | None:
        """When fingerprints are expensive (embeddings), the parameters they depend on: the runner then keeps
        them in the checkpoint folder and ``--resume`` reuses them when only resolve-time parameters (e.g. a
        threshold) changed. ``None`` (the default): not cached."""
        return None

    def resolution_counters(self, resolution: Any) -> dict[str, int]:
        """Statistics of the resolution itself (e.g. cluster sizes), summed into report.json."""
        return {}

    # Optional second, compact pass (e.g. the texts of candidate pairs only): when ``needs_records`` says the
    # resolution is provisional, the runner has every engine run ``gather(batch, resolution)`` on every batch and
    # then ``complete(resolution, gathered)`` (gathered pieces in input order) gives the final resolution.

    def needs_records(self, resolution: Any) -> bool:
        """Whether ``resolution`` must still be completed from some records (default: never)."""
        return False

    def gather(self, batch: pa.Table, resolution: Any) -> Any:
        """What :meth:`complete` needs from this batch: small (the records the resolution names, not all)."""
        raise NotImplementedError(f"stage {self.name!r} has no second pass")

    def complete(self, resolution: Any, gathered: Sequence[Any]) -> Any:
        """The final resolution from the provisional one and what :meth:`gather` returned for every batch."""
        raise NotImplementedError(f"stage {self.name!r} has no second pass")
