"""The vectorized Alpaca JSONL path (:mod:`pipeline.read.fast`) gives exactly what the per-record path gives:
the same batches, records, ids, rejections, quarantine entries (lines, messages, raw text) and file summaries."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from pipeline.read import fast
from pipeline.read.reader import WORK_SCHEMA, Reader

ROOT = Path(__file__).resolve().parents[3]
ALPACA_ZH = ROOT / ".." / "shared" / "data" / "alpaca_zh"

GOOD = '{"instruction": "长江流经哪些省份？", "input": "", "output": "青海、西藏、四川等十一个省级行政区。"}'
LINES: list[bytes] = [
    GOOD.encode(),
    b"",  # blank lines are not units
    b"   \t",
    '{"instruction": "把这句话翻译成英文", "input": "你好", "output": "Hello", "system": "你是翻译"}\r'.encode(),
    '{"instruction": "没有输出"}'.encode(),
    '{"instruction": null, "output": "空的指令"}'.encode(),
    '{"instruction": "数字输出", "output": 42}'.encode(),
    '{"instruction": "重复的键", "instruction": "后一个键", "output": "取后者"}'.encode(),
    ('{"instruction": "一行两个", "output": "甲"}{"instruction": "第二个", "output": "乙"}').encode(),
    '{"instruction": "忽略的NaN", "output": "好", "score": NaN}'.encode(),
    '{"instruction": "大整数", "output": "好", "n": 123456789012345678901234567890}'.encode(),
    '{"instruction": "孤立的\\ud800代理", "output": "坏"}'.encode(),
    '{"instruction": "忽略键里的代理", "output": "好", "meta": "\\udc00"}'.encode(),
    '{"instruction": "表情\\ud83d\\ude00", "output": "笑脸"}'.encode(),
    '{"instruction": "忽略键里的坏字节", "output": "坏", "meta": "'.encode() + b"\xff\xfe" + b'"}',
    '{"instruction": "文本里的坏字节'.encode() + b"\xed\xa0\x80" + '", "output": "坏"}'.encode(),
    ('{"instruction": "很深", "output": "是", "d": ' + "[" * 1100 + "]" * 1100 + "}").encode(),
    ('{"instruction": "有点深", "output": "是", "d": ' + "[" * 600 + "]" * 600 + "}").encode(),
    '{"instruction": "空历史", "output": "好", "history": []}'.encode(),
    '{"instruction": "有历史", "output": "好", "history": [["你好", "你好！"]]}'.encode(),
    '{"instruction": "对象历史", "output": "好", "history": [{"user": "问", "assistant": "答"}]}'.encode(),
    '{"instruction": "坏历史", "output": "好", "history": [["只有一半"]]}'.encode(),
    b'{"instruction": "\\u3000 ", "input": "\\u001c", "output": "\\n\\t"}',  # all whitespace: empty_record
    b'{"instruction": "\\u200b", "input": "", "output": " "}',  # U+200B is not whitespace to str.strip
    '{"instruction": "尾随文本", "output": "坏"} x'.encode(),
    b"[1, 2]",
    '"只是一个字符串"'.encode(),
    '{"instruction": "控制\x01字符", "output": "坏"}'.encode(),
    '{"instruction": "截断的行", "output": "没有结尾"'.encode(),
    '{"instruction": "额外的键", "output": "好", "tags": ["a", 1, {"b": null}], "id": 7}'.encode(),
    '{"instruction": "额外的键换类型", "output": "好", "tags": "a", "id": "x"}'.encode(),
    '{"instruction": "输入为空", "input": null, "output": "好", "system": null}'.encode(),
    GOOD.encode(),
]


def read_all(paths: list[Path], batch_size: int, fmt: str = "auto") -> list[Any]:
    reader = Reader(paths, fmt, {}, batch_size=batch_size)
    out: list[Any] = []
    for c in reader:
        assert c.records.schema == WORK_SCHEMA
        out.append((c.records.to_pylist(), c.rejected, c.quarantine))
    return [*out, [vars(i) for i in reader.infos]]


def per_record(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fast, "utf8_jsonl", lambda path, info: None)


def write(tmp_path: Path) -> list[Path]:
    (tmp_path / "mixed.jsonl").write_bytes(b"\xef\xbb\xbf" + b"\n".join(LINES) + b"\n")
    (tmp_path / "gbk.jsonl").write_bytes((GOOD + "\n" + GOOD + "\n").encode("gbk"))
    (tmp_path / "clean.jsonl").write_bytes(b"\n".join([GOOD.encode()] * 7))  # no newline at the end
    return [tmp_path / "gbk.jsonl", tmp_path / "mixed.jsonl", tmp_path / "clean.jsonl"]


@pytest.mark.parametrize("batch_size", [1, 3, 5000])
def test_columns_equal_per_record(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, batch_size: int) -> None:
    paths = write(tmp_path)
    calls: list[int] = []
    parse = fast.parse_alpaca
    monkeypatch.setattr(fast, "parse_alpaca", lambda lines: calls.append(len(lines)) or parse(lines))
    got = read_all(paths, batch_size)
    assert calls  # the vectorized path ran
    with monkeypatch.context() as m:
        per_record(m)
        expected = read_all(paths, batch_size)
    assert got == expected
    records = [r for chunk in got[:-1] for r in chunk[0]]
    quarantine = {q["line"]: q["error"] for chunk in got[:-1] for q in chunk[2] if q["source"].endswith("mixed.jsonl")}
    rejected = [r["reason"] for chunk in got[:-1] for r in chunk[1]]
    assert rejected == ["empty_record"]
    assert "missing key 'output'" in quarantine[5] and "invalid utf-8-sig bytes" in quarantine[15]
    assert quarantine[17] == "JSON nested too deeply"
    kept = {r["instruction"]: r for r in records}
    assert kept["把这句话翻译成英文"]["system"] == "你是翻译" and kept["有历史"]["history"] == [
        {"user": "你好", "assistant": "你好！"}
    ]
    assert {"忽略的NaN", "大整数", "忽略键里的代理", "表情😀", "有点深", "额外的键换类型", "后一个键"} <= kept.keys()
    assert kept["输入为空"]["input"] == "" and kept["\u200b"]["output"] == " "
    assert [r["id"] for r in records if r["source"].endswith("clean.jsonl")] == [f"clean.jsonl#{i}" for i in range(7)]


def test_format_alpaca_given(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    paths = write(tmp_path)
    got = read_all(paths, 4, fmt="alpaca")
    with monkeypatch.context() as m:
        per_record(m)
        assert got == read_all(paths, 4, fmt="alpaca")


def test_other_layouts_take_the_per_record_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "qa.jsonl"
    path.write_text('{"question": "一加一？", "std_answer": "二"}\n', encoding="utf-8")
    monkeypatch.setattr(fast, "parse_alpaca", lambda lines: pytest.fail("not plain Alpaca"))
    (chunk,) = list(Reader([path], "auto", {}, batch_size=10))
    assert chunk.records.column("output").to_pylist() == ["二"]


def test_canonical_table_has_the_work_schema() -> None:
    table, slow = fast.parse_alpaca([GOOD.encode(), b'{"instruction": "x"}'])
    assert slow == {1}
    out = fast.canonical(table, 10, 5 << 40, "a.jsonl", "dir/a.jsonl")
    assert out.schema == WORK_SCHEMA
    assert out.column("id").to_pylist() == ["a.jsonl#10"] and out.column("_seq").to_pylist() == [(5 << 40) + 0]
    assert out.column("history").to_pylist() == [[]] and out.column("source").to_pylist() == ["dir/a.jsonl"]
    empty = fast.canonical(fast.parse_alpaca([b"[1]"])[0], 0, 0, "a", "a")
    assert empty.num_rows == 0 and empty.schema == WORK_SCHEMA
    assert pa.concat_tables([out, empty]).num_rows == 1


@pytest.mark.slow
def test_bench_file_equals_per_record(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """All of Alpaca-zh, as the JSONL lines bench/bench_speed.py writes (one copy)."""
    import json

    if not ALPACA_ZH.is_dir():
        pytest.skip("../shared/data/alpaca_zh is not here")
    rows = [r for c in Reader(sorted(ALPACA_ZH.glob("*.json")), "auto", {}, 5000) for r in c.records.to_pylist()]
    path = tmp_path / "alpaca.jsonl"
    keep = ("instruction", "input", "output")
    path.write_text("".join(json.dumps({k: r[k] for k in keep}, ensure_ascii=False) + "\n" for r in rows))
    got = read_all([path], 5000)
    with monkeypatch.context() as m:
        per_record(m)
        assert got == read_all([path], 5000)
    assert sum(len(c[0]) for c in got[:-1]) == len(rows) > 20000


def test_whitespace_is_what_str_strip_removes() -> None:
    import sys

    assert list(fast.SPACES) == [c for c in range(sys.maxunicode + 1) if chr(c).isspace()]
    assert all(chr(c).strip() == "" for c in fast.SPACES)


# ---------------------------------------------------------------- Parquet
TURN = pa.struct([("user", pa.string()), ("assistant", pa.string())])


def parquet_inputs(tmp_path: Path) -> list[Path]:
    import pyarrow.parquet as pq

    rows = {
        "id": ["a", "b", "c", "d", "e", "f", "g", "h"],
        "instruction": ["把这句话翻译成英文", None, "没有输出", "\u3000", "有历史", "坏历史", "写一首诗", "额外"],
        "input": ["你好", "空指令", None, " ", "", "", None, "x"],
        "output": ["Hello", "好", None, "\n", "好", "好", "春眠不觉晓", "y"],
        "system": [None, "", "你是助手", None, "", "", "你是诗人", ""],
        "history": [
            [],
            [],
            [],
            [],
            [{"user": "你好", "assistant": "你好！"}],
            [{"user": None, "assistant": "答"}],
            None,
            [],
        ],
        "score": [1.0, float("nan"), None, 2.0, 3.0, 4.0, 5.0, 6.0],
    }
    table = pa.table({k: pa.array(v, pa.list_(TURN)) if k == "history" else v for k, v in rows.items()})
    pq.write_table(table, tmp_path / "alpaca.parquet", row_group_size=3)
    pairs = table.set_column(
        table.schema.get_field_index("history"),
        "history",
        pa.array([[["问", "答"]]] + [[]] * 7, pa.list_(pa.list_(pa.string()))),
    )
    pq.write_table(pairs.cast(pairs.schema.set(2, pa.field("input", pa.large_string()))), tmp_path / "pairs.parquet")
    pq.write_table(pa.table({"instruction": ["数字输出"], "output": [42]}), tmp_path / "number.parquet")
    pq.write_table(pa.table({"question": ["一加一？"], "std_answer": ["二"]}), tmp_path / "qa.parquet")
    return [tmp_path / n for n in ("alpaca.parquet", "pairs.parquet", "number.parquet", "qa.parquet")]


@pytest.mark.parametrize("batch_size", [1, 3, 5000])
def test_parquet_columns_equal_per_record(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, batch_size: int) -> None:
    paths = parquet_inputs(tmp_path)
    calls: list[int] = []
    read = fast.parquet_alpaca
    monkeypatch.setattr(fast, "parquet_alpaca", lambda t: calls.append(t.num_rows) or read(t))
    got = read_all(paths, batch_size)
    assert sum(calls) == 16  # alpaca.parquet and pairs.parquet took the column path, the others did not
    with monkeypatch.context() as m:
        m.setattr(fast, "parquet_alpaca_columns", lambda schema: False)
        assert got == read_all(paths, batch_size)
    records = {r["id"]: r for chunk in got[:-1] for r in chunk[0]}
    assert records["alpaca.parquet#4"]["history"] == [{"user": "你好", "assistant": "你好！"}]
    assert records["pairs.parquet#0"]["history"] == [{"user": "问", "assistant": "答"}]
    assert records["alpaca.parquet#6"]["input"] == "" and records["alpaca.parquet#6"]["system"] == "你是诗人"
    quarantined = {q["id"]: q["error"] for chunk in got[:-1] for q in chunk[2]}
    assert "missing key 'instruction'" in quarantined["alpaca.parquet#1"]
    assert "history[0]" in quarantined["alpaca.parquet#5"] and "number" in quarantined["number.parquet#0"]
    assert [r["id"] for chunk in got[:-1] for r in chunk[1]] == ["alpaca.parquet#3", "pairs.parquet#3"]
