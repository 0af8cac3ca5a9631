"""``zhcurate export``: cleaned.parquet as JSONL that fine-tuning frameworks read as is.

* ``alpaca`` — ``instruction``, ``input``, ``output``, ``system``, ``history`` (``[[user, assistant], ...]``):
  LLaMA-Factory's alpaca format (and axolotl's ``type: alpaca``, which uses instruction/input/output).
* ``sharegpt`` — ``conversations: [{"from": "human"|"gpt", "value": ...}]`` and ``system`` when there is one:
  LLaMA-Factory's sharegpt format; axolotl ``type: chat_template`` with ``field_messages: conversations``.
* ``openai`` — ``messages: [{"role": "system"|"user"|"assistant", "content": ...}]``: OpenAI fine-tuning,
  axolotl ``type: chat_template``, LLaMA-Factory sharegpt formatting with openai tags.

ShareGPT and OpenAI have no separate ``input``: the user turn is ``instruction + "\\n" + input`` when the input
is not empty — exactly the prompt LLaMA-Factory builds from an alpaca record — so a model sees the same text
whichever format it is trained from.

For LLaMA-Factory, :func:`dataset_info_entry` is the matching ``dataset_info.json`` entry; the command writes it
into ``dataset_info.json`` beside the exported file (merged with the entries already there). The entry declares
only columns the file has: the ShareGPT ``system`` column is written on every line when any record has a system
prompt, and then declared; otherwise neither. Every line is checked against LLaMA-Factory's rules
(:mod:`pipeline.outputs.export_check`) and the export reports how many it would drop, and why.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pipeline.outputs.export_check import llamafactory_problems
from schemas.errors import ConfigError

ExportFormat = Literal["alpaca", "sharegpt", "openai"]
EXPORT_FORMATS: tuple[str, ...] = ("alpaca", "sharegpt", "openai")


def user_turn(instruction: str, input_text: str) -> str:
    """The user's message of a record: the instruction, then its input on the next line (if any)."""
    return f"{instruction}\n{input_text}" if input_text else instruction


def to_alpaca(rec: dict[str, Any]) -> dict[str, Any]:
    return {
        "instruction": rec["instruction"] or "",
        "input": rec["input"] or "",
        "output": rec["output"] or "",
        "system": rec["system"] or "",
        "history": [[t["user"], t["assistant"]] for t in rec["history"] or []],
    }


def to_sharegpt(rec: dict[str, Any], with_system: bool = False) -> dict[str, Any]:
    """``with_system``: write ``system`` on every line ("" where there is none), so the column is always there."""
    turns: list[dict[str, str]] = []
    for t in rec["history"] or []:
        turns += [{"from": "human", "value": t["user"]}, {"from": "gpt", "value": t["assistant"]}]
    turns += [
        {"from": "human", "value": user_turn(rec["instruction"] or "", rec["input"] or "")},
        {"from": "gpt", "value": rec["output"] or ""},
    ]
    out: dict[str, Any] = {"conversations": turns}
    if rec["system"] or with_system:
        out["system"] = rec["system"] or ""
    return out


def to_openai(rec: dict[str, Any]) -> dict[str, Any]:
    messages: list[dict[str, str]] = []
    if rec["system"]:
        messages.append({"role": "system", "content": rec["system"]})
    for t in rec["history"] or []:
        messages += [{"role": "user", "content": t["user"]}, {"role": "assistant", "content": t["assistant"]}]
    messages += [
        {"role": "user", "content": user_turn(rec["instruction"] or "", rec["input"] or "")},
        {"role": "assistant", "content": rec["output"] or ""},
    ]
    return {"messages": messages}


CONVERTERS = {"alpaca": to_alpaca, "sharegpt": to_sharegpt, "openai": to_openai}


