"""Embedding the texts of ``dedup_semantic`` (:mod:`stages.dedup.semantic`): each distinct text once, and, for a
static model (the built-in one), without the sentence-transformers ``encode`` wrapper.

* :func:`encode_columns` embeds several columns of texts (the request, the instruction alone, the answer) in one
  go: blank texts get zero rows, and a text that occurs more than once — in one column or across them (an empty
  input repeated, an answer given to several prompts) — is embedded once and its row copied.
* :func:`encode_texts` embeds a list of texts. For a static model (a sentence-transformers ``StaticEmbedding``
  model, or :class:`~stages.dedup.static_model.StaticModel`: the built-in one, read without
  sentence-transformers) it tokenizes with the model's HF ``tokenizers`` tokenizer directly (``encode_batch``
  over large chunks, its own thread pool), pools the token ids through the model's modules (the ``EmbeddingBag``
  mean and the ``Normalize`` module) and normalizes once more, as ``SentenceTransformer.encode(
  normalize_embeddings=True)`` does: the same operations on the same tensors, so the same bits (each text's row
  depends only on its own tokens; the tests compare the two paths row for row). It skips ``encode``'s per-text
  bookkeeping (modality checks, length sort, unbinding and re-stacking rows): 5–15 % of the embedding CPU of the
  built-in model, whose cost is the tokenizer's. Any other model goes through ``model.encode``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from itertools import chain
from typing import Any

import numpy as np

TOKENIZE_CHUNK = 16_384
"""Texts tokenized and pooled per call in the static path: bounds the token-id buffers (a few MB)."""


def static_parts(model: Any) -> tuple[Any, Callable[[Any, Any], Any]] | None:
    """``(tokenizer, pool)`` of a static model: a :class:`~stages.dedup.static_model.StaticModel`, or a
    sentence-transformers model whose first module is a ``StaticEmbedding`` and that adds no prompt (``pool``
    runs its modules on the token ids and bag offsets); None for any other model (then :func:`encode_texts`
    calls ``model.encode``)."""
    own = getattr(model, "static_parts", None)  # a StaticModel says itself (it imports this module)
    if callable(own):
        return own()
    try:
        first = model[0]
    except (TypeError, IndexError, KeyError):
        return None
    if type(first).__name__ != "StaticEmbedding" or getattr(model, "truncate_dim", None) is not None:
        return None
    if getattr(model, "default_prompt_name", None) or any((getattr(model, "prompts", None) or {}).values()):
        return None
    tokenizer = getattr(first, "tokenizer", None)
    if not callable(getattr(tokenizer, "encode_batch", None)):
        return None

    def pool(input_ids: Any, offsets: Any) -> Any:
        return model({"input_ids": input_ids, "offsets": offsets})["sentence_embedding"]

    return tokenizer, pool


def static_tokenizer(model: Any) -> Any | None:
    """The tokenizer of a static model (see :func:`static_parts`), or None."""
    parts = static_parts(model)
    return parts[0] if parts else None


def encode_texts(model: Any, texts: Sequence[str], batch_size: int) -> np.ndarray:
    """Unit rows (float32, ``(len(texts), dim)``) of ``texts``, as ``model.encode(texts,
    normalize_embeddings=True)`` gives them."""
    parts = static_parts(model)
    if parts is None:
        return np.asarray(
            model.encode(
                list(texts),
                batch_size=batch_size,
                convert_to_numpy=True,
                normalize_embeddings=True,
                show_progress_bar=False,
            ),
            dtype=np.float32,
        )
    import torch
    import torch.nn.functional as F

    tokenizer, pool = parts
    blocks: list[np.ndarray] = []
    with torch.inference_mode():
        for start in range(0, len(texts), TOKENIZE_CHUNK):
            encodings = tokenizer.encode_batch(list(texts[start : start + TOKENIZE_CHUNK]), add_special_tokens=False)
            ids = [encoding.ids for encoding in encodings]
            lengths = np.fromiter(map(len, ids), dtype=np.int64, count=len(ids))
            offsets = np.zeros(len(ids), dtype=np.int64)
            np.cumsum(lengths[:-1], out=offsets[1:])
            flat = np.fromiter(chain.from_iterable(ids), dtype=np.int64, count=int(lengths.sum()))
            embedding = pool(torch.from_numpy(flat), torch.from_numpy(offsets))
            blocks.append(F.normalize(embedding, p=2, dim=1).numpy())
    if not blocks:
        return np.zeros((0, _dimension(model)), dtype=np.float32)
    return np.concatenate(blocks).astype(np.float32, copy=False)


def _dimension(model: Any) -> int:
    getter = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
    return int(getter())


def encode_columns(model: Any, columns: Sequence[Sequence[str]], dim: int, batch_size: int) -> list[np.ndarray]:
    """One float32 ``(rows, dim)`` matrix of unit rows per column of texts (zero rows for blank texts), from one
    :func:`encode_texts` call over the distinct non-blank texts of every column: big batches are what static
    models need, and a repeated text is embedded once."""
    rows = len(columns[0]) if columns else 0
    matrices = [np.zeros((rows, dim), dtype=np.float32) for _ in columns]
    distinct: dict[str, int] = {}
    where: list[tuple[np.ndarray, np.ndarray]] = []  # per column: the rows with a text, and the text's number
    for column in columns:
        rows_with_text = [i for i, text in enumerate(column) if text.strip()]
        numbers = [distinct.setdefault(column[i], len(distinct)) for i in rows_with_text]
        where.append((np.asarray(rows_with_text, dtype=np.int64), np.asarray(numbers, dtype=np.int64)))
    if distinct:
        vectors = encode_texts(model, list(distinct), batch_size)
        for matrix, (filled, at) in zip(matrices, where, strict=True):
            matrix[filled] = vectors[at]
    for matrix in matrices:
        norms = np.linalg.norm(matrix, axis=1, keepdims=True)
        np.divide(matrix, norms, out=matrix, where=norms > 0)
    return matrices
