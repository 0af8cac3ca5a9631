"""normalize: every rule on real Chinese text, and every "never" (code, URLs, e-mails, numbers, Latin)."""

from __future__ import annotations

import json
import pickle
import re
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from pipeline.registry import STAGES
from stages.base import SEQ_COLUMN, StageResult
from stages.normalize.stage import NormalizeParams, NormalizeStage
from tests.records import canonical_table

DATA = Path(__file__).resolve().parents[3] / ".." / "shared" / "data" / "alpaca_zh"
OFF = NormalizeParams(t2s="off")


def table(*rows: dict[str, Any]) -> pa.Table:
    return canonical_table(rows, {"instruction": "指令", "output": "回答"})


def run(params: NormalizeParams | None = None, **fields: Any) -> tuple[dict[str, Any], StageResult]:
    res = NormalizeStage(params).process(table(fields))
    return res.table.to_pylist()[0], res


def out(text: str, params: NormalizeParams | None = OFF) -> str:
    """The normalized ``output`` field."""
    return run(params, output=text)[0]["output"]


# --- rule 1: full-width -> half-width --------------------------------------------------------------
def test_fullwidth_letters_digits_symbols() -> None:
    row, res = run(OFF, output="型号ＡＢＣ１２３，售价１００％")
    assert row["output"] == "型号ABC123，售价100%"
    assert out("１＋１＝２吗？") == "1+1=2吗？"
    assert res.counters["changed.fullwidth"] == 1


def test_fullwidth_chinese_punctuation_stays() -> None:
    text = "他说：“你好！”（笑）《红楼梦》、‘西游记’……真的吗？好；走吧——。"
    assert out(text) == text


def test_fullwidth_switch_off() -> None:
    assert out("ＡＢＣ１２３", NormalizeParams(t2s="off", fullwidth=False)) == "ＡＢＣ１２３"


# --- rule 2: half-width punctuation after Chinese --------------------------------------------------
@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("你好,世界", "你好，世界"),
        ("真的吗?", "真的吗？"),
        ("太好了!", "太好了！"),
        ("举一个化学变化的例子.", "举一个化学变化的例子。"),
        ("澳大利亚;巴西;加拿大", "澳大利亚；巴西；加拿大"),
        ("名称: 壁纸交换", "名称：壁纸交换"),
        ("句子中的名词：狗, 棍子, 球", "句子中的名词：狗，棍子，球"),
        ("（汽车轮）.", "（汽车轮）。"),
    ],
)
def test_cjk_punct(raw: str, expected: str) -> None:
    assert out(raw) == expected


@pytest.mark.parametrize(
    "text",
    [
        "圆周率约为3.14,比3大",  # numbers: the mark follows a digit
        "人口约1,400,000人",
        "Hello, world. How are you?",  # Latin text
        "详见https://example.com/a?x=1&amp;y=2,z=3.",  # URL
        "发邮件到 zhang.san@example.com 即可",  # e-mail
        "代码如下：\n    当前.下一个 = 上一个",  # code
        "代码如下：\n\t结果.追加（元素）",  # indented (translated) code
        "这里\n  当前.下一个",
        "打开文件名.txt查看",  # a letter follows
        "我错了......",  # ellipsis
        "然后...",
        'console.log("分钟:", min);',  # code-like line
        "用 `print(a,b)` 输出",  # inline code
    ],
)
def test_cjk_punct_never(text: str) -> None:
    assert out(text) == text


def test_cjk_punct_fenced_code_untouched() -> None:
    code = '```python\nprint("你好,世界")\n# 注释:不要改.  ＡＢＣ\n```'
    assert out(f"示例如下,请看:\n{code}\n就这样.") == f"示例如下，请看：\n{code}\n就这样。"


# --- rule 3: Traditional -> Simplified -------------------------------------------------------------
def test_t2s_default() -> None:
    row, res = run(None, instruction="介紹一下臺灣的計程車", output="我們的軟體開發團隊很專業。")
    assert row["instruction"] == "介绍一下台湾的计程车"
    assert row["output"] == "我们的软体开发团队很专业。"
    assert res.counters["changed.t2s"] == 1


def test_t2s_taiwan_phrases() -> None:
    assert out("我們的軟體開發", NormalizeParams(t2s="tw2sp")) == "我们的软件开发"


def test_t2s_off_and_bool() -> None:
    assert out("我們的軟體", NormalizeParams(t2s="off")) == "我們的軟體"
    assert NormalizeParams.model_validate({"t2s": True}).t2s == "t2s"
    assert NormalizeParams.model_validate({"t2s": False}).t2s == "off"
    with pytest.raises(ValidationError):
        NormalizeParams.model_validate({"t2s": "s2t"})
    with pytest.raises(ValidationError):
        NormalizeParams.model_validate({"t2s_mode": "t2s"})


@pytest.mark.parametrize(
    "instruction", ["把下面这句话翻译成繁体中文", "請用正體字回答", "Answer in Traditional Chinese"]
)
def test_t2s_keeps_traditional_tasks(instruction: str) -> None:
    row, res = run(None, instruction=instruction, input="我们的软件", output="我們的軟體")
    assert row["output"] == "我們的軟體"
    assert row["instruction"] == instruction
    assert res.counters["t2s.kept_traditional"] == 1
    assert res.counters["changed.t2s"] == 0


