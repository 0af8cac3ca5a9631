"""The Ray engine: the same stages, unchanged, on a Ray cluster (``zhcurate run --engine ray``).

:class:`RayEngine` runs whole steps on the workers (the :class:`~pipeline.engines.local.PartsEngine` methods), so no
record passes through the driver:

* ``read_parts``: one Ray task per input file reads it (the same salvaging reader as the local engine, the same
  ``_seq`` and ids) and writes the step's parts (:mod:`pipeline.engines.parts`).
* ``map_parts``: work units (runs of whole row groups of the previous step's parts, see :meth:`RayEngine.records`)
  go through ``map_batches`` to a pool of actors (:class:`_PartActor`), each of which builds and ``setup()``s the
  stage once (a model is loaded once per worker, not once per batch), reads its unit, runs the stage batch by
  batch and writes its kept and dropped records as parts of the step. Only a small report per part comes back.
  Ray Data streams: units are read as actors are free.
* ``resolve_parts``: global stages at cluster scale. MinHash (stages with the
  :class:`pipeline.engines.ray_lsh.BandedStage` hooks): signatures on the workers, band buckets grouped by a Ray Data
  ``groupby`` shuffle, only candidate pairs on the driver. Exact dedup
  (:class:`pipeline.engines.ray_lsh.HashedStage`): content hashes grouped by a shuffle, only the members of duplicate
  groups on the driver. Semantic dedup: embeddings on the workers (GPU workers when the cluster has them), a FAISS IVF
  index trained from a sample and searched in shards (:mod:`pipeline.engines.ray_semantic`). Any other global stage
  fingerprints on the workers and resolves on the driver. The resolution then travels once through the object store to
  the ``decide`` actors.

Results equal the local engine's: parts are named and merged in input order, and every choice of a kept twin
depends on ``quality_score`` and ``_seq`` only, never on the order Ray finishes things in.

:meth:`RayEngine.map` (the plain :class:`~pipeline.engines.local.Engine` method: batches in, results out, in order)
remains for callers that hold batches in memory: batches go to the object store, ``map_batches`` runs them,
and the results are reassembled by batch number.

Fault tolerance is Ray's: an actor whose process dies is restarted and the batch it was running is retried
(Ray Data's actor pools use ``max_restarts=-1``, ``max_task_retries=-1``; read tasks are retried up to 3
times); the stage is set up again in the new process. Stages are pure functions of their batch and parts are
written under a temporary name and renamed, so a retried batch rewrites the same part with the same records.
A batch whose stage raises an exception is not retried: the run fails with the stage named.
"""

from __future__ import annotations

import json
import logging
import math
import pickle
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.engines.local import Method, call
from pipeline.engines.parts import PART_ROWS, PartReport, book_part, count_rows, plan_units, read_part, records_of
from schemas.errors import ConfigError
from stages.base import GlobalStage, Stage, StageResult

if TYPE_CHECKING:
    from pipeline.recipe import Recipe

BATCH_COLUMN = "__zh_batch"
REASON_COLUMN = "__zh_reason"
DETAIL_COLUMN = "__zh_detail"
COUNTERS_COLUMN = "__zh_counters"
PAYLOAD_COLUMN = "__zh_payload"
_EXTRA = (BATCH_COLUMN, REASON_COLUMN, DETAIL_COLUMN, COUNTERS_COLUMN)


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


# ---------------------------------------------------------------------------------------------- workers
class _StageActor:
    """One Ray Data actor: builds and sets up its stage once, then runs one method on every block."""

    def __init__(self, stage: Stage, method: Method, context: list[Any]) -> None:
        import ray

        stage.setup()
        self.stage = stage
        self.method = method
        # the resolution travels once through the object store (a list, so Ray does not resolve it for us)
        self.context = ray.get(context[0]) if context else None

    def __call__(self, block: pa.Table) -> pa.Table:
        numbers = _batch_numbers(block)
        if _constant(numbers):  # one batch per block (Ray Data could merge blocks: then split them again)
            batches = [(numbers[0].as_py(), block)]
        else:
            batches = [(i, block.filter(pc.equal(numbers, i))) for i in pc.unique(numbers).to_pylist()]
        parts = [self._run(index, batch.drop_columns([BATCH_COLUMN])) for index, batch in batches]
        return parts[0] if len(parts) == 1 else pa.concat_tables(parts, promote_options="permissive")

    def _run(self, index: int, batch: pa.Table) -> pa.Table:
        result = call(self.stage, self.method, batch, self.context)
        if self.method not in ("fingerprint", "gather"):
            return encode_result(result, index)
        payload = pickle.dumps(result, protocol=pickle.HIGHEST_PROTOCOL)
        return pa.table({BATCH_COLUMN: _positions(index, 1), PAYLOAD_COLUMN: pa.array([payload], pa.large_binary())})


