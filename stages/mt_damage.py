"""The ``mt_damage`` stage: drop answers whose code a machine translation broke.

Chinese instruction sets made by machine-translating English ones (Alpaca-zh and its kin) translate code as if
it were prose: ``return str.upper()`` becomes ``返回 str.upper()``, ``for num in numbers:`` becomes
``对于数字中的数字：``, ``return mean`` becomes ``回归均值`` and ``def calculate_mean(numbers):`` becomes
``def calculate_mean（数字）：``. Such code cannot run, and a model trained on it learns to write it.

Checks (each switched in the recipe; the first that fires is the reason; ``detail`` quotes the offending line):

``mt_broken_code``
    A line of code that starts with a translated keyword (``返回``, ``如果``, ``否则``, ``对于``, ``当``, ``定义``,
    ``打印``, ``导入``, ``尝试``, ``除了`` …) and still holds code (an ASCII identifier with an operator, a call,
    an index or an attribute, or a final ``:``/``：``/``{``), or a translated loop header
    (``对于数字中的数字：``), or an indented translated ``return`` (``回归均值``) in a block of code. Looked for
    inside fences, and outside them only when the answer has code (a fence or an ASCII statement such as
    ``def f(x):``), the task asks for code (代码, 函数, 程序, Python …) or the line itself is indented code.
``mt_fullwidth_code``
    Full-width punctuation (``（）：，；“”％｛｝［］＝``) outside string literals and comments in a line of code
    (``def calculate_mean（数字）：``, ``print（"你好"）``).
``mt_translated_placeholder``
    A format placeholder whose name was translated (``f"你好，{名字}"``, ``"{姓名}".format(name=n)``,
    ``%(名字)s``) in code that never defines that name.

Not checked: tasks that ask for pseudocode (伪代码, pseudocode, 算法步骤), whose keywords may be Chinese, and
prose (a line that ends in 。, or has no code in it: ``当 y = 3 时，x = 10。`` is arithmetic). An English
sentence left inside a Chinese answer (a half-translated record) is the language stage's ``code_switching``
(its ``detail`` has the ``clause``), which runs before this stage.

Counters: ``code_answers`` (answers with Han characters that hold code), ``pseudocode_exempt``,
``found.<reason>`` (answers the check fired on, also those a previous check already claimed).
"""

from __future__ import annotations

import re
from typing import ClassVar

from pydantic import Field

from stages.base import StageParams
from stages.filter import Drop, Record, RecordFilter

