"""MinHash-LSH deduplication at cluster scale on Ray Data: no signature matrix on the driver.

Used by :meth:`pipeline.engines.ray_engine.RayEngine.resolve` for a global stage with the :class:`BandedStage` hooks.
The result equals the stage's own ``resolve`` (same clusters, same kept twins, same similarities), whatever
order Ray runs things in:

1. **Signatures on the workers.** An actor pool fingerprints every batch; the dataset of ``_seq``, ``id``,
   ``quality_score``, signature and band buckets stays in the object store (``materialize``).
2. **Band keys grouped by a shuffle.** One row per (record, band): ``(partition, band, bucket, _seq)``, where
   the partition is a hash of (band, bucket); ``groupby(partition).map_groups`` sorts each partition by
   (band, bucket, ``_seq``) and pairs every member of a bucket with the bucket's earliest member and with its
   predecessor — the stage's own candidate rule, on the same 32-bit bucket ids. Only the candidate pairs
   (two int64 each) come to the driver, which removes the pairs found in several bands.
3. **Verification.** Up to ``RayEngine.driver_verify_pairs`` candidate pairs (the usual case: near
   duplicates are rare), the keys and signatures of just their records are fetched and the pairs verified on
   the driver. Beyond that, on the workers: each signature block sends the signature of every candidate
   endpoint it holds, keyed by pair; a second ``groupby`` brings both signatures of a pair together and keeps
   the pairs the stage accepts; only the verified pairs, and then their records' keys, come back.
   With ``verify: levenshtein | both`` (the stage's ``verifies_texts``) the keys and signatures of every
   candidate record come to the driver instead, the stage names the records whose texts it still needs, and a
   second map over the records sends back just those texts (its ``gather``) for ``complete``.
4. **Clusters on the driver.** The stage's ``resolve_verified`` clusters the verified pairs by union-find and
   chooses each cluster's kept record (highest quality, then smallest ``_seq``: independent of Ray's
   ordering).
"""

from __future__ import annotations

import json
from collections import Counter
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np
import pyarrow as pa

from pipeline.engines.parts import records_of
from pipeline.engines.ray_engine import COUNTERS_COLUMN
from stages.base import SEQ_COLUMN

if TYPE_CHECKING:
    from pipeline.engines.ray_engine import RayEngine

_SIG = "__zh_sig"
_BUCKETS = "__zh_buckets"
_QUALITY = "__zh_quality"
_PART = "__zh_part"


@runtime_checkable
class BandedStage(Protocol):
    """Optional hooks of a global stage that finds duplicates by LSH banding (``dedup_minhash`` has them).

    ``fingerprint(batch)`` must return an object with ``keys`` (:class:`stages.dedup.common.RecordKeys`)
    and ``signatures`` (an (n, k) array). With the hooks below an engine can group band buckets on its
    workers and still reach the resolution ``resolve`` would.
    """

    def fingerprint(self, batch: pa.Table) -> Any: ...

    def resolve(self, fingerprints: Any) -> Any: ...

    def band_buckets(self, signatures: np.ndarray) -> np.ndarray:
        """(n, bands) uint32: two records are candidates when one band's bucket is equal."""
        ...

    def signature_similarity(self, signatures: np.ndarray, left: np.ndarray, right: np.ndarray) -> np.ndarray:
        """Similarity of the signature rows ``left[i]`` and ``right[i]``."""
        ...

    def accepts(self, similarity: np.ndarray) -> np.ndarray:
        """Which candidate pairs are duplicates, given their similarity."""
        ...

    def fingerprint_counters(self, fingerprint: Any) -> dict[str, int]:
        """Additive statistics of one batch's fingerprint (e.g. texts too short to shingle)."""
        ...

    def resolve_verified(
        self, keys: Any, signatures: np.ndarray, left: np.ndarray, right: np.ndarray, stats: dict[str, int]
    ) -> Any:
        """The resolution from verified pairs; ``keys``/``signatures`` hold only the records in those pairs."""
        ...


