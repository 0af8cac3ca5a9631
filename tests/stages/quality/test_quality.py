"""Tests of the quality stage on Chinese fixtures: every reason, and the short or repetitive answers that stay."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from pydantic import ValidationError

from pipeline.registry import STAGES
from stages.base import StageResult
from stages.quality.stage import QualityParams, QualityStage
from tests.records import canonical_table

ALPACA_ZH = Path(__file__).resolve().parents[3] / ".." / "shared" / "data" / "alpaca_zh"


def table(*rows: tuple[str, str, str] | dict[str, Any]) -> pa.Table:
    """Records from (instruction, input, output) triples or dicts of canonical fields."""
    return canonical_table(
        dict(zip(("instruction", "input", "output"), r, strict=True)) if isinstance(r, tuple) else r for r in rows
    )


def run(*rows: tuple[str, str, str] | dict[str, Any], **params: Any) -> StageResult:
    return QualityStage(QualityParams(**params)).process(table(*rows))


def reason(row: tuple[str, str, str] | dict[str, Any], **params: Any) -> str | None:
    return run(row, **params).reasons[0]


def detail(result: StageResult, i: int = 0) -> dict[str, Any]:
    text = result.details[i]
    assert text is not None
    return dict(json.loads(text))


# ------------------------------------------------------------------------------------------------ must stay
MUST_STAY = [
    ("中国的首都是哪里？", "", "北京。"),
    ("判断这句话的情感倾向。", "这部电影太好看了！", "正面"),
    ("1加1等于几？", "", "2"),
    ("用一个成语形容人很多。", "", "人山人海"),
    ("背诵李白的《静夜思》。", "", "床前明月光，疑是地上霜。\n举头望明月，低头思故乡。"),
    (
        "写出汉乐府《江南》。",
        "",
        "江南可采莲，莲叶何田田。鱼戏莲叶间。鱼戏莲叶东，鱼戏莲叶西，鱼戏莲叶南，鱼戏莲叶北。",
    ),
    (
        "背诵《诗经·式微》。",
        "",
        "式微，式微，胡不归？微君之故，胡为乎中露！\n式微，式微，胡不归？微君之躬，胡为乎泥中！",
    ),
    ("列出五种水果。", "", "1. 苹果\n2. 香蕉\n3. 橙子\n4. 葡萄\n5. 西瓜"),
    (
        "列出四个编程学习目标。",
        "",
        "1. 学习Python编程的基础知识\n2. 学习Java编程的基础知识\n3. 学习Go编程的基础知识\n4. 学习Rust编程的基础知识",
    ),
    ("用 Python 打印四次问候。", "", "```python\nprint('你好')\nprint('你好')\nprint('你好')\nprint('你好')\n```"),
    (
        "生成一个两行三列的 HTML 表格。",
        "",
        "<table>\n  <tr>\n    <td>单元格</td>\n    <td>单元格</td>\n    <td>单元格</td>\n  </tr>\n"
        "  <tr>\n    <td>单元格</td>\n    <td>单元格</td>\n    <td>单元格</td>\n  </tr>\n</table>",
    ),
    ("数据清洗有哪些步骤？", "", "主要步骤是：1）处理缺失值，2）处理异常值，以及3）统一数据格式。"),
    ("HTML 中哪个标签表示加粗？", "", "<b>"),
    ("生成一个包含符号的强密码。", "", "B9u(h#-g7WH1y"),
    ("用 ASCII 字符画一个笑脸。", "", ":-)"),
    ("把“我爱你”翻译成摩尔斯电码。", "", ".. / .-.. --- ...- . / -.-- --- ..-"),
    ("选一个表情符号表达开心。", "", "😆"),
    ("为公司设计一个标志。", "", "![标志](https://example.com/logo.png)"),
    ("总结这段话。", "", "研究发现，三种算法（ANN、SVM 和 RF）都很准确，其中 RF 最好。"),
]


@pytest.mark.parametrize("row", MUST_STAY, ids=[r[2][:12] for r in MUST_STAY])
def test_valid_answers_stay(row: tuple[str, str, str]) -> None:
    assert reason(row) is None


def test_valid_answers_stay_with_truncated_on() -> None:
    short = [r for r in MUST_STAY if len(r[2]) < 40]
    assert run(*short, truncated=True).reasons == [None] * len(short)


def test_already_correct_sentence_is_not_an_echo() -> None:
    res = run(
        ("改正下面句子中的语法错误。", "我昨天去了图书馆。", "我昨天去了图书馆。"),
        ("从下列词语中选出一种水果。", "苹果", "苹果"),
        ("将这条评论分类为“正面”或“负面”：这家餐厅的服务很好。", "", "正面"),
        ("这句话的情感是“积极”还是“消极”？", "", "积极"),
    )
    assert res.reasons == [None] * 4
    assert res.counters["echo_exempt"] == 4


def test_song_chorus_is_not_repetition() -> None:
    chorus = "我们的情景喜剧，美好的时光滚滚而来。\n全天候的朋友创造欢乐的时刻。\n"
    song = (
        f"第一节：\n笑声回荡在大厅里。\n回忆无处不在。\n合唱：\n{chorus * 3}第二节：\n生活太短。\n合唱：\n{chorus * 3}"
    )
    res = run(("创作一首情景喜剧的主题曲。", "", song))
    assert res.reasons == [None]
    assert res.counters["repetition_exempt"] == 1


# ------------------------------------------------------------------------------------------------ reasons
@pytest.mark.parametrize("answer", ["", "   \n ", "……", "。"])
def test_empty_output(answer: str) -> None:
    res = run(("介绍一下长城。", "", answer))
    assert res.reasons == ["empty_output"]
    assert detail(res)["field"] == "output"


@pytest.mark.parametrize(
    "answer",
    [
        "N/A",
        "无",
        "略",
        "不适用",
        "<nooutput>",
        "&lt;无输入&gt;",
        "<插入流程图>",
        "<nooutput> 该指令需要生成图像，无法完成。",
    ],
)
def test_placeholder_output(answer: str) -> None:
    res = run(("为公司设计一个标志。", "", answer))
    assert res.reasons == ["placeholder_output"]
    assert detail(res)["check"] == "placeholder_output"


def test_placeholders_are_a_recipe_parameter() -> None:
    assert reason(("这句话里有错别字吗？", "他很高兴。", "无"), placeholders=("N/A", "略")) is None


@pytest.mark.parametrize(
    ("row", "matched"),
    [
        (("将下面的句子翻译成法语。", "我喜欢远足。", "我喜欢远足。"), "input"),
        (("把下面的句子改成被动语态。", "他写了一封信。", "他写了一封信"), "input"),
        (("把“早上好”翻译成英语。", "", "早上好"), "instruction_quote"),
        (("用过去时改写下面的句子：他每天坐公交车上班。", "", "他每天坐公交车上班。"), "instruction_after_colon"),
        (("写一首关于秋天的诗。", "", "一首关于秋天的诗"), "instruction"),
    ],
)
def test_echo(row: tuple[str, str, str], matched: str) -> None:
    res = run(row)
    assert res.reasons == ["echo"]
    assert detail(res)["matched"] == matched


def test_echo_switch() -> None:
    assert reason(("将下面的句子翻译成法语。", "我喜欢远足。", "我喜欢远足。"), echo=False) is None


def test_repetition_tandem_sentences() -> None:
    loop = "我是一个人工智能助手。" + "我可以回答你的问题。" * 8
    res = run(("介绍一下你自己。", "", loop))
    assert res.reasons == ["repetition"]
    d = detail(res)
    assert d["signal"] == "tandem" and d["value"] >= d["threshold"]
    assert d["sample"].startswith("我可以回答你的问题")


def test_repetition_answer_said_twice() -> None:
    twice = "昨晚我睡了十个小时。\n昨晚我睡了十个小时。"
    assert reason(("用两种不同的方式表达同一件事。", "", twice)) == "repetition"


def test_repetition_character_loop() -> None:
    assert reason(("讲个笑话。", "", "从前有个人去买东西，" + "哈" * 30)) == "repetition"
    assert reason(("讲个笑话。", "", "从前有个人去买东西，哈哈哈哈。")) is None


def test_repetition_duplicate_ngrams() -> None:
    paragraph = "光合作用是植物利用阳光把二氧化碳和水转化为葡萄糖并释放氧气的过程，它为地球上几乎所有生命提供能量。"
    res = run(("解释光合作用。", "", f"{paragraph}\n简单地说：\n{paragraph}"))
    assert res.reasons == ["repetition"]
    assert detail(res)["signal"] == "dup_10gram_han"


def test_too_long_counts_every_field_and_turn() -> None:
    turn = {"user": "请介绍一下杭州。", "assistant": "杭州是浙江省的省会，以西湖闻名。"}
    rec = {"instruction": "再说说苏州。", "output": "苏州以园林著称，拙政园是其中的代表。", "history": [turn]}
    res = run(rec, max_chars=40)
    assert res.reasons == ["too_long"]
    assert detail(res)["value"] == sum(len(x) for x in (*turn.values(), rec["instruction"], rec["output"]))
    assert run(rec, max_chars=100).reasons == [None]


@pytest.mark.parametrize(
    ("answer", "what"),
    [
        ("示例代码如下：\n```python\nprint('你好')\n", "code_fence"),
        ("原因主要有三个（经济、政治和文化三个方面共同作用的结果。", "open_bracket"),
        ("以下是书单：【一、《红楼梦》 二、《西游记》 三、《水浒传》 四、《三国演义》", "open_bracket"),
    ],
)
def test_unbalanced(answer: str, what: str) -> None:
    res = run(("回答问题。", "", answer))
    assert res.reasons == ["unbalanced"]
    assert detail(res)["what"] == what


@pytest.mark.parametrize(
    "answer",
    [
        "尊敬的顾客]，\n\n谢谢你让我们注意到这一点。对于产品问题，我们深表歉意。我们会尽快处理您的退款申请。",
        "奇幻小说的标题可以是“秘密”银塔》和《远古之门》。",
        "美国历史的关键点包括美国革命 (1775-1783)、内战 (1861-1865)、工业革命 (19 世纪末。",
    ],
)
def test_a_stray_bracket_is_a_flag_on_the_score_not_a_drop(answer: str) -> None:
    res = run(("回答问题。", "", answer))
    assert res.reasons == [None]
    assert res.counters["flag.stray_bracket"] == 1
    clean = run(("回答问题。", "", answer.replace("]", "").replace("》和", "和").replace("(19 世纪末", "19 世纪末")))
    assert res.table.column("quality_score")[0].as_py() < clean.table.column("quality_score")[0].as_py()


def test_json_that_does_not_parse_is_unbalanced_when_the_task_asks_for_json() -> None:
    broken = '{"姓名": "张三", "年龄": 30, "城市": "北京"'
    res = run(("把下面的信息转换成 JSON 格式。", "张三，30岁，住在北京。", broken))
    assert res.reasons == ["unbalanced"]
    assert detail(res)["what"] in ("json", "open_bracket")
    fenced = '```json\n{"姓名": "张三", "年龄": 30,}\n```'
    res = run(("把下面的信息转换成 JSON 格式。", "张三，30岁", fenced))
    assert res.reasons == ["unbalanced"] and detail(res)["what"] == "json"
    good = '```json\n{"姓名": "张三", "年龄": 30}\n```'
    assert run(("把下面的信息转换成 JSON 格式。", "张三，30岁", good)).reasons == [None]
    assert run(("介绍一下 JSON。", "", "JSON 是一种数据格式，例如 {a: 1 这样的写法是错误的。")).reasons == [None]


def test_truncated_is_off_by_default() -> None:
    cut = ("分析经济下行的原因。", "", "经济下行的原因主要有以下几点：首先是外部需求减弱，其次是国内消费不足，")
    assert reason(cut) is None
    assert reason(cut, truncated=True) == "truncated"
    assert reason(("推荐一本书的书名。", "", "唐诗三百首"), truncated=True) is None


def test_history_answers_are_checked() -> None:
    rec = {
        "instruction": "谢谢。",
        "output": "不客气！",
        "history": [{"user": "画一张猫的图片。", "assistant": "<nooutput>"}],
    }
    res = run(rec)
    assert res.reasons == ["placeholder_output"]
    assert detail(res)["field"] == "history[0].assistant"


# ------------------------------------------------------------------------------------------------ score
def test_quality_score_column_and_order() -> None:
    loop = "我可以回答你的问题。" * 6
    res = run(
        ("中国的首都是哪里？", "", "北京。"),
        ("中国的首都是哪里？", "", "北京"),
        ("介绍一下你自己。", "", "我是一个人工智能助手，可以回答问题、写作和翻译。"),
        ("介绍一下你自己。", "", "我是一个人工智能助手，可以回答问题、写作和翻译。" + loop),
        ("介绍一下长城。", "", "N/A"),
        ("将下面的句子翻译成法语。", "我喜欢远足。", "我喜欢远足。"),
    )
    assert res.table.schema.field("quality_score").type == pa.float64()
    s = res.table.column("quality_score").to_pylist()
    assert all(0.0 <= x <= 1.0 for x in s)
    assert s[0] > s[1]  # a finished sentence beats the bare word
    assert s[2] > s[3]  # the twin without the loop wins
    assert s[4] == 0.0
    assert s[5] < s[0]
    assert sum(v for k, v in res.counters.items() if k.startswith("score_bucket.")) == 6


def test_process_keeps_rows_and_replaces_an_old_score() -> None:
    t = table(("中国的首都是哪里？", "", "北京。"), ("介绍一下长城。", "", ""))
    first = QualityStage().process(t)
    again = QualityStage().process(first.table)
    assert again.table.column_names.count("quality_score") == 1
    assert again.table.column("id").to_pylist() == t.column("id").to_pylist()
    assert again.reasons == ["empty_output", None][::-1]


def test_empty_batch_and_null_fields() -> None:
    empty = QualityStage().process(table())
    assert empty.table.num_rows == 0 and "quality_score" in empty.table.column_names
    nulls = run({"instruction": None, "input": None, "output": None, "history": None})
    assert nulls.reasons == ["empty_output"]
    assert nulls.table.column("quality_score").to_pylist() == [0.0]


# ------------------------------------------------------------------------------------------------ params
def test_params_are_validated() -> None:
    with pytest.raises(ValidationError, match="regular expression"):
        QualityParams(echo_ok_instructions="(未闭合")
    with pytest.raises(ValidationError):
        QualityParams(max_tandem_frac=1.5)
    with pytest.raises(ValidationError):
        QualityParams(unknown_key=True)  # type: ignore[call-arg]


def test_registered() -> None:
    assert STAGES["quality"] is QualityStage
    names = list(STAGES)
    assert names.index("quality") > names.index("normalize")


# ------------------------------------------------------------------------------------------------ real data
@pytest.mark.skipif(not ALPACA_ZH.is_dir(), reason="shared Alpaca-zh data not present")
def test_alpaca_zh_file() -> None:
    path = ALPACA_ZH / "alpaca_data-6382-9407-（jlh）中文-已完成.json"
    rows = json.loads(path.read_text(encoding="utf-8"))
    res = run(*[(r["instruction"], r.get("input", ""), r["output"]) for r in rows])
    by_row = dict(enumerate(res.reasons))
    assert by_row[1224] == "repetition"  # 昨晚我睡了 10 个小时。×2, asked for two different ways
    assert by_row[1739] == "placeholder_output"  # &lt;草图/绘图&gt;
    assert by_row[1310] == "echo"  # "translate into Spanish", output = input
    dropped = sum(r is not None for r in res.reasons)
    assert 0 < dropped < 0.03 * len(rows)


# ---- issue 20: structured answers repeat phrases by nature -------------------------------------------------


@pytest.mark.parametrize(
    ("question", "answer"),
    [
        (
            "给定一个包含 10 个对象的列表，根据耐用性从最耐用到最不耐用排序。",
            "锤子、窗户、桌子、椅子、笔记本电脑、电话、订书机、钢笔、铅笔、回形针\n"
            "- 锤子 > 窗户 > 桌子 > 椅子 > 笔记本电脑 > 电话 > 订书机 > 钢笔 > 铅笔 > 回形针",
        ),
        (
            "用冒泡排序对 [5, 3, 8, 1] 排序，写出每一轮。",
            "第一轮：比较相邻的两个数字，如果前面的数字大于后面的数字就交换它们的位置：[3, 5, 1, 8]\n"
            "第二轮：比较相邻的两个数字，如果前面的数字大于后面的数字就交换它们的位置：[3, 1, 5, 8]\n"
            "第三轮：比较相邻的两个数字，如果前面的数字大于后面的数字就交换它们的位置：[1, 3, 5, 8]\n"
            "排序完成，结果为 [1, 3, 5, 8]。",
        ),
        (
            "解方程组：x + y = 10，x - y = 2。",
            "第一步：将两个方程相加，得到方程两边同时相加后的结果 2x = 12。\n"
            "第二步：将方程两边同时除以二，得到方程两边同时相除后的结果 x = 6。\n"
            "第三步：将 x = 6 代入第一个方程，得到方程两边同时相减后的结果 y = 4。\n"
            "所以方程组的解是 x = 6，y = 4。",
        ),
        (
            "简要介绍广东省关于醉酒驾驶的处罚规定。",
            "第一条 醉酒驾驶机动车的，由公安机关交通管理部门约束至酒醒，吊销机动车驾驶证，依法追究刑事责任。\n"
            "第二条 醉酒驾驶营运机动车的，由公安机关交通管理部门约束至酒醒，吊销机动车驾驶证，依法追究刑事责任。\n"
            "第三条 醉酒驾驶校车的，由公安机关交通管理部门约束至酒醒，吊销机动车驾驶证，依法追究刑事责任。",
        ),
    ],
)
def test_enumerations_solutions_traces_and_legal_texts_are_not_repetition(question: str, answer: str) -> None:
    res = run((question, "", answer))
    assert res.reasons == [None]


def test_a_degenerate_enumerated_loop_is_still_repetition() -> None:
    loop = "\n".join(f"{i}. 苹果是一种很好吃的水果，富含维生素。" for i in range(1, 9))
    res = run(("列出八种不同的水果。", "", loop))
    assert res.reasons == ["repetition"]
    assert detail(res)["signal"] == "repeated_lines"


def test_a_sentence_said_twice_in_a_row_is_still_repetition() -> None:
    res = run(
        (
            "产生两种不同的方式来表达同一件事。",
            "我昨晚睡了 10 个小时。",
            "昨晚我睡了 10 个小时。\n昨晚我睡了 10 个小时。",
        )
    )
    assert res.reasons == ["repetition"]


def test_python_that_does_not_parse_is_unbalanced_when_the_task_asks_for_python() -> None:
    broken = "下面是代码：\n```python\ndef add(a, b)\n    return a + b\n```"
    res = run(("用 Python 写一个加法函数。", "", broken))
    assert res.reasons == ["unbalanced"] and detail(res)["what"] == "python"
    good = "下面是代码：\n```python\ndef add(a, b):\n    return a + b\n```"
    assert run(("用 Python 写一个加法函数。", "", good)).reasons == [None]
    session = "在解释器里试一下：\n```python\n>>> 1 + 1\n2\n```"
    assert run(("用 Python 计算 1 加 1。", "", session)).reasons == [None]
