"""The mt_damage stage: machine-translated code is dropped with the offending line quoted; good code, prose and
pseudocode stay. Fixtures are Chinese answers of the kind Alpaca-zh holds."""

from __future__ import annotations

import json
from typing import Any

import pytest

from stages.base import StageResult
from stages.mt_damage import MTDamageParams, MTDamageStage
from tests.records import canonical_table


def run(rows: list[dict[str, Any]], **params: Any) -> StageResult:
    return MTDamageStage(MTDamageParams(**params)).process(canonical_table(rows))


def decide(instruction: str, output: str, **params: Any) -> tuple[str | None, dict[str, Any]]:
    res = run([{"instruction": instruction, "output": output}], **params)
    return res.reasons[0], json.loads(res.details[0]) if res.details[0] else {}


@pytest.mark.parametrize(
    ("instruction", "output", "keyword", "line"),
    [
        (
            "编写一个函数将给定的字符串转换为大写。",
            "def to_upper(str):\n    返回 str.upper()",
            "返回",
            "返回 str.upper()",
        ),
        (
            "给定两个字符串，检查一个字符串是否是另一个字符串的旋转？",
            "def is_rotation(s1, s2):\n    如果 len(s1) != len(s2):\n        return False\n    return s2 in s1 + s1",
            "如果",
            "如果 len(s1) != len(s2):",
        ),
        (
            "生成用于计算列表均值的函数。",
            "```python\ndef calculate_mean(numbers):\n    total = 0\n    对于数字中的数字：\n        total += 数字\n```",
            "对于",
            "对于数字中的数字：",
        ),
        (
            "创建一个返回两个数字之和的函数。",
            "def add(a, b):\n  返回 a + b",
            "返回",
            "返回 a + b",
        ),
        (
            "想出一个算法来乘以两个给定的数字。",
            "def multiply(num1, num2):\n  结果 = 0\n  对于范围内的我（num1）：\n    结果 = 结果 + num2\n  返回结果",
            "对于",
            "对于范围内的我（num1）：",
        ),
    ],
)
def test_translated_keywords_in_code_are_broken_code(instruction: str, output: str, keyword: str, line: str) -> None:
    reason, detail = decide(instruction, output)
    assert reason == "mt_broken_code"
    assert (detail["keyword"], detail["line"], detail["field"]) == (keyword, line, "output")


def test_translated_return_after_a_block_opener_is_broken_code() -> None:
    out = "```\ndef calculate_mean(numbers):\n    total = sum(numbers)\n    回归均值\n```"
    reason, detail = decide("写一个计算平均数的函数。", out)
    assert reason == "mt_broken_code" and detail["line"] == "回归均值"


def test_fullwidth_punctuation_in_code_is_flagged() -> None:
    reason, detail = decide(
        "写一个计算平均数的 Python 函数。", "def calculate_mean（数字）：\n    return sum(数字) / len(数字)"
    )
    assert reason == "mt_fullwidth_code" and detail["line"] == "def calculate_mean（数字）："
    assert decide("打印问候语。", 'print（"你好，世界"）')[0] == "mt_fullwidth_code"


def test_translated_placeholder_is_flagged_unless_the_name_is_defined() -> None:
    reason, detail = decide("写一个问候用户的函数。", 'def greet(name):\n    print(f"你好，{名字}！")')
    assert reason == "mt_translated_placeholder" and detail["placeholder"] == "名字"
    defined = 'def greet(name):\n    名字 = name\n    print(f"你好，{名字}！")'
    assert decide("写一个问候用户的函数。", defined)[0] is None


@pytest.mark.parametrize(
    ("instruction", "output"),
    [
        # correct code with Chinese comments and strings
        (
            "编写一个函数来计算阶乘。",
            "```python\ndef factorial(n):\n    # 如果 n 为 0，返回 1\n    if n == 0:\n        return 1\n"
            '    print("计算中：", n)\n    return n * factorial(n - 1)\n```\n如果 n 很大，递归会很慢。',
        ),
        # prose and arithmetic that start like keywords
        ("给定此等式 x = 2y + 4，计算 x 的值，其中 y = 3。", "当 y = 3 时，x = 10。"),
        ("考虑等式“2x + 3y = 8”。x 和 y 的值是多少？", "对于 x：2x = 8 - 3y\n所以 x = 4 - 1.5y。"),
        ("如果人工智能变得更加先进，会怎样？", "如果 AI 变得更加先进和普遍，它可以让我们自动完成危险的任务。"),
        # pseudocode may be written in Chinese
        (
            "用伪代码编写一个算法来找出最小值。",
            "最小值 = 列表[0]\n对于 列表 中的 每个元素：\n    如果 元素 < 最小值：\n        最小值 = 元素",
        ),
        # Chinese identifiers used consistently are valid Python
        (
            "写一个求和函数。",
            "def 求和(数字列表):\n    总和 = 0\n    for 数字 in 数字列表:\n        总和 += 数字\n    return 总和",
        ),
        # prose that starts with a name and a gloss
        (
            "列举 XP（极限编程）软件开发过程的四个组成部分。",
            "XP（极限编程）软件开发过程的四个组成部分是规划、设计、编码和测试。",
        ),
        # a story, a chemical equation
        ("写一个故事。", "当 Vicki 完全惊讶地进入公园时，每个人都欢呼起来。"),
        ("预测反应结果。", "当 CaCO3（碳酸钙）与 2 摩尔 HCl（盐酸）反应时，会发生以下化学反应："),
    ],
)
def test_good_code_prose_and_pseudocode_stay(instruction: str, output: str) -> None:
    assert decide(instruction, output)[0] is None


def test_history_answers_are_checked_and_counters_kept() -> None:
    history = [{"user": "写一个加法函数。", "assistant": "def add(a, b):\n    返回 a + b"}]
    res = run([{"instruction": "谢谢！", "output": "不客气。", "history": history}])
    assert res.reasons == ["mt_broken_code"]
    assert json.loads(res.details[0] or "{}")["field"] == "history[0].assistant"
    assert res.counters["found.mt_broken_code"] == 1
    assert run([{"instruction": "谢谢！", "output": "不客气。", "history": history}], check_history=False).reasons == [
        None
    ]


def test_checks_can_be_switched_off() -> None:
    out = "def to_upper(s):\n    返回 s.upper()"
    assert decide("写一个函数。", out, broken_code=False)[0] is None


def test_a_code_task_answer_without_a_definition_is_still_checked() -> None:
    reason, detail = decide("编写一个函数将给定的字符串转换为大写。", "返回 str.upper()")
    assert reason == "mt_broken_code" and detail["line"] == "返回 str.upper()"


def test_fullwidth_punctuation_in_code_without_han() -> None:
    assert decide("Print a greeting in Python.", 'print（"hello"）')[0] == "mt_fullwidth_code"
    assert decide("写一个 Python 循环。", "for i in range(10)：\n    print(i)")[0] == "mt_fullwidth_code"
    assert decide("写一个 Python 循环。", "for i in range(10):\n    print(i)")[0] is None
