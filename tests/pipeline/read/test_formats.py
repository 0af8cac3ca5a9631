"""Mapping raw records of each format to the canonical record, with real Chinese text."""

from __future__ import annotations

import pytest

from pipeline.read.formats import MalformedRecord, ReadRejection, detect_format, to_canonical
from pipeline.read.layouts import apply_fields


def test_alpaca_missing_input_is_empty_string() -> None:
    row = to_canonical({"instruction": "中国的首都是哪里？", "output": "北京。"}, "alpaca")
    assert not isinstance(row, ReadRejection)
    assert row == {
        "system": "",
        "instruction": "中国的首都是哪里？",
        "input": "",
        "output": "北京。",
        "history": [],
    }


def test_alpaca_history_pairs_and_dicts() -> None:
    rec = {"instruction": "那明天呢？", "output": "明天多云。", "history": [["今天天气怎么样？", "今天晴。"]]}
    row = to_canonical(rec, "alpaca")
    assert not isinstance(row, ReadRejection)
    assert row["history"] == [{"user": "今天天气怎么样？", "assistant": "今天晴。"}]
    rec["history"] = [{"user": "今天天气怎么样？", "assistant": "今天晴。"}]
    assert to_canonical(rec, "alpaca") == row


@pytest.mark.parametrize(
    ("output", "message"),
    [(["红", "黄"], "key 'output' is a list"), (2, "key 'output' is a number"), ({"a": 1}, "is an object")],
)
def test_alpaca_wrong_types_are_malformed(output: object, message: str) -> None:
    with pytest.raises(MalformedRecord, match=message):
        to_canonical({"instruction": "列出颜色", "output": output}, "alpaca")


def test_sharegpt_multi_turn_maps_to_history() -> None:
    rec = {
        "system": "你是老师。",
        "conversations": [
            {"from": "human", "value": "什么是机器学习？"},
            {"from": "gpt", "value": "让计算机从数据中学习。"},
            {"from": "human", "value": "举个例子。"},
            {"from": "gpt", "value": "垃圾邮件过滤。"},
        ],
    }
    row = to_canonical(rec, "sharegpt")
    assert not isinstance(row, ReadRejection)
    assert row["system"] == "你是老师。"
    assert row["history"] == [{"user": "什么是机器学习？", "assistant": "让计算机从数据中学习。"}]
    assert (row["instruction"], row["output"]) == ("举个例子。", "垃圾邮件过滤。")


def test_openai_system_and_content_parts() -> None:
    rec = {
        "messages": [
            {"role": "system", "content": "你是助手。"},
            {"role": "user", "content": [{"type": "text", "text": "解释“画蛇添足”。"}]},
            {"role": "assistant", "content": "比喻做多余的事。"},
        ]
    }
    row = to_canonical(rec, "openai")
    assert not isinstance(row, ReadRejection)
    assert (row["system"], row["instruction"], row["output"]) == (
        "你是助手。",
        "解释“画蛇添足”。",
        "比喻做多余的事。",
    )


@pytest.mark.parametrize(
    ("turns", "reason"),
    [
        ([("human", "你好"), ("gpt", "你好！"), ("human", "讲个笑话")], "conversation_ends_on_user"),
        ([("human", "第一问"), ("human", "第二问"), ("gpt", "回答")], "conversation_not_alternating"),
        ([("gpt", "我先说"), ("human", "好")], "conversation_not_alternating"),
        ([], "conversation_empty"),
        ([("human", "查天气"), ("function_call", "{}")], "conversation_tool_turns"),
        ([("human", "讲个故事"), ("narrator", "从前有座山")], "conversation_unsupported_role"),
        ([("human", "问"), ("system", "迟到的系统提示"), ("gpt", "答")], "conversation_misplaced_system"),
    ],
)
def test_bad_conversations_are_rejected_with_reason(turns: list[tuple[str, str]], reason: str) -> None:
    rec = {"conversations": [{"from": f, "value": v} for f, v in turns]}
    out = to_canonical(rec, "sharegpt")
    assert isinstance(out, ReadRejection)
    assert out.reason == reason


def test_empty_record_rejected() -> None:
    out = to_canonical({"instruction": " ", "input": "", "output": ""}, "alpaca")
    assert isinstance(out, ReadRejection) and out.reason == "empty_record"


def test_detect_and_rename() -> None:
    assert detect_format({"conversations": []}) == "sharegpt"
    assert detect_format({"messages": []}) == "openai"
    assert detect_format({"instruction": "x", "output": "y"}) == "alpaca"
    assert detect_format({"question": "x"}) is None
    belle = apply_fields(
        {"question": "什么是熵？", "std_answer": "无序程度的度量。"},
        {"instruction": "question", "output": "std_answer"},
    )
    assert to_canonical(belle, "alpaca") == {
        "system": "",
        "instruction": "什么是熵？",
        "input": "",
        "output": "无序程度的度量。",
        "history": [],
    }
