"""Semantic deduplication at cluster scale on Ray: no embedding matrix on the driver.

:func:`resolve_semantic` gives the resolution of ``SemanticDedupStage.resolve`` over the same records (the same
dropped records, kept twins, cluster sizes and counters; similarities and cosines equal up to float rounding)
with the embeddings, the n-gram TF-IDF rows and the FAISS index spread over the workers:

1. **Fingerprints on the workers.** An actor pool (GPU actors when the cluster has GPUs and the stage may use
   them) runs ``stage.fingerprint`` on the blocks of the records dataset. Each output block (``_seq``, ``id``,
   quality, an "empty text" flag, the embedding rows as a fixed-size list column, the n-gram rows as two list
   columns) stays in the object store; the driver keeps only the block refs and a few numbers per block
   (rows, first and last ``_seq``, empty texts). Blocks are ordered by ``_seq``; if some block is not sorted
   or blocks overlap, a Ray Data sort by ``_seq`` makes them so. A record's *position* is then its rank in
   ``_seq`` order — its row in the local engine's concatenated matrix, since the runner numbers records in
   input order.
2. **One empty index, trained on the driver.** ``flat``: an empty :class:`faiss.IndexFlatIP`. ``ivf``: the
   positions that the local engine trains on (:func:`stages.dedup.semantic_index.training_sample`: same seed, same
   ``nlist_for(n)``, same ``train_size``) are fetched from their blocks — only those rows come to the driver —
   and :func:`stages.dedup.semantic_index.train_ivf` trains the quantizer on them in the same order, with the same
   k-means seed and threads: the same quantizer as the local engine's. The empty index goes to the object
   store once (``faiss.serialize_index``).
3. **Sharded k-NN search.** Consecutive blocks (in ``_seq`` order) form ~``max(workers, n / SHARD_ROWS)``
   groups of about equal rows. Each group becomes an index shard on a worker (the empty index +
   ``add_with_ids`` with ids = ``_seq``; flat inside an :class:`faiss.IndexIDMap`) and is also a query group:
   one task per group chooses each query's ``nprobe`` cells once with the trained quantizer (IVF), then
   searches its records against every shard in turn (one shard in memory at a time; IVF through
   ``search_preassigned`` in those cells), keeping a running top-k (k = ``max_neighbors`` + 1, the query
   itself included, as the local search) of the neighbours with cosine >= ``stage.search_threshold()``. It
   computes the n-gram cosine of each shard's survivors while that shard's n-gram rows are at hand, then drops
   the query itself, verifies with ``stage.pair_similarity`` against ``stage.accept_threshold()`` and returns only the
   verified pairs ``(_seq, _seq, similarity)`` and its candidate count.
4. **Clusters on the driver.** The pairs found from both ends are kept once (the copy found from the earlier
   record, as locally), the keys, embeddings, n-gram rows, side rows (instruction, output) and, for a
   cascade, texts of just the records they name are fetched, and :meth:`SemanticDedupStage.resolve_pairs`
   checks the sides (and lets the verify model re-score), groups them (leader or union-find), chooses the
   kept twins and fills the counters, ``empty_text`` from the per-block counts. Records in no pair are alone in their
   cluster and kept, so leaving them out changes nothing.

Why the result equals the local engine's. The fingerprints are the same (the same stage on the same records;
each record's embedding and n-gram row depend on that record only). A flat search is exact. An IVF search
with a fixed quantizer probes, for a query, the same ``nprobe`` cells whichever shard holds its neighbours,
and each cell's vectors are split among the shards, so the shards' results together hold every vector the
local search scans for that query, and the best k of the merged per-shard top-k are the local top-k.
Keeping only the neighbours with cosine >= threshold before merging is safe: they are a prefix of each
ranking. So ``candidate_pairs`` counts the same (query, neighbour) pairs as the local engine (a pair found
from both ends twice), and ``verified_pairs`` the same pairs.

Ties. Records at exactly the same distance from a query (records with identical embeddings: exact copies,
or texts the tokenizer reads alike, e.g. full- and half-width punctuation) are ranked by the smaller
``_seq``. FAISS has no such rule: which of them its heap keeps for the last of the k places depends on the
order it met them and on what it had seen before, so the local result itself depends on the vectors'
order. Where more than ``max_neighbors`` records are candidates for one query and the k-th place is tied,
the two engines may pair the query with different copies (the verified pairs, and rarely which copy is
dropped, can differ). Otherwise the only differences are float rounding: a cosine, or a quantizer score,
whose last bit differs (BLAS blocks depend on the shapes of the query batches) exactly at the threshold or at
the ``nprobe``-th cell.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import pairwise
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from pipeline.engines.parts import records_of
from stages.base import SEQ_COLUMN
from stages.dedup.common import RecordKeys
from stages.dedup.semantic import SemanticDedupStage, SemanticFingerprint, SemanticResolution
from stages.dedup.semantic_index import (
    Pairs,
    SearchConfig,
    SparseRows,
    faiss_threads,
    pair_dots,
    train_ivf,
    training_sample,
)
from stages.dedup.semantic_rows import dense_rows

if TYPE_CHECKING:
    from ray.data import Dataset

    from pipeline.engines.ray_engine import RayEngine

_QUALITY = "__zh_quality"
_EMPTY = "__zh_empty"
_EMB = "__zh_emb"
_NGRAM_INDEX = "__zh_ngram_index"
_NGRAM_VALUE = "__zh_ngram_value"
_SIDE = "__zh_side_"  # + side name: that side's embedding rows (stages.dedup.semantic_sides)
_TEXT = "__zh_text_"  # + "main" or a side name: the texts the cascade's verify model re-embeds

SHARD_ROWS = 1_000_000
"""At most about this many vectors per index shard (and query group): bounds a search task's memory."""
_CHUNK = 8192  # vectors added / queries searched per FAISS call


