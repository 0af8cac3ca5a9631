"""Column mapping and the common Chinese SFT layouts: ``--fields`` with dotted paths, and auto-detection per file.

The records are small fixtures written here in the shape of each public dataset (not copies of them)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from pipeline.cli import main
from pipeline.read.layouts import apply_fields, detect_layout, get_path, parse_fields
from pipeline.read.reader import Reader
from pipeline.registry import DEFAULT_STAGES
from schemas.errors import ConfigError

# BELLE eval_set.json: JSONL in a .json file; question / std_answer / class
BELLE_EVAL = [
    {
        "question": "请解释一下什么是光合作用。",
        "std_answer": "光合作用是植物利用光能把二氧化碳和水合成有机物的过程。",
        "class": "open_qa",
    },
    {"question": "把下面的句子翻译成英文：我喜欢喝茶。", "std_answer": "I like drinking tea.", "class": "translation"},
]
# BELLE zh_seed_tasks.json: the answer nested in instances[0].output
BELLE_SEED = {
    "id": "seed_task_1",
    "name": "早餐建议",
    "instruction": "有哪些高蛋白的早餐选择？",
    "instances": [{"input": "", "output": "鸡蛋、牛奶、豆浆和希腊酸奶都是高蛋白的早餐。"}],
    "is_classification": False,
}


def read_all(paths: list[Path], fields: dict[str, str] | None = None) -> tuple[list[dict], list[dict], list[dict], Any]:
    reader = Reader(paths, "auto", fields or {}, batch_size=100)
    rows, rejected, quarantine = [], [], []
    for chunk in reader:
        rows += chunk.records.to_pylist()
        rejected += chunk.rejected
        quarantine += chunk.quarantine
    return rows, rejected, quarantine, reader.infos


def write_jsonl(path: Path, records: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return path


def test_parse_fields_and_dotted_paths() -> None:
    assert parse_fields("instruction=question, output=std_answer") == {
        "instruction": "question",
        "output": "std_answer",
    }
    with pytest.raises(ConfigError, match="CANONICAL=KEY"):
        parse_fields("instruction")
    assert get_path(BELLE_SEED, "instances.0.output") == "鸡蛋、牛奶、豆浆和希腊酸奶都是高蛋白的早餐。"
    assert get_path({"a.b": "整个键"}, "a.b") == "整个键"  # a key with a dot is found whole first
    mapped = apply_fields(
        {"kind": "Couplet", "input": "上联：春风得意", "target": "下联：秋月扬辉"},
        {"instruction": "input", "output": "target"},
    )
    assert mapped == {
        "kind": "Couplet",
        "instruction": "上联：春风得意",
        "output": "下联：秋月扬辉",
    }  # input moved, not copied


def test_belle_eval_with_fields_and_by_detection(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "eval_set.json", BELLE_EVAL)
    for fields in ({"instruction": "question", "output": "std_answer"}, None):
        rows, rejected, quarantine, infos = read_all([path], fields)
        assert quarantine == [] and rejected == []
        assert [(r["instruction"], r["output"]) for r in rows] == [(r["question"], r["std_answer"]) for r in BELLE_EVAL]
        assert infos[0].format == "alpaca"
    assert infos[0].layout == "belle_eval (question->instruction, std_answer->output)"


def test_belle_seed_tasks_nested_answer(tmp_path: Path) -> None:
    path = tmp_path / "zh_seed_tasks.json"
    path.write_text(
        json.dumps([BELLE_SEED, {**BELLE_SEED, "id": "seed_task_2", "instances": []}], ensure_ascii=False),
        encoding="utf-8",
    )
    rows, _, quarantine, infos = read_all([path])
    assert infos[0].layout.startswith("belle_seed")
    assert rows[0]["instruction"] == "有哪些高蛋白的早餐选择？" and rows[0]["output"].startswith("鸡蛋、牛奶")
    # a record whose nested answer is missing names the path it was mapped from
    assert len(quarantine) == 1 and "mapped from 'instances.0.output'" in quarantine[0]["error"]
    rows, _, quarantine, _ = read_all([path], {"instruction": "instruction", "output": "instances.0.output"})
    assert rows[0]["output"].startswith("鸡蛋、牛奶") and len(quarantine) == 1


LAYOUT_CASES: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    (
        "firefly",
        {"kind": "ClassicalChinese", "input": "将下面的文言文翻译成现代文：学而时习之", "target": "学了又按时温习它。"},
        {"instruction": "将下面的文言文翻译成现代文：学而时习之", "input": "", "output": "学了又按时温习它。"},
    ),
    (
        "coig_exam",
        {
            "textbox_q_instruction": "请回答下面的选择题。",
            "textbox_q_context": "",
            "textbox_question": "我国最长的河流是（ ）A.黄河 B.长江 C.珠江",
            "textbox_answer": "B",
            "textbox_answer_analysis": "长江全长约6300公里，是我国最长的河流。",
        },
        {
            "instruction": "请回答下面的选择题。",
            "input": "我国最长的河流是（ ）A.黄河 B.长江 C.珠江",
            "output": "B\n\n长江全长约6300公里，是我国最长的河流。",
        },
    ),
    (
        "alpaca",  # LLaMA-Factory alpaca with system and history; COIG-CQIA records carry extra keys
        {
            "instruction": "那第二天呢？",
            "input": "",
            "output": "第二天去颐和园。",
            "system": "你是导游。",
            "history": [["北京玩两天怎么安排？", "第一天去故宫。"]],
            "task_type": {"major": ["问答"]},
            "domain": ["旅游"],
        },
        {
            "instruction": "那第二天呢？",
            "system": "你是导游。",
            "history": [{"user": "北京玩两天怎么安排？", "assistant": "第一天去故宫。"}],
        },
    ),
    (
        "moss",
        {
            "conversation_id": 1,
            "meta_instruction": "你是MOSS，一个乐于助人的助手。",
            "num_turns": 2,
            "chat": {
                "turn_2": {
                    "Human": "<|Human|>: 再推荐一本<eoh>\n",
                    "Inner Thoughts": "None",
                    "Commands": "None",
                    "Tool Responses": "None",
                    "MOSS": "<|MOSS|>: 《活着》。<eom>\n",
                },
                "turn_1": {
                    "Human": "<|Human|>: 推荐一本小说<eoh>\n",
                    "Inner Thoughts": "None",
                    "Commands": "None",
                    "Tool Responses": "None",
                    "MOSS": "<|MOSS|>: 《平凡的世界》。<eom>\n",
                },
            },
        },
        {
            "system": "你是MOSS，一个乐于助人的助手。",
            "instruction": "再推荐一本",
            "output": "《活着》。",
            "history": [{"user": "推荐一本小说", "assistant": "《平凡的世界》。"}],
        },
    ),
    (
        "pairs",
        {
            "conversation_id": 7,
            "category": "Brainstorming",
            "conversation": [{"human": "给我起三个猫的名字", "assistant": "咪咪、团子、橘座。"}],
        },
        {"instruction": "给我起三个猫的名字", "output": "咪咪、团子、橘座。", "history": []},
    ),
    (
        "sharegpt",  # user/assistant roles as well as human/gpt
        {
            "conversations": [
                {"from": "user", "value": "你好"},
                {"from": "assistant", "value": "你好！有什么可以帮你？"},
            ],
            "system": "简短回答",
        },
        {"instruction": "你好", "output": "你好！有什么可以帮你？", "system": "简短回答"},
    ),
    (
        "openai",
        {
            "messages": [
                {"role": "system", "content": "你是数学老师。"},
                {"role": "user", "content": "1+1等于几？"},
                {"role": "assistant", "content": "等于2。"},
            ]
        },
        {"system": "你是数学老师。", "instruction": "1+1等于几？", "output": "等于2。"},
    ),
    (
        "prompt_response",
        {"prompt": "用一句话介绍杭州。", "response": "杭州是浙江省省会，以西湖闻名。"},
        {"instruction": "用一句话介绍杭州。", "output": "杭州是浙江省省会，以西湖闻名。"},
    ),
]


@pytest.mark.parametrize(("layout", "record", "expected"), LAYOUT_CASES, ids=[c[0] for c in LAYOUT_CASES])
def test_layouts_are_detected_and_mapped(
    tmp_path: Path, layout: str, record: dict[str, Any], expected: dict[str, Any]
) -> None:
    detected = detect_layout(record)
    assert detected is not None and detected.name == layout
    rows, rejected, quarantine, infos = read_all([write_jsonl(tmp_path / "d.jsonl", [record])])
    assert rejected == [] and quarantine == [], (rejected, quarantine)
    assert infos[0].layout.split(" ")[0] == layout
    for key, value in expected.items():
        assert rows[0][key] == value, key


TOOL_CASES = [
    {
        "messages": [
            {"role": "user", "content": "北京今天天气怎么样？"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {"id": "c1", "type": "function", "function": {"name": "weather", "arguments": '{"city": "北京"}'}}
                ],
            },
            {"role": "tool", "tool_call_id": "c1", "content": "晴，25度"},
            {"role": "assistant", "content": "北京今天晴，25度。"},
        ]
    },
    {
        "conversations": [
            {"from": "human", "value": "查一下股价"},
            {"from": "function_call", "value": '{"name": "stock"}'},
            {"from": "observation", "value": "100"},
            {"from": "gpt", "value": "股价是100元。"},
        ]
    },
    {
        "meta_instruction": "你是MOSS。",
        "chat": {
            "turn_1": {
                "Human": "<|Human|>: 搜索一下今天的新闻<eoh>",
                "Commands": '<|Commands|>: Search("今天新闻")<eoc>',
                "Tool Responses": "<|Results|>: ...<eor>",
                "MOSS": "<|MOSS|>: 今天的新闻有……<eom>",
            }
        },
    },
]


@pytest.mark.parametrize("record", TOOL_CASES, ids=["openai", "sharegpt", "moss"])
def test_tool_turns_are_rejected_with_a_reason(tmp_path: Path, record: dict[str, Any]) -> None:
    rows, rejected, quarantine, _ = read_all([write_jsonl(tmp_path / "tools.jsonl", [record])])
    assert rows == [] and quarantine == []
    assert [r["reason"] for r in rejected] == ["conversation_tool_turns"]
    assert json.loads(rejected[0]["detail"])["turn"] >= 1


def test_cli_fields_flag_reads_belle(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The README's quick start: a BELLE-style file with one --fields flag."""
    path = write_jsonl(
        tmp_path / "eval_set.json", [{"题目": r["question"], "参考答案": r["std_answer"]} for r in BELLE_EVAL]
    )
    recipe = tmp_path / "read_only.yaml"
    recipe.write_text("stages: []\n", encoding="utf-8")
    out = tmp_path / "out"
    base = ["run", str(recipe), "--input", str(path), "--output", str(out), "--quiet"]
    assert main(base) == 0
    err = capsys.readouterr().err
    assert (
        "2 quarantined" in err
        and "[mostly_quarantined]" in err
        and "fix: map your keys: zhcurate run ... --fields instruction=题目,output=参考答案" in err
    )
    assert main([*base, "--force", "--fields", "instruction=题目,output=参考答案"]) == 0
    err = capsys.readouterr().err
    assert "2 records in -> 2 cleaned, 0 rejected, 0 quarantined" in err
    assert "layout fields (题目->instruction, 参考答案->output)" in err
    assert "steps run: read → write (read only" in err
    assert pq.read_table(out / "cleaned.parquet").column("output").to_pylist() == [r["std_answer"] for r in BELLE_EVAL]
    assert main([*base, "--force", "--fields", "prompt=题目"]) == 2
    assert "unknown canonical field(s) ['prompt']" in capsys.readouterr().err