# Chinese renderings of Python/JS/C keywords that machine translation produces at the start of a statement.
_KW = (
    r"返回|回归|否则如果|否则|别的|如果|对于|自定义|埃利夫|定义|打印|导入|进口|尝试|试试|除了|最后|终于|而|当|从|产量|屈服|引发|提高|断言|"
    r"通过|继续|打破|中断|全局|让|常量|变量|函数|类"
)
_KW_LINE = re.compile(rf"^[ \t]*(?:{_KW})(?=[ \t(（]|[A-Za-z_])")
_KW_START = re.compile(rf"^[ \t]*({_KW})")
# Code left in the line: an operator next to an ASCII operand, a call, an index, an attribute, or a block opener.
_CODE_LEFT = re.compile(
    r"[A-Za-z_0-9)\]]\s*(?:==|!=|<=|>=|[<>%+*/-]|=)\s*[A-Za-z_0-9(\[\"']"
    r"|[A-Za-z_]\w*\s*[(（\[.]\w*|[:：{]\s*$|^[ \t]*\S+\s*\($"
)
_LOOP_HEADER = re.compile(
    r"^[ \t]*(?:对于|为)\s*[^\s，。：:]{1,12}?\s*(?:中的|在|里的|的)\s*[^\s，。]{1,12}?\s*[：:]\s*$"
)
_RETURN_LINE = re.compile(r"^[ \t]+(?:返回|回归)\s*\S")
_ASCII_STATEMENT = re.compile(
    r"^[ \t]*(?:def|class|for|while|if|elif|else|return|import|from|print|function|var|let|const|public|private|"
    r"static|void|int|try|except|switch|case)\b[^\n]*(?:[:;{)（）：；]|\breturn\b)[ \t]*$|[;{}；][ \t]*$",
    re.M,
)
_FENCE = re.compile(r"```[^\n]*\n(.*?)(?:```|\Z)", re.S)
_STRINGS = re.compile(r"\"(?:[^\"\\\n]|\\.)*\"|'(?:[^'\\\n]|\\.)*'|`[^`\n]*`")
_COMMENT = re.compile(r"(?:#|//|/\*|<!--).*$|^\s*\*.*$")
_FULLWIDTH = re.compile(r"[（）：，；“”％｛｝［］＝]")
_CODE_LINE_START = re.compile(
    r"^[ \t]*(?:(?:def|class)\s+[A-Za-z_]\w*|(?:for|while|if|elif|else|try|except|with)\b\s*[A-Za-z_(\[（]?|"
    r"(?:return|print|console\.log|printf|System\.out\.println)\b|[A-Za-z_][\w.]*\s*(?:（|\(|=[^=]))"
)
_PLACEHOLDER = re.compile(r"\{([\u3400-\u9fff][\u3400-\u9fff\w]*)\}|%\(([\u3400-\u9fff][\u3400-\u9fff\w]*)\)[sdfr]")
_FORMAT_USE = re.compile(r"\bf[\"']|\.format\(|%\(")
_HAN = re.compile(r"[\u3400-\u9fff]")
_HAN_OR_FULLWIDTH = re.compile(r"[\u3400-\u9fff（）：，；“”％｛｝［］＝]")
_CODE_TASK = re.compile(r"(?i)代码|程序|函数|脚本|编程|python|java|c\+\+|javascript|\bjs\b|\bsql\b|golang|\bphp\b")
_PSEUDO_TASK = re.compile(r"(?i)伪代码|伪码|pseudo|算法步骤|用中文描述")


class MTDamageParams(StageParams):
    """Which checks run (the module docstring says what each looks for)."""

    broken_code: bool = True
    fullwidth_code: bool = True
    translated_placeholder: bool = True
    check_history: bool = Field(default=True, description="also check assistant turns of the history")