def test_t2s_keeps_japanese_and_code() -> None:
    assert out("これは長い一日です。", None) == "これは長い一日です。"
    assert out("代码：`print('軟體')` 說明", None) == "代码：`print('軟體')` 说明"


def test_t2s_one_call_per_batch_matches_per_text() -> None:
    texts = ["我們", "軟體\n開發", "頭髮", "乾燥的天氣", "ABC", "後來"]
    res = NormalizeStage().process(table(*({"output": t} for t in texts)))
    assert res.table.column("output").to_pylist() == [
        "我们",
        "软体\n开发",
        "头发",
        "干燥的天气",
        "ABC",
        "后来",
    ]


# --- rule 4: invisible characters and HTML entities ------------------------------------------------
def test_invisible_removed() -> None:
    row, res = run(OFF, output="互联网的利\u200b\u200b弊\u2060，软\xad件\ufeff\x07")
    assert row["output"] == "互联网的利弊，软件"
    assert res.counters["changed.invisible"] == 1


def test_newlines_and_tabs_kept_cr_converted() -> None:
    assert out("第一行\r\n第二行\r第三行\n\t缩进") == "第一行\n第二行\n第三行\n\t缩进"


def test_html_entities() -> None:
    row, res = run(
        OFF,
        instruction="用适当的词替换 &lt;mask&gt;",
        output="汤姆&amp;杰瑞（Tom&nbsp;and Jerry），&#39;经典&#39;",
    )
    assert row["instruction"] == "用适当的词替换 <mask>"
    assert row["output"] == "汤姆&杰瑞（Tom and Jerry），'经典'"
    assert res.counters["changed.html_entities"] == 1


def test_cjk_punct_email_untouched() -> None:
    assert out("联系:zhang.san@example.com.") == "联系：zhang.san@example.com."


def test_html_entities_never_partial_or_in_code() -> None:
    assert out("参数 x&param 和 AT&T") == "参数 x&param 和 AT&T"
    assert out("比较 `a &lt; b` 的结果") == "比较 `a &lt; b` 的结果"


# --- rule 5: whitespace ----------------------------------------------------------------------------
def test_whitespace_between_chinese_removed() -> None:
    row, res = run(OFF, output="年终 奖发 了 ，大家 很 开心 。")
    assert row["output"] == "年终奖发了，大家很开心。"
    assert res.counters["changed.cjk_spaces"] == 1


def test_whitespace_between_chinese_and_latin_stays() -> None:
    text = "使用 Python 编程，有 23% 的人 use it。"
    assert out(text) == text


def test_whitespace_ideographic_nbsp_runs_newlines_strip() -> None:
    assert out("  第一段\u3000结束。\n\n\n\n第二段\xa0Hello   world  \n") == "第一段结束。\n\n第二段 Hello world"
    assert out("\u3000\u3000春天来了。\n\u3000\u3000夏天也来了。") == "春天来了。\n夏天也来了。"


def test_whitespace_keeps_code_indentation() -> None:
    code = "def 阶乘(n):\n    if n == 0:\n        return 1\n    return n * 阶乘(n - 1)"
    assert out(code) == code
    assert out("def f():\n\xa0\xa0\xa0\xa0return 1") == "def f():\n    return 1"


def test_cjk_spaces_switch_off() -> None:
    poem = "床前明月光 疑是地上霜"
    assert out(poem, NormalizeParams(t2s="off", cjk_spaces=False)) == poem
    assert out(poem) == "床前明月光疑是地上霜"


# --- rule 6: protected spans are byte-for-byte -----------------------------------------------------
def test_protected_spans_untouched_by_every_rule() -> None:
    fence = "```\nx  =  'ＡＢＣ'\u200b  # 注释,説明.&amp;\n\n\n\n```"
    inline = "`a\u3000b ,c`"
    url = "https://example.com/a?x=1,y=2&amp;z=３"
    text = f"看这里,{inline}\n{fence}\n链接 {url} 结束"
    result = out(text, None)
    assert fence in result and inline in result and url in result
    assert result.startswith("看这里，")


# --- rule 7: placeholder inputs --------------------------------------------------------------------
@pytest.mark.parametrize(
    "placeholder",
    ["<noinput>", "<无输入>", "无", "N/A", "&lt;无输入&gt;", "无输入。", "No input", "  没有输入  "],
)
def test_placeholder_inputs_emptied(placeholder: str) -> None:
    row, res = run(OFF, input=placeholder)
    assert row["input"] == ""
    assert res.counters["changed.placeholders"] == 1


def test_placeholder_only_in_input_and_only_whole() -> None:
    row, _ = run(OFF, instruction="无", input="无人机", output="无")
    assert (row["instruction"], row["input"], row["output"]) == ("无", "无人机", "无")


