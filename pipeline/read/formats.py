"""Map one raw record (a dict from JSON, JSONL, CSV or Parquet) to the canonical record.

Alpaca: ``instruction``, ``input`` (optional), ``output``, optional ``system`` and ``history``
(``[[user, assistant], ...]`` as LLaMA-Factory writes it, or ``[{"user":..,"assistant":..}]``).
ShareGPT: ``conversations: [{"from": "human"|"gpt"|"system", "value": ...}]`` (optional top-level ``system``).
OpenAI: ``messages: [{"role": "user"|"assistant"|"system", "content": str | [{"type":"text","text":..}]}]``.

Outcomes: a canonical row; a :class:`ReadRejection` (the record is well-formed but cannot be used as SFT data,
e.g. a conversation that does not alternate — rejected with a reason, never guessed at); or a
:class:`MalformedRecord` exception (wrong types, missing keys — the record goes to quarantine).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

Format = Literal["alpaca", "sharegpt", "openai"]
FORMATS: tuple[str, ...] = ("alpaca", "sharegpt", "openai")

USER_ROLES = frozenset({"human", "user"})
ASSISTANT_ROLES = frozenset({"gpt", "assistant", "model", "chatgpt", "bot"})
SYSTEM_ROLES = frozenset({"system"})
TOOL_ROLES = frozenset({"tool", "function", "function_call", "observation", "ipython", "tool_call", "tool_response"})
"""Turns of a tool-using conversation: the canonical record cannot hold them (see :mod:`pipeline.read.layouts`)."""


class MalformedRecord(Exception):
    """The record cannot be read as any supported format (goes to quarantine with this message)."""


@dataclass
class ReadRejection:
    """A readable record that is not usable SFT data: rejected at ``read`` with a reason code."""

    reason: str
    detail: dict[str, Any]
    row: dict[str, Any] = field(default_factory=dict)


def type_name(value: Any) -> str:
    """How a JSON value's type reads in an error message."""
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return f"a {type(value).__name__}"


def detect_format(obj: Mapping[str, Any]) -> Format | None:
    if "conversations" in obj:
        return "sharegpt"
    if "messages" in obj:
        return "openai"
    if "instruction" in obj or "output" in obj:
        return "alpaca"
    return None


def _text(obj: Mapping[str, Any], key: str, *, required: bool) -> str:
    if key not in obj or obj[key] is None:
        if required:
            raise MalformedRecord(f"missing key '{key}'")
        return ""
    value = obj[key]
    if isinstance(value, str):
        return value
    if isinstance(value, float) and value != value:  # NaN from a CSV/Parquet null
        return ""
    raise MalformedRecord(f"key '{key}' is {type_name(value)}, expected a string")


def _maybe_json(value: Any, key: str) -> Any:
    """CSV cells hold nested values as JSON text."""
    if isinstance(value, str):
        stripped = value.strip()
        if not stripped:
            return []
        try:
            return json.loads(stripped)
        except json.JSONDecodeError as e:
            raise MalformedRecord(f"key '{key}' is text that is not valid JSON: {e.msg}") from None
    return value


def _history(obj: Mapping[str, Any]) -> list[dict[str, str]]:
    raw = _maybe_json(obj.get("history"), "history") if obj.get("history") is not None else []
    if not isinstance(raw, list):
        raise MalformedRecord(f"key 'history' is {type_name(raw)}, expected a list of turns")
    turns: list[dict[str, str]] = []
    for i, turn in enumerate(raw):
        if isinstance(turn, (list, tuple)) and len(turn) == 2 and all(isinstance(t, str) for t in turn):
            turns.append({"user": turn[0], "assistant": turn[1]})
        elif isinstance(turn, Mapping) and isinstance(turn.get("user"), str) and isinstance(turn.get("assistant"), str):
            turns.append({"user": turn["user"], "assistant": turn["assistant"]})
        else:
            raise MalformedRecord(f"history[{i}] is not a [user, assistant] pair of strings")
    return turns


def _alpaca(obj: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "system": _text(obj, "system", required=False),
        "instruction": _text(obj, "instruction", required=True),
        "input": _text(obj, "input", required=False),
        "output": _text(obj, "output", required=True),
        "history": _history(obj),
    }