# ---------------------------------------------------------------------------------------------- Arrow blocks
def fingerprint_table(fp: SemanticFingerprint) -> pa.Table:
    """One fingerprint as an Arrow block: keys, an "empty text" flag, embedding rows, n-gram rows (hybrid)."""
    emb = np.ascontiguousarray(fp.embeddings)
    columns: dict[str, pa.Array] = {
        SEQ_COLUMN: pa.array(fp.keys.seq, pa.int64()),
        "id": fp.keys.ids,
        _QUALITY: pa.array(fp.keys.quality, pa.float64()),
        _EMPTY: pa.array(~emb.any(axis=1), pa.bool_()),
        _EMB: pa.FixedSizeListArray.from_arrays(pa.array(emb.ravel()), emb.shape[1]),
    }
    if fp.ngrams is not None:
        offsets = pa.array(fp.ngrams.indptr, pa.int64())
        columns[_NGRAM_INDEX] = pa.LargeListArray.from_arrays(offsets, pa.array(fp.ngrams.indices, pa.int32()))
        columns[_NGRAM_VALUE] = pa.LargeListArray.from_arrays(offsets, pa.array(fp.ngrams.data))
    for name, side in fp.sides.items():
        rows = np.ascontiguousarray(dense_rows(side))
        columns[_SIDE + name] = pa.FixedSizeListArray.from_arrays(pa.array(rows.ravel()), rows.shape[1])
    for name, texts in (fp.texts or {}).items():
        columns[_TEXT + name] = pa.array(texts, pa.large_string())
    return pa.table(columns)


def _array(table: pa.Table, name: str) -> Any:
    return table.column(name).combine_chunks()


def block_seq(table: pa.Table) -> np.ndarray:
    return np.asarray(table.column(SEQ_COLUMN).to_numpy(), dtype=np.int64)


def block_embeddings(table: pa.Table) -> np.ndarray:
    """The (rows, d) embedding matrix of a fingerprint block, in the stage's dtype."""
    column = _array(table, _EMB)
    return np.asarray(column.flatten().to_numpy(zero_copy_only=False)).reshape(-1, column.type.list_size)


def block_ngrams(table: pa.Table) -> SparseRows | None:
    """The n-gram rows of a fingerprint block (None for the cosine similarity)."""
    if _NGRAM_INDEX not in table.column_names:
        return None
    index, value = _array(table, _NGRAM_INDEX), _array(table, _NGRAM_VALUE)
    offsets = np.asarray(index.offsets, dtype=np.int64)
    return SparseRows(
        offsets - offsets[0],
        np.asarray(index.flatten().to_numpy(), dtype=np.int32),
        np.asarray(value.flatten().to_numpy(zero_copy_only=False)),
    )


def block_sides(table: pa.Table) -> dict[str, np.ndarray]:
    """The side embedding rows of a fingerprint block, by side name."""
    out = {}
    for name in table.column_names:
        if name.startswith(_SIDE):
            column = _array(table, name)
            flat = np.asarray(column.flatten().to_numpy(zero_copy_only=False))
            out[name[len(_SIDE) :]] = flat.reshape(-1, column.type.list_size)
    return out