def dataset_info_entry(fmt: str, file_name: str, system: bool = True) -> dict[str, Any]:
    """The LLaMA-Factory ``dataset_info.json`` description of an exported file (``system``: whether the file
    has a ShareGPT ``system`` column)."""
    if fmt == "alpaca":
        columns = {
            "prompt": "instruction",
            "query": "input",
            "response": "output",
            "system": "system",
            "history": "history",
        }
        return {"file_name": file_name, "columns": columns}
    if fmt == "sharegpt":
        return {
            "file_name": file_name,
            "formatting": "sharegpt",
            "columns": {"messages": "conversations", **({"system": "system"} if system else {})},
            "tags": {"role_tag": "from", "content_tag": "value", "user_tag": "human", "assistant_tag": "gpt"},
        }
    return {
        "file_name": file_name,
        "formatting": "sharegpt",
        "columns": {"messages": "messages"},
        "tags": {
            "role_tag": "role",
            "content_tag": "content",
            "user_tag": "user",
            "assistant_tag": "assistant",
            "system_tag": "system",
        },
    }


def _records(cleaned: Path, batch_size: int = 5000) -> Iterator[dict[str, Any]]:
    columns = ["system", "instruction", "input", "output", "history"]
    import pyarrow.parquet as pq  # here, not at import: the CLI imports this module to build its parser

    for batch in pq.ParquetFile(cleaned, pre_buffer=False).iter_batches(batch_size=batch_size, columns=columns):
        yield from batch.to_pylist()


@dataclass
class ExportResult:
    written: int
    entry: dict[str, Any]  # the dataset_info.json entry (it declares only columns the file has)
    would_drop: Counter[str] = field(default_factory=Counter)  # LLaMA-Factory rule -> lines that break it
    first_bad: dict[str, int] = field(default_factory=dict)  # rule -> the first line (1-based) that breaks it


def _any_system(cleaned: Path) -> bool:
    import pyarrow.compute as pc  # here, not at import: the CLI imports this module to build its parser
    import pyarrow.parquet as pq

    column = pq.read_table(cleaned, columns=["system"]).column("system")
    return bool(pc.any(pc.greater(pc.fill_null(pc.utf8_length(column), 0), 0)).as_py() or False)


def export(run_dir: Path, fmt: str, to: Path) -> ExportResult:
    """Write the run's cleaned records to ``to`` (JSONL, UTF-8) in ``fmt``, checking every line against
    LLaMA-Factory's rules. The file appears under its name only when complete."""
    if fmt not in CONVERTERS:
        raise ConfigError(f"--format must be one of {', '.join(EXPORT_FORMATS)}, got '{fmt}'")
    cleaned = run_dir / "cleaned.parquet"
    if not cleaned.is_file():
        raise ConfigError(f"{cleaned} not found: give the output directory of a finished `zhcurate run`")
    with_system = fmt == "sharegpt" and _any_system(cleaned)
    entry = dataset_info_entry(fmt, to.name, system=with_system)
    columns = {"alpaca": {"instruction", "input", "output", "system", "history"}, "openai": {"messages"}}.get(
        fmt, {"conversations", *(["system"] if with_system else [])}
    )
    to.parent.mkdir(parents=True, exist_ok=True)
    from pipeline.checkpoint import tmp_name  # (pyarrow) here: the CLI imports this module to build its parser

    tmp = tmp_name(to)
    result = ExportResult(0, entry)
    with open(tmp, "w", encoding="utf-8") as f:
        for rec in _records(cleaned):
            line = to_sharegpt(rec, with_system) if fmt == "sharegpt" else CONVERTERS[fmt](rec)
            f.write(json.dumps(line, ensure_ascii=False) + "\n")
            result.written += 1
            for problem in llamafactory_problems(line, entry, columns):
                result.would_drop[problem] += 1
                result.first_bad.setdefault(problem, result.written)
    tmp.replace(to)
    return result


def write_dataset_info(path: Path, name: str, entry: dict[str, Any]) -> None:
    """Add (or replace) ``name`` in a LLaMA-Factory ``dataset_info.json``, keeping its other entries."""
    info: dict[str, Any] = {}
    if path.is_file():
        try:
            info = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise ConfigError(f"{path} exists but is not valid JSON ({e.msg}); fix or remove it") from None
        if not isinstance(info, dict):
            raise ConfigError(f"{path} exists but is not a JSON object; fix or remove it")
    info[name] = entry
    path.write_text(json.dumps(info, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
