"""Structure checks behind the ``quality`` stage, asked only about the few answers a cheap signal flagged.

* :func:`is_structured`: enumerations, numbered steps, worked solutions, traces, articles of law and a list
  with its ranking (``1.``, ``第一步``, ``第三条``, ``-``, lines with ``=``, ``A、B、C…`` / ``A > B > C…``) repeat
  phrases by nature: their duplicate n-grams are not degeneration (a sentence repeated back to back still is).
* :func:`repeated_lines`: the degeneration a structured answer can still show: the same line (list markers
  aside) over and over (``1. 苹果`` ``2. 苹果`` ``3. 苹果`` ``4. 苹果``).
* :func:`open_bracket_span`: how much of an answer an unclosed bracket spans. A stray ``]`` left by a
  translation (``尊敬的顾客]，谢谢你…``) or one unclosed ``(`` near the end is a flaw that lowers
  ``quality_score``; a bracket opened early and never closed breaks the answer.
* :func:`broken_json`, :func:`broken_python`: a JSON answer, or a ```python block, to a task that asks for
  JSON or Python that does not parse.
"""

from __future__ import annotations

import ast
import json
import re
from typing import Any

_MARKER = re.compile(
    r"^[ \t]*(?:[-*•·>]|\d{1,3}[.、)）:：]|[(（]?\d{1,3}[)）]|[(（]?[一二三四五六七八九十]+[)）、.]|"
    r"第[一二三四五六七八九十百\d]+[步条款章节轮项点次个]|步骤\s*\d|[A-Za-z][.)）]\s)"
)
_STRIP_MARKER = re.compile(
    r"^[ \t]*(?:[-*•·>]|\d{1,3}[.、)）:：]|[(（]?\d{1,3}[)）]|[(（]?[一二三四五六七八九十]+[)）、.]|"
    r"第[一二三四五六七八九十百\d]+[步条款章节轮项点次个][：:，,]?|步骤\s*\d+[：:]?|[A-Za-z][.)）]\s)\s*"
)
_OPEN = {"(": ")", "（": "）", "[": "]", "【": "】", "《": "》", "「": "」", "『": "』", "“": "”"}
_CLOSE = {v: k for k, v in _OPEN.items()}
_JSON_TASK = re.compile(r"(?i)\bjson\b")
_PYTHON_TASK = re.compile(r"(?i)python")
_PYTHON_FENCE = re.compile(r"```(?:python|py|python3)[ \t]*\n(.*?)```", re.S | re.I)
_NOT_A_PROGRAM = re.compile(r"^\s*(?:>>>|\.\.\.\s|[%!])", re.M)


_LIST_LINE = re.compile(r"(?:[^、,，>|/\n]+\s*[、,，>|/]\s*){4,}")


def is_structured(text: str) -> bool:
    """At least three lines that start with a list or step marker or hold an ``=`` (a worked solution), or two
    lines that are lists of five items or more (a list and its ranking)."""
    marked = lists = 0
    for line in text.split("\n"):
        if _MARKER.match(line) or "=" in line:
            marked += 1
        if _LIST_LINE.search(line):
            lists += 1
        if marked >= 3 or lists >= 2:
            return True
    return False


def repeated_lines(text: str, min_lines: int = 4) -> dict[str, Any] | None:
    """The repetition detail when at least ``min_lines`` non-empty lines, list markers stripped, hold at most a
    third distinct lines; else None."""
    lines = [_STRIP_MARKER.sub("", ln).strip() for ln in text.split("\n")]
    lines = [ln for ln in lines if ln and ln != "\ufffc"]
    if len(lines) < min_lines:
        return None
    distinct = len(set(lines))
    if distinct * 3 > len(lines):
        return None
    top = max(set(lines), key=lines.count)
    return {"signal": "repeated_lines", "value": distinct, "threshold": len(lines) // 3, "sample": top[:40]}


def open_bracket_span(text: str) -> tuple[float, str] | None:
    """(share of ``text`` after the earliest bracket that is never closed, that bracket), or None when every
    opened bracket is closed (stray closing brackets alone give None). An open “ is no broken structure:
    Chinese quotes a speech of several paragraphs with an opening mark per paragraph and one closing mark."""
    stacks: dict[str, list[int]] = {}
    for i, ch in enumerate(text):
        if ch in _OPEN:
            stacks.setdefault(ch, []).append(i)
        elif ch in _CLOSE:
            opener = _CLOSE[ch]
            if stacks.get(opener):
                stacks[opener].pop()
    left = [(pos[0], ch) for ch, pos in stacks.items() if pos and ch != "“"]
    if not left:
        return None
    at, bracket = min(left)
    return (len(text) - at) / len(text), bracket


def broken_json(answer: str, question: str) -> str | None:
    """The parse error of an answer that is JSON (the whole answer, or its one fenced block, starts with ``{`` or
    ``[``) to a task that names JSON; None when it parses or is not meant as JSON."""
    if not _JSON_TASK.search(question):
        return None
    body = answer.strip()
    if body.startswith("```"):
        inner = body.split("\n", 1)[1] if "\n" in body else ""
        body = inner.rsplit("```", 1)[0].strip()
    if not body.startswith(("{", "[")):
        return None
    try:
        json.loads(body)
    except json.JSONDecodeError as exc:
        return f"{exc.msg} (line {exc.lineno}, column {exc.colno})"
    return None


def broken_python(answer: str, question: str) -> str | None:
    """The syntax error of a ```python block in the answer to a task that names Python; None when every such
    block parses. Blocks of an interactive session (``>>>``) or a notebook (``%magic``, ``!pip``) are not
    programs and are skipped."""
    if not _PYTHON_TASK.search(question) or "```" not in answer:
        return None
    for block in _PYTHON_FENCE.findall(answer):
        if _NOT_A_PROGRAM.search(block):
            continue
        try:
            ast.parse(block)
        except SyntaxError as exc:
            return f"{exc.msg} (line {exc.lineno})"
        except ValueError as exc:  # a NUL byte
            return str(exc)
    return None
