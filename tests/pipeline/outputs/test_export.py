"""``zhcurate export``: each format, the LLaMA-Factory dataset_info entry, and the round trip
read → run with no stages → export → read again."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from pipeline.cli import main
from pipeline.outputs.export import dataset_info_entry, export, to_alpaca, to_openai, to_sharegpt, write_dataset_info
from pipeline.recipe import build_recipe
from pipeline.runner import Runner, RunOptions
from schemas.errors import ConfigError

SAMPLES = Path(__file__).resolve().parents[3] / "samples" / "raw"
RECORD: dict[str, Any] = {
    "system": "你是一位厨师。",
    "instruction": "番茄炒蛋怎么做？",
    "input": "家里只有两个鸡蛋",
    "output": "先炒蛋盛出，再炒番茄，最后合在一起加盐。",
    "history": [{"user": "我想学做菜", "assistant": "好的，从家常菜开始吧。"}],
}


def test_alpaca() -> None:
    assert to_alpaca(RECORD) == {
        "instruction": "番茄炒蛋怎么做？",
        "input": "家里只有两个鸡蛋",
        "output": "先炒蛋盛出，再炒番茄，最后合在一起加盐。",
        "system": "你是一位厨师。",
        "history": [["我想学做菜", "好的，从家常菜开始吧。"]],
    }


def test_sharegpt_joins_instruction_and_input_like_llama_factory() -> None:
    assert to_sharegpt(RECORD) == {
        "conversations": [
            {"from": "human", "value": "我想学做菜"},
            {"from": "gpt", "value": "好的，从家常菜开始吧。"},
            {"from": "human", "value": "番茄炒蛋怎么做？\n家里只有两个鸡蛋"},
            {"from": "gpt", "value": "先炒蛋盛出，再炒番茄，最后合在一起加盐。"},
        ],
        "system": "你是一位厨师。",
    }
    assert "system" not in to_sharegpt({**RECORD, "system": ""})


def test_openai_messages() -> None:
    msgs = to_openai(RECORD)["messages"]
    assert [m["role"] for m in msgs] == ["system", "user", "assistant", "user", "assistant"]
    assert msgs[3]["content"] == "番茄炒蛋怎么做？\n家里只有两个鸡蛋"
    plain = to_openai({**RECORD, "system": "", "input": "", "history": []})["messages"]
    assert plain == [
        {"role": "user", "content": "番茄炒蛋怎么做？"},
        {"role": "assistant", "content": "先炒蛋盛出，再炒番茄，最后合在一起加盐。"},
    ]


def test_dataset_info_entries() -> None:
    alpaca = dataset_info_entry("alpaca", "zh.jsonl")
    assert alpaca["columns"] == {
        "prompt": "instruction",
        "query": "input",
        "response": "output",
        "system": "system",
        "history": "history",
    }
    sharegpt = dataset_info_entry("sharegpt", "zh.jsonl")
    assert sharegpt["formatting"] == "sharegpt" and sharegpt["columns"]["messages"] == "conversations"
    assert sharegpt["tags"]["user_tag"] == "human" and sharegpt["tags"]["assistant_tag"] == "gpt"
    openai = dataset_info_entry("openai", "zh.jsonl")
    assert openai["tags"]["role_tag"] == "role" and openai["tags"]["system_tag"] == "system"


def test_write_dataset_info_keeps_other_entries(tmp_path: Path) -> None:
    info = tmp_path / "dataset_info.json"
    info.write_text(json.dumps({"alpaca_zh_demo": {"file_name": "alpaca_zh_demo.json"}}), encoding="utf-8")
    write_dataset_info(info, "mine", dataset_info_entry("alpaca", "mine.jsonl"))
    assert set(json.loads(info.read_text(encoding="utf-8"))) == {"alpaca_zh_demo", "mine"}
    info.write_text("[1, 2", encoding="utf-8")
    with pytest.raises(ConfigError, match="not valid JSON"):
        write_dataset_info(info, "mine", {})


def _run(inputs: list[Path], out: Path) -> list[dict[str, Any]]:
    recipe = build_recipe(
        {"input": [str(p) for p in inputs], "output": str(out), "stages": []}, base_dir=None, source="test"
    )
    Runner(recipe, RunOptions(output=out, progress=False)).run()
    return pq.read_table(out / "cleaned.parquet").to_pylist()


def _texts(rows: list[dict[str, Any]], merge_input: bool) -> list[tuple[Any, ...]]:
    out = []
    for r in rows:
        ins, inp = r["instruction"], r["input"]
        if merge_input and inp:
            ins, inp = f"{ins}\n{inp}", ""
        out.append((r["system"], ins, inp, r["output"], [(t["user"], t["assistant"]) for t in r["history"]]))
    return out


@pytest.fixture(scope="module")
def sample_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict[str, Any]]]:
    if not SAMPLES.is_dir():
        pytest.skip("samples/raw is missing")
    out = tmp_path_factory.mktemp("sample") / "out"
    return out, _run([SAMPLES], out)


@pytest.mark.parametrize("fmt", ["alpaca", "sharegpt", "openai"])
def test_round_trip(fmt: str, sample_run: tuple[Path, list[dict[str, Any]]], tmp_path: Path) -> None:
    run_dir, original = sample_run
    assert (
        any(r["input"] for r in original) and any(r["history"] for r in original) and any(r["system"] for r in original)
    )
    exported = tmp_path / f"sample.{fmt}.jsonl"
    assert export(run_dir, fmt, exported).written == len(original)
    again = _run([exported], tmp_path / "again")
    # alpaca keeps instruction and input apart; sharegpt and openai carry them as one user turn
    merge = fmt != "alpaca"
    assert _texts(again, merge) == _texts(original, merge)


def test_cli_export_writes_the_file_and_the_dataset_info(
    sample_run: tuple[Path, list[dict[str, Any]]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir, original = sample_run
    to = tmp_path / "data" / "zh_clean.jsonl"
    assert main(["export", str(run_dir), "--format", "alpaca", "--to", str(to)]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == {"zh_clean": dataset_info_entry("alpaca", "zh_clean.jsonl")}
    info = json.loads((to.parent / "dataset_info.json").read_text(encoding="utf-8"))
    assert info == printed
    lines = to.read_text(encoding="utf-8").splitlines()
    assert len(lines) == len(original)
    assert json.loads(lines[0]) == to_alpaca(original[0])
    assert (
        main(
            ["export", str(run_dir), "--format", "openai", "--to", str(tmp_path / "o.jsonl"), "--dataset-info", "none"]
        )
        == 0
    )
    assert not (tmp_path / "dataset_info.json").exists()


def test_cli_export_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["export", str(tmp_path), "--format", "alpaca", "--to", str(tmp_path / "x.jsonl")]) == 2
    assert "cleaned.parquet not found" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        main(["export", str(tmp_path), "--format", "csv", "--to", "x.jsonl"])
    assert e.value.code == 2