# --- rejection, history, counters ------------------------------------------------------------------
def test_empty_after_normalize_rejected_with_detail() -> None:
    t = table(
        {"instruction": "\u200b", "output": "&nbsp;\n"},
        {"instruction": "", "output": "有内容"},
        {"instruction": "", "output": "\u3000"},
    )
    res = NormalizeStage(OFF).process(t)
    assert res.reasons == ["empty_after_normalize", None, "empty_after_normalize"]
    detail = json.loads(res.details[0] or "")
    assert detail["fields"] == ["instruction", "output"]
    assert detail["emptied_by_normalize"] == ["instruction", "output"]
    assert json.loads(res.details[2] or "")["emptied_by_normalize"] == ["output"]
    # the ledger keeps what came in
    assert res.table.column("instruction").to_pylist()[0] == "\u200b"


def test_history_turns_and_system_normalized() -> None:
    history = [
        {"user": "你好,在吗?", "assistant": "在的。 有 什么 事？"},
        {"user": "ＯＫ", "assistant": "好的&amp;再见"},
    ]
    row, _ = run(None, system="你是一個助手", history=history, instruction="謝謝", output="不客氣!")
    assert row["system"] == "你是一个助手"
    assert row["history"] == [
        {"user": "你好，在吗？", "assistant": "在的。有什么事？"},
        {"user": "OK", "assistant": "好的&再见"},
    ]
    assert (row["instruction"], row["output"]) == ("谢谢", "不客气！")


def test_history_null_turn_kept_null() -> None:
    history = [None, {"user": "你好 ,在吗?", "assistant": None}]
    row, _ = run(OFF, history=history)
    assert row["history"] == [None, {"user": "你好 ,在吗？", "assistant": None}]


def test_history_null_and_traditional_request_in_turn() -> None:
    t = table({"output": "軟體"}, {"output": "軟體", "history": [{"user": "以下請用繁體回答", "assistant": "好的"}]})
    t = t.set_column(
        t.schema.get_field_index("history"),
        "history",
        pa.array([None, t["history"][1].as_py()], t.schema.field("history").type),
    )
    res = NormalizeStage().process(t)
    assert res.table.column("output").to_pylist() == ["软体", "軟體"]
    assert res.table.column("history").to_pylist()[0] is None
    assert res.counters["t2s.kept_traditional"] == 1


def test_counters_count_records_not_fields() -> None:
    t = table(
        {"instruction": "ＡＢＣ", "output": "１２３"},
        {"instruction": "ＸＹ", "output": "正常"},
        {"instruction": "没有要改的", "output": "没有要改的。"},
    )
    res = NormalizeStage(OFF).process(t)
    assert res.counters["changed.fullwidth"] == 2
    assert res.counters["changed.any"] == 2
    assert res.reasons == [None, None, None]
    assert res.table.column(SEQ_COLUMN).to_pylist() == [0, 1, 2]


def test_unchanged_batch_returns_same_columns_and_pickles() -> None:
    t = table({"instruction": "什么是三原色？", "output": "三原色是红色、蓝色和黄色。"})
    stage = NormalizeStage()
    stage.setup()
    assert stage.process(t).table.equals(t)
    clone = pickle.loads(pickle.dumps(stage))
    assert clone.process(table({"output": "軟體"})).table.column("output").to_pylist() == ["软体"]


def test_registered() -> None:
    assert STAGES["normalize"] is NormalizeStage


# --- real data -------------------------------------------------------------------------------------
def test_alpaca_zh_idempotent_and_code_kept() -> None:
    path = DATA / "alpaca_data-0-3252-中文-已完成.json"
    if not path.exists():
        pytest.skip("shared/data/alpaca_zh is absent")
    records = json.loads(path.read_text(encoding="utf-8"))[:1500]
    t = table(*records)
    stage = NormalizeStage()
    first = stage.process(t)
    second = stage.process(first.table)
    assert first.reasons == [None] * len(records)
    assert second.table.equals(first.table), "normalize must be idempotent"
    assert second.counters["changed.any"] == 0
    assert first.counters["changed.any"] > 0
    fences = re.compile(r"```.*?```|`[^`\n]+`", re.S)
    for before, after in zip(t.column("output").to_pylist(), first.table.column("output").to_pylist(), strict=True):
        for code in fences.findall(before):
            assert code in after


_TOKENS = list(
    "你好世界年终奖發了軟體，。！？；：、（）《》“”‘’…—,.!?:;=(){}  \n\t\r\u3000\xa0\u200b\xadＡＢ１２＋＝ab1"
)
_TOKENS += ["```", "`x,y`", "&lt;", "&amp;", "&nbsp;", "&#39;", "我們", "...", "これ", "\n  ", "$x,y$"]


@settings(max_examples=150, deadline=None, derandomize=True)
@given(st.lists(st.sampled_from(_TOKENS), max_size=40).map("".join))
def test_idempotent_on_mixed_text(text: str) -> None:
    stage = NormalizeStage()
    first = stage.process(table({"instruction": text, "output": "好"}))
    second = stage.process(first.table)
    assert second.table.equals(first.table)
    assert second.counters["changed.any"] == 0
