"""The Ray engine: the same stages, unchanged, on a Ray cluster (``zhcurate run --engine ray``).

:class:`RayEngine` implements the one engine method, :meth:`RayEngine.map`, with Ray Data: the batches go to
the object store, ``ray.data.from_arrow_refs`` makes them the blocks of a dataset, and ``map_batches`` runs
them through a pool of actors (:class:`_StageActor`), each of which builds and ``setup()``s the stage once
(a model is loaded once per worker, not once per batch). Results come back to the runner in input order: every
input row carries its batch number and row, the output is reassembled by that number, and the runner books them
in order — which is why a Ray run gives the same records, reasons and kept twins as the local engine.

Encoding of the results (Arrow end to end where possible):

* ``process`` / ``decide`` return the stage's table with three more columns — the reason, the detail and,
  on the batch's first row, the batch's counters as JSON — so a :class:`~stages.base.StageResult` round-trips
  exactly.
* ``fingerprint`` returns one row per batch holding the pickled fingerprint (a fingerprint is whatever
  compact, picklable object the stage makes).

Deduplication at cluster scale: a global stage with the banding hooks of
:class:`pipeline.ray_lsh.BandedStage` (the MinHash stage has them) is resolved by :meth:`RayEngine.resolve`
without bringing the signatures to the driver: they are computed on the workers, band buckets are grouped
with a Ray Data ``groupby`` (a hash shuffle), and only candidate pairs, verified pairs and the few records
they name come to the driver, which clusters them by union-find (see :mod:`pipeline.ray_lsh`). Other global
stages fingerprint on the workers and resolve on the driver; ``decide`` always runs on the workers.

Fault tolerance is Ray's: an actor whose process dies is restarted and the batch it was running is retried
(Ray Data's actor pools use ``max_restarts=-1``, ``max_task_retries=-1``); the stage is set up again in the
new process. Stages are pure functions of their batch, so a retried batch gives the same result. A batch
whose stage raises an exception is not retried: the run fails with the stage named.
"""

from __future__ import annotations

import json
import logging
import pickle
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.engine import Method, call
from pipeline.errors import ConfigError
from stages.base import GlobalStage, Stage, StageResult

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
        if self.method != "fingerprint":
            return encode_result(result, index)
        payload = pickle.dumps(result, protocol=pickle.HIGHEST_PROTOCOL)
        return pa.table({BATCH_COLUMN: _positions(index, 1), PAYLOAD_COLUMN: pa.array([payload], pa.large_binary())})


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
    verified on the driver (with the signatures of just those records), more by a shuffle on the workers.
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
        yield from _reassemble(outputs, [1 if method == "fingerprint" else n for n in sizes], method, done)

    # ------------------------------------------------------------------ helpers (also used by pipeline.ray_lsh)
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
        """The actor pool strategy for a map over ``blocks`` blocks."""
        import ray.data

        return ray.data.ActorPoolStrategy(size=max(1, min(self.gpus if gpu else self.workers, blocks)))

    def _wants_gpu(self, stage: Stage, method: Method) -> bool:
        """Embeddings go to GPU workers when the cluster has GPUs and the stage may use them."""
        device = getattr(stage.params, "device", None)
        return self.gpus > 0 and method == "fingerprint" and device in ("auto", "cuda")

    # ------------------------------------------------------------------ cluster-scale dedup
    def resolve(self, stage: GlobalStage, batches: Iterable[Any]) -> Any:
        """Fingerprint and resolve a global stage on the cluster.

        A stage with the :class:`BandedStage` hooks is resolved by grouping band buckets on the workers
        (see the module docstring); any other global stage fingerprints on the workers and resolves on the
        driver, as with the local engine.
        """
        from pipeline.ray_lsh import BandedStage, resolve_banded

        if not isinstance(stage, BandedStage):
            return stage.resolve(list(self.map(stage, "fingerprint", batches)))
        return resolve_banded(self, stage, batches)


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
                    if method == "fingerprint"
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