def _content(value: Any, where: str) -> str:
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    if isinstance(value, list):  # OpenAI content parts
        parts = []
        for part in value:
            if isinstance(part, Mapping) and part.get("type") == "text" and isinstance(part.get("text"), str):
                parts.append(part["text"])
            else:
                raise MalformedRecord(f"{where} has a non-text content part; only text is supported")
        return "".join(parts)
    raise MalformedRecord(f"{where} is {type_name(value)}, expected a string")


def _conversation(
    turns_raw: Any, key: str, role_key: str, text_key: str, system: str
) -> dict[str, Any] | ReadRejection:
    turns_raw = _maybe_json(turns_raw, key)
    if not isinstance(turns_raw, list):
        raise MalformedRecord(f"key '{key}' is {type_name(turns_raw)}, expected a list of turns")
    roles: list[str] = []
    texts: list[str] = []
    for i, turn in enumerate(turns_raw):
        if not isinstance(turn, Mapping):
            raise MalformedRecord(f"{key}[{i}] is {type_name(turn)}, expected an object")
        role = turn.get(role_key)
        if not isinstance(role, str):
            raise MalformedRecord(f"{key}[{i}] has no string '{role_key}'")
        r = role.strip().lower()
        if r in TOOL_ROLES or turn.get("tool_calls") or turn.get("function_call"):
            return ReadRejection(
                "conversation_tool_turns",
                {"turn": i, "role": role, "field": key, "why": "the canonical record has no place for tool turns"},
            )
        text = _content(turn.get(text_key), f"{key}[{i}].{text_key}")
        if r in SYSTEM_ROLES:
            if roles:
                return ReadRejection("conversation_misplaced_system", {"turn": i, "field": key})
            system = text if not system else system + "\n" + text
            continue
        if r in USER_ROLES:
            roles.append("user")
        elif r in ASSISTANT_ROLES:
            roles.append("assistant")
        else:
            return ReadRejection("conversation_unsupported_role", {"turn": i, "role": role, "field": key})
        texts.append(text)
    partial = {
        "system": system,
        "instruction": texts[0] if texts else "",
        "input": "",
        "output": "",
        "history": [],
    }
    if not roles:
        return ReadRejection("conversation_empty", {"field": key}, partial)
    for i, r in enumerate(roles):
        expected = "user" if i % 2 == 0 else "assistant"
        if r != expected:
            return ReadRejection(
                "conversation_not_alternating",
                {"field": key, "turn": i, "expected": expected, "found": r, "roles": roles},
                partial,
            )
    if roles[-1] != "assistant":
        return ReadRejection("conversation_ends_on_user", {"field": key, "turns": len(roles)}, partial)
    history = [{"user": texts[i], "assistant": texts[i + 1]} for i in range(0, len(texts) - 2, 2)]
    return {"system": system, "instruction": texts[-2], "input": "", "output": texts[-1], "history": history}


def to_canonical(obj: Any, fmt: Format) -> dict[str, Any] | ReadRejection:
    """Map a raw record to the canonical text fields (no id/source yet)."""
    if not isinstance(obj, Mapping):
        raise MalformedRecord(f"a record is {type_name(obj)}, expected a JSON object")
    if fmt == "alpaca":
        row = _alpaca(obj)
    elif fmt == "sharegpt":
        if "conversations" not in obj:
            raise MalformedRecord("missing key 'conversations' (ShareGPT format)")
        res = _conversation(
            obj["conversations"], "conversations", "from", "value", _text(obj, "system", required=False)
        )
        if isinstance(res, ReadRejection):
            return res
        row = res
    else:
        if "messages" not in obj:
            raise MalformedRecord("missing key 'messages' (OpenAI format)")
        res = _conversation(obj["messages"], "messages", "role", "content", _text(obj, "system", required=False))
        if isinstance(res, ReadRejection):
            return res
        row = res
    if not (row["instruction"].strip() or row["input"].strip() or row["output"].strip()):
        return ReadRejection("empty_record", {"fields": ["instruction", "input", "output"]}, row)
    return row
