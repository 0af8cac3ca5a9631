"""The report's sample tagger gives exactly jieba.posseg's tags, reading only the dictionary rows its texts reach."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.report import pos
from pipeline.report.pos import SampleTagger
from pipeline.report.tasktypes import _clause, verb_object, verb_objects
from stages.segment import get_segmenter

ROOT = Path(__file__).resolve().parents[3]
ALPACA = ROOT.parent / "shared" / "data" / "alpaca_zh"

TEXTS = [
    "给我写一首关于秋天的诗",
    "将以下句子翻译成英文",
    "张三丰和李四光在2024年去了北京大学",  # names: the HMM for unknown words
    "用Python写一个快速排序函数",
    "abc def 123.45 x+y C++和C#",
    "对下面的句子进行情感分类",
    "请帮我总结一下这篇文章的主要内容",
    "\t测试\r\n换行  空格",
    "量子纠缠",
    "我姓余。我姓岳。",
    "卡尔·马克思与恩格斯合著了《共产党宣言》",
    "锟斤拷烫烫烫屯屯屯",  # characters jieba's dictionary barely knows
    "1+1=2吗？ａｂｃ全角ＡＢＣ",
]


def _jieba(texts: list[str]) -> list[list[tuple[str, str]]]:
    seg = get_segmenter()
    return [seg.posseg(t) for t in texts]


def _sample_texts() -> list[str]:
    out = []
    for path in sorted((ROOT / "samples" / "raw").glob("*.jsonl")):
        if path.name == "gbk.jsonl":
            continue
        for line in path.read_text(encoding="utf-8-sig").splitlines():
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:  # the samples hold broken lines on purpose
                continue
            if not isinstance(rec, dict):
                continue
            turns = rec.get("conversations") or rec.get("messages") or []
            for turn in turns:
                text = turn.get("value", turn.get("content"))
                if isinstance(text, str):
                    out.append(text)
            if isinstance(rec.get("instruction"), str):
                out.append(rec["instruction"])
    return out


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("pos_cache")  # one build of the tables for the tests that share it


@pytest.fixture()
def cache(shared_cache: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(pos.tempfile, "gettempdir", lambda: str(shared_cache))
    return shared_cache


def test_tags_equal_jieba_posseg(cache: Path) -> None:
    texts = TEXTS + _sample_texts()
    tagger = SampleTagger()
    tagger.add(texts)
    assert [tagger.posseg(t) for t in texts] == _jieba(texts)
    tagger.add(["我们吃苹果"])
    assert dict(tagger.posseg("我们吃苹果")) == {"我们": "r", "吃": "v", "苹果": "n"}
    # only what the texts reach was read: a small part of jieba's ~500k entries
    assert 0 < len(tagger.freq) < 5000
    assert "苹果" in tagger.freq and "北京大学" in tagger.freq


def test_texts_added_later_extend_the_tables(cache: Path) -> None:
    tagger = SampleTagger()
    tagger.add(TEXTS[:2])
    with pytest.raises(KeyError, match="add the text"):
        tagger.posseg(TEXTS[2])
    tagger.add(TEXTS)
    assert [tagger.posseg(t) for t in TEXTS] == _jieba(TEXTS)


def test_the_tables_are_cached_and_read_back(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    SampleTagger().add(["翻译这句话"])
    folder = pos.cache_dir()
    assert folder.parent == cache and (folder / "words.arrow").is_file() and (folder / "meta.marshal").is_file()

    def no_build() -> None:
        raise AssertionError("built again instead of read from the cache")

    monkeypatch.setattr(pos, "_build_tables", no_build)
    tagger = SampleTagger()
    tagger.add(TEXTS)
    assert [tagger.posseg(t) for t in TEXTS] == _jieba(TEXTS)


def test_unwritable_cache_folder_builds_in_memory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    missing = tmp_path / "no" / "such" / "folder"
    monkeypatch.setattr(pos.tempfile, "gettempdir", lambda: str(missing))
    tagger = SampleTagger()
    tagger.add(TEXTS)
    assert [tagger.posseg(t) for t in TEXTS] == _jieba(TEXTS)
    assert not missing.exists()


def test_verb_objects_batch_equals_one_by_one(cache: Path) -> None:
    texts = ["请帮我总结一下这篇文章的主要内容。", "对下面的句子进行分类：", "你好", "", "写一首关于春天的诗"]
    pairs = verb_objects(texts)
    assert pairs == [verb_object(t) for t in texts]
    assert pairs == [("总结", "内容"), ("分类", ""), None, None, ("写", "诗")]


@pytest.mark.slow
def test_tags_equal_jieba_posseg_on_alpaca_zh(cache: Path) -> None:
    if not ALPACA.is_dir():
        pytest.skip("../shared/data/alpaca_zh is not here")
    from pipeline.read.reader import Reader, expand_inputs

    files = expand_inputs([str(ALPACA)])
    clauses = sorted(
        {
            _clause(t)
            for chunk in Reader(files, "auto", {}, 5000)
            for t in chunk.records.column("instruction").to_pylist()
        }
    )
    tagger = SampleTagger()
    tagger.add(clauses)
    assert len(clauses) > 15000
    assert [tagger.posseg(t) for t in clauses] == _jieba(clauses)


def test_a_cache_folder_of_another_user_is_not_read(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    SampleTagger().add(["翻译这句话"])  # this user's folder
    built: list[int] = []
    build = pos._build_tables
    monkeypatch.setattr(pos, "_build_tables", lambda: built.append(1) or build())
    monkeypatch.setattr(pos.os, "getuid", lambda: 12345678)
    tagger = SampleTagger()
    tagger.add(TEXTS)
    assert built == [1]
    assert [tagger.posseg(t) for t in TEXTS] == _jieba(TEXTS)
