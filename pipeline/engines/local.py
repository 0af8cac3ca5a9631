"""Engines run a stage's method over batches. The whole contract is :meth:`Engine.map`.

``LocalEngine(workers=1)`` runs in-process; ``workers > 1`` runs on one process pool for the whole run (spawned,
so native libraries with threads are safe), each worker setting up each stage once. Results come back in input
order and at most ``2 * workers`` batches are in flight, so memory does not grow with the input.
The Ray engine implements the same method.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import pickle
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

from stages.base import GlobalStage, RecordStage, Stage

if TYPE_CHECKING:
    import pyarrow as pa

    from pipeline.engines.fused import StageBooks
    from pipeline.engines.parts import PartReport
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
    (see :mod:`pipeline.engines.parts`); the runner gets only their reports
    (:class:`~pipeline.engines.parts.PartReport`)."""

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


# Per-process state of the pool's workers: the stages each has set up, by the engine's token for them.
_worker_stages: dict[str, Stage] = {}


_ONE_THREAD = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS")


def _init_process() -> None:
    """A pool worker is one of ``workers`` processes sharing the cores: its native libraries (torch, BLAS, numba)
    each use one thread, unless the user set their thread counts."""
    for name in _ONE_THREAD:
        os.environ.setdefault(name, "1")


def _worker_stage(token: str, blob: bytes) -> Stage:
    """The worker's own copy of a stage, unpickled and set up on its first task (then reused for the run)."""
    stage = _worker_stages.get(token)
    if stage is None:
        stage = pickle.loads(blob)
        stage.setup()
        _worker_stages[token] = stage
    return stage


def _run_in_worker(token: str, blob: bytes, method: Method, batch: Any) -> Any:
    return call(_worker_stage(token, blob), method, batch)


def _warm(shipped: list[tuple[str, bytes]]) -> int:
    for token, blob in shipped:
        _worker_stage(token, blob)
    return os.getpid()


def _segment_in_worker(shipped: list[tuple[str, bytes]], schemas: list[pa.Schema], batch: pa.Table) -> Any:
    from pipeline.engines.fused import run_segment

    stages = [_worker_stage(token, blob) for token, blob in shipped]
    return run_segment(stages, schemas, batch)  # type: ignore[arg-type]


class LocalEngine:
    """In-process (``workers=1``) or a local process pool (``workers > 1``).

    The pool is started once, on first use, and serves every step of a run (:meth:`close` ends it); a worker
    unpickles and sets up each stage once, on its first batch of that stage. Per-record work (a fused segment of
    record stages, :meth:`map_segment`) and fingerprints run on the workers; a global stage's ``decide`` is cheap
    and runs here, where the batches already are, instead of travelling to a worker and back.
    """

    def __init__(self, workers: int = 1) -> None:
        self.workers = max(1, workers)
        self._ready: set[int] = set()
        self._pool: ProcessPoolExecutor | None = None
        self._shipped: dict[int, tuple[str, bytes]] = {}

    def __enter__(self) -> LocalEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """End the worker processes (a later call starts new ones)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def _setup_here(self, stage: Stage) -> Stage:
        if id(stage) not in self._ready:
            stage.setup()
            self._ready.add(id(stage))
        return stage

    def _ship(self, stage: Stage) -> tuple[str, bytes]:
        """A token and the pickled stage, made once per stage object (workers set each token up once)."""
        if id(stage) not in self._shipped:
            self._shipped[id(stage)] = (uuid.uuid4().hex, pickle.dumps(stage, protocol=pickle.HIGHEST_PROTOCOL))
        return self._shipped[id(stage)]

    def _get_pool(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                self.workers, mp_context=mp.get_context("spawn"), initializer=_init_process
            )
        return self._pool

    def prepare(self, stages: Sequence[Stage]) -> None:
        """Start the workers and let each set up ``stages`` now, in the background (while this process reads the
        input), instead of on their first batches. Returns at once; a no-op in-process."""
        if self.workers > 1 and stages:
            shipped = [self._ship(stage) for stage in stages]
            pool = self._get_pool()
            for _ in range(self.workers):
                pool.submit(_warm, shipped)

    def _ordered(self, fn: Any, args: Iterable[tuple[Any, ...]]) -> Iterator[Any]:
        """``fn(*a)`` on the pool for every ``a``, results in input order, at most ``2 * workers`` in flight."""
        pool = self._get_pool()
        pending: deque[Future[Any]] = deque()
        try:
            for a in args:
                pending.append(pool.submit(fn, *a))
                if len(pending) >= 2 * self.workers:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        except BrokenProcessPool:
            self._pool = None  # a worker died (e.g. killed for memory): the next step starts a new pool
            raise
        finally:
            for f in pending:
                f.cancel()

    def map(self, stage: Stage, method: Method, batches: Iterable[Any], context: Any = None) -> Iterator[Any]:
        if self.workers == 1 or method in ("decide", "gather"):  # cheap, and the batches are already here
            self._setup_here(stage)
            for batch in batches:
                yield call(stage, method, batch, context)
            return
        if context is not None:
            raise TypeError(f"LocalEngine runs '{method}' with a context only in this process")
        token, blob = self._ship(stage)
        yield from self._ordered(_run_in_worker, ((token, blob, method, batch) for batch in batches))

    def map_segment(
        self, stages: Sequence[RecordStage], schemas: Sequence[pa.Schema], batches: Iterable[pa.Table]
    ) -> Iterator[tuple[pa.Table, list[StageBooks]]]:
        """:func:`pipeline.engines.fused.run_segment` over every batch, results in input order."""
        from pipeline.engines.fused import run_segment

        if self.workers == 1:
            for stage in stages:
                self._setup_here(stage)
            for batch in batches:
                yield run_segment(stages, schemas, batch)
            return
        shipped = [self._ship(stage) for stage in stages]
        yield from self._ordered(_segment_in_worker, ((shipped, list(schemas), batch) for batch in batches))
