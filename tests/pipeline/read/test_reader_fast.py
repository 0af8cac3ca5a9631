"""The reader's fast path (orjson for well-formed JSONL lines and whole JSON files) gives exactly what the
salvaging parser gives: the same records, ids, rejections, quarantine entries (lines, messages, raw text)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import orjson
import pytest

from pipeline.read import sources
from pipeline.read.reader import Reader

ROOT = Path(__file__).resolve().parents[3]
ALPACA_ZH = ROOT / ".." / "shared" / "data" / "alpaca_zh"

# JSONL lines orjson parses and lines only Python's json parses (NaN, a lone surrogate escape, a 100-bit integer)
# or nothing parses; each ends as a record or in quarantine with its message.
LINES = [
    '{"instruction": "长江流经哪些省份？", "output": "青海、西藏、四川等十一个省级行政区。"}',
    '{"instruction": "圆周率是多少？", "output": NaN}',
    '{"instruction": "写出一个大数", "output": "好的", "n": 1234567890123456789012345678901}',
    '{"instruction": "孤立的\\ud800代理", "output": "坏"}',
    '{"instruction": "表情\\ud83d\\ude00是什么", "output": "笑脸"}',
    '{"instruction": "重复的键", "instruction": "后一个键", "output": "取后者"}',
    "[1, 2]",
    '"只是一个字符串"',
    '{"instruction": "很深", "output": "是", "d": ' + "[" * 1500 + "]" * 1500 + "}",
    '{"instruction": "控制\x01字符", "output": "坏"}',
    '{"instruction": "截断的行", "output": "没有结尾"',
    '{"instruction": 5, "output": "数字"}',
]
ARRAY = (
    '[\n  {"instruction": "把句子翻译成英文", "output": "Translate."},\n  [1, 2],\n  {"问题": "没有格式"},\n'
    '  {"instruction": "二加二等于几？", "output": 4},\n  {"instruction": "你好", "output": "你好！"}\n]\n'
)


def read_all(paths: list[Path]) -> list[Any]:
    reader = Reader(paths, "auto", {}, batch_size=4)
    out: list[Any] = [(c.records.to_pylist(), c.rejected, c.quarantine) for c in reader]
    return [*out, [vars(i) for i in reader.infos]]


def slow(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make orjson refuse everything: every unit then goes through the salvaging parser."""

    def refuse(_: Any) -> Any:
        raise orjson.JSONDecodeError("refused", "", 0)

    monkeypatch.setattr(sources.orjson, "loads", refuse)


def inputs(tmp_path: Path) -> list[Path]:
    (tmp_path / "mixed.jsonl").write_text("\n".join(LINES) + "\n", encoding="utf-8")
    (tmp_path / "gbk.jsonl").write_bytes(("\n".join(LINES[:4]) + "\n").encode("gbk"))
    (tmp_path / "bad_bytes.jsonl").write_bytes(b'{"instruction": "\xff\xfe", "output": "x"}\n' + LINES[0].encode())
    (tmp_path / "array.json").write_text(ARRAY, encoding="utf-8")
    (tmp_path / "wrapped.json").write_text(json.dumps({"data": [json.loads(LINES[0]), 3]}), encoding="utf-8")
    (tmp_path / "single.json").write_text(LINES[0], encoding="utf-8")
    return sorted(tmp_path.iterdir())


def test_fast_path_equals_salvaging_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    files = inputs(tmp_path)
    fast = read_all(files)
    with monkeypatch.context() as m:
        slow(m)
        salvaged = read_all(files)
    assert fast == salvaged
    quarantine = [q for chunk in fast[:-1] for q in chunk[2]]
    by_file = {(Path(q["source"]).name, q["line"]): q["error"] for q in quarantine}
    # a well-formed array read by the fast path still names the line of each element it quarantines
    assert by_file[("array.json", 3)] == "a record is a list, expected an object with named fields"
    assert by_file[("array.json", 5)] == "key 'output' is a number, expected a string (alpaca format)"
    assert by_file[("mixed.jsonl", 4)] == "a lone surrogate (invalid character) in a text field"
    assert by_file[("mixed.jsonl", 11)].startswith("truncated JSON")
    assert by_file[("bad_bytes.jsonl", 1)].startswith("invalid utf-8")
    kept = {r["instruction"]: r for chunk in fast[:-1] for r in chunk[0]}
    assert kept["后一个键"]["output"] == "取后者" and "表情😀是什么" in kept  # last key wins; a surrogate pair is one
    assert "写出一个大数" in kept  # a 100-bit integer in an unused key: json reads it, the record is kept


@pytest.mark.slow
@pytest.mark.skipif(not ALPACA_ZH.is_dir(), reason="../shared/data/alpaca_zh is absent")
def test_fast_path_equals_salvaging_path_on_alpaca_zh(monkeypatch: pytest.MonkeyPatch) -> None:
    files = sorted(ALPACA_ZH.glob("*.json"))
    fast = read_all(files)
    slow(monkeypatch)
    assert read_all(files) == fast
