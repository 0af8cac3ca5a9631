"""What ``dedup_semantic`` compares: the request and the answer of a record, each on its own.

A record is a task (the request: history, instruction and input) and its answer (the output). Two records are the
same SFT example only when both are alike. One embedding of instruction + input hides a different task over a
shared long input (确定段落的基调 / 用5句话概括段落 over one paragraph: cosine 0.98), so when a record has an
input the instructions are also compared on their own.

``mode`` (a stage parameter):

* ``pair`` (default): duplicates when the requests are similar (``threshold``), the instructions alone are
  similar when either record has an input or history (``instruction_threshold``), and the outputs are similar
  (``output_threshold``). The search runs on the request embeddings; the other sides verify its candidates.
* ``instruction``: prompt-level dedup (as self-instruct filters its generated instructions): the request and,
  over an input, the instruction alone; outputs are ignored.
* ``output``: answer-level: the outputs only (e.g. to find one canned answer given to many prompts).

The *side* matrices are unit rows like the main embedding matrix. The ``instruction`` side holds a row only for
records whose request is more than the instruction (zero rows elsewhere: there the request row *is* the
instruction's embedding, and it is used instead).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, Literal

import numpy as np
import pyarrow as pa

from stages.dedup.embedder import DEFAULT_THRESHOLD

Mode = Literal["pair", "instruction", "output"]
BUILTIN = "built-in"
OUTPUT_CHARS = 256
"""Characters of an answer that are embedded: its opening says what it is; the rest costs time (a static
model's cost is the tokenizer's, linear in characters) and, mean-pooled, blurs the vector."""

PAIR_REQUEST_THRESHOLD = 0.92
"""The built-in model's request cosine in mode pair: under the single-text calibrated 0.95 because the answers
(0.85) and, over an input, the instructions alone (0.90) must agree too; chosen by reading the Alpaca-zh merges
and on the near-dup benchmark (README, "Semantic dedup")."""
E5_THRESHOLD = 0.985
"""e5-small cosine (``query: `` prefixes) for alike texts: LCQMC validation (2,000 seeded pairs) precision 0.906,
recall 0.600. e5's cosines crowd near 1: unrelated Chinese questions score ~0.8."""
PROPOSE_THRESHOLD = 0.85
"""The built-in model's cosine that proposes a pair to the cascade's verify model (``verify_model`` set and
``threshold`` unset): on the same 2,000 LCQMC pairs the cascade reaches precision 0.909, recall 0.562."""

CALIBRATED_SIMILARITY: dict[str, str] = {BUILTIN: "cosine", "e5-small": "cosine"}
"""The similarity each calibrated model's thresholds are for."""

CALIBRATED: dict[str, dict[str, dict[str, float]]] = {
    # main = the searched text (request; output in mode output); the sides' cosines. `zhcurate calibrate`.
    BUILTIN: {
        "pair": {"main": PAIR_REQUEST_THRESHOLD, "instruction": 0.90, "output": 0.85},
        "instruction": {"main": DEFAULT_THRESHOLD, "instruction": 0.90},
        "output": {"main": DEFAULT_THRESHOLD},
    },
    "e5-small": {
        "pair": {"main": E5_THRESHOLD, "instruction": E5_THRESHOLD, "output": E5_THRESHOLD},
        "instruction": {"main": E5_THRESHOLD, "instruction": E5_THRESHOLD},
        "output": {"main": E5_THRESHOLD},
    },
}
"""Default thresholds per model and mode (README "dedup_semantic thresholds" gives their precision/recall)."""
SIDES: dict[str, tuple[str, ...]] = {"pair": ("instruction", "output"), "instruction": ("instruction",), "output": ()}


@dataclass(frozen=True)
class RecordTexts:
    """The texts one batch is embedded from: the main (searched) text and each side's text."""

    main: list[str]
    sides: dict[str, list[str]]


_CJK_SPACE = re.compile(
    r"(?<=[\u3000-\u303f\u3400-\u9fff\uff00-\uffef])\s+|\s+(?=[\u3000-\u303f\u3400-\u9fff\uff00-\uffef])"
)


def squeeze(text: str) -> str:
    """``text`` without the spaces next to Chinese characters or punctuation: Chinese has none, and a static
    model's tokenizer splits at every space (``写 一首 诗`` would not be ``写一首诗``)."""
    return _CJK_SPACE.sub("", text)


def history_text(batch: pa.Table) -> list[str]:
    """Earlier turns of a multi-turn record as one text (user and assistant lines), "" for single-turn ones."""
    if "history" not in batch.column_names:
        return [""] * batch.num_rows
    out: list[str] = []
    for turns in batch.column("history").to_pylist():
        out.append("\n".join(f"{t.get('user') or ''}\n{t.get('assistant') or ''}".strip() for t in turns or []))
    return out


