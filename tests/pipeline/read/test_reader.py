"""Reading every container, format and encoding; asserting where every unit of bad input goes."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.read.reader import Reader, expand_inputs, id_prefixes
from schemas.errors import ConfigError

REC = {"instruction": "长江流经哪些省份？", "input": "", "output": "青海、西藏、四川等十一个省级行政区。"}


def read(paths: list[Path], fmt: str = "auto", fields: dict[str, str] | None = None):
    reader = Reader(paths, fmt, fields or {}, batch_size=3)
    rows, rejected, quarantine = [], [], []
    for chunk in reader:
        rows.extend(chunk.records.to_pylist())
        rejected.extend(chunk.rejected)
        quarantine.extend(chunk.quarantine)
    assert sum(i.units for i in reader.infos) == len(rows) + len(rejected) + len(quarantine)
    return rows, rejected, quarantine, reader.infos


def jsonl(path: Path, recs: list[dict], encoding: str = "utf-8", newline: str = "\n", bom: bytes = b"") -> Path:
    path.write_bytes(bom + "".join(json.dumps(r, ensure_ascii=False) + newline for r in recs).encode(encoding))
    return path


@pytest.mark.parametrize(
    ("encoding", "bom", "label"),
    [
        ("utf-8", b"", "utf-8"),
        ("utf-8", b"\xef\xbb\xbf", "utf-8-sig"),
        ("gbk", b"", "gb18030"),
        ("gb18030", b"", "gb18030"),
        ("utf-16-le", b"\xff\xfe", "utf-16 (BOM)"),
    ],
)
def test_jsonl_encodings(tmp_path: Path, encoding: str, bom: bytes, label: str) -> None:
    recs = [REC, {**REC, "instruction": "请用一句话描述秋天。"}]
    rows, rej, q, infos = read([jsonl(tmp_path / "d.jsonl", recs, encoding, bom=bom)])
    assert [r["instruction"] for r in rows] == ["长江流经哪些省份？", "请用一句话描述秋天。"]
    assert (rej, q) == ([], [])
    assert infos[0].encoding == label and infos[0].format == "alpaca"


def test_json_array_with_trailing_comma_is_salvaged(tmp_path: Path) -> None:
    p = tmp_path / "a.json"
    p.write_text(
        "[\n" + ",\n".join(json.dumps(r, ensure_ascii=False) for r in [REC, REC, REC]) + ",\n]\n",
        encoding="utf-8",
    )
    rows, _rej, q, _ = read([p])
    assert len(rows) == 3 and q == []
    assert [r["id"] for r in rows] == ["a.json#0", "a.json#1", "a.json#2"]


def test_json_array_broken_element_goes_to_quarantine_rest_kept(tmp_path: Path) -> None:
    good = json.dumps(REC, ensure_ascii=False)
    p = tmp_path / "a.json"
    p.write_text(f'[\n{good},\n{{"instruction": "坏的", "output": "缺少引号}},\n{good}\n]', encoding="utf-8")
    rows, _, q, _ = read([p])
    assert len(rows) == 2
    assert len(q) == 1 and q[0]["line"] == 3 and "JSON syntax error" in q[0]["error"]
    assert q[0]["source"] == str(p) and "坏的" in q[0]["raw"]


def test_jsonl_truncated_last_line_and_crlf(tmp_path: Path) -> None:
    p = tmp_path / "d.jsonl"
    p.write_bytes((json.dumps(REC, ensure_ascii=False) + "\r\n" + '{"instruction": "半').encode())
    rows, _, q, _ = read([p])
    assert len(rows) == 1 and rows[0]["output"].endswith("。")
    assert len(q) == 1 and q[0]["line"] == 2 and "truncated" in q[0]["error"]


def test_invalid_utf8_bytes_quarantine_only_that_line(tmp_path: Path) -> None:
    good = (json.dumps(REC, ensure_ascii=False) + "\n").encode()
    bad = b'{"instruction": "\xff\xfe\xfa", "output": "x"}\n'
    p = tmp_path / "d.jsonl"
    p.write_bytes(good * 50 + bad + good * 50)
    rows, _, q, _infos = read([p])
    assert len(rows) == 100
    assert len(q) == 1 and q[0]["line"] == 51 and "invalid" in q[0]["error"]


def test_wrong_types_and_missing_keys_are_quarantined(tmp_path: Path) -> None:
    recs = [
        REC,
        {"instruction": "列出颜色", "output": ["红"]},
        {"instruction": "几？", "output": 2},
        {"input": "无"},
    ]
    rows, _, q, _ = read([jsonl(tmp_path / "d.jsonl", recs)])
    assert len(rows) == 1
    assert [e["line"] for e in q] == [2, 3, 4]
    assert "list" in q[0]["error"] and "number" in q[1]["error"] and "missing key 'instruction'" in q[2]["error"]


def test_unknown_format_names_the_fix(tmp_path: Path) -> None:
    rows, _, q, _ = read([jsonl(tmp_path / "d.jsonl", [{"title": "什么是熵？", "reply": "无序的度量。"}])])
    assert rows == [] and "--fields instruction=title,output=YOUR_ANSWER_KEY" in q[0]["error"]
    rows, _, q, _ = read([tmp_path / "d.jsonl"], fields={"instruction": "title", "output": "reply"})
    assert rows[0]["instruction"] == "什么是熵？" and q == []


def test_csv_with_embedded_newlines_quotes_and_bad_row(tmp_path: Path) -> None:
    p = tmp_path / "d.csv"
    p.write_text('instruction,input,output\n"写一句话,\n要短","","他说：""好""。"\n太多,列,了,吧\n', encoding="utf-8")
    rows, _, q, infos = read([p])
    assert rows[0]["instruction"] == "写一句话,\n要短" and rows[0]["output"] == '他说："好"。'
    assert len(q) == 1 and "4 fields" in q[0]["error"]
    assert infos[0].container == "csv"


def test_parquet_and_sharegpt_openai_in_one_run(tmp_path: Path) -> None:
    pq.write_table(pa.Table.from_pylist([REC]), tmp_path / "a.parquet")
    jsonl(
        tmp_path / "s.jsonl",
        [{"conversations": [{"from": "human", "value": "你好"}, {"from": "gpt", "value": "你好！"}]}],
    )
    jsonl(
        tmp_path / "o.jsonl",
        [{"messages": [{"role": "user", "content": "在吗"}, {"role": "assistant", "content": "在。"}]}],
    )
    rows, _, _, infos = read(expand_inputs([str(tmp_path)]))
    assert sorted(i.format for i in infos) == ["alpaca", "openai", "sharegpt"]
    assert sorted(r["output"] for r in rows) == sorted(["你好！", "在。", REC["output"]])
    # _seq = (file index << 40) + position in the file: input order, computable per file (parallel reading)
    assert [r["_seq"] for r in rows] == [0, 1 << 40, 2 << 40]


def test_empty_and_binary_files(tmp_path: Path) -> None:
    (tmp_path / "empty.jsonl").write_bytes(b"")
    (tmp_path / "bin.json").write_bytes(bytes(range(256)) * 4)
    rows, _, q, infos = read([tmp_path / "empty.jsonl", tmp_path / "bin.json"])
    assert rows == [] and infos[0].units == 0 and infos[0].warnings
    assert len(q) == 1 and "not a text file" in q[0]["error"]


def test_same_file_name_in_two_folders_gives_unique_ids(tmp_path: Path) -> None:
    for d in ("a", "b"):
        (tmp_path / d).mkdir()
        jsonl(tmp_path / d / "data.jsonl", [REC])
    files = expand_inputs([str(tmp_path / "a" / "data.jsonl"), str(tmp_path / "b" / "data.jsonl")])
    assert id_prefixes(files) == ["a/data.jsonl", "b/data.jsonl"]
    rows, _, _, _ = read(files)
    assert len({r["id"] for r in rows}) == 2


def test_missing_input_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="input not found"):
        expand_inputs([str(tmp_path / "nope.jsonl")])


ALPACA_ZH = Path(__file__).resolve().parents[3] / ".." / "shared" / "data" / "alpaca_zh"


@pytest.mark.skipif(not ALPACA_ZH.is_dir(), reason="../shared/data/alpaca_zh is absent")
def test_alpaca_zh_trailing_comma_file_fully_salvaged() -> None:
    f = next(ALPACA_ZH.glob("alpaca_data-9407-12345-*.json"))
    rows, rej, q, _ = read([f])
    assert (len(rows), len(rej), len(q)) == (2801, 0, 0)
