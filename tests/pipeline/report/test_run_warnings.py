"""Every warning a user must not miss is in the terminal summary and in report.json (and report.html)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from pipeline.cli import main

ROOT = Path(__file__).resolve().parents[3]
ALPACA_ZH_BROKEN = ROOT / ".." / "shared" / "data" / "alpaca_zh" / "alpaca_data-9407-12345-中文-未完成.json"
GOOD = {"instruction": "中国的首都是哪里？", "input": "", "output": "北京。"}


def _run(tmp_path: Path, inputs: list[Path], capsys: pytest.CaptureFixture[str]) -> tuple[dict[str, Any], str]:
    recipe = tmp_path / "read_only.yaml"
    recipe.write_text("stages: []\n", encoding="utf-8")
    out = tmp_path / "out"
    args = ["run", str(recipe), "--output", str(out), "--quiet", "--force"]
    for p in inputs:
        args += ["--input", str(p)]
    assert main(args) == 0
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    return report, capsys.readouterr().err


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    d = tmp_path / "in"
    d.mkdir()
    # 3 of 4 records have no answer key: 75 % quarantined
    lines = [GOOD, {"问题": "长城有多长？"}, {"问题": "黄河发源于哪里？"}, {"问题": "珠峰有多高？"}]
    (d / "mostly_bad.jsonl").write_text(
        "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in lines), encoding="utf-8"
    )
    # a JSON array with a trailing comma after the second element and a broken third one
    broken = '[\n  {"instruction": "写一句问候语", "input": "", "output": "你好！"},\n  {"instruction": "说一个颜色", "input": "", "output": "红色。"},\n  {"instruction": "坏的", "output": },\n]\n'
    (d / "trailing_comma.json").write_text(broken, encoding="utf-8")
    (d / "empty.jsonl").write_text("", encoding="utf-8")
    (d / "README.md").write_text("# 数据说明\n", encoding="utf-8")
    (d / "notes.txt").write_text("备注", encoding="utf-8")
    (d / "chart.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(32))
    (d / "recipe.yaml").write_text("stages: []\n", encoding="utf-8")
    (d / ".hidden").write_text("x", encoding="utf-8")
    return d


def test_every_warning_in_terminal_and_report(tmp_path: Path, folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    report, err = _run(tmp_path, [folder], capsys)
    codes = {(w["code"], Path(w["file"]).name) for w in report["warnings"]}
    assert codes == {
        ("mostly_quarantined", "mostly_bad.jsonl"),
        ("salvaged", "trailing_comma.json"),
        ("empty_file", "empty.jsonl"),
        ("skipped_files", ""),
    }
    by_code = {w["code"]: w for w in report["warnings"]}
    mostly = by_code["mostly_quarantined"]
    assert "3 of 4 records (75%) quarantined" in mostly["message"] and "line 2:" in mostly["message"]
    assert "missing key 'instruction'" in mostly["message"] and "--fields instruction=问题" in mostly["fix"]
    assert "is not valid JSON (1 broken element(s)); 2 elements were salvaged" in by_code["salvaged"]["message"]
    skipped = sorted(Path(p).name for p in by_code["skipped_files"]["files"])
    assert skipped == ["README.md", "chart.png", "notes.txt", "recipe.yaml"]  # not the hidden file
    for w in report["warnings"]:  # the terminal says the same
        assert f"warning [{w['code']}]: {w['message']}" in err
    assert "fix: map your keys: zhcurate run ... --fields instruction=问题" in err
    page = (tmp_path / "out" / "report.html").read_text(encoding="utf-8")
    assert 'id="warnings"' in page and "mostly_quarantined" in page and "README.md" in page
    assert main(["report", str(tmp_path / "out")]) == 0  # `zhcurate report` shows them too
    shown = capsys.readouterr().out
    assert "warning [salvaged]" in shown and "warning [empty_file]" in shown
    files = {Path(f["file"]).name: f for f in report["by_file"]}
    assert files["mostly_bad.jsonl"]["quarantined"] == 3 and files["mostly_bad.jsonl"]["cleaned"] == 1


def test_a_clean_input_has_no_warnings(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "ok.jsonl"
    data.write_text(json.dumps(GOOD, ensure_ascii=False) + "\n", encoding="utf-8")
    report, err = _run(tmp_path, [data], capsys)
    assert report["warnings"] == [] and "warning" not in err


@pytest.mark.slow
def test_real_alpaca_zh_trailing_comma_file_says_it_was_salvaged(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    if not ALPACA_ZH_BROKEN.is_file():
        pytest.skip("../shared/data/alpaca_zh is absent")
    report, err = _run(tmp_path, [ALPACA_ZH_BROKEN], capsys)
    salvaged = [w for w in report["warnings"] if w["code"] == "salvaged"]
    assert (
        len(salvaged) == 1
        and "(1 misplaced comma(s) or bracket(s)); 2,801 elements were salvaged" in salvaged[0]["message"]
    )
    assert report["inputs"][0]["salvaged"] == report["counts"]["input"] > 1000 and report["inputs"][0]["repairs"] == 1
    assert "warning [salvaged]" in err


@pytest.mark.parametrize(
    ("text", "repairs"),
    [
        ('[{"instruction": "甲", "output": "乙"}, {"instruction": "丙", "output": "丁"}]', 0),
        ('{"instruction": "甲", "output": "乙"}\n{"instruction": "丙", "output": "丁"}\n', 0),  # JSONL in a .json
        ('[{"instruction": "甲", "output": "乙"}, {"instruction": "丙", "output": "丁"},\n]', 1),  # trailing comma
        ('[{"instruction": "甲", "output": "乙"} {"instruction": "丙", "output": "丁"}]', 1),  # missing comma
        ('[{"instruction": "甲", "output": "乙"},, {"instruction": "丙", "output": "丁"}]', 1),  # doubled comma
        ('[{"instruction": "甲", "output": "乙"}, {"instruction": "丙", "output": "丁"}', 1),  # no closing ']'
    ],
)
def test_json_repairs_are_counted(tmp_path: Path, text: str, repairs: int) -> None:
    from pipeline.read.reader import Reader

    path = tmp_path / "d.json"
    path.write_text(text, encoding="utf-8")
    reader = Reader([path], "auto", {}, batch_size=10)
    rows = [r for chunk in reader for r in chunk.records.to_pylist()]
    info = reader.infos[0]
    assert [r["output"] for r in rows] == ["乙", "丁"]
    assert (info.repairs, info.syntax_errors, info.salvaged) == (repairs, 0, 2 if repairs else 0)
