"""Engines run a stage's method over batches. The whole contract is :meth:`Engine.map`.

``LocalEngine(workers=1)`` runs in-process; ``workers > 1`` runs on a process pool (spawned, so native
libraries with threads are safe), each worker building and setting up the stage once. Results come back in
input order and at most ``2 * workers`` batches are in flight, so memory does not grow with the input.
The Ray engine implements the same method.
"""

from __future__ import annotations

import multiprocessing as mp
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

from stages.base import GlobalStage, RecordStage, Stage

if TYPE_CHECKING:
    import pyarrow as pa

    from pipeline.parts import PartReport
    from pipeline.recipe import Recipe

Method = Literal["process", "fingerprint", "decide", "gather"]


def call(stage: Stage, method: Method, batch: Any, context: Any = None) -> Any:
    """Run one stage method on one batch (the one place that knows the method names)."""
    if method == "process" and isinstance(stage, RecordStage):
        return stage.process(batch)
    if method == "fingerprint" and isinstance(stage, GlobalStage):
        return stage.fingerprint(batch)
    if method == "decide" and isinstance(stage, GlobalStage):
        return stage.decide(batch, context)
    if method == "gather" and isinstance(stage, GlobalStage):
        return stage.gather(batch, context)
    raise TypeError(f"stage '{stage.name}' ({type(stage).__name__}) has no method '{method}'")


def resolve(engine: Engine, stage: GlobalStage, batches: Iterable[Any]) -> Any:
    """Fingerprint every batch on ``engine`` and resolve over all fingerprints on this machine — unless the
    engine resolves at cluster scale itself (an optional ``resolve(stage, batches)`` method, as the Ray engine
    has), in which case it does both."""
    own = getattr(engine, "resolve", None)
    if own is not None:
        return own(stage, batches)
    return stage.resolve(list(engine.map(stage, "fingerprint", batches)))


def complete(engine: Engine, stage: GlobalStage, resolution: Any, batches: Callable[[], Iterable[Any]]) -> Any:
    """The final resolution: ``resolution`` itself, or — when the stage asks for a second pass over the records
    (:meth:`~stages.base.GlobalStage.needs_records`) — ``gather`` on every batch of ``batches()`` on ``engine``,
    then ``complete``."""
    if not stage.needs_records(resolution):
        return resolution
    return stage.complete(resolution, list(engine.map(stage, "gather", batches(), context=resolution)))


class Engine(Protocol):
    workers: int

    def map(self, stage: Stage, method: Method, batches: Iterable[Any], context: Any = None) -> Iterator[Any]:
        """``call(stage, method, batch, context)`` for every batch, results in input order."""
        ...


@runtime_checkable
class PartsEngine(Protocol):
    """An engine that runs whole steps on its workers, which read and write the checkpoint parts themselves
    (see :mod:`pipeline.parts`); the runner gets only their reports (:class:`~pipeline.parts.PartReport`)."""

    def read_parts(
        self, files: list[Path], prefixes: list[str], recipe: Recipe, step_dir: Path
    ) -> Iterator[PartReport]:
        """Read every input file into parts under ``step_dir``; a report per part, in any order."""
        ...

    def map_parts(
        self,
        stage: Stage,
        method: Method,
        inputs: list[Path],
        step_dir: Path,
        schema: pa.Schema,
        batch_size: int,
        context: Any = None,
    ) -> Iterator[PartReport]:
        """Run ``process`` (or ``decide`` with the resolution ``context``) over the records of ``inputs`` (Parquet
        files in input order) and write the kept and dropped records as parts under ``step_dir``."""
        ...

    def resolve_parts(self, stage: GlobalStage, inputs: list[Path]) -> Any:
        """Fingerprint the records of ``inputs`` and resolve them (the global stage's resolution)."""
        ...


# Per-worker state of the process pool: set once by the initializer, read by each task.
_worker: dict[str, Any] = {}


def _init_worker(stage: Stage, context: Any) -> None:
    stage.setup()
    _worker["stage"] = stage
    _worker["context"] = context


def _run_in_worker(method: Method, batch: Any) -> Any:
    return call(_worker["stage"], method, batch, _worker["context"])


class LocalEngine:
    """In-process (``workers=1``) or a local process pool (``workers > 1``)."""

    def __init__(self, workers: int = 1) -> None:
        self.workers = max(1, workers)
        self._ready: set[int] = set()

    def map(self, stage: Stage, method: Method, batches: Iterable[Any], context: Any = None) -> Iterator[Any]:
        if self.workers == 1:
            if id(stage) not in self._ready:
                stage.setup()
                self._ready.add(id(stage))
            for batch in batches:
                yield call(stage, method, batch, context)
            return
        ctx = mp.get_context("spawn")
        with ProcessPoolExecutor(
            self.workers, mp_context=ctx, initializer=_init_worker, initargs=(stage, context)
        ) as pool:
            pending: deque[Future[Any]] = deque()
            for batch in batches:
                pending.append(pool.submit(_run_in_worker, method, batch))
                if len(pending) >= 2 * self.workers:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