def record_texts(batch: pa.Table, mode: Mode, fields: Sequence[str]) -> RecordTexts:
    """Request text (history + ``fields`` joined by newlines), instruction text where it differs from the
    request, and output text (its first :data:`OUTPUT_CHARS` characters), as the mode needs them."""
    output = [squeeze(text or "")[:OUTPUT_CHARS] for text in batch.column("output").to_pylist()]
    if mode == "output":
        return RecordTexts(output, {})
    history = history_text(batch)
    columns = [batch.column(name).to_pylist() for name in fields]
    request = [
        squeeze("\n".join(part for part in (past, *parts) if part))
        for past, *parts in zip(history, *columns, strict=True)
    ]
    instruction = [squeeze(text or "") for text in batch.column("instruction").to_pylist()]
    alone = [ins if req.strip() != ins.strip() else "" for ins, req in zip(instruction, request, strict=True)]
    sides = {"instruction": alone}
    if mode == "pair":
        sides["output"] = output
    return RecordTexts(request, sides)


PAIR_CHUNK = 16_384
"""Pairs whose side rows are gathered at once: bounds the float32 temporaries to ~4 × 16k × d floats per thread
whatever the number of pairs (gathering the rows of every pair at once took gigabytes on large inputs), and
splits a search chunk's pairs into enough tasks to keep every thread busy."""


def side_cosine(
    main: Any, side: Any, left: np.ndarray, right: np.ndarray, fallback: bool, threads: int = 1
) -> np.ndarray:
    """Cosine of the side rows of ``left[k]`` and ``right[k]`` (positions into ``main``/``side``: arrays or row
    sources of :mod:`stages.dedup.semantic_rows`), computed :data:`PAIR_CHUNK` pairs at a time.

    ``fallback`` (the instruction side): a zero side row stands for the main row, and two zero rows pass (1.0:
    the main similarity was the instructions'). Otherwise (outputs) two
    empty sides count as equal (1.0) and one empty side as different (0.0). Pairs of two records without a
    stored row (a :class:`~stages.dedup.semantic_rows.PresentRows` side) are 1.0 without gathering anything.
    Each pair's cosine depends only on its two rows, whatever the chunk (or thread, ``threads`` > 1) it is
    computed in."""
    out, tasks = _side_tasks(main, side, left, right, fallback)
    _run(tasks, threads)
    return out


def _side_tasks(
    main: Any, side: Any, left: np.ndarray, right: np.ndarray, fallback: bool
) -> tuple[np.ndarray, list[Callable[[], None]]]:
    """The output array of :func:`side_cosine` and the tasks (one per chunk of pairs) that fill it."""
    out = np.ones(len(left), dtype=np.float32)
    todo = np.arange(len(left))
    if callable(getattr(side, "stored", None)):  # compact rows: two records without a stored row read as two
        todo = np.flatnonzero(side.stored(left) | side.stored(right))  # zero rows, 1.0 in both modes

    def work(at: np.ndarray) -> None:
        out[at] = _side_cosine(main, side, left[at], right[at], fallback)

    return out, [partial(work, todo[start : start + PAIR_CHUNK]) for start in range(0, todo.size, PAIR_CHUNK)]


def _run(tasks: Sequence[Callable[[], None]], threads: int) -> None:
    """Run the tasks, on ``threads`` threads when there are several (numpy's gathers, casts and sums release
    the GIL)."""
    if threads > 1 and len(tasks) > 1:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(min(threads, len(tasks))) as pool:
            list(pool.map(lambda task: task(), tasks))
    else:
        for task in tasks:
            task()


def _rows32(rows: Any, positions: np.ndarray) -> np.ndarray:
    """``rows[positions]`` as float32; a position that repeats (pairs are sorted by their left record) is
    gathered and converted once."""
    unique, inverse = np.unique(positions, return_inverse=True)
    if 2 * unique.size > positions.size:
        return rows[positions].astype(np.float32)
    return rows[unique].astype(np.float32)[inverse.ravel()]


def _side_cosine(main: Any, side: Any, left: np.ndarray, right: np.ndarray, fallback: bool) -> np.ndarray:
    a = _rows32(side, left)
    b = _rows32(side, right)
    a_empty = ~a.any(axis=1)
    b_empty = ~b.any(axis=1)
    if fallback:  # neither has more than its instruction: the main comparison already was this one
        a[a_empty] = _rows32(main, left[a_empty])
        b[b_empty] = _rows32(main, right[b_empty])
        cosine = np.einsum("ij,ij->i", a, b).astype(np.float32)
        cosine[a_empty & b_empty] = 1.0
        return cosine
    cosine = np.einsum("ij,ij->i", a, b).astype(np.float32)
    cosine[a_empty & b_empty] = 1.0
    cosine[a_empty ^ b_empty] = 0.0
    return cosine


def side_similarities(
    main: Any, sides: Mapping[str, Any], left: np.ndarray, right: np.ndarray, threads: int = 1
) -> dict[str, np.ndarray]:
    """Every side's cosine for the pairs ``(left[k], right[k])``, as :func:`side_cosine` gives it; the chunks of
    every side share one pool of ``threads`` threads (so a side with few stored rows leaves no thread idle)."""
    planned = {name: _side_tasks(main, rows, left, right, name == "instruction") for name, rows in sides.items()}
    _run([task for _, tasks in planned.values() for task in tasks], threads)
    return {name: out for name, (out, _) in planned.items()}


def sides_agree(similarities: Mapping[str, np.ndarray], thresholds: Mapping[str, float], size: int) -> np.ndarray:
    """Pairs whose every side reaches its threshold."""
    ok = np.ones(size, dtype=bool)
    for name, values in similarities.items():
        ok &= values >= thresholds[name]
    return ok
