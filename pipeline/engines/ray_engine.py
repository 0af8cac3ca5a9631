"""The Ray engine: the same stages, unchanged, on a Ray cluster (``zhcurate run --engine ray``).

It has the local engine's operations (:mod:`pipeline.engines.local`) and runs the same work units
(:mod:`pipeline.engines.work`), on Ray Data actors: ``run(job, units)`` sends the units (small: a file name, or a
Parquet file and row-group numbers) through ``map_batches`` to a pool of actors, each of which gets the job once
through the object store, sets its stages up once (a model is loaded once per worker, not once per unit) and runs
:func:`~pipeline.engines.work.run_unit` on each unit it gets: the unit reads its input itself (an input file, or
row groups of the previous step's parts) and writes its parts; only the reports (or, for a ``collect`` job, the
fingerprints) come back, in unit order. A ``read`` unit is one input file. Fingerprints of a stage that may use a
GPU go to GPU actors when the cluster has GPUs.

Results equal the local engine's: parts are named and merged in input order, and a global stage resolves the same
fingerprints with the same code on the driver. ``group_pairs(rows)`` (the candidates of ``dedup_exact`` and
``dedup_minhash``) hash-partitions the key rows by key and groups them with a Ray Data ``groupby(...).map_groups``
on the workers, each partition paired by the same :func:`stages.dedup.grouping.group_pairs` the local engine
runs; only the pairs come back.

Fault tolerance is Ray's: an actor whose process dies is restarted and the unit it was running is retried
(Ray Data's actor pools use ``max_restarts=-1``, ``max_task_retries=-1``); the stage is set up again in the new
process. Stages are pure functions of their batch and parts are written under a temporary name and renamed, so a
retried unit rewrites the same parts with the same records. A unit whose stage raises an exception is not
retried: the run fails with the stage named.
"""

from __future__ import annotations

import logging
import math
import pickle
from collections.abc import Iterable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from pipeline.engines.parts import PART_ROWS
from pipeline.engines.work import FileUnit, Job, ReadSpec, Unit, run_unit
from schemas.errors import ConfigError
from stages.dedup.grouping import KEY, PAIRS_SCHEMA, SEQ, group_pairs

UNIT_COLUMN = "__zh_unit"
PAYLOAD_COLUMN = "__zh_payload"
PART_COLUMN = "__zh_part"


def import_ray() -> Any:
    """``ray`` with Ray Data, or a :class:`ConfigError` that says how to install it."""
    try:
        import ray
        import ray.data
    except ImportError:
        raise ConfigError(
            "--engine ray needs Ray Data, which is not installed: pip install 'zhcurate[ray]' "
            "(or pip install 'ray[data]'), or run with --engine local"
        ) from None
    return ray


class _UnitActor:
    """One Ray Data actor of a job: the job (its stages set up once), then ``run_unit`` on every unit it gets."""

    def __init__(self, box: list[Any]) -> None:
        import ray

        self.job: Job = ray.get(box[0])  # a list, so that Ray does not resolve the ref for us
        for stage in self.job.stages:
            stage.setup()

    def __call__(self, block: pa.Table) -> pa.Table:
        results = [run_unit(self.job, pickle.loads(u)) for u in block.column(UNIT_COLUMN).to_pylist()]
        payloads = [pickle.dumps(r, protocol=pickle.HIGHEST_PROTOCOL) for r in results]
        return pa.table({PAYLOAD_COLUMN: pa.array(payloads, pa.large_binary())})