# ---------------------------------------------------------------------------------------------- worker side
class _SignatureActor:
    """Fingerprints blocks (the stage is set up once per actor); keeps keys, signatures and band buckets."""

    def __init__(self, stage: BandedStage) -> None:
        setup = getattr(stage, "setup", None)
        if setup is not None:
            setup()
        self.stage = stage

    def __call__(self, block: pa.Table) -> pa.Table:
        fp = self.stage.fingerprint(records_of(block))
        sig = np.ascontiguousarray(fp.signatures)
        buckets = np.ascontiguousarray(self.stage.band_buckets(sig), dtype=np.uint32)
        n = len(fp.keys)
        counters = [json.dumps(self.stage.fingerprint_counters(fp))] + [None] * (n - 1) if n else []
        return pa.table(
            {
                SEQ_COLUMN: pa.array(fp.keys.seq, pa.int64()),
                "id": fp.keys.ids,
                _QUALITY: pa.array(fp.keys.quality, pa.float64()),
                _SIG: _matrix_column(sig),
                _BUCKETS: _matrix_column(buckets),
                COUNTERS_COLUMN: pa.array(counters, pa.string()),
            }
        )


def _matrix_column(matrix: np.ndarray) -> pa.FixedSizeListArray:
    return pa.FixedSizeListArray.from_arrays(pa.array(matrix.ravel()), matrix.shape[1])


