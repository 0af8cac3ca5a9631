"""segment: the shared word segmenter (jieba's dictionary through rjieba; one per process and user dictionary)."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest

from schemas.errors import ConfigError
from stages.segment import Segmenter, cut, get_segmenter


def test_cut_real_sentences() -> None:
    assert cut("我爱北京天安门") == ["我", "爱", "北京", "天安门"]
    words = get_segmenter().words("我们如何减少空气污染？")
    assert "空气污染" in words and words[-1] == "？"
    assert get_segmenter().cut("") == []


def test_one_segmenter_per_process_and_dictionary() -> None:
    assert get_segmenter() is get_segmenter()
    assert get_segmenter(hmm=False) is not get_segmenter()


def test_user_dictionary(tmp_path: Path) -> None:
    text = "我们在搭建云原生数据湖平台"
    assert "云原生数据湖" not in get_segmenter().cut(text)
    user = tmp_path / "words.txt"
    user.write_text("云原生数据湖 10 nz\n", encoding="utf-8")
    seg = get_segmenter(user)
    assert "云原生数据湖" in seg.cut(text)
    assert ("云原生数据湖", "nz") in seg.posseg(text)
    # the default segmenter is not affected by another's user words
    assert "云原生数据湖" not in get_segmenter().cut(text)


def test_posseg_verb_object() -> None:
    tags = dict(get_segmenter().posseg("我们吃苹果"))
    assert tags["吃"] == "v"
    assert tags["苹果"] == "n"


def test_cut_many_matches_cut() -> None:
    seg = get_segmenter()
    texts = ["给出三个保持健康的提示。", "", "描述一个原子的结构。"]
    assert seg.cut_many(texts) == [seg.cut(t) for t in texts]


def test_user_dictionary_without_frequency_and_bad_lines(tmp_path: Path) -> None:
    user = tmp_path / "words.txt"
    user.write_text("\n年终奖发放 n\n", encoding="utf-8")
    assert ("年终奖发放", "n") in Segmenter(user).posseg("今年的年终奖发放了")
    bad = tmp_path / "bad.txt"
    bad.write_text("好词 3 n 多余\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="line 1"):
        Segmenter(bad).cut("好词")


def test_dictionary_cut_is_jiebas() -> None:
    # dictionary-only cuts (what safety's lexicon boundaries use) are jieba 0.42's, word for word
    seg = get_segmenter(hmm=False)
    assert seg.cut("鸦片战争是中国近代史的开端") == ["鸦片战争", "是", "中国", "近代史", "的", "开端"]
    assert seg.cut("出售冰毒") == ["出售", "冰毒"]


def test_missing_user_dictionary_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="user dictionary"):
        Segmenter(tmp_path / "absent.txt")


def test_pickles_without_loaded_dictionary() -> None:
    seg = get_segmenter()
    seg.cut("预热")
    clone = pickle.loads(pickle.dumps(seg))
    assert clone._tokenizer is None
    assert clone.cut("年终奖发了") == seg.cut("年终奖发了")
