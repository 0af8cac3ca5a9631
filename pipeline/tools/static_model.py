"""The built-in static embedding model's parts shared by both ways of training it (:mod:`pipeline.tools.train_embedder`
from parallel text, :mod:`pipeline.tools.distil_embedder` from e5 on Chinese text): the training text reader, the
tokenizer, token bags for ``EmbeddingBag`` batches, and the saved sentence-transformers directory."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from schemas.errors import ConfigError

if TYPE_CHECKING:
    import torch
    from tokenizers import Tokenizer

_TRAILING_COMMA = re.compile(r",\s*([\]}])")


def read_json_lenient(path: Path) -> list[dict[str, str]]:
    """Read a JSON array; tolerate the trailing commas some translated Alpaca files have."""
    text = path.read_text(encoding="utf-8-sig")
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        data = json.loads(_TRAILING_COMMA.sub(r"\1", text))
    if not isinstance(data, list):
        raise ConfigError(f"{path}: expected a JSON array of Alpaca records")
    return data


def train_tokenizer(texts: Iterable[str], vocab_size: int) -> Tokenizer:
    """A Unigram vocabulary over the training text; every character seen in training stays in it, so a word
    never seen whole still falls back to its characters."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.Unigram())
    tokenizer.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation(), pre_tokenizers.Digits()]
    )
    trainer = trainers.UnigramTrainer(
        vocab_size=vocab_size, special_tokens=["[UNK]"], unk_token="[UNK]", max_piece_length=8
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    return tokenizer


def token_bags(tokenizer: Tokenizer, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Token ids of all texts, flat, and each text's start offset (an empty text gets the [UNK] id)."""
    ids = [enc.ids or [0] for enc in tokenizer.encode_batch(list(texts), add_special_tokens=False)]
    lengths = np.fromiter((len(x) for x in ids), dtype=np.int64, count=len(ids))
    flat = np.fromiter((t for x in ids for t in x), dtype=np.int64, count=int(lengths.sum()))
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    return flat, np.stack([starts, lengths], axis=1)


def bag_batch(flat: np.ndarray, spans: np.ndarray, rows: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    import torch

    picked = spans[rows]
    ids = np.concatenate([flat[s : s + n] for s, n in picked])
    offsets = np.concatenate([[0], np.cumsum(picked[:, 1])[:-1]])
    return torch.from_numpy(ids), torch.from_numpy(offsets)


def save_model(tokenizer: Tokenizer, weights: np.ndarray, out: Path) -> None:
    """A sentence-transformers directory: StaticEmbedding (float16 weights) + Normalize."""
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Normalize, StaticEmbedding

    static = StaticEmbedding(tokenizer, embedding_weights=torch.from_numpy(weights).to(torch.float16))
    SentenceTransformer(modules=[static, Normalize()], device="cpu").save(str(out))