def test_recipe_without_stages_runs_the_default_recipe() -> None:
    from pipeline.recipe import build_recipe
    from pipeline.registry import DEFAULT_STAGES

    assert [
        s.name for s in build_recipe({"fields": {"instruction": "question"}}, base_dir=None, source="r").stages
    ] == list(DEFAULT_STAGES)
    assert build_recipe({"stages": []}, base_dir=None, source="r").stages == ()


@pytest.mark.slow
def test_readme_quick_start_for_a_belle_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The README's BELLE lines, run as written (the default recipe), in a scratch folder."""
    import shlex

    readme = (Path(__file__).resolve().parents[3] / "README.md").read_text(encoding="utf-8")
    block = readme.split("--fields instruction=question,output=std_answer")[0].rsplit("```bash", 1)[1]
    block += (
        "--fields instruction=question,output=std_answer"
        + readme.split("--fields instruction=question,output=std_answer", 1)[1].split("```", 1)[0]
    )
    commands = [shlex.split(line) for line in block.splitlines() if line.startswith("zhcurate ")]
    assert [c[1] for c in commands] == ["run", "export"]
    records = [
        *BELLE_EVAL,
        {
            "question": "为什么天空是蓝色的？",
            "std_answer": "阳光中波长较短的蓝光更容易被大气分子散射，所以我们看到的天空是蓝色的。",
            "class": "open_qa",
        },
        {
            "question": "写一句鼓励考生的话。",
            "std_answer": "相信自己，平时的努力一定会在考场上开花结果，加油！",
            "class": "generation",
        },
    ]
    write_jsonl(tmp_path / "eval_set.json", records)
    monkeypatch.chdir(tmp_path)
    for command in commands:
        assert main(command[1:]) == 0, command
    err = capsys.readouterr().err
    assert f"{len(records)} records in ->" in err and "0 quarantined" in err
    report = json.loads((tmp_path / "out" / "belle" / "report.json").read_text(encoding="utf-8"))
    assert (
        report["counts"]["cleaned"] >= 3
        and report["steps_run"][-1] == "write"
        and report["steps_run"] == ["read", *DEFAULT_STAGES, "write"]
    )
    exported = (tmp_path / "LLaMA-Factory" / "data" / "belle_clean.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(exported) == report["counts"]["cleaned"]
    assert json.loads(exported[0])["conversations"][0]["value"] == BELLE_EVAL[0]["question"]
