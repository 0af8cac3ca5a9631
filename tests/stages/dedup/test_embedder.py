"""The packaged Chinese embedder: loads offline, encodes Chinese, ranks paraphrases above unrelated text."""

from __future__ import annotations

import socket
from pathlib import Path

import numpy as np
import pytest
from sentence_transformers import SentenceTransformer

from schemas.errors import ConfigError
from stages.dedup.embedder import (
    DEFAULT_MODEL_DIR,
    DEFAULT_THRESHOLD,
    NgramIdf,
    candidate_cosine,
    load_idf,
    load_model,
    pair_similarity,
)

# (a, b): same meaning, worded differently
PARAPHRASES = [
    ("怎么开初婚未育证明？", "初婚未育情况证明怎么开？"),
    ("今天北京的天气怎么样？", "北京今天天气如何？"),
    ("如何学习Python编程？", "学Python编程应该怎么入门？"),
    ("请把这句话翻译成英文。", "把这个句子译成英语。"),
]
# (a, b): unrelated
UNRELATED = [
    ("怎么开初婚未育证明？", "推荐几部好看的科幻电影。"),
    ("今天北京的天气怎么样？", "如何用Python读取CSV文件？"),
    ("如何学习Python编程？", "红烧肉的做法是什么？"),
    ("请把这句话翻译成英文。", "花呗逾期一天会影响征信吗？"),
]


@pytest.fixture(scope="module")
def model() -> SentenceTransformer:
    return load_model(DEFAULT_MODEL_DIR)


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the embedder tried to reach the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)


def _encode(model: SentenceTransformer, pairs: list[tuple[str, str]]) -> tuple[np.ndarray, np.ndarray]:
    return (
        model.encode([a for a, _ in pairs], convert_to_numpy=True),
        model.encode([b for _, b in pairs], convert_to_numpy=True),
    )


def test_packaged_model_is_small_float16_and_complete() -> None:
    files = {p.name: p.stat().st_size for p in DEFAULT_MODEL_DIR.rglob("*") if p.is_file()}
    assert {"modules.json", "model.safetensors", "tokenizer.json", "ngram_idf.npy"} <= set(files)
    assert sum(files.values()) <= 30 * 1024 * 1024
    from safetensors import safe_open

    path = next(DEFAULT_MODEL_DIR.rglob("model.safetensors"))
    with safe_open(str(path), framework="np") as weights:
        assert {str(weights.get_slice(k).get_dtype()) for k in weights.keys()} == {"F16"}


def test_loads_offline_and_encodes_chinese(model: SentenceTransformer, no_network: None) -> None:
    emb = model.encode(["给出三个保持健康的提示。", "什么是三原色？", ""], convert_to_numpy=True)
    assert emb.shape == (3, 384)
    assert emb.dtype == np.float32
    assert np.all(np.isfinite(emb))
    np.testing.assert_allclose(np.linalg.norm(emb[:2], axis=1), 1.0, atol=1e-4)


def test_paraphrases_score_higher_than_unrelated(model: SentenceTransformer) -> None:
    para_a, para_b = _encode(model, PARAPHRASES)
    other_a, other_b = _encode(model, UNRELATED)
    cos_para = np.einsum("ij,ij->i", para_a, para_b)
    cos_other = np.einsum("ij,ij->i", other_a, other_b)
    assert cos_para.min() > cos_other.max()
    hybrid_para = pair_similarity([a for a, _ in PARAPHRASES], [b for _, b in PARAPHRASES], para_a, para_b)
    hybrid_other = pair_similarity([a for a, _ in UNRELATED], [b for _, b in UNRELATED], other_a, other_b)
    assert hybrid_para.min() > hybrid_other.max()
    assert hybrid_other.max() < DEFAULT_THRESHOLD


def test_identical_text_is_a_duplicate_at_the_default_threshold(model: SentenceTransformer) -> None:
    texts = ["请写一首关于春天的诗。", "解释一下什么是机器学习。"]
    emb = model.encode(texts, convert_to_numpy=True)
    sims = pair_similarity(texts, texts, emb, emb)
    np.testing.assert_allclose(sims, 1.0, atol=1e-3)
    assert np.all(sims >= DEFAULT_THRESHOLD)


def test_candidate_cosine_never_misses_a_hybrid_match(model: SentenceTransformer) -> None:
    pairs = PARAPHRASES + UNRELATED
    a, b = _encode(model, pairs)
    texts_a, texts_b = (list(t) for t in zip(*pairs, strict=True))
    hybrid = pair_similarity(texts_a, texts_b, a, b)
    cosine = np.einsum("ij,ij->i", a, b)
    for threshold in (0.5, 0.7, DEFAULT_THRESHOLD):
        floor = candidate_cosine(threshold)
        assert floor <= threshold
        assert np.all(cosine[hybrid >= threshold] >= floor - 1e-6)


def test_ngram_idf_weighs_rare_ngrams_more() -> None:
    idf = NgramIdf.fit(["我想借钱", "我想还钱", "我想吃饭", "花呗怎么还"])
    shared_rare = idf.pair_cosine(["花呗怎么还"], ["花呗还款"])[0]
    shared_common = idf.pair_cosine(["我想借钱"], ["我想吃饭"])[0]
    assert shared_rare > shared_common
    assert load_idf(DEFAULT_MODEL_DIR).pair_cosine(["一模一样"], ["一模一样"])[0] == pytest.approx(1.0, abs=1e-5)