class _PartActor:
    """One Ray Data actor of a step: runs the stage over each block it gets and writes the block's kept and dropped
    records as parts of the step (see :func:`pipeline.engines.parts.book_part`); returns the pickled report."""

    def __init__(
        self, stage: Stage, method: Method, context: list[Any], step_dir: str, schema: pa.Schema, batch_size: int
    ) -> None:
        import ray

        stage.setup()
        self.stage, self.method, self.schema, self.batch_size = stage, method, schema, batch_size
        self.step_dir = Path(step_dir)
        self.context = ray.get(context[0]) if context else None

    def __call__(self, block: pa.Table) -> pa.Table:
        records = records_of(block)
        report = book_part(self.stage, self.method, records, self.context, self.step_dir, self.schema, self.batch_size)
        return _payload_table(report)


def _payload_table(obj: Any) -> pa.Table:
    return pa.table(
        {PAYLOAD_COLUMN: pa.array([pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)], pa.large_binary())}
    )


def _payloads(ds: Any) -> Iterator[Any]:
    for batch in ds.iter_batches(batch_size=None, batch_format="pyarrow"):
        for payload in batch.column(PAYLOAD_COLUMN).to_pylist():
            yield pickle.loads(payload)


def _read_file(
    path: str,
    index: int,
    prefix: str,
    fmt: str,
    fields: dict[str, str],
    batch_size: int,
    step_dir: str,
    rows: int,
    base_dir: str,
) -> list[PartReport]:
    """A Ray task: read one input file into parts (run on a worker)."""
    return read_part(Path(path), index, prefix, fmt, fields, batch_size, Path(step_dir), rows, Path(base_dir))


def _positions(index: int, n: int) -> pa.Array:
    """The position column of batch ``index``: the batch number in the high 32 bits, the row in the low."""
    return pa.array((np.int64(index) << np.int64(32)) | np.arange(n, dtype=np.int64))


def _batch_numbers(table: pa.Table) -> pa.ChunkedArray:
    return pc.shift_right(table.column(BATCH_COLUMN), 32)


def _constant(column: pa.ChunkedArray) -> bool:
    return bool(pc.min(column).as_py() == pc.max(column).as_py())


def _ascending(column: pa.ChunkedArray) -> bool:
    values = column.to_numpy()
    return bool(np.all(values[1:] > values[:-1]))


def encode_result(result: StageResult, index: int) -> pa.Table:
    """A :class:`StageResult` as one Arrow table: the records plus batch number, reason, detail and counters."""
    n = result.table.num_rows
    counters = [json.dumps(result.counters)] + [None] * (n - 1) if n else []
    table = result.table
    for name in _EXTRA:
        if name in table.column_names:
            table = table.drop_columns([name])
    return (
        table.append_column(BATCH_COLUMN, _positions(index, n))
        .append_column(REASON_COLUMN, pa.array(result.reasons, pa.string()))
        .append_column(DETAIL_COLUMN, pa.array(result.details, pa.string()))
        .append_column(COUNTERS_COLUMN, pa.array(counters, pa.string()))
    )


def decode_result(table: pa.Table) -> StageResult:
    """The inverse of :func:`encode_result` (for one whole batch)."""
    counters_json = table.column(COUNTERS_COLUMN)[0].as_py() if table.num_rows else None
    return StageResult(
        table.drop_columns(list(_EXTRA)),
        table.column(REASON_COLUMN).to_pylist(),
        table.column(DETAIL_COLUMN).to_pylist(),
        json.loads(counters_json) if counters_json else {},
    )


