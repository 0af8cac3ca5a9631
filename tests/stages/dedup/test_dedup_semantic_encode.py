"""dedup_semantic embeds each distinct text once and, for the static built-in model, tokenizes and pools without
sentence-transformers' ``encode``: the rows must be bit-for-bit those of ``model.encode``."""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from stages.dedup.embedder import DEFAULT_MODEL_DIR, load_model
from stages.dedup.semantic_encode import TOKENIZE_CHUNK, encode_columns, encode_texts, static_tokenizer

TEXTS = [
    "写一首关于春天的诗",
    "创作一首描写春天的诗歌",
    "解释一下光合作用的原理",
    "把下面这句话翻译成英文：今天天气很好。",
    "Write a Python function that reverses a list.",
    "计算[1,2,3,4,5]的标准差",
    "春风吹绿了江南岸，桃花笑映小河湾。燕子归来寻旧垒，一犁春雨满田间。" * 6,
    "ＡＢＣ全角字母和１２３全角数字",
    "😀",
]


@pytest.fixture(scope="module")
def model() -> Any:
    return load_model(DEFAULT_MODEL_DIR)


def test_static_path_is_bit_identical_to_sentence_transformers_encode(model: Any) -> None:
    assert static_tokenizer(model) is not None
    expected = model.encode(TEXTS, batch_size=4096, convert_to_numpy=True, normalize_embeddings=True)
    got = encode_texts(model, TEXTS, 4096)
    assert got.dtype == np.float32 and got.shape == (len(TEXTS), 384)
    assert np.array_equal(got, expected)
    # a row depends on its text only: alone, or in another order, it is the same bits
    alone = np.stack([encode_texts(model, [text], 4096)[0] for text in TEXTS])
    assert np.array_equal(alone, expected)
    assert np.array_equal(encode_texts(model, TEXTS[::-1], 4096), expected[::-1])


def test_static_path_over_several_chunks(model: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    import stages.dedup.semantic_encode as encode

    monkeypatch.setattr(encode, "TOKENIZE_CHUNK", 4)
    assert encode.TOKENIZE_CHUNK != TOKENIZE_CHUNK
    expected = model.encode(TEXTS, convert_to_numpy=True, normalize_embeddings=True)
    assert np.array_equal(encode.encode_texts(model, TEXTS, 4096), expected)


def test_columns_blank_rows_are_zero_and_repeats_share_rows(model: Any) -> None:
    requests = ["写一首关于春天的诗", "  ", "写一首关于春天的诗", "解释一下光合作用的原理"]
    alone = ["", "", "确定段落的基调。", ""]
    answers = ["解释一下光合作用的原理", "春风吹绿了江南岸。", "", "解释一下光合作用的原理"]
    main, side, out = encode_columns(model, [requests, alone, answers], 384, 4096)
    expected = model.encode(
        ["写一首关于春天的诗", "解释一下光合作用的原理", "确定段落的基调。", "春风吹绿了江南岸。"],
        convert_to_numpy=True,
        normalize_embeddings=True,
    )
    norms = expected / np.linalg.norm(expected, axis=1, keepdims=True)  # encode_columns normalizes once more
    assert np.array_equal(main[[0, 2, 3]], norms[[0, 0, 1]])
    assert not main[1].any() and not side[[0, 1, 3]].any() and not out[2].any()
    assert np.array_equal(side[2], norms[2])
    assert np.array_equal(out[[0, 1, 3]], norms[[1, 3, 1]])


class CountingModel:
    """A model without a static tokenizer: :func:`encode_texts` must call its ``encode``."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    def encode(self, texts: Sequence[str], **kwargs: Any) -> np.ndarray:
        assert kwargs["normalize_embeddings"] is True
        self.seen.extend(texts)
        return np.stack([np.eye(4, dtype=np.float32)[len(text) % 4] for text in texts])


def test_other_models_go_through_encode_and_see_each_text_once() -> None:
    fake = CountingModel()
    assert static_tokenizer(fake) is None
    columns = [["确定段落的基调。", "写一首诗", "确定段落的基调。"], ["", "写一首诗", "用5句话概括段落。"]]
    main, side = encode_columns(fake, columns, 4, 64)
    assert fake.seen == ["确定段落的基调。", "写一首诗", "用5句话概括段落。"]
    assert np.array_equal(main[0], main[2]) and np.array_equal(main[1], side[1])
    assert not side[0].any() and side[2].any()


def test_built_in_model_without_sentence_transformers_is_bit_identical(model: Any) -> None:
    from stages.dedup.static_model import StaticModel

    plain = StaticModel.load(DEFAULT_MODEL_DIR)
    assert plain is not None and plain.get_embedding_dimension() == 384 and plain.normalizes == 1
    expected = model.encode(TEXTS, batch_size=4096, convert_to_numpy=True, normalize_embeddings=True)
    assert np.array_equal(plain.encode(TEXTS), expected)
    columns = [TEXTS, ["", *TEXTS[1:]]]
    assert all(
        np.array_equal(a, b)
        for a, b in zip(encode_columns(plain, columns, 384, 64), encode_columns(model, columns, 384, 64), strict=True)
    )


def test_static_model_declines_other_directories(tiny_model_dir: Path, tmp_path: Path) -> None:
    from sentence_transformers import SentenceTransformer

    from stages.dedup.static_model import StaticModel

    tiny = StaticModel.load(tiny_model_dir)  # a static embedding without a Normalize module
    assert tiny is not None and tiny.normalizes == 0
    st = SentenceTransformer(str(tiny_model_dir), device="cpu").float()
    expected = st.encode(TEXTS, convert_to_numpy=True, normalize_embeddings=True)
    assert np.array_equal(tiny.encode(TEXTS), expected)
    assert StaticModel.load(tmp_path) is None  # not a model directory
    assert StaticModel.load("BAAI/bge-small-zh-v1.5") is None  # a hub name: sentence-transformers' business
    prompted = tmp_path / "prompted"
    shutil.copytree(DEFAULT_MODEL_DIR, prompted)
    config = json.loads((prompted / "config_sentence_transformers.json").read_text(encoding="utf-8"))
    config["prompts"] = {"query": "query: "}
    (prompted / "config_sentence_transformers.json").write_text(json.dumps(config), encoding="utf-8")
    assert StaticModel.load(prompted) is None
