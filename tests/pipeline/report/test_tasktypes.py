"""Task-type rules and leading verb–object pairs on Chinese instructions."""

from __future__ import annotations

import pyarrow as pa
import pytest

from pipeline.report.tasktypes import RULES, TASK_TYPES, classify, classify_column, count_task_types, verb_object
from schemas.record import CANONICAL_SCHEMA

CASES = [
    ("写一首关于春天的七言绝句", "", "创作/写作"),
    ("帮我写一封求职信，应聘前端工程师", "", "创作/写作"),
    ("给我的小猫起个好听的名字", "", "创作/写作"),
    ("生成一个关于生活在森林中的神秘生物的故事。", "", "创作/写作"),
    ("什么是量子纠缠？", "", "问答"),
    ("为什么天空是蓝色的", "", "问答"),
    ("列举三种提高睡眠质量的方法", "", "问答"),
    ("什么是诗？", "", "问答"),  # mentions 诗 but asks a question
    ("小明有5个苹果，吃了2个，还剩多少个？", "", "推理/数学"),
    ("计算 12 × 15 的结果", "", "推理/数学"),
    ("将华氏温度转换为摄氏温度。", "", "推理/数学"),
    ("总结下面这段文字的主要内容", "人工智能正在改变医疗行业。", "摘要"),
    ("用一句话概括这篇新闻", "", "摘要"),
    ("判断这句评论的情感倾向是正面还是负面", "这家餐厅的菜太难吃了。", "分类/抽取"),
    ("从下面的句子中提取人名和地名", "李白出生于碎叶城。", "分类/抽取"),
    ("把下面这句话翻译成英文", "今天天气很好。", "翻译/改写"),
    ("润色这段文字，使它更正式", "", "翻译/改写"),
    ("重写以下句子，去掉不必要的单词。", "", "翻译/改写"),
    ("用Python写一个快速排序函数", "", "代码"),
    ("这段代码为什么报错？", "```js\nconsole.log(x)\n```", "代码"),
    ("你好", "", "其他"),
]


@pytest.mark.parametrize(("instruction", "input_text", "expected"), CASES)
def test_classify(instruction: str, input_text: str, expected: str) -> None:
    assert classify(instruction, input_text) == expected


def test_earlier_rules_win() -> None:
    # code before translation, summary before writing, maths before question answering
    assert classify("把这段Python代码翻译成Java") == "代码"
    assert classify("总结这篇文章并写一段评论") == "摘要"
    assert classify("为什么3 + 5 等于8？") == "推理/数学"


def test_history_makes_a_conversation() -> None:
    assert classify("那番茄炒蛋怎么做？", "", history_turns=1) == "多轮对话"


def test_vectorized_rules_agree_with_the_scalar_ones() -> None:
    rows = [
        {"id": str(i), "source": "t", "system": "", "instruction": ins, "input": inp, "output": "", "history": []}
        for i, (ins, inp, _) in enumerate(CASES)
    ]
    rows.append({**rows[0], "id": "h", "history": [{"user": "我想学做菜", "assistant": "好的"}]})
    table = pa.Table.from_pylist(rows, schema=CANONICAL_SCHEMA)
    got = [TASK_TYPES[i] for i in classify_column(table)]
    assert got == [c[2] for c in CASES] + ["多轮对话"]
    counts = count_task_types(table)
    assert counts["创作/写作"] == 4 and counts["多轮对话"] == 1 and sum(counts.values()) == len(rows)


def test_every_rule_explains_itself() -> None:
    assert [r.task for r in RULES] + ["多轮对话", "其他"] == list(TASK_TYPES)
    assert all(r.why and r.pattern for r in RULES)


@pytest.mark.parametrize(
    ("instruction", "pair"),
    [
        ("请写一首关于春天的诗", ("写", "诗")),
        ("给出三个提高学习效率的方法", ("给出", "方法")),
        ("把下面这段话翻译成英文", ("翻译", "英文")),
        ("总结这篇文章的主要内容", ("总结", "内容")),
        ("用Python写一个快速排序函数", ("写", "函数")),
        ("对以下句子进行分类", ("分类", "")),
        ("根据以下信息回答问题，不要编造", ("回答", "问题")),
    ],
)
def test_verb_object(instruction: str, pair: tuple[str, str]) -> None:
    assert verb_object(instruction) == pair


def test_no_verb() -> None:
    assert verb_object("你好") is None
    assert verb_object("") is None