def _matrix(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    arr = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    width = arr.type.list_size
    return arr.flatten().to_numpy(zero_copy_only=False).reshape(-1, width)


def _band_rows(block: pa.Table, partitions: int) -> pa.Table:
    """One row per (record, band): the hash partition of (band, bucket), band, bucket and ``_seq``."""
    buckets = _matrix(block.column(_BUCKETS))
    n, bands = buckets.shape
    band = np.tile(np.arange(bands, dtype=np.uint64), n)
    bucket = buckets.ravel().astype(np.uint64)
    mixed = (bucket * np.uint64(0x9E3779B97F4A7C15) + band * np.uint64(0xC2B2AE3D27D4EB4F)) >> np.uint64(33)
    return pa.table(
        {
            _PART: (mixed % np.uint64(partitions)).astype(np.int64),
            "band": band.astype(np.int32),
            "bucket": bucket.astype(np.uint32),
            SEQ_COLUMN: np.repeat(block.column(SEQ_COLUMN).to_numpy(), bands),
        }
    )


def _bucket_pairs(group: pa.Table) -> pa.Table:
    """Candidate pairs of one partition: each bucket member with the bucket's first member and its predecessor
    (members in ``_seq`` order), as the stage's ``candidate_pairs`` does."""
    band = group.column("band").to_numpy()
    bucket = group.column("bucket").to_numpy()
    seq = group.column(SEQ_COLUMN).to_numpy()
    order = np.lexsort((seq, bucket, band))
    band, bucket, seq = band[order], bucket[order], seq[order]
    same = np.zeros(len(seq), bool)
    same[1:] = (band[1:] == band[:-1]) & (bucket[1:] == bucket[:-1])
    members = np.flatnonzero(same)
    head = np.maximum.accumulate(np.where(same, 0, np.arange(len(seq))))
    left = np.concatenate([seq[head[members]], seq[members - 1]])
    right = np.concatenate([seq[members], seq[members]])
    return pa.table({"a": pa.array(left, pa.int64()), "b": pa.array(right, pa.int64())})


def _pair_sides(block: pa.Table, pairs: list[Any], partitions: int) -> pa.Table:
    """For every candidate pair with an endpoint in this block: (partition, pair number, side, signature)."""
    import ray

    a, b = ray.get(pairs[0])
    seq = block.column(SEQ_COLUMN).to_numpy()
    order = np.argsort(seq, kind="stable")
    sorted_seq = seq[order]
    sig = _matrix(block.column(_SIG))
    pair_ids: list[np.ndarray] = []
    sides: list[np.ndarray] = []
    rows: list[np.ndarray] = []
    for side, ends in enumerate((a, b)):
        pos = np.minimum(np.searchsorted(sorted_seq, ends), max(len(sorted_seq) - 1, 0))
        hit = np.flatnonzero(sorted_seq[pos] == ends) if len(sorted_seq) else np.empty(0, np.int64)
        pair_ids.append(hit)
        sides.append(np.full(len(hit), side, np.int8))
        rows.append(order[pos[hit]])
    pid = np.concatenate(pair_ids).astype(np.int64)
    return pa.table(
        {
            _PART: pid % partitions,
            "pair": pid,
            "side": np.concatenate(sides),
            _SIG: _matrix_column(sig[np.concatenate(rows)] if len(pid) else np.empty((0, sig.shape[1]), sig.dtype)),
        }
    )


def _verify(group: pa.Table, stage: BandedStage) -> pa.Table:
    """Both signatures of each pair in this partition -> the pairs the stage accepts, with their similarity."""
    pair = group.column("pair").to_numpy()
    side = group.column("side").to_numpy()
    order = np.lexsort((side, pair))
    sig = _matrix(group.column(_SIG))[order]
    pair = pair[order]
    if len(pair) % 2 or np.any(pair[0::2] != pair[1::2]):
        raise RuntimeError("ray_lsh: a candidate pair did not get both of its signatures")
    left = np.arange(0, len(pair), 2)
    sim = np.asarray(stage.signature_similarity(sig, left, left + 1), dtype=np.float64)
    ok = np.asarray(stage.accepts(sim), bool)
    return pa.table({"pair": pa.array(pair[left][ok], pa.int64()), "similarity": pa.array(sim[ok], pa.float64())})


def _select(block: pa.Table, wanted: list[Any]) -> pa.Table:
    """The rows of ``block`` whose ``_seq`` is in the wanted set (an object ref of a sorted int64 array)."""
    import ray

    involved = ray.get(wanted[0])
    seq = block.column(SEQ_COLUMN).to_numpy()
    pos = np.minimum(np.searchsorted(involved, seq), max(len(involved) - 1, 0))
    mask = involved[pos] == seq if len(involved) else np.zeros(len(seq), bool)
    return block.filter(pa.array(mask)).drop_columns([_BUCKETS, COUNTERS_COLUMN])


# ---------------------------------------------------------------------------------------------- driver side
def _numpy_columns(ds: Any, names: tuple[str, ...]) -> list[np.ndarray]:
    parts: dict[str, list[np.ndarray]] = {name: [] for name in names}
    for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
        for name in names:
            parts[name].append(batch[name])
    return [np.concatenate(parts[name]) if parts[name] else np.empty(0, np.int64) for name in names]


def _unique_pairs(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    order = np.lexsort((b, a))
    a, b = a[order], b[order]
    keep = np.ones(len(a), bool)
    keep[1:] = (a[1:] != a[:-1]) | (b[1:] != b[:-1])
    return a[keep], b[keep]


def resolve_banded(engine: RayEngine, stage: BandedStage, records: Any, blocks: int) -> Any:
    """The stage's resolution, computed as described in the module docstring. ``records`` is a Ray dataset of the
    stage's input records (or of work units, see :func:`pipeline.engines.parts.records_of`) in ``blocks`` blocks,
    fingerprinted a block at a time."""
    import ray

    parts = engine.partitions
    signatures = records.map_batches(
        _SignatureActor,
        batch_size=None,
        batch_format="pyarrow",
        fn_constructor_args=(stage,),
        compute=engine.actors(blocks),
        num_cpus=1,
    ).materialize()
    counters: Counter[str] = Counter()
    for batch in signatures.select_columns([COUNTERS_COLUMN]).iter_batches(batch_size=None, batch_format="pyarrow"):
        for text in batch.column(COUNTERS_COLUMN).drop_null().to_pylist():
            counters.update(json.loads(text))
    candidates = (
        signatures.select_columns([SEQ_COLUMN, _BUCKETS])
        .map_batches(_band_rows, batch_size=None, batch_format="pyarrow", fn_kwargs={"partitions": parts})
        .groupby(_PART, num_partitions=parts)
        .map_groups(_bucket_pairs, batch_format="pyarrow")
    )
    a, b = _unique_pairs(*_numpy_columns(candidates, ("a", "b")))
    if getattr(stage, "verifies_texts", False):  # verified on the texts: a second pass for just their records
        return _verify_on_texts(stage, records, signatures, a, b, dict(counters))
    if len(a) <= engine.driver_verify_pairs:  # few candidates: fetch their records' signatures, verify here
        keys, sig = _fetch(signatures, np.unique(np.concatenate([a, b])))
        left, right = np.searchsorted(keys.seq, a), np.searchsorted(keys.seq, b)
        ok = np.asarray(stage.accepts(stage.signature_similarity(sig, left, right)), bool)
        va, vb = a[ok], b[ok]
    else:  # many: bring both signatures of each pair together with a second shuffle, on the workers
        pairs_ref = [ray.put((a, b))]
        sides = signatures.select_columns([SEQ_COLUMN, _SIG]).map_batches(
            _pair_sides, batch_size=None, batch_format="pyarrow", fn_args=(pairs_ref, parts)
        )
        verified = sides.groupby(_PART, num_partitions=parts).map_groups(
            _verify, batch_format="pyarrow", fn_args=(stage,)
        )
        (verified_pair,) = _numpy_columns(verified, ("pair",))
        va, vb = a[verified_pair], b[verified_pair]
        keys, sig = _fetch(signatures, np.unique(np.concatenate([va, vb])))
    # records in no verified pair are alone in their cluster and kept: leaving them out changes nothing
    stats = {"candidate_pairs": len(a), "verified_pairs": len(va), **counters}
    return stage.resolve_verified(keys, sig, np.searchsorted(keys.seq, va), np.searchsorted(keys.seq, vb), stats)


def _verify_on_texts(stage: Any, records: Any, signatures: Any, a: np.ndarray, b: np.ndarray, stats: dict) -> Any:
    """``verify: levenshtein | both``: the keys and signatures of the candidate records come to the driver, the
    stage says which records' texts it needs, the workers read the records again and send just those texts
    (``gather``), and the stage completes the resolution — as its own ``resolve`` does locally."""
    import ray

    keys, sig = _fetch(signatures, np.unique(np.concatenate([a, b])))
    stats = {"candidate_pairs": len(a), **stats}
    pending = stage.verify_candidates(keys, sig, np.searchsorted(keys.seq, a), np.searchsorted(keys.seq, b), stats)
    if not stage.needs_records(pending):
        return pending
    box = [ray.put(pending)]
    texts = records.map_batches(_gather, batch_size=None, batch_format="pyarrow", fn_args=(stage, box))
    return stage.complete(pending, list(texts.iter_batches(batch_size=None, batch_format="pyarrow")))


def _gather(block: pa.Table, stage: Any, box: list[Any]) -> pa.Table:
    """The stage's ``gather`` over one block of records (the pending resolution comes through the object store)."""
    import ray

    return stage.gather(records_of(block), ray.get(box[0]))


def _fetch(signatures: Any, involved: np.ndarray) -> tuple[Any, np.ndarray]:
    """RecordKeys and signatures of the records whose ``_seq`` is in ``involved`` (sorted), in that order."""
    import ray

    chosen = pa.table({SEQ_COLUMN: pa.array([], pa.int64())})
    if len(involved):
        found = signatures.map_batches(
            _select, batch_size=None, batch_format="pyarrow", fn_args=([ray.put(involved)],)
        ).iter_batches(batch_size=None, batch_format="pyarrow")
        chosen = pa.concat_tables(list(found))
    return _keys_and_signatures(chosen, involved)


def _keys_and_signatures(table: pa.Table, involved: np.ndarray) -> tuple[Any, np.ndarray]:
    """RecordKeys and signatures of the involved records, in ``_seq`` order."""
    from stages.dedup.common import RecordKeys

    if table.num_rows != len(involved):
        raise RuntimeError(f"ray_lsh: found {table.num_rows} of the {len(involved)} records named in verified pairs")
    if not len(involved):
        return RecordKeys.concat([]), np.empty((0, 1), np.uint32)
    table = table.take(np.argsort(table.column(SEQ_COLUMN).to_numpy(), kind="stable"))
    keys = RecordKeys(
        table.column(SEQ_COLUMN).to_numpy(),
        table.column("id").combine_chunks().cast(pa.large_string()),
        table.column(_QUALITY).to_numpy(),
    )
    return keys, _matrix(table.column(_SIG))


# ---------------------------------------------------------------------------------------------- exact dedup
@runtime_checkable
class HashedStage(Protocol):
    """Optional hooks of a global stage whose duplicates are records with equal content hashes (``dedup_exact``):
    ``fingerprint(batch)`` returns an object with ``keys`` (:class:`stages.dedup.common.RecordKeys`) and
    ``hashes`` (an (n, 2) uint64 array)."""

    def fingerprint(self, batch: pa.Table) -> Any: ...

    def resolve(self, fingerprints: Any) -> Any: ...

    def resolve_labels(self, keys: Any, labels: np.ndarray) -> Any:
        """The resolution from cluster labels of some records (records left out are alone in their cluster)."""
        ...


class _HashActor:
    """Content hashes of a block, with the keys that choose the kept twin and a shuffle partition."""

    def __init__(self, stage: HashedStage, partitions: int) -> None:
        setup = getattr(stage, "setup", None)
        if setup is not None:
            setup()
        self.stage, self.partitions = stage, partitions

    def __call__(self, block: pa.Table) -> pa.Table:
        fp = self.stage.fingerprint(records_of(block))
        hashes = np.asarray(fp.hashes, dtype=np.uint64).reshape(-1, 2)
        return pa.table(
            {
                _PART: (hashes[:, 0] % np.uint64(self.partitions)).astype(np.int64),
                "h0": hashes[:, 0],
                "h1": hashes[:, 1],
                SEQ_COLUMN: pa.array(fp.keys.seq, pa.int64()),
                "id": fp.keys.ids,
                _QUALITY: pa.array(fp.keys.quality, pa.float64()),
            }
        )


def _duplicate_groups(group: pa.Table) -> pa.Table:
    """The members of every group of equal hashes with two or more members, labelled by the group's first
    ``_seq`` (one shuffle partition; members of a hash are all in the same partition)."""
    h0, h1 = group.column("h0").to_numpy(), group.column("h1").to_numpy()
    seq = group.column(SEQ_COLUMN).to_numpy()
    order = np.lexsort((seq, h1, h0))
    h0, h1 = h0[order], h1[order]
    new = np.ones(len(order), bool)
    new[1:] = (h0[1:] != h0[:-1]) | (h1[1:] != h1[:-1])
    start = np.flatnonzero(new)
    size = np.diff(np.append(start, len(order)))
    group_of = np.cumsum(new) - 1
    member = size[group_of] >= 2
    label = seq[order][start][group_of]
    rows = order[member]
    return (
        group.take(pa.array(rows, pa.int64()))
        .select([SEQ_COLUMN, "id", _QUALITY])
        .append_column("label", pa.array(label[member], pa.int64()))
    )


def resolve_hashed(engine: RayEngine, stage: HashedStage, records: Any, blocks: int) -> Any:
    """Exact duplicates at cluster scale: hashes computed on the workers and grouped by a ``groupby`` shuffle on
    the hash; only the members of duplicate groups (their keys and group label) come to the driver, which
    resolves them with the stage's own rule (highest quality, then smallest ``_seq``: order-independent)."""
    from stages.dedup.common import RecordKeys

    parts = engine.partitions
    members = (
        records.map_batches(
            _HashActor,
            batch_size=None,
            batch_format="pyarrow",
            fn_constructor_args=(stage, parts),
            compute=engine.actors(blocks),
            num_cpus=1,
        )
        .groupby(_PART, num_partitions=parts)
        .map_groups(_duplicate_groups, batch_format="pyarrow")
    )
    found = list(members.iter_batches(batch_size=None, batch_format="pyarrow"))
    table = pa.concat_tables(found) if found else None
    if table is None or not table.num_rows:
        return stage.resolve([])
    table = table.take(pa.array(np.argsort(table.column(SEQ_COLUMN).to_numpy(), kind="stable"), pa.int64()))
    keys = RecordKeys(
        table.column(SEQ_COLUMN).to_numpy(),
        table.column("id").combine_chunks().cast(pa.large_string()),
        table.column(_QUALITY).to_numpy(),
    )
    return stage.resolve_labels(keys, table.column("label").to_numpy())