def test_pair_similarity_rejects_misaligned_inputs() -> None:
    emb = np.ones((2, 4), dtype=np.float32)
    with pytest.raises(ValueError, match="same length"):
        pair_similarity(["甲", "乙"], ["丙"], emb, emb)


def test_missing_model_directory_names_it_and_the_fix(tmp_path: Path) -> None:
    missing = tmp_path / "没有这个模型"
    with pytest.raises(ConfigError) as err:
        load_model(missing)
    message = str(err.value)
    assert str(missing) in message
    assert "modules.json" in message
    assert "HF_HUB_OFFLINE" in message


def test_uncached_hub_name_fails_offline_without_network(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_network: None
) -> None:
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("SENTENCE_TRANSFORMERS_HOME", str(tmp_path / "st"))
    with pytest.raises(ConfigError) as err:
        load_model("zhcurate-test/not-a-cached-model")
    message = str(err.value)
    assert "zhcurate-test/not-a-cached-model" in message
    assert "HF_HUB_OFFLINE" in message
    assert "cache" in message


def test_training_data_uses_the_alignment_and_converts_tatoeba(tmp_path: Path) -> None:
    from pipeline.tools.train_embedder import load_alpaca_pairs, load_tsv_pairs

    zh_dir, en_dir = tmp_path / "zh", tmp_path / "en"
    zh_dir.mkdir()
    en_dir.mkdir()
    # the zh file lost row 0 of the English one, and ends with a trailing comma (as a real translated file does)
    (zh_dir / "alpaca_data-0-3-中文.json").write_text(
        '[{"instruction": "什么是三原色？", "input": "", "output": "红、黄、蓝。"},'
        ' {"instruction": "Untranslated row", "input": "", "output": "left in English"},]',
        encoding="utf-8",
    )
    (en_dir / "alpaca_data-0-3-英文.json").write_text(
        '[{"instruction": "Give three tips.", "input": "", "output": "Eat well."},'
        ' {"instruction": "What are the three primary colors?", "input": "", "output": "Red, yellow, blue."},'
        ' {"instruction": "Untranslated row", "input": "", "output": "left in English"}]',
        encoding="utf-8",
    )
    alignment = tmp_path / "align.tsv"
    alignment.write_text("range\tzh_row\ten_row\tmargin\n0-3\t0\t1\t0.9\n0-3\t1\t2\t0.5\n", encoding="utf-8")
    pairs = load_alpaca_pairs(zh_dir, en_dir, alignment)
    assert pairs == [("What are the three primary colors?", "什么是三原色？"), ("Red, yellow, blue.", "红、黄、蓝。")]

    tatoeba = tmp_path / "cmn.txt"
    tatoeba.write_text(
        "I love reading.\t我喜歡讀書。\tCC-BY 2.0\nNo Chinese here.\tnone\tCC-BY 2.0\n", encoding="utf-8"
    )
    assert load_tsv_pairs(tatoeba) == [("I love reading.", "我喜欢读书。")]


def test_student_training_is_reproducible_with_a_seed() -> None:
    from pipeline.tools.train_embedder import train_student, train_tokenizer

    zh = ["我喜欢读书", "今天天气很好", "他在学校学习", "我们去公园散步", "这本书很有意思", "明天会下雨"] * 20
    en = ["I like reading", "Nice weather today", "He studies at school", "We walk in the park"] * 30
    targets = np.random.default_rng(0).standard_normal((len(zh), 8)).astype(np.float32)
    tokenizer = train_tokenizer(zh + en, vocab_size=200)
    runs = [
        train_student(tokenizer, zh, en, targets, dim=8, epochs=2, lr=0.01, batch_size=16, seed=5) for _ in range(2)
    ]
    np.testing.assert_array_equal(runs[0][0], runs[1][0])
    assert runs[0][0].shape == (tokenizer.get_vocab_size(), 8)
    assert np.abs(runs[0][0]).sum() > 0
    assert 0.0 <= runs[0][1]["heldout_zh_en_top1"] <= 1.0


def test_teacher_sentences_are_drawn_in_disjoint_seeded_rounds() -> None:
    from pipeline.tools.distil_embedder import sample_rounds, sample_sentences

    corpus = {
        "tatoeba": [f"我{i}点起床。" for i in range(40)],
        "alpaca_instruction": [f"列出{i}种水果" for i in range(30)],
    }
    rounds = ({"tatoeba": 10, "alpaca_instruction": 5}, {"tatoeba": 50, "alpaca_instruction": 3})
    first, second = sample_rounds(corpus, rounds, seed=13)
    # round 1 is the plain sample, so the first model's cached teacher vectors still serve it
    assert first == sample_sentences(corpus, rounds[0], 13)
    assert len(first) == 15 and not set(first) & set(second)
    # a quota above what is left takes the rest: every Tatoeba sentence is used once
    assert sum(text in first + second for text in corpus["tatoeba"]) == 40
    assert len(second) == 30 + 3
    assert sample_rounds(corpus, rounds, seed=13) == [first, second]
    assert sample_rounds(corpus, rounds, seed=14)[0] != first
