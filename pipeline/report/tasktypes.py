"""Task types of instructions, by transparent rules (for the report's diversity section).

Instruction data should cover many kinds of task, not only question answering. Each record gets exactly one
type: the first rule in :data:`RULES` whose pattern matches (a record with earlier turns is 多轮对话 before any
rule runs; a record that matches nothing is 其他). A rule is a regular expression over the instruction and the
input joined by a newline, written in the common subset of Python ``re`` and RE2 so that :func:`classify`
(one record, Python) and :func:`classify_column` (a whole Arrow batch, vectorized in Arrow's C++) agree.

The order is the rule: code before translation ("把这段 Python 代码翻译成 Java" is code), rewriting and
summarising before writing ("总结这篇文章" is a summary), classification and maths before question answering
("判断这句话的情感" is classification, "一共有多少个苹果？" is maths).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

MULTI_TURN = "多轮对话"
OTHER = "其他"


@dataclass(frozen=True)
class Rule:
    task: str
    pattern: str
    why: str  # shown in the report next to the counts


RULES: tuple[Rule, ...] = (
    Rule(
        "代码",
        r"```|代码|编程|程序|函数|脚本|正则表达式|(?i:python|java|javascript|typescript|c\+\+|golang|rust|sql|html|css"
        r"|shell|bash|json|api|excel|vba)|报错|编译|调试|bug",
        "mentions code, a programming language or a code fence",
    ),
    Rule(
        "翻译/改写",
        r"翻译|译成|译为|英译中|中译英|(?i:translate)|改写|润色|改成|转述|同义句|换一种说法|换个说法|扩写|缩写成"
        r"|纠正|更正|修正|改正|修改.{0,6}(句子|段落|语病|文章)|文言文|白话文|重写|重新表述|重新措辞|重新排列|改述"
        r"|编辑.{0,8}(句子|文本|段落|语法)|替换|转换(为|成).{0,4}(句|语|文|时态)",
        "asks to translate, rewrite, polish or correct a text",
    ),
    Rule(
        "摘要",
        r"摘要|总结|概括|归纳|提炼|主要内容|中心思想|大意|要点|(?i:summar)",
        "asks for a summary, the gist or the key points",
    ),
    Rule(
        "分类/抽取",
        r"分类|归类|属于哪|哪一类|哪类|情感倾向|情感分析|情感极性|正面还是负面|积极还是消极|提取|抽取|找出.{0,8}"
        r"(关键词|实体|人名|地名|名词|动词|形容词|日期|错误|拼写)|关键词|命名实体|实体|标注|词性|识别|挑出|选择正确|排名|分组|类别"
        r"|排序|确定.{0,10}(类型|类别|种类|主角|主题|语气|时态|词性|情感|情绪)|是.{0,6}还是",
        "asks to classify, label or extract items",
    ),
    Rule(
        "推理/数学",
        r"计算|求解|解方程|方程|等于多少|多少(个|元|块|天|米|千米|公里|岁|人|只|次|分钟|小时|克|斤)|几(个|天|岁|只|次)"
        r"|概率|证明|推理|推断|逻辑|数学|几何|面积|周长|体积|平均数|百分之|[0-9]+ *[+\-*/×÷^] *[0-9]+|应用题|谜题"
        r"|换算|华氏|摄氏|的值|求.{0,3}值|平均|二进制|十进制|降序|升序",
        "asks to compute, prove or reason step by step",
    ),
    Rule(
        "创作/写作",
        r"(写|创作|撰写|续写|起草|编写|编|拟|作)[^，。？！,.?!]{0,10}(诗|词|故事|文章|作文|文案|标题|口号|广告|剧本"
        r"|歌词|对联|小说|邮件|信|演讲稿|祝福语|段落|段话|短文|评论|简介|日记|笑话|谜语|台词|介绍|大纲|计划)"
        r"|起.{0,4}名|取.{0,3}名|创作|作文|写作|续写|写一(首|篇|段|封|份|个)|生成|创建|创造|设计|构建|构造|构思|想出|拟定"
        r"|编一|造句|演讲|口号|标语|故事|推文|对话|台词|首[^，。？]{0,8}诗",
        "asks to write or create a text (poem, story, copy, letter, …)",
    ),
    Rule(
        "问答",
        r"什么|为什么|为何|如何|怎么|怎样|哪些|哪个|哪里|哪儿|多少|谁|吗|呢|？|\?|解释|介绍|说明|是否|有没有|区别"
        r"|含义|意思|建议|推荐|列举|列出|描述|讲讲|谈谈|定义|举.{0,3}例|例子|给出|提供|说出|提及|比较|对比|找到|找出"
        r"|步骤|方法|技巧",
        "asks a question or asks to explain, describe or recommend",
    ),
)

TASK_TYPES: tuple[str, ...] = (*(r.task for r in RULES), MULTI_TURN, OTHER)
_COMPILED = tuple((r.task, re.compile(r.pattern)) for r in RULES)


def classify(instruction: str, input_text: str = "", history_turns: int = 0) -> str:
    """The task type of one record."""
    if history_turns > 0:
        return MULTI_TURN
    text = f"{instruction}\n{input_text}" if input_text else instruction
    for task, rx in _COMPILED:
        if rx.search(text):
            return task
    return OTHER


def classify_column(table: pa.Table) -> np.ndarray:
    """The task type of every row of a table with ``instruction``, ``input`` and ``history`` columns, as an
    array of indices into :data:`TASK_TYPES` (vectorized: one regex pass per rule, in Arrow)."""
    n = table.num_rows
    out = np.full(n, TASK_TYPES.index(OTHER), dtype=np.int64)
    if n == 0:
        return out
    instr = pc.fill_null(table.column("instruction"), "")
    inp = pc.fill_null(table.column("input"), "")
    text = pc.if_else(pc.equal(inp, ""), instr, pc.binary_join_element_wise(instr, inp, "\n"))
    if isinstance(text, pa.ChunkedArray):  # one regex compilation per rule, not one per chunk
        text = text.combine_chunks()
    # Apply the rules from last to first so that the first matching rule wins.
    for k in range(len(RULES) - 1, -1, -1):
        hit = pc.match_substring_regex(text, RULES[k].pattern).to_numpy(zero_copy_only=False)
        out[hit] = k
    turns = pc.fill_null(pc.list_value_length(table.column("history")), 0).to_numpy(zero_copy_only=False)
    out[turns > 0] = TASK_TYPES.index(MULTI_TURN)
    return out


def count_task_types(table: pa.Table) -> dict[str, int]:
    """How many rows of ``table`` fall in each task type (types with no rows are left out)."""
    counts = np.bincount(classify_column(table), minlength=len(TASK_TYPES))
    return {TASK_TYPES[i]: int(c) for i, c in enumerate(counts) if c}


# ---------------------------------------------------------------- leading verb–object pairs
# Words skipped before the leading verb: politeness and modal padding, not the task.
_PADDING = frozenset(
    "请 请你 请您 帮 帮我 帮忙 麻烦 麻烦你 你 您 我 我们 能 能否 能不能 可以 可否 可不可以 想 想要 需要 希望 给 给我 "
    "一下 试着 尝试 来 现在 然后".split()
)
_CLAUSE_END = re.compile(r"[，。？！；：、,.?!;:\n]")
# Instruction verbs jieba often tags as nouns or phrases at the start of a sentence (总结 n, 翻译成 l, 分析 vn).
_TASK_VERBS = frozenset(
    "总结 翻译 分析 分类 概括 归纳 解释 描述 改写 润色 列举 比较 判断 评价 推荐 设计 计算 证明 回答 生成 编写 创作 "
    "续写 提取 识别 修改 纠正 解答 撰写 写 介绍 说明 讲解 制定 规划 整理 扩写".split()
)
_VERB_SUFFIXES = ("一下", "成", "为", "出")
_LIGHT_VERBS = frozenset("进行 做 作 作出 做出 加以 给予".split())  # 对句子进行分类: the verb is 分类


def _as_verb(word: str, flag: str) -> str:
    for suffix in _VERB_SUFFIXES:
        stem = word[: -len(suffix)]
        if word.endswith(suffix) and len(stem) >= 1 and stem in _TASK_VERBS:
            return stem
    if word in _TASK_VERBS or flag.startswith("v"):
        return word
    return ""


def _clause(instruction: str) -> str:
    return _CLAUSE_END.split(instruction.strip()[:64], maxsplit=1)[0]


def verb_objects(instructions: list[str]) -> list[tuple[str, str] | None]:
    """:func:`verb_object` of each instruction."""
    return [verb_object(t) for t in instructions]


@lru_cache(maxsize=4096)  # the report tags the same sampled instructions before and after the run
def verb_object(instruction: str) -> tuple[str, str] | None:
    """The leading verb of an instruction's first clause and the head noun of its object, as in the
    Self-Instruct analysis (root verb, direct-object noun), approximated with jieba's part-of-speech tags:
    the first verb after polite padding (a light verb 进行/做 gives way to the word after it), then the last
    noun of the clause ("" when there is none). ``None`` when the clause has no verb ("量子纠缠？")."""
    from stages.segment import get_segmenter

    clause = _clause(instruction)
    verb, noun, phrase = "", "", ""
    light = False
    for raw, flag in get_segmenter().posseg(clause):
        word = raw.strip()
        if not word:
            continue
        if not verb or light:
            candidate = "" if word in _PADDING else _as_verb(word, flag)
            if light and (candidate or flag.startswith("n")):
                verb, light = candidate or word, False
            elif not verb and candidate:
                verb, light = candidate, candidate in _LIGHT_VERBS
            continue
        if flag.startswith(("n", "eng")):
            noun = word
        elif flag in ("i", "l"):
            phrase = word
    return (verb, noun or phrase) if verb else None