def block_texts(table: pa.Table) -> dict[str, list[str]] | None:
    """The cascade's texts of a fingerprint block (None when the stage has no verify model)."""
    names = [name for name in table.column_names if name.startswith(_TEXT)]
    return {name[len(_TEXT) :]: table.column(name).to_pylist() for name in names} or None


def block_keys(table: pa.Table) -> RecordKeys:
    ids = _array(table, "id").cast(pa.large_string())
    return RecordKeys(block_seq(table), ids, np.asarray(table.column(_QUALITY).to_numpy(), dtype=np.float64))


# ---------------------------------------------------------------------------------------------- worker side
class _EmbedActor:
    """One Ray Data actor: the stage (and its model) set up once, then ``fingerprint`` for every block."""

    def __init__(self, stage: SemanticDedupStage) -> None:
        stage.setup()
        self.stage = stage

    def __call__(self, block: pa.Table) -> pa.Table:
        return fingerprint_table(self.stage.fingerprint(records_of(block)))


def _describe(block: pa.Table) -> tuple[int, int, int, bool, int, int]:
    """rows, first and last ``_seq``, whether sorted by ``_seq``, empty texts, embedding width."""
    if not block.num_rows:  # (Ray Data may hand back an empty block without the fingerprint columns)
        return 0, 0, 0, True, 0, 0
    seq = block_seq(block)
    ordered = bool(np.all(seq[1:] > seq[:-1]))
    empty = int(np.count_nonzero(block.column(_EMPTY).to_numpy()))
    return int(seq.size), int(seq.min()), int(seq.max()), ordered, empty, block.schema.field(_EMB).type.list_size


def _take_rows(block: pa.Table, rows: np.ndarray) -> np.ndarray:
    """Embedding rows at the given row numbers of a (sorted) block."""
    return block_embeddings(block)[rows]


def _select(block: pa.Table, wanted: np.ndarray) -> pa.Table:
    """The rows of a block whose ``_seq`` is in ``wanted`` (sorted), without the empty flag."""
    seq = block_seq(block)
    pos = np.minimum(np.searchsorted(wanted, seq), wanted.size - 1)
    return block.filter(pa.array(wanted[pos] == seq)).drop_columns([_EMPTY])


def _build_shard(index_bytes: np.ndarray, flat: bool, *blocks: pa.Table) -> tuple[np.ndarray, np.ndarray, Any]:
    """One index shard: the empty (trained) index with the blocks' vectors added under their ``_seq``.
    Returns the serialized index, the shard's ``_seq`` (ascending) and its n-gram rows."""
    import faiss

    table = pa.concat_tables(blocks)
    seq, emb = block_seq(table), block_embeddings(table)
    index = faiss.deserialize_index(index_bytes)
    if flat:
        index = faiss.IndexIDMap(index)
    for start in range(0, seq.size, _CHUNK):
        index.add_with_ids(np.ascontiguousarray(emb[start : start + _CHUNK], np.float32), seq[start : start + _CHUNK])
    return faiss.serialize_index(index), seq, block_ngrams(table)


@dataclass
class _Neighbours:
    """A running k-NN list: for query row ``query[i]``, neighbour ``_seq`` ``other[i]`` at cosine ``dist[i]``,
    and their n-gram cosine ``dots[i]`` (NaN until computed; unused for the cosine similarity)."""

    query: np.ndarray
    other: np.ndarray
    dist: np.ndarray
    dots: np.ndarray

    @classmethod
    def empty(cls) -> _Neighbours:
        return cls(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32), np.zeros(0, np.float32))

    def merged(self, new: _Neighbours, k: int) -> _Neighbours:
        """The best ``k`` of both lists per query, ordered by query, then cosine (desc), then ``_seq``: the
        ranking of one FAISS index over all vectors (its heap keeps the smaller id among equal distances)."""
        query = np.concatenate([self.query, new.query])
        other = np.concatenate([self.other, new.other])
        dist = np.concatenate([self.dist, new.dist])
        dots = np.concatenate([self.dots, new.dots])
        order = np.lexsort((other, -dist, query))
        query = query[order]
        first = np.flatnonzero(np.r_[True, query[1:] != query[:-1]]) if query.size else np.zeros(0, np.int64)
        rank = np.arange(query.size) - np.repeat(first, np.diff(np.r_[first, query.size]))
        keep = order[rank < k]
        return _Neighbours(query[rank < k], other[keep], dist[keep], dots[keep])