class MTDamageStage(RecordFilter):
    """Drop answers whose code was machine-translated (see the module docstring)."""

    name: ClassVar[str] = "mt_damage"
    Params: ClassVar[type[StageParams]] = MTDamageParams
    reads: ClassVar[tuple[str, ...]] = ("instruction", "output", "history")

    def __init__(self, params: StageParams | None = None) -> None:
        super().__init__(params)
        if not isinstance(self.params, MTDamageParams):
            raise TypeError(f"MTDamageStage needs MTDamageParams, got {type(self.params).__name__}")
        self.p = self.params

    def judge(self, record: Record) -> Drop | None:
        """The first damage in the output, else in the history's answers (each answer is still counted)."""
        answers = [("output", record["output"], record["instruction"])]
        if self.p.check_history:
            for t, turn in enumerate(record["history"]):
                answers.append((f"history[{t}].assistant", turn["assistant"] or "", turn["user"] or ""))
        drop: Drop | None = None
        for field, answer, prompt in answers:
            hit = self.judge_answer(answer, prompt)
            if hit is not None and drop is None:
                drop = Drop(hit[0], {"field": field, **hit[1]})
        return drop

    def judge_answer(self, answer: str, prompt: str) -> tuple[str, dict[str, str]] | None:
        """The first damage found in one answer, as (reason, detail fields), or None. Cheap exits first: an
        answer without ASCII letters, or without Han characters, holds no translated code."""
        if not answer or not _HAN_OR_FULLWIDTH.search(answer) or not re.search(r"[A-Za-z]", answer):
            return None
        fenced = [ln for block in _FENCE.findall(answer) for ln in block.split("\n")]
        has_code = bool(fenced) or _ASCII_STATEMENT.search(answer) is not None
        has_code = has_code or _CODE_TASK.search(prompt) is not None  # a code task's answer is code
        if not has_code and not re.search(r"^[ \t]+\S", answer, re.M):
            return None
        if has_code:
            self.count("code_answers")
        outside = _FENCE.sub("\n", answer).split("\n") if fenced else answer.split("\n")
        found: list[tuple[str, dict[str, str]]] = []
        if _PSEUDO_TASK.search(prompt):
            self.count("pseudocode_exempt")
            return None
        if self.p.broken_code:
            line = self._translated_keyword(fenced, outside, has_code)
            if line is not None:
                kw = _KW_START.match(line)
                found.append(("mt_broken_code", {"line": line.strip()[:120], "keyword": kw.group(1) if kw else ""}))
        if self.p.fullwidth_code:
            line = next((ln for ln in fenced + outside if _fullwidth_in_code(ln)), None)
            if line is not None:
                found.append(("mt_fullwidth_code", {"line": line.strip()[:120]}))
        if self.p.translated_placeholder and ("{" in answer or "%(" in answer):
            hit = _translated_placeholder(fenced + [ln for ln in outside if _CODE_LINE_START.match(ln)], answer)
            if hit is not None:
                found.append(("mt_translated_placeholder", {"line": hit[0].strip()[:120], "placeholder": hit[1]}))
        for reason, _ in found:
            self.count(f"found.{reason}")
        return found[0] if found else None

    @staticmethod
    def _translated_keyword(fenced: list[str], outside: list[str], has_code: bool) -> str | None:
        """The first line of code that starts with a translated keyword."""
        for lines, in_code in ((fenced, True), (outside, has_code)):
            prev = ""
            block = False  # a block opener (def f():, for …:, {) seen: an indented 返回/回归 is a statement
            for line in lines:
                s = line.rstrip()
                if s and not s.endswith(("。", "！", "？")) and _HAN.search(s):
                    indented = s[:1] in (" ", "\t")
                    if _KW_LINE.match(s) and (in_code or indented) and _CODE_LEFT.search(_STRINGS.sub('""', s)):
                        return s
                    if (in_code or indented) and _LOOP_HEADER.match(s):
                        return s
                    if (in_code or indented) and _RETURN_LINE.match(s) and (block or prev.endswith((":", "：", "{"))):
                        return s
                if s.strip():
                    prev = s
                    block = block or s.endswith((":", "：", "{"))
        return None


def _fullwidth_in_code(line: str) -> bool:
    """A line of code (it starts like a definition, a statement, a call or an assignment) with full-width
    punctuation outside its string literals and comments."""
    if not _FULLWIDTH.search(line) or not _CODE_LINE_START.match(line):
        return False
    bare = _COMMENT.sub("", _STRINGS.sub('""', line))
    if not _FULLWIDTH.search(bare):
        return False
    head = bare.lstrip()
    if re.match(r"(?:def|class)\s", head):
        return True  # a definition, Han parameters and all (def calculate_mean（数字）：)
    # Prose that starts with an English word or a name ("for 循环：", "XP（极限编程）软件开发…") is not code: a
    # call or a statement here holds no Han outside its strings.
    return not _HAN.search(head)


def _translated_placeholder(code: list[str], text: str) -> tuple[str, str] | None:
    """A format placeholder with a Han name in a formatting line of ``code``, when ``text`` (the whole answer)
    never assigns that name."""
    for line in code:
        if not _FORMAT_USE.search(line):
            continue
        for m in _PLACEHOLDER.finditer(line):
            name = m.group(1) or m.group(2)
            if not re.search(rf"(?<![\w\u3400-\u9fff]){re.escape(name)}\s*=(?!=)|\b{re.escape(name)}\s*=", text):
                return line, name
    return None