class RayEngine:
    """Runs work units on Ray Data actors.

    ``workers``: actors per job (default: the cluster's CPUs); ``address``: a running cluster
    (``ray start --head`` prints it; ``auto`` finds the local one), or None to start a private local Ray
    with ``num_cpus`` CPUs (stopped again by :meth:`close`); ``part_rows``: records per part (the unit of a
    worker's task and of a checkpoint file).
    """

    def __init__(
        self,
        workers: int | None = None,
        address: str | None = None,
        num_cpus: int | None = None,
        part_rows: int = PART_ROWS,
    ) -> None:
        self._ray = import_ray()
        self._owns = not self._ray.is_initialized()
        if self._owns:
            self._ray.init(
                address=address,
                num_cpus=num_cpus if address is None else None,
                include_dashboard=False,
                log_to_driver=False,
                logging_level=logging.WARNING,
            )
        from ray.data import DataContext

        logging.getLogger("ray.data").setLevel(logging.WARNING)
        ctx = DataContext.get_current()
        ctx.execution_options.preserve_order = True
        ctx.enable_progress_bars = False
        ctx.print_on_execution_start = False
        resources = self._ray.cluster_resources()
        self.workers = max(1, workers or int(resources.get("CPU", 1)))
        self.gpus = int(resources.get("GPU", 0))
        self.part_rows = part_rows

    def close(self) -> None:
        """Disconnect from Ray (and stop the local Ray this engine started)."""
        if self._owns and self._ray.is_initialized():
            self._ray.shutdown()
        self._owns = False

    def __enter__(self) -> RayEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def read_units(self, files: list[Path], prefixes: list[str], spec: ReadSpec) -> list[Unit]:
        """One unit per input file, read on a worker into parts of ``part_rows`` units. A worker's working folder
        is not the driver's: relative paths are opened below the driver's (``spec.base_dir``)."""
        return [FileUnit(str(path), i, prefix) for i, (path, prefix) in enumerate(zip(files, prefixes, strict=True))]

    def unit_rows(self, rows: int, batch_size: int) -> int:
        """Records per unit of a step over ``rows`` records: at most ``part_rows``, and small enough that every
        worker gets about four units (so that the work evens out between the actors)."""
        return max(1, min(self.part_rows, math.ceil(rows / (4 * self.workers))))

    def group_pairs(self, rows: pa.Table) -> pa.Table:
        """The candidate pairs of the key rows (``key``, ``seq``), grouped on the workers: rows go to one of
        ``4 * workers`` partitions by a hash of their key (a key group stays whole), and
        ``groupby(partition).map_groups`` pairs each partition. A pair found in two partitions (two LSH bands)
        comes back twice; the stage keeps the distinct ones."""
        import ray.data

        if rows.num_rows < 2:
            return group_pairs(rows)
        parts = 4 * self.workers
        key = rows.column(KEY).to_numpy().astype(np.uint64)
        part = ((key * np.uint64(0x9E3779B97F4A7C15)) >> np.uint64(33)) % np.uint64(parts)
        table = rows.select([KEY, SEQ]).append_column(PART_COLUMN, pa.array(part.astype(np.int64)))
        step = math.ceil(table.num_rows / parts)
        blocks = [table.slice(start, step) for start in range(0, table.num_rows, step)]
        grouped = (
            ray.data.from_arrow(blocks)
            .groupby(PART_COLUMN, num_partitions=parts)
            .map_groups(group_pairs, batch_format="pyarrow")
        )
        found = [b for b in grouped.iter_batches(batch_size=None, batch_format="pyarrow")]
        tables = [pa.table(b).select(PAIRS_SCHEMA.names).cast(PAIRS_SCHEMA) for b in found]
        return pa.concat_tables([PAIRS_SCHEMA.empty_table(), *tables])

    def run(self, job: Job, units: Iterable[Unit]) -> Iterator[Any]:
        """``run_unit(job, unit)`` for every unit on the actors, results in unit order. The units are planned here
        and read by the actors themselves, so records never pass through the driver or the object store (and
        there is no read task: ``ray.data.read_parquet`` lists the files in a task that waits for a CPU, and with
        an actor pool holding every CPU it never ran; Ray 2.60, 2 CPUs)."""
        import ray.data

        if job.read is not None:
            job = replace(job, read=replace(job.read, part_rows=self.part_rows))
        items = [{UNIT_COLUMN: pickle.dumps(u, protocol=pickle.HIGHEST_PROTOCOL)} for u in units]
        if not items:
            return
        gpu = self.gpus > 0 and job.wants_gpu()
        ds = ray.data.from_items(items, override_num_blocks=len(items)).map_batches(
            _UnitActor,
            batch_size=None,  # one block (one unit) per call
            batch_format="pyarrow",
            fn_constructor_args=([self._ray.put(job)],),
            compute=ray.data.ActorPoolStrategy(size=max(1, min(self.gpus if gpu else self.workers, len(items)))),
            num_cpus=1,
            num_gpus=1 if gpu else None,
        )
        for batch in ds.iter_batches(batch_size=None, batch_format="pyarrow"):
            for payload in batch[PAYLOAD_COLUMN].to_pylist():  # type: ignore[union-attr]
                yield pickle.loads(payload)


__all__ = ["RayEngine", "import_ray"]
