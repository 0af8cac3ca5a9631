"""A sentence-transformers static model directory run without importing sentence-transformers.

The built-in model (``stages/models/zh-static-384``) is a ``StaticEmbedding`` (a HF ``tokenizers`` tokenizer and
one vector per token, mean-pooled by a torch ``EmbeddingBag``) followed by a ``Normalize`` module. Importing
sentence-transformers (with transformers and scikit-learn) costs about 3 s of a run's start for what is a
tokenizer and one torch call, so :meth:`StaticModel.load` reads such a directory itself — ``tokenizer.json``,
the ``embedding.weight`` of ``model.safetensors``, cast to float32 as :func:`stages.dedup.embedder.load_model`
casts it — and :meth:`StaticModel.pool` runs the same torch operations as the modules: the same bits
(tests/stages/dedup/test_dedup_semantic_encode.py compares them with ``SentenceTransformer.encode``).
A directory with any other module, a prompt or a truncation setting is left to sentence-transformers (None).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

STATIC = "sentence_transformers.sentence_transformer.modules.static_embedding.StaticEmbedding"
NORMALIZE = ("sentence_transformers.base.modules.normalize.Normalize", "sentence_transformers.models.Normalize")
_NORMALIZE_CONFIG = {"module_input_name": "sentence_embedding", "module_output_name": "sentence_embedding"}


def _plain_config(path: Path) -> bool:
    """No prompt, no truncation: what ``encode`` would add is nothing."""
    file = path / "config_sentence_transformers.json"
    config = json.loads(file.read_text(encoding="utf-8")) if file.is_file() else {}
    prompts = config.get("prompts") or {}
    return not config.get("default_prompt_name") and not any(prompts.values()) and config.get("truncate_dim") is None


def _normalizes(path: Path, modules: list[dict[str, Any]]) -> int | None:
    """How many ``Normalize`` modules follow the ``StaticEmbedding`` (each with its default keys), or None when
    the modules are anything else."""
    if not modules or modules[0].get("type") != STATIC or modules[0].get("path") != "":
        return None
    for module in modules[1:]:
        if module.get("type") not in NORMALIZE:
            return None
        file = path / str(module.get("path", "")) / "config.json"
        config = json.loads(file.read_text(encoding="utf-8")) if file.is_file() else {}
        if {**_NORMALIZE_CONFIG, **config} != _NORMALIZE_CONFIG:
            return None
    return len(modules) - 1


class StaticModel:
    """Tokenizer + mean of token vectors + L2 normalisations, as the sentence-transformers modules compute them."""

    def __init__(self, tokenizer: Any, weights: Any, normalizes: int) -> None:
        import torch

        tokenizer.no_padding()
        self.tokenizer = tokenizer
        self.embedding = torch.nn.EmbeddingBag.from_pretrained(weights.float(), freeze=False)
        self.normalizes = normalizes
        self.embedding_dim = int(weights.shape[1])

    @classmethod
    def load(cls, path: str | Path) -> StaticModel | None:
        """The model of a local directory that holds only a static embedding and Normalize modules, else None."""
        root = Path(path)
        files = [root / "modules.json", root / "tokenizer.json", root / "model.safetensors"]
        if not all(file.is_file() for file in files) or not _plain_config(root):
            return None
        normalizes = _normalizes(root, json.loads(files[0].read_text(encoding="utf-8")))
        if normalizes is None:
            return None
        from safetensors.torch import load_file
        from tokenizers import Tokenizer

        weights = load_file(str(files[2]))
        if set(weights) != {"embedding.weight"}:
            return None
        return cls(Tokenizer.from_file(str(files[1])), weights["embedding.weight"], normalizes)

    @property
    def max_seq_length(self) -> float:
        return math.inf  # no token limit (setting one fails, as for sentence-transformers' StaticEmbedding)

    def get_embedding_dimension(self) -> int:
        return self.embedding_dim

    def static_parts(self) -> tuple[Any, Any]:
        """``(tokenizer, pool)``: what :func:`stages.dedup.semantic_encode.static_parts` runs the model with."""
        return self.tokenizer, self.pool

    def pool(self, input_ids: Any, offsets: Any) -> Any:
        """The sentence vectors of the token bags (``EmbeddingBag`` mean, then each ``Normalize``)."""
        import torch.nn.functional as F

        vectors = self.embedding(input_ids, offsets)
        for _ in range(self.normalizes):
            vectors = F.normalize(vectors, p=2, dim=-1)
        return vectors

    def encode(self, texts: Sequence[str], batch_size: int = 4096, **_: Any) -> np.ndarray:
        """Unit rows of ``texts``, as ``SentenceTransformer.encode(normalize_embeddings=True)`` gives them."""
        from stages.dedup.semantic_encode import encode_texts

        return encode_texts(self, texts, batch_size)
