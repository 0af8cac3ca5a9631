"""Column mapping (``fields``, with dotted paths) and the common Chinese SFT layouts, recognised per file.

A *layout* says how a file's records map onto the three input formats of :mod:`pipeline.read.formats` (alpaca,
sharegpt, openai). The reader looks at the first record of a file (when the recipe's ``format`` is ``auto`` and
no ``fields`` are given) and uses the first layout that matches for the whole file; the terminal summary and
``report.json`` (``inputs[].layout``) say which it was. Layouts, most specific first:

=================  ===========================================================  ==================================
layout             keys of a record                                             maps to
=================  ===========================================================  ==================================
``belle_seed``     ``instruction``, ``instances: [{input, output}]``            instruction, ``instances.0.input``
                   (BELLE ``zh_seed_tasks.json``, Self-Instruct seeds)          / ``.output``
``belle_eval``     ``question``, ``std_answer`` (BELLE ``eval_set.json``)        instruction, output
``firefly``        ``kind``, ``input``, ``target`` (Firefly-train-1.1M)          ``input`` is the instruction
``coig_exam``      ``textbox_q_instruction``, ``textbox_q_context``,             instruction; input = context +
                   ``textbox_question``, ``textbox_answer``,                    question; output = answer, then
                   ``textbox_answer_analysis`` (COIG ``exam_instructions``)      the analysis after a blank line
``moss``           ``chat: {turn_1: {Human, MOSS, ...}}``, ``meta_instruction``  a conversation (tool turns: below)
``pairs``          ``conversation: [{human, assistant}]`` (Firefly multi-turn)   a conversation
``sharegpt``       ``conversations: [{from, value}]``, optional ``system``      (roles human/gpt or user/assistant)
``openai``         ``messages: [{role, content}]`` (OpenAI / ChatML)            (system, user, assistant)
``alpaca``         ``instruction``, ``input``, ``output``, ``system``,           LLaMA-Factory alpaca; COIG-CQIA and
                   ``history`` (extra keys such as ``task_type`` are ignored)   COIG-PC records are alpaca-shaped
``prompt_response`` ``prompt`` | ``query`` | ``question``  +  ``response`` |    instruction, output
                   ``answer`` | ``completion`` | ``chosen``
=================  ===========================================================  ==================================

**Tool turns** (OpenAI ``role: tool`` / ``function`` messages or assistant messages with ``tool_calls``;
ShareGPT ``function_call`` / ``observation`` turns; MOSS turns whose ``Commands`` or ``Tool Responses`` are
not ``None``) have no place in the canonical record (system, history of user/assistant pairs, instruction,
output). Dropping them silently would train the model to answer without the tool's result, so such a
conversation is rejected at ``read`` with the reason ``conversation_tool_turns`` (the detail names the turn).

``fields`` (recipe) / ``--fields`` (command line) map canonical names to keys of your records; a key may be a
dotted path into nested objects and lists (``instances.0.output``). Given ``fields``, no layout is guessed.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from schemas.errors import ConfigError

CANONICAL_FIELDS = ("system", "instruction", "input", "output", "history", "conversations", "messages")
_MISSING = object()


def parse_fields(text: str) -> dict[str, str]:
    """``instruction=question,output=std_answer`` -> ``{"instruction": "question", "output": "std_answer"}``."""
    out: dict[str, str] = {}
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        name, sep, path = part.partition("=")
        if not sep or not name.strip() or not path.strip():
            raise ConfigError(
                f"--fields: '{part}' is not CANONICAL=KEY; write e.g. --fields instruction=question,output=answer"
            )
        out[name.strip()] = path.strip()
    if not out:
        raise ConfigError("--fields is empty; write e.g. --fields instruction=question,output=answer")
    return out


def check_fields(fields: Mapping[str, str], where: str) -> None:
    bad = [k for k in fields if k not in CANONICAL_FIELDS]
    if bad:
        raise ConfigError(
            f"{where}: unknown canonical field(s) {bad}; allowed: {', '.join(CANONICAL_FIELDS)}"
            " (map them as canonical_name: name_in_your_file)"
        )


def get_path(obj: Any, path: str) -> Any:
    """The value at a dotted ``path`` (``instances.0.output``); a key holding a dot is found whole first."""
    if isinstance(obj, Mapping) and path in obj:
        return obj[path]
    cur = obj
    for step in path.split("."):
        if isinstance(cur, Mapping) and step in cur:
            cur = cur[step]
        elif isinstance(cur, list) and re.fullmatch(r"-?\d+", step) and -len(cur) <= int(step) < len(cur):
            cur = cur[int(step)]
        else:
            return _MISSING
    return cur


def apply_fields(obj: dict[str, Any], fields: Mapping[str, str]) -> dict[str, Any]:
    """The record with each canonical name set from its mapped key or path. A mapped top-level key that is not
    itself a target is removed (so ``instruction: input`` does not leave the text in ``input`` too)."""
    if not fields:
        return obj
    values = {canonical: get_path(obj, path) for canonical, path in fields.items()}
    out = dict(obj)
    for path in fields.values():
        if path in out and path not in fields:
            out.pop(path)
    for canonical, value in values.items():
        if value is _MISSING:
            out.pop(canonical, None)  # reported as the canonical key missing, with the mapping named
        else:
            out[canonical] = value
    return out


def _moss(obj: dict[str, Any]) -> dict[str, Any]:
    """A MOSS record as a ShareGPT conversation (``from``: human / gpt, and ``tool`` for a turn that used one)."""
    chat = obj.get("chat")
    if not isinstance(chat, Mapping):
        return obj
    turns: list[dict[str, Any]] = []
    order = sorted(chat, key=lambda k: int(m.group()) if (m := re.search(r"\d+", str(k))) else 0)
    for key in order:
        turn = chat[key]
        if not isinstance(turn, Mapping):
            turns.append({"from": "human", "value": turn})  # a malformed turn: the reader names it
            continue
        turns.append({"from": "human", "value": _moss_text(turn.get("Human"), "Human", "<eoh>")})
        for tool_key in ("Commands", "Tool Responses"):
            if _moss_text(turn.get(tool_key), "", "").strip() not in ("", "None"):
                turns.append({"from": "tool", "value": str(turn.get(tool_key))})
        turns.append({"from": "gpt", "value": _moss_text(turn.get("MOSS"), "MOSS", "<eom>")})
    system = obj.get("meta_instruction")
    return {"system": system if isinstance(system, str) else "", "conversations": turns}


def _moss_text(value: Any, who: str, end: str) -> Any:
    if not isinstance(value, str):
        return value
    text = value.strip()
    if who and text.startswith(f"<|{who}|>:"):
        text = text[len(who) + 5 :]
    for tag in (end, "<eoc>", "<eor>", "<eot>"):
        if tag and text.endswith(tag):
            text = text[: -len(tag)]
    return text.strip()


def _pairs(obj: dict[str, Any]) -> dict[str, Any]:
    turns: list[dict[str, Any]] = []
    conv = obj.get("conversation")
    if not isinstance(conv, list):
        return {**obj, "conversations": conv}
    for pair in conv:
        if isinstance(pair, Mapping):
            turns.append({"from": "human", "value": pair.get("human")})
            turns.append({"from": "gpt", "value": pair.get("assistant")})
        else:
            turns.append({"from": "human", "value": pair})
    system = obj.get("system")
    return {"system": system if isinstance(system, str) else "", "conversations": turns}


def _coig_exam(obj: dict[str, Any]) -> dict[str, Any]:
    def text(key: str) -> Any:
        value = obj.get(key)
        return value.strip() if isinstance(value, str) else value

    parts = [text("textbox_q_context"), text("textbox_question")]
    answer, analysis = text("textbox_answer"), text("textbox_answer_analysis")
    strings = all(isinstance(p, str) or p is None for p in parts)
    with_analysis = isinstance(answer, str) and isinstance(analysis, str) and analysis
    return {
        "instruction": text("textbox_q_instruction") or "",
        "input": "\n".join(p for p in parts if p) if strings else parts,  # a non-string: the reader names it
        "output": f"{answer}\n\n{analysis}" if with_analysis else answer,
    }


@dataclass(frozen=True)
class Layout:
    name: str
    format: str  # the pipeline.read.formats format the mapped record is read as
    keys: tuple[str, ...]  # every one must be in the first record
    fields: tuple[tuple[str, str], ...] = ()
    convert: Callable[[dict[str, Any]], dict[str, Any]] | None = None
    any_of: tuple[tuple[str, ...], ...] = ()  # for each group, one of its keys must be there

    def matches(self, obj: Mapping[str, Any]) -> bool:
        return all(k in obj for k in self.keys) and all(any(k in obj for k in group) for group in self.any_of)

    def map(self, obj: dict[str, Any]) -> dict[str, Any]:
        out = apply_fields(obj, dict(self.fields))
        return self.convert(out) if self.convert is not None else out

    def describe(self) -> str:
        mapping = ", ".join(f"{theirs}->{canonical}" for canonical, theirs in self.fields)
        return f"{self.name} ({mapping})" if mapping else self.name


_PROMPTS = ("prompt", "query", "question")
_ANSWERS = ("response", "answer", "completion", "chosen")
LAYOUTS: tuple[Layout, ...] = (
    Layout(
        "belle_seed",
        "alpaca",
        ("instruction", "instances"),
        (("instruction", "instruction"), ("input", "instances.0.input"), ("output", "instances.0.output")),
    ),
    Layout("belle_eval", "alpaca", ("question", "std_answer"), (("instruction", "question"), ("output", "std_answer"))),
    Layout("firefly", "alpaca", ("kind", "input", "target"), (("instruction", "input"), ("output", "target"))),
    Layout("coig_exam", "alpaca", ("textbox_question", "textbox_answer"), convert=_coig_exam),
    Layout("moss", "sharegpt", ("chat",), convert=_moss, any_of=(("meta_instruction", "num_turns"),)),
    Layout("pairs", "sharegpt", ("conversation",), convert=_pairs),
    Layout("sharegpt", "sharegpt", ("conversations",)),
    Layout("openai", "openai", ("messages",)),
    Layout("alpaca", "alpaca", ("instruction",), any_of=(("output", "input"),)),
)


def _prompt_response(obj: Mapping[str, Any]) -> Layout | None:
    prompt = next((k for k in _PROMPTS if k in obj), None)
    answer = next((k for k in _ANSWERS if k in obj), None)
    if prompt is None or answer is None:
        return None
    return Layout("prompt_response", "alpaca", (prompt, answer), (("instruction", prompt), ("output", answer)))


def detect_layout(obj: Any) -> Layout | None:
    """The first layout the record matches, or None (the reader then detects the format per record)."""
    if not isinstance(obj, Mapping):
        return None
    for layout in LAYOUTS:
        if layout.matches(obj):
            return layout
    return _prompt_response(obj)


def suggest_fields(keys: list[str]) -> str:
    """A ``--fields`` suggestion for a record with these keys (question-like -> instruction, answer-like ->
    output), for error messages."""
    lowered = {k.lower(): k for k in keys}
    prompts = (*_PROMPTS, "instruction", "input", "title", "q", "问题", "题目", "指令", "提问", "输入")
    answers = (*_ANSWERS, "std_answer", "output", "target", "content", "a", "答案", "参考答案", "回答", "回复", "输出")
    prompt = next((lowered[k] for k in prompts if k in lowered), None)
    answer = next((lowered[k] for k in answers if k in lowered), None)
    return f"--fields instruction={prompt or 'YOUR_QUESTION_KEY'},output={answer or 'YOUR_ANSWER_KEY'}"
