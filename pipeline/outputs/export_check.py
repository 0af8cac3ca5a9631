"""What LLaMA-Factory (0.9.x) would drop or fail on, for one example and its ``dataset_info.json`` entry.

The rules of its data converters (``data/converter.py``) and of the supervised processor, as documented in
its ``data/README.md``:

* every column the entry declares is read as ``example[column]``: a declared column the file lacks is a
  ``KeyError`` for the whole dataset (``missing_column``);
* alpaca: ``history`` is a list of ``[user, assistant]`` pairs (``invalid_history``); a ``response`` that is not
  a string makes the example unsupervised, and the processor drops it (``no_response``);
* sharegpt: a first message with the system tag is the system prompt; after it, the roles alternate: the user
  (or observation) tag at even positions 0, 2, 4 …, the assistant (or function) tag at odd ones, else "Invalid
  role tag" (``invalid_role_tag``); an odd number of messages is "Invalid message count"
  (``invalid_message_count``); no messages at all is dropped by the processor (``no_messages``).

``zhcurate export`` runs every line it writes through :func:`llamafactory_problems` and reports the counts; the
tests run it over the file as HF ``datasets`` loads it (the way LLaMA-Factory loads a local JSON file).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

SHAREGPT_TAGS = {
    "role_tag": "from",
    "content_tag": "value",
    "user_tag": "human",
    "assistant_tag": "gpt",
    "observation_tag": "observation",
    "function_tag": "function_call",
    "system_tag": "system",
}
ALPACA_COLUMNS = {"prompt": "instruction", "query": "input", "response": "output"}


def llamafactory_problems(example: Mapping[str, Any], entry: Mapping[str, Any], present: set[str]) -> list[str]:
    """The rules ``example`` breaks (an empty list: LLaMA-Factory trains on it). ``present`` is the dataset's
    columns (what HF ``datasets`` found in the file; a key missing from one JSON line is None, not absent)."""
    columns = {**(ALPACA_COLUMNS if entry.get("formatting", "alpaca") == "alpaca" else {}), **entry.get("columns", {})}
    missing = [c for c in columns.values() if c not in present]
    if missing:
        return [f"missing_column:{c}" for c in missing]
    if entry.get("formatting", "alpaca") == "alpaca":
        return _alpaca(example, columns)
    return _sharegpt(example, columns, {**SHAREGPT_TAGS, **entry.get("tags", {})})


def _alpaca(example: Mapping[str, Any], columns: Mapping[str, str]) -> list[str]:
    problems = []
    history = example.get(columns["history"]) if "history" in columns else None
    if isinstance(history, list) and not all(
        isinstance(t, (list, tuple)) and len(t) == 2 and all(isinstance(x, str) for x in t) for t in history
    ):
        problems.append("invalid_history")
    if not isinstance(example.get(columns["response"]), str):
        problems.append("no_response")
    return problems


def _sharegpt(example: Mapping[str, Any], columns: Mapping[str, str], tags: Mapping[str, str]) -> list[str]:
    messages = example.get(columns.get("messages", "conversations"))
    if not isinstance(messages, list) or not messages:
        return ["no_messages"]
    role, system_tag = tags["role_tag"], tags.get("system_tag")
    if system_tag and isinstance(messages[0], Mapping) and messages[0].get(role) == system_tag:
        messages = messages[1:]
    odd = (tags["user_tag"], tags["observation_tag"])
    even = (tags["assistant_tag"], tags["function_tag"])
    for i, message in enumerate(messages):
        if not isinstance(message, Mapping) or message.get(role) not in (odd if i % 2 == 0 else even):
            return ["invalid_role_tag"]
        if not isinstance(message.get(tags["content_tag"]), str):
            return ["invalid_content"]
    if not messages:
        return ["no_messages"]
    if len(messages) % 2 != 0:
        return ["invalid_message_count"]
    return []
