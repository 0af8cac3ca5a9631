"""Shared fixtures.

``tiny_model_dir``: a tiny, deterministic sentence-transformers model written to a temporary directory
(no download). It is a ``StaticEmbedding`` — the mean of one seeded random vector per token — over a
tokenizer whose tokens are single characters (CJK, ASCII, Chinese punctuation) plus a few words. Each word
in :data:`SYNONYMS` shares its vector with a canonical one, so the model "knows" that 创作/描写 mean 写 and
诗歌 means 诗: two texts are similar when they share characters or synonyms, which is enough to test the
semantic-dedup mechanics. The directory also holds a char n-gram IDF table (``ngram_idf.npy``, fitted on
:data:`IDF_CORPUS`) for the hybrid similarity of :mod:`stages.dedup.embedder`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

# word -> the token whose vector it shares
SYNONYMS: dict[str, str] = {
    "创作": "写",
    "描写": "写",
    "撰写": "写",
    "诗歌": "诗",
    "诗词": "诗",
    "解释": "说明",
    "讲解": "说明",
    "介绍": "说明",
}
TINY_DIM = 128
IDF_CORPUS: list[str] = [
    "写一首关于春天的诗",
    "解释一下光合作用的原理",
    "把这段话翻译成英文",
    "推荐几本适合初学者的Python书",
    "介绍一下长城的历史",
    "如何提高睡眠质量？",
    "列出三种常见的水果",
    "给我讲一个关于友谊的故事",
]


def build_tiny_model(path: Path, dim: int = TINY_DIM, seed: int = 0) -> Path:
    """Write the tiny model to ``path`` (a directory that SentenceTransformer(path) loads offline)."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import StaticEmbedding
    from tokenizers import Tokenizer, models, pre_tokenizers

    chars = [chr(c) for c in range(0x21, 0x7F)]  # printable ASCII
    chars += [chr(c) for c in range(0x3000, 0x3040)]  # CJK punctuation
    chars += [chr(c) for c in range(0xFF01, 0xFF5F)]  # full-width forms
    chars += [chr(c) for c in range(0x4E00, 0x9FA6)]  # CJK unified ideographs
    vocab: dict[str, int] = {"[UNK]": 0, "[PAD]": 1}
    for token in [*chars, "说明", *SYNONYMS]:
        vocab.setdefault(token, len(vocab))
    # Chinese has no spaces: a "word" is a run of \w; WordPiece with an empty continuation prefix then splits
    # it into the longest tokens of the vocabulary (words first, else single characters).
    tokenizer = Tokenizer(
        models.WordPiece(vocab=vocab, unk_token="[UNK]", continuing_subword_prefix="", max_input_chars_per_word=10**6)
    )
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    weights = np.random.default_rng(seed).standard_normal((len(vocab), dim)).astype(np.float32)
    weights[vocab["说明"]] = weights[vocab["说"]] + weights[vocab["明"]]
    for word, canonical in SYNONYMS.items():
        weights[vocab[word]] = weights[vocab[canonical]]
    model = SentenceTransformer(modules=[StaticEmbedding(tokenizer, embedding_weights=weights)], device="cpu")
    model.save(str(path))
    from stages.dedup.embedder import NgramIdf

    NgramIdf.fit(IDF_CORPUS).save(path)
    return path


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Directory of the tiny deterministic model (built once per test session)."""
    return build_tiny_model(tmp_path_factory.mktemp("tiny_model"))