def _search_group(
    stage: SemanticDedupStage,
    config: SearchConfig,
    n: int,
    trained: np.ndarray,
    shards: list[Any],
    *blocks: pa.Table,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Search one query group against every shard; returns its verified pairs (``_seq`` a < b, similarity, in
    query order) and how many candidates (neighbours other than itself with cosine >= threshold) it scored.
    ``trained`` is the serialized empty index: for IVF, its quantizer chooses each query's cells once, and
    every shard is searched in those cells (``search_preassigned``)."""
    import faiss
    import ray

    table = pa.concat_tables(blocks)
    seq, emb, ngrams = block_seq(table), block_embeddings(table), block_ngrams(table)
    chunks = [np.ascontiguousarray(emb[start : start + _CHUNK], np.float32) for start in range(0, seq.size, _CHUNK)]
    probes = _probes(faiss.deserialize_index(trained), chunks)
    k = config.neighbours_for(n)
    best = _Neighbours.empty()
    for ref in shards:  # a list of refs is not resolved by Ray: one shard in memory at a time
        index_bytes, shard_seq, shard_ngrams = ray.get(ref)
        index: Any = faiss.deserialize_index(index_bytes)
        for number, queries in enumerate(chunks):
            if probes is None:
                dist, ids = index.search(queries, k)
            else:
                dist, ids = index.search_preassigned(queries, k, probes[number][1], probes[number][0])
            start = number * _CHUNK
            query = np.repeat(np.arange(start, start + queries.shape[0], dtype=np.int64), k)
            ids, dist = ids.ravel().astype(np.int64, copy=False), dist.ravel()
            keep = (ids >= 0) & (dist >= config.threshold)  # a prefix of each query's ranking
            nan = np.full(int(keep.sum()), np.nan, np.float32)
            best = best.merged(_Neighbours(query[keep], ids[keep], dist[keep], nan), k)
        todo = np.flatnonzero(np.isnan(best.dots))  # survivors from this shard: n-gram cosine while rows are here
        if ngrams is not None and todo.size:
            rows = np.searchsorted(shard_seq, best.other[todo])
            best.dots[todo] = pair_dots(ngrams, best.query[todo], shard_ngrams, rows)
        del index, index_bytes, shard_seq, shard_ngrams
    query_seq = seq[best.query]
    candidate = best.other != query_seq  # the query itself took one of the k places, as in the local search
    query_seq, neighbour = query_seq[candidate], best.other[candidate]
    sim = stage.pair_similarity(best.dist[candidate], best.dots[candidate] if ngrams is not None else None)
    ok = sim >= stage.accept_threshold()
    left, right = np.minimum(query_seq, neighbour)[ok], np.maximum(query_seq, neighbour)[ok]
    return left, right, sim[ok].astype(np.float32), int(candidate.sum())


def _probes(trained: Any, chunks: list[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]] | None:
    """For an IVF index, each query chunk's ``nprobe`` nearest cells (scores, cell numbers), as ``search``
    would choose them; computed once for all shards. None for a flat index."""
    import faiss

    if not isinstance(trained, faiss.IndexIVF):
        return None
    return [trained.quantizer.search(queries, trained.nprobe) for queries in chunks]


# ---------------------------------------------------------------------------------------------- driver side
@dataclass(frozen=True)
class _Block:
    """A fingerprint block in the object store and what the driver knows of it."""

    ref: Any
    rows: int
    first: int  # smallest _seq
    last: int  # largest _seq
    ordered: bool  # rows sorted by _seq
    empty_text: int
    dim: int


@dataclass(frozen=True)
class Fingerprints:
    """A dataset's fingerprint blocks in the object store, non-empty, sorted by ``_seq`` and disjoint, with the
    ``embedding_params`` of the stage that made them: a stage with the same embedding parameters (another
    threshold, index or clustering) can resolve them again without embedding anything."""

    blocks: list[_Block]
    embedding_params: dict[str, Any]

    @property
    def rows(self) -> int:
        return sum(block.rows for block in self.blocks)


def resolve_semantic(
    engine: RayEngine,
    stage: SemanticDedupStage,
    records: Dataset,
    *,
    blocks: int | None = None,
    shards: int | None = None,
    batch_size: int | None = None,
) -> SemanticResolution:
    """``stage.resolve`` over the fingerprints of ``records`` (the stage's input: canonical columns, ``_seq``,
    maybe ``quality_score``), computed on the cluster as the module docstring describes.

    ``blocks``: how many blocks ``records`` has, if known (sizes the actor pool; a materialized dataset says
    so itself, else the pool has ``engine.workers`` actors). ``shards``: index shards (= query groups), default
    ``max(workers, n / SHARD_ROWS)``, at most one per block. ``batch_size``: rows per ``fingerprint`` call,
    default whole blocks (a dataset made of the runner's batches is then fingerprinted batch by batch, exactly
    as the local engine does).
    """
    stage.threshold()  # a missing threshold fails before any work
    fingerprints = fingerprint_records(engine, stage, records, batch_size, blocks)
    return resolve_fingerprints(engine, stage, fingerprints, shards)


def resolve_fingerprints(
    engine: RayEngine, stage: SemanticDedupStage, fingerprints: Fingerprints, shards: int | None = None
) -> SemanticResolution:
    """Steps 2–4 of the module docstring: search, verify and cluster fingerprints already on the cluster."""
    import faiss
    import ray

    if stage.embedding_params() != fingerprints.embedding_params:
        raise ValueError("dedup_semantic: these fingerprints were made with other embedding parameters")
    config = stage.search_config()
    blocks = fingerprints.blocks
    n = fingerprints.rows
    empty_text = sum(block.empty_text for block in blocks)
    kind = config.kind_for(n)
    nothing = np.zeros(0, np.int64)
    if n < 2:
        return _resolution(stage, blocks, Pairs(nothing, nothing, np.zeros(0, np.float32), kind), empty_text)
    index = faiss.IndexFlatIP(blocks[0].dim) if kind == "flat" else _trained_ivf(blocks, n, config)
    index_ref = ray.put(faiss.serialize_index(index))
    groups = _groups(blocks, shards or max(engine.workers, math.ceil(n / SHARD_ROWS)))
    build = ray.remote(num_cpus=1)(_build_shard)
    shard_refs = [build.remote(index_ref, kind == "flat", *[b.ref for b in group]) for group in groups]
    search = ray.remote(num_cpus=1)(_search_group)
    stage_ref = ray.put(stage)
    found = ray.get(
        [search.remote(stage_ref, config, n, index_ref, shard_refs, *[b.ref for b in group]) for group in groups]
    )
    del shard_refs, index_ref
    return _resolution(stage, blocks, _unique_pairs(found, kind), empty_text)


def fingerprint_records(
    engine: RayEngine,
    stage: SemanticDedupStage,
    records: Dataset,
    batch_size: int | None = None,
    blocks: int | None = None,
) -> Fingerprints:
    """Step 1 of the module docstring: fingerprint every record on the workers (an actor pool; GPU actors
    when the cluster has GPUs and the stage may use them); the blocks stay in the object store."""
    import ray.data
    from ray.data.dataset import MaterializedDataset

    gpu = engine._wants_gpu(stage, "fingerprint")
    count = blocks or engine.workers
    if isinstance(records, MaterializedDataset):  # its size is known: no actor pool for no records
        if not records.count():
            return Fingerprints([], stage.embedding_params())
        count = records.num_blocks()
    fingerprints = records.map_batches(
        _EmbedActor,
        batch_size=batch_size,
        batch_format="pyarrow",
        fn_constructor_args=(stage,),
        compute=engine.actors(max(1, count), gpu),
        num_cpus=1,
        num_gpus=1 if gpu else None,
    )
    found = _described(fingerprints.to_arrow_refs())
    if not _in_seq_order(found):  # rows out of order: a distributed sort makes sorted, disjoint blocks
        found = _described(ray.data.from_arrow_refs([b.ref for b in found]).sort(SEQ_COLUMN).to_arrow_refs())
        if not _in_seq_order(found):
            raise ValueError(f"dedup_semantic: repeated {SEQ_COLUMN} values in the input records")
    return Fingerprints(found, stage.embedding_params())


def _described(refs: list[Any]) -> list[_Block]:
    import ray

    describe = ray.remote(num_cpus=1)(_describe)
    facts = ray.get([describe.remote(ref) for ref in refs])
    blocks = [_Block(ref, *fact) for ref, fact in zip(refs, facts, strict=True) if fact[0]]
    return sorted(blocks, key=lambda block: block.first)


def _in_seq_order(blocks: list[_Block]) -> bool:
    """Every block sorted and each block's ``_seq`` above the previous one's (blocks sorted by first)."""
    return all(b.ordered for b in blocks) and all(a.last < b.first for a, b in pairwise(blocks))


def _trained_ivf(blocks: list[_Block], n: int, config: SearchConfig) -> Any:
    """The empty IVF index, trained on the driver on the rows at the local engine's sample positions."""
    import faiss
    import ray

    positions = training_sample(n, config)
    take = ray.remote(num_cpus=1)(_take_rows)
    parts = []
    offset = 0
    for block in blocks:  # position = offset of the block in _seq order + row within the (sorted) block
        lo, hi = np.searchsorted(positions, [offset, offset + block.rows])
        if hi > lo:
            parts.append(take.remote(block.ref, positions[lo:hi] - offset))
        offset += block.rows
    sample = np.concatenate(ray.get(parts))
    with faiss_threads(config):
        return train_ivf(faiss, sample, n, config)


def _groups(blocks: list[_Block], count: int) -> list[list[_Block]]:
    """Consecutive blocks in ~``count`` groups of about equal rows (a block goes where its middle row falls)."""
    rows = np.array([block.rows for block in blocks], dtype=np.float64)
    middle = np.cumsum(rows) - rows / 2
    number = np.minimum((middle * min(count, len(blocks)) / rows.sum()).astype(np.int64), len(blocks) - 1)
    groups: dict[int, list[_Block]] = {}
    for block, group in zip(blocks, number.tolist(), strict=True):
        groups.setdefault(group, []).append(block)
    return [groups[g] for g in sorted(groups)]


def _unique_pairs(found: list[tuple[np.ndarray, np.ndarray, np.ndarray, int]], kind: str) -> Pairs:
    """All groups' verified pairs (``_seq``), each once — the copy found from the earlier query, as locally —
    sorted by (left, right)."""
    left = np.concatenate([f[0] for f in found])
    right = np.concatenate([f[1] for f in found])
    sim = np.concatenate([f[2] for f in found])
    order = np.lexsort((right, left))  # stable: among copies of a pair, the group (query) order is kept
    left, right, sim = left[order], right[order], sim[order]
    first = np.r_[True, (left[1:] != left[:-1]) | (right[1:] != right[:-1])] if left.size else np.zeros(0, bool)
    return Pairs(left[first], right[first], sim[first], kind, sum(f[3] for f in found))


def _resolution(stage: SemanticDedupStage, blocks: list[_Block], pairs: Pairs, empty_text: int) -> SemanticResolution:
    """Fetch the records named in ``pairs`` (``_seq``) and let the stage cluster them."""
    involved = np.unique(np.concatenate([pairs.left, pairs.right]))
    sides: dict[str, np.ndarray] = {}
    texts: dict[str, list[str]] | None = None
    if not involved.size:
        keys, emb, ngrams = RecordKeys.concat([]), np.zeros((0, 1), np.float32), None
    else:
        table = _fetch(blocks, involved)
        keys, emb, ngrams = block_keys(table), block_embeddings(table), block_ngrams(table)
        sides, texts = block_sides(table), block_texts(table)
    rows = Pairs(
        np.searchsorted(keys.seq, pairs.left),
        np.searchsorted(keys.seq, pairs.right),
        pairs.similarity,
        pairs.kind,
        pairs.candidates,
    )
    return stage.resolve_pairs(keys, emb, ngrams, rows, empty_text, sides, texts)


def _fetch(blocks: list[_Block], involved: np.ndarray) -> pa.Table:
    """The fingerprint rows of the involved records (sorted ``_seq``), in ``_seq`` order."""
    import ray

    select = ray.remote(num_cpus=1)(_select)
    parts = []
    for block in blocks:
        lo, hi = np.searchsorted(involved, [block.first, block.last + 1])
        if hi > lo:
            parts.append(select.remote(block.ref, involved[lo:hi]))
    table = pa.concat_tables(ray.get(parts))
    table = table.take(np.argsort(block_seq(table), kind="stable"))
    if table.num_rows != involved.size:
        raise RuntimeError(f"ray_semantic: found {table.num_rows} of the {involved.size} records in verified pairs")
    return table


__all__ = [
    "SHARD_ROWS",
    "Fingerprints",
    "fingerprint_records",
    "fingerprint_table",
    "resolve_fingerprints",
    "resolve_semantic",
]