# ---------------------------------------------------------------------------------------------- engine
class RayEngine:
    """Runs stage methods on Ray Data actors.

    ``workers``: actors per stage (default: the cluster's CPUs); ``address``: a running cluster
    (``ray start --head`` prints it; ``auto`` finds the local one), or None to start a private local Ray
    with ``num_cpus`` CPUs (stopped again by :meth:`close`); ``partitions``: hash partitions of the dedup
    shuffles (default ``4 * workers``); ``driver_verify_pairs``: up to this many MinHash candidate pairs are
    verified on the driver (with the signatures of just those records), more by a shuffle on the workers;
    ``part_rows``: records per part (the unit of a worker's task and of a checkpoint file).
    A dead actor is restarted and its batch retried (Ray Data's actor pool defaults: ``max_restarts=-1``,
    ``max_task_retries=-1``).
    """

    def __init__(
        self,
        workers: int | None = None,
        address: str | None = None,
        num_cpus: int | None = None,
        partitions: int | None = None,
        driver_verify_pairs: int = 200_000,
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
        self.partitions = partitions or 4 * self.workers
        self.driver_verify_pairs = driver_verify_pairs
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

    # ------------------------------------------------------------------ the contract
    def map(self, stage: Stage, method: Method, batches: Iterable[Any], context: Any = None) -> Iterator[Any]:
        """``call(stage, method, batch, context)`` for every batch on the cluster, results in input order."""
        refs, sizes, empty = self.put_batches(batches)
        done: dict[int, Any] = {}
        if empty:  # a block without rows cannot carry its batch number: run these few on the driver
            stage.setup()
            done = {i: call(stage, method, batch, context) for i, batch in empty.items()}
        outputs: Iterable[pa.Table] = ()
        if refs:
            context_box = [self._ray.put(context)] if context is not None else []
            gpu = self._wants_gpu(stage, method)
            ds = self.dataset(refs).map_batches(
                _StageActor,
                batch_size=None,
                batch_format="pyarrow",
                fn_constructor_args=(stage, method, context_box),
                compute=self.actors(len(refs), gpu),
                num_cpus=1,
                num_gpus=1 if gpu else None,
            )
            outputs = ds.iter_batches(batch_size=None, batch_format="pyarrow")
        yield from _reassemble(outputs, [1 if method in ("fingerprint", "gather") else n for n in sizes], method, done)

    # ------------------------------------------------------------------ whole steps on the workers
    def read_parts(
        self, files: list[Path], prefixes: list[str], recipe: Recipe, step_dir: Path
    ) -> Iterator[PartReport]:
        """One task per input file, all submitted at once (Ray schedules them as CPUs free up); reports as
        the tasks finish. A worker's working folder is not the driver's: relative input paths are opened below
        the driver's, and records keep the path as the user gave it (``source``)."""
        read = self._ray.remote(_read_file).options(num_cpus=1, max_retries=3)
        pending = [
            read.remote(
                str(path),
                i,
                prefix,
                recipe.format,
                dict(recipe.fields),
                recipe.batch_size,
                str(step_dir.resolve()),
                self.part_rows,
                str(Path.cwd()),
            )
            for i, (path, prefix) in enumerate(zip(files, prefixes, strict=True))
        ]
        while pending:
            done, pending = self._ray.wait(pending, num_returns=1)
            yield from self._ray.get(done[0])

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
        """``map_batches`` over the records of ``inputs`` in blocks of up to ``part_rows`` records;
        each actor writes its parts under ``step_dir`` and returns their reports."""
        rows = sum(count_rows(p) for p in inputs)
        if not rows:
            return
        context_box = [self._ray.put(context)] if context is not None else []
        block = self.block_rows(rows)
        ds = self.records(inputs, block).map_batches(
            _PartActor,
            batch_size=None,  # one block (a unit of whole row groups) per call
            batch_format="pyarrow",
            fn_constructor_args=(stage, method, context_box, str(step_dir.resolve()), schema, batch_size),
            compute=self.actors(math.ceil(rows / block)),
            num_cpus=1,
        )
        yield from _payloads(ds)

    def resolve_parts(self, stage: GlobalStage, inputs: list[Path]) -> Any:
        """The stage's resolution over the records of ``inputs``, computed on the cluster."""
        rows = sum(count_rows(p) for p in inputs)
        if not rows:
            return stage.resolve([])
        return self._resolve_dataset(stage, self.records(inputs, self.block_rows(rows)), rows)

    def block_rows(self, rows: int) -> int:
        """Records per block of a step over ``rows`` records: at most ``part_rows``, and small enough that every
        worker gets about four blocks (so that the work evens out between the actors)."""
        return max(1, min(self.part_rows, math.ceil(rows / (4 * self.workers))))

    def records(self, inputs: list[Path], block_rows: int) -> Any:
        """The records of these Parquet files as a Ray dataset of *work units* (runs of whole row groups of about
        ``block_rows`` records, planned here from the Parquet footers), one unit per block, in input order. The
        actors read their units themselves (:func:`pipeline.engines.parts.records_of`), so records never pass through
        the driver or the object store, and there is no separate read task: ``ray.data.read_parquet`` lists the
        files in a task that waits for a CPU, and with an actor pool holding every CPU it never ran (Ray 2.60,
        2 CPUs); zero-CPU read tasks instead started a storm of worker processes."""
        import ray.data

        units = plan_units(inputs, block_rows)
        return ray.data.from_items(units, override_num_blocks=len(units))

    # ------------------------------------------------------------------ helpers (also used by pipeline.engines.ray_lsh)
    def put_batches(self, batches: Iterable[pa.Table]) -> tuple[list[Any], list[int], dict[int, pa.Table]]:
        """Each batch with rows, numbered, into the object store (which spills to disk when full).
        Returns the refs, every batch's row count, and the batches without rows by number."""
        refs: list[Any] = []
        sizes: list[int] = []
        empty: dict[int, pa.Table] = {}
        for i, batch in enumerate(batches):
            sizes.append(batch.num_rows)
            if not batch.num_rows:
                empty[i] = batch
                continue
            refs.append(self._ray.put(batch.append_column(BATCH_COLUMN, _positions(i, batch.num_rows))))
        return refs, sizes, empty

    def dataset(self, refs: list[Any]) -> Any:
        """A Ray dataset whose blocks are the given table refs."""
        import ray.data

        return ray.data.from_arrow_refs(refs)

    def actors(self, blocks: int, gpu: bool = False) -> Any:
        """The actor pool strategy for a map over ``blocks`` blocks: one actor per worker (or GPU), at most one
        per block. (A fixed pool, started at once: an autoscaling pool that starts with one actor stayed at one
        on a 2-CPU local cluster with Ray 2.60.)"""
        import ray.data

        return ray.data.ActorPoolStrategy(size=max(1, min(self.gpus if gpu else self.workers, blocks)))

    def _wants_gpu(self, stage: Stage, method: Method) -> bool:
        """Embeddings go to GPU workers when the cluster has GPUs and the stage may use them."""
        device = getattr(stage.params, "device", None)
        return self.gpus > 0 and method == "fingerprint" and device in ("auto", "cuda")

    # ------------------------------------------------------------------ cluster-scale dedup
    def resolve(self, stage: GlobalStage, batches: Iterable[Any]) -> Any:
        """Fingerprint and resolve a global stage on the cluster, from batches held in memory (see
        :meth:`resolve_parts` for the runner's way, from checkpoint parts)."""
        refs, sizes, _ = self.put_batches(batches)  # batches without rows have no records to deduplicate
        if not refs:
            return stage.resolve([])
        return self._resolve_dataset(stage, self.dataset(refs).drop_columns([BATCH_COLUMN]), sum(sizes))

    def _resolve_dataset(self, stage: GlobalStage, records: Any, rows: int) -> Any:
        block = self.block_rows(rows)
        blocks = math.ceil(rows / block)
        from pipeline.engines.ray_lsh import BandedStage, HashedStage, resolve_banded, resolve_hashed
        from stages.dedup.semantic import SemanticDedupStage

        if isinstance(stage, BandedStage):
            return resolve_banded(self, stage, records, blocks)
        if isinstance(stage, HashedStage):
            return resolve_hashed(self, stage, records, blocks)
        if isinstance(stage, SemanticDedupStage):
            from pipeline.engines.ray_semantic import resolve_semantic

            return resolve_semantic(self, stage, records, blocks=blocks)
        fingerprints = records.map_batches(
            _FingerprintActor,
            batch_size=None,
            batch_format="pyarrow",
            fn_constructor_args=(stage,),
            compute=self.actors(blocks),
            num_cpus=1,
        )
        return stage.resolve(list(_payloads(fingerprints)))


class _FingerprintActor:
    """Fingerprints blocks for a global stage resolved on the driver (the stage is set up once per actor)."""

    def __init__(self, stage: GlobalStage) -> None:
        stage.setup()
        self.stage = stage

    def __call__(self, block: pa.Table) -> pa.Table:
        return _payload_table(self.stage.fingerprint(records_of(block)))


def _reassemble(
    outputs: Iterable[pa.Table], expected: list[int], method: Method, done: dict[int, Any]
) -> Iterator[Any]:
    """Put output blocks (possibly split, possibly out of order) back into whole batches, in input order;
    ``expected[i]`` is batch i's row count in the output, ``done`` the results already computed."""
    pieces: dict[int, list[pa.Table]] = {}
    rows: dict[int, int] = {}
    nxt = 0

    def ready() -> Iterator[Any]:
        nonlocal nxt
        while nxt < len(expected) and (nxt in done or rows.get(nxt, 0) >= expected[nxt]):
            if nxt in done:
                yield done.pop(nxt)
            else:
                table = pa.concat_tables(pieces.pop(nxt))
                if table.column(BATCH_COLUMN).num_chunks > 1 and not _ascending(table.column(BATCH_COLUMN)):
                    table = table.sort_by(BATCH_COLUMN)  # pieces of a split batch came back out of order
                yield (
                    pickle.loads(table.column(PAYLOAD_COLUMN)[0].as_py())
                    if method in ("fingerprint", "gather")
                    else decode_result(table)
                )
            nxt += 1

    yield from ready()
    for block in outputs:
        if not block.num_rows:
            continue
        numbers = _batch_numbers(block)
        for index in pc.unique(numbers).to_pylist():
            part = block if _constant(numbers) else block.filter(pc.equal(numbers, index))
            pieces.setdefault(index, []).append(part)
            rows[index] = rows.get(index, 0) + part.num_rows
        yield from ready()
    if nxt != len(expected):
        raise RuntimeError(f"RayEngine: {len(expected) - nxt} of {len(expected)} batches did not come back")


__all__ = ["RayEngine", "decode_result", "encode_result", "import_ray"]
