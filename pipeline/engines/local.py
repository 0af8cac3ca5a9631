"""The local engine: work units (:mod:`pipeline.engines.work`) in this process or on one local process pool.

Every engine has the same few operations, and the runner uses nothing else:

* ``read_units(files, prefixes, spec)`` — the units of the ``read`` step;
* ``unit_rows(rows, batch_size)`` — records per unit of a step over ``rows`` records;
* ``run(job, units)`` — :func:`~pipeline.engines.work.run_unit` on every unit, results in unit order;
* ``group_pairs(rows)`` — a global stage's key rows (``key``, ``seq``) -> the candidate pairs within each key
  group (:func:`stages.dedup.grouping.group_pairs`: here one numpy sort; Ray: a Ray Data ``groupby``);
* ``close()``; optionally ``prepare(stages)`` (set the stages up on the workers ahead of time).

``LocalEngine(workers=1)`` runs the units here. With ``workers > 1`` it reads the inputs in this process (so one
big file spreads over the workers too: a unit is one reader batch) and runs the units on one pool for the whole
run (spawned, so native libraries with threads are safe), each worker unpickling and setting up each stage once.
At most ``2 * workers`` units are in flight, so memory does not grow with the input. A ``light`` job (a global
stage's ``decide`` or ``gather``, with its resolution) runs here, where sending that resolution with every unit
would cost more than the work.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import pickle
import uuid
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import replace
from pathlib import Path
from typing import Any, Protocol

import pyarrow as pa

from pipeline.engines.work import FileUnit, Job, ReadSpec, Unit, read_chunks, run_unit
from stages.base import Stage
from stages.dedup.grouping import group_pairs


class Engine(Protocol):
    workers: int

    def read_units(self, files: list[Path], prefixes: list[str], spec: ReadSpec) -> Iterable[Unit]: ...

    def unit_rows(self, rows: int, batch_size: int) -> int: ...

    def run(self, job: Job, units: Iterable[Unit]) -> Iterator[Any]: ...

    def group_pairs(self, rows: pa.Table) -> pa.Table: ...

    def close(self) -> None: ...


# Per-process state of the pool's workers: the stages each has set up, by the engine's token for them.
_worker_stages: dict[str, Stage] = {}
_worker_jobs: dict[str, Job] = {}

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


def _warm(shipped: list[tuple[str, bytes]]) -> int:
    for token, blob in shipped:
        _worker_stage(token, blob)
    return os.getpid()


def _unit_in_worker(token: str, blob: bytes, stages: list[tuple[str, bytes]], unit: Unit) -> Any:
    job = _worker_jobs.get(token)
    if job is None:
        job = replace(pickle.loads(blob), stages=[_worker_stage(t, b) for t, b in stages])
        _worker_jobs.clear()  # one job at a time: the step before is done
        _worker_jobs[token] = job
    return run_unit(job, unit)


class LocalEngine:
    """In-process (``workers=1``) or a local process pool (``workers > 1``) started once, on first use, for
    every step of a run (:meth:`close` ends it)."""

    def __init__(self, workers: int = 1) -> None:
        self.workers = max(1, workers)
        # by id(), holding the stage itself: an id is not reused while its object lives
        self._ready: dict[int, Stage] = {}
        self._pool: ProcessPoolExecutor | None = None
        self._shipped: dict[int, tuple[Stage, str, bytes]] = {}

    def __enter__(self) -> LocalEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """End the worker processes (a later call starts new ones)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        self._shipped.clear()
        self._ready.clear()

    def read_units(self, files: list[Path], prefixes: list[str], spec: ReadSpec) -> Iterator[Unit]:
        """The inputs read here, a unit per reader batch (so the pool's workers share even one big file)."""
        for index, (path, prefix) in enumerate(zip(files, prefixes, strict=True)):
            yield from read_chunks(FileUnit(str(path), index, prefix), spec)

    def unit_rows(self, rows: int, batch_size: int) -> int:
        return batch_size

    def group_pairs(self, rows: pa.Table) -> pa.Table:
        """The candidate pairs of the key rows, here (one sort: faster than shipping the rows to the pool)."""
        return group_pairs(rows)

    def _ship(self, stage: Stage) -> tuple[str, bytes]:
        """A token and the pickled stage, made once per stage object (workers set each token up once)."""
        if id(stage) not in self._shipped:
            blob = pickle.dumps(stage, protocol=pickle.HIGHEST_PROTOCOL)
            self._shipped[id(stage)] = (stage, uuid.uuid4().hex, blob)
        _, token, blob = self._shipped[id(stage)]
        return token, blob

    def _get_pool(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                self.workers, mp_context=mp.get_context("spawn"), initializer=_init_process
            )
        return self._pool

    def prepare(self, stages: Sequence[Stage]) -> None:
        """Start the workers and let each set up ``stages`` now, in the background (while this process reads the
        input), instead of on their first units. Returns at once; a no-op in-process."""
        if self.workers > 1 and stages:
            shipped = [self._ship(stage) for stage in stages]
            pool = self._get_pool()
            for _ in range(self.workers):
                pool.submit(_warm, shipped)

    def run(self, job: Job, units: Iterable[Unit]) -> Iterator[Any]:
        if self.workers == 1 or job.light:
            for stage in job.stages:
                if id(stage) not in self._ready:
                    stage.setup()
                    self._ready[id(stage)] = stage
            for unit in units:
                yield run_unit(job, unit)
            return
        stages = [self._ship(stage) for stage in job.stages]
        blob = pickle.dumps(replace(job, stages=[]), protocol=pickle.HIGHEST_PROTOCOL)
        token = uuid.uuid4().hex
        pool = self._get_pool()
        pending: deque[Future[Any]] = deque()
        try:
            for unit in units:
                pending.append(pool.submit(_unit_in_worker, token, blob, stages, unit))
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


__all__ = ["Engine", "LocalEngine"]
