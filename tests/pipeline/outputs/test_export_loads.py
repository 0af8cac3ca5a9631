"""Each export format loads the way LLaMA-Factory loads it: HF ``datasets`` reads the JSONL named by the
``dataset_info.json`` entry, every column the entry declares is there, and every example passes LLaMA-Factory's
converter rules (:mod:`pipeline.outputs.export_check`: role tags at odd/even positions, even message count, system
column present or absent).

The real ``llamafactory`` package is not used: ``pip install --dry-run llamafactory`` (0.9.5) wants 88
packages here, torch 2.14.1 with the CUDA wheels and gradio among them (see the README)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from pipeline.cli import main
from pipeline.outputs.export import dataset_info_entry, user_turn
from pipeline.outputs.export_check import llamafactory_problems
from pipeline.recipe import build_recipe
from pipeline.runner import Runner, RunOptions

SAMPLES = Path(__file__).resolve().parents[3] / "samples" / "raw"
NO_SYSTEM = [
    {"instruction": "写一句关于秋天的诗。", "input": "", "output": "秋风萧瑟天气凉，草木摇落露为霜。"},
    {"instruction": "把这句话翻译成英文。", "input": "我今天很开心。", "output": "I am very happy today."},
    {
        "instruction": "那第二天呢？",
        "input": "",
        "output": "第二天去颐和园。",
        "history": [["北京玩两天怎么安排？", "第一天去故宫和天安门。"]],
    },
]


def _run(inputs: list[Path], out: Path) -> list[dict[str, Any]]:
    recipe = build_recipe(
        {"input": [str(p) for p in inputs], "output": str(out), "stages": []}, base_dir=None, source="t"
    )
    Runner(recipe, RunOptions(output=out, progress=False)).run()
    return pq.read_table(out / "cleaned.parquet").to_pylist()


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, list[dict[str, Any]]]]:
    base = tmp_path_factory.mktemp("export_loads")
    plain = base / "no_system.jsonl"
    plain.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in NO_SYSTEM), encoding="utf-8")
    return {
        "samples": (base / "samples", _run([SAMPLES], base / "samples")),  # some records have a system prompt
        "no_system": (base / "plain", _run([plain], base / "plain")),
    }


def _load(path: Path, cache: Path) -> Any:
    datasets = pytest.importorskip("datasets", reason="HF datasets is not installed (pip install datasets)")
    return datasets.load_dataset("json", data_files=str(path), split="train", cache_dir=str(cache))


def _lf_prompt(row: dict[str, Any], entry: dict[str, Any]) -> list[tuple[str, str]]:
    """The (role, text) turns LLaMA-Factory's converter builds from a loaded example."""
    cols = entry["columns"]
    if entry.get("formatting", "alpaca") == "alpaca":
        turns = [
            t
            for pair in row.get(cols.get("history", ""), None) or []
            for t in (("user", pair[0]), ("assistant", pair[1]))
        ]
        query = "\n".join(x for x in (row[cols["prompt"]], row[cols["query"]]) if x)
        return [*turns, ("user", query), ("assistant", row[cols["response"]])]
    tags = entry["tags"]
    messages = row[cols["messages"]]
    if tags.get("system_tag") and messages and messages[0][tags["role_tag"]] == tags["system_tag"]:
        messages = messages[1:]
    role = {tags["user_tag"]: "user", tags["assistant_tag"]: "assistant"}
    return [(role[m[tags["role_tag"]]], m[tags["content_tag"]]) for m in messages]


def _lf_system(row: dict[str, Any], entry: dict[str, Any]) -> str:
    cols, tags = entry["columns"], entry.get("tags", {})
    messages = row.get(cols.get("messages", ""), None)
    if tags.get("system_tag") and messages and messages[0][tags["role_tag"]] == tags["system_tag"]:
        return str(messages[0][tags["content_tag"]])
    return str(row[cols["system"]] or "") if "system" in cols else ""


@pytest.mark.parametrize("which", ["samples", "no_system"])
@pytest.mark.parametrize("fmt", ["alpaca", "sharegpt", "openai"])
def test_export_loads_with_the_declared_columns(
    fmt: str,
    which: str,
    runs: dict[str, tuple[Path, list[dict[str, Any]]]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    run_dir, cleaned = runs[which]
    data_dir = tmp_path / "LLaMA-Factory" / "data"
    assert main(["export", str(run_dir), "--format", fmt, "--to", str(data_dir / "zh_clean.jsonl")]) == 0
    assert "every line passes LLaMA-Factory's checks" in capsys.readouterr().err
    info = json.loads((data_dir / "dataset_info.json").read_text(encoding="utf-8"))
    entry = info["zh_clean"]
    ds = _load(data_dir / entry["file_name"], tmp_path / "hf_cache")  # file_name is relative to dataset_dir
    declared = set(entry["columns"].values())
    assert declared <= set(ds.column_names), f"declared {declared}, file has {ds.column_names}"
    if fmt == "sharegpt":  # the system column is declared exactly when it is written
        has_system = any(r["system"] for r in cleaned)
        assert ("system" in entry["columns"]) is has_system and ("system" in ds.column_names) is has_system
    rows = ds.to_list()
    assert len(rows) == len(cleaned)
    for row, rec in zip(rows, cleaned):
        assert llamafactory_problems(row, entry, set(ds.column_names)) == []
        expected = [t for h in rec["history"] for t in (("user", h["user"]), ("assistant", h["assistant"]))]
        expected += [("user", user_turn(rec["instruction"], rec["input"])), ("assistant", rec["output"])]
        assert _lf_prompt(row, entry) == expected
        assert _lf_system(row, entry) == rec["system"]


def test_the_rules_catch_what_llamafactory_drops() -> None:
    sharegpt = dataset_info_entry("sharegpt", "x.jsonl", system=True)
    cols = {"conversations", "system"}
    good = {"conversations": [{"from": "human", "value": "你好"}, {"from": "gpt", "value": "你好！"}], "system": ""}
    assert llamafactory_problems(good, sharegpt, cols) == []
    # the old bug: an entry declaring a system column that the file does not have
    assert llamafactory_problems(good, sharegpt, {"conversations"}) == ["missing_column:system"]
    swapped = {"conversations": [{"from": "gpt", "value": "我先说"}, {"from": "human", "value": "好"}]}
    assert llamafactory_problems(swapped, sharegpt, cols) == ["invalid_role_tag"]
    odd = {"conversations": [*good["conversations"], {"from": "human", "value": "再见"}]}
    assert llamafactory_problems(odd, sharegpt, cols) == ["invalid_message_count"]
    assert llamafactory_problems({"conversations": []}, sharegpt, cols) == ["no_messages"]
    openai = dataset_info_entry("openai", "x.jsonl")
    late_system = {"messages": [{"role": "user", "content": "问"}, {"role": "system", "content": "迟到"}]}
    assert llamafactory_problems(late_system, openai, {"messages"}) == ["invalid_role_tag"]
    alpaca = dataset_info_entry("alpaca", "x.jsonl")
    columns = {"instruction", "input", "output", "system", "history"}
    bad_history = {"instruction": "问", "input": "", "output": "答", "system": "", "history": [["只有一半"]]}
    assert llamafactory_problems(bad_history, alpaca, columns) == ["invalid_history"]
    assert llamafactory_problems({**bad_history, "history": [], "output": None}, alpaca, columns) == ["no_response"]
