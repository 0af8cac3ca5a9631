"""The ``quality`` stage: drop answers that are empty, placeholders, echoes, degenerate, too long or broken.

Checks, in the order they are tried (the first that fires is the record's reason; ``too_long`` comes right
after the two "no answer" checks). Each is switched in the recipe (``quality: {truncated: true, echo: false}``);
thresholds are parameters (:class:`QualityParams`) with the defaults given here. Fields: the output and every
history answer, except where noted; ``detail`` names the check, the field, the measured value and threshold.

``empty_output`` (on)
    Nothing but whitespace, or one filler punctuation mark repeated (``。``, ``……``, ``---``). Emoji, symbols,
    ``:-)`` and Morse code are answers and stay.
``placeholder_output`` (on)
    The answer, lower-cased without spaces and punctuation, is one of ``placeholders`` (``N/A``, ``无``, ``略``,
    ``不适用``, ``<nooutput>``, ``&lt;无输入&gt;`` …); or it starts with a "no output" tag (``<nooutput> GPT无法…``,
    ``No Output, …``); or it is one ``<…>`` stand-in holding a Han char or a word like image/insert/output
    (``<插入流程图>``, ``<Word Cloud Output>``). ``<b>`` stays.
``too_long`` (on, ``max_chars`` 8192)
    All text fields and history turns of the record together exceed ``max_chars`` characters.
``echo`` (on, ``echo_min_coverage`` 0.75)
    The answer equals the input, or a quoted (“…”) or after-colon part of the instruction, ignoring runs of
    spaces, edge quotes and a final 。.!?; or it restates the instruction (its letters and Han chars are a
    substring of the instruction's covering ≥ ``echo_min_coverage`` of them). Not when the instruction matches
    ``echo_ok_instructions``: correct/check grammar, spelling or punctuation, sort, classify, choose, extract,
    ``A还是B`` — tasks whose right answer can be the input itself or one word of it (counted as ``echo_exempt``;
    quoted text in the instruction is not searched: ``翻译“商店在哪里？”`` is no "which" question).
``repetition`` (on, 0.25 / 0.7)
    ``tandem`` ≥ ``max_tandem_frac``, or ``dup_ngram`` ≥ ``max_dup_ngram_frac`` with ≥ ``min_dup_ngram_han`` Han
    chars (signals in stages/quality/signals.py, measured on prose: code and URLs left out). Not when the
    instruction matches ``repeat_ok_instructions`` (songs, lyrics, "repeat 3 times"; ``repetition_exempt``).
    Duplicate n-grams of a structured answer — an enumeration, numbered steps, a worked solution, a sort trace,
    articles of law, a list with its ranking — are structure, not a loop (``repetition_structured``), unless
    the same line recurs (at most a third of ≥ 4 lines distinct: signal ``repeated_lines``).
``unbalanced`` (on, ``max_open_span`` 0.5)
    Structure that is really broken (stages/quality/structure.py): an odd number of ````` fences; a bracket
    (not a “ quote) opened and never closed over more than ``max_open_span`` of the prose (``原因有三个（经济、政治…``
    to the end); JSON that does not parse when the task names JSON; a ```python block that does not parse when
    the task names Python. A stray bracket (``尊敬的顾客]，谢谢你…``, more than ``max_unmatched`` 0 unmatched in the
    prose; list markers ``1)``/``a）`` and emoticons excepted; answers that are mostly code are not
    bracket-checked) is no drop: it lowers ``quality_score`` (balance) and is counted as ``flag.stray_bracket``.
    Translation leftovers like ``顾客]`` are not repaired: which bracket was meant is a guess.
``truncated`` (**off**, output only)
    Ends in the middle of a sentence (on ``，、,（(“‘《``) after ≥ ``truncated_min_content`` content chars, last
    line not code. Off: not precise enough. Answers without a final 。 are mostly titles, tweets, quotes, SQL
    and form fields (``：``/``；`` endings are therefore not counted); on Alpaca-zh it fires on 2 answers, one
    truly cut off (``…弥补这个错误、``) and one a letter's sign-off (``最好的，``).

Short answers are valid and never dropped for being short: ``北京。``, ``正面``, ``2``, an idiom, a poem with
parallel lines, a numbered list, a code block with similar lines.

``quality_score`` (float64 in [0, 1], higher is better, on every record) lets dedup keep the better twin.
It is 0.0 for an empty or placeholder output, else the weighted mean of five signals of the output:

* 0.30 length: ``min(1, log(1 + content) / log(1 + 20))`` — saturates at 20 content chars (``北京。`` ≈ 0.36);
* 0.30 novelty: ``1 - max(dup_ngram, tandem)``;
* 0.15 balance: ``1 / (1 + unmatched brackets + open code fence)``;
* 0.15 ending: 1 after 。！？…」 and the like, 0.5 after ，、（“ (mid-sentence), else 0.8;
* 0.10 answer: 0 if the output echoes the instruction/input, else 1.

Counters: ``score_bucket.<lo>-<hi>`` (five buckets of 0.2), ``echo_exempt``, ``repetition_exempt``,
``repetition_structured``, ``flag.stray_bracket``.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field, field_validator

from schemas.record import TEXT_FIELDS
from stages.base import RecordStage, StageParams, StageResult, detail_json
from stages.quality.signals import BARRIER, Signals, is_code_line, measure, prose, without_opaque_tokens
from stages.quality.structure import broken_json, broken_python, is_structured, open_bracket_span, repeated_lines

DEFAULT_PLACEHOLDERS: tuple[str, ...] = (
    "n/a", "na", "null", "nil", "todo", "tbd", "<nooutput>", "<noinput>", "no output", "无", "略", "空", "暂无",
    "无输出", "无输入", "无需输出", "没有输出", "不适用", "省略", "此处省略", "待补充", "同上",
)  # fmt: skip
ECHO_OK_INSTRUCTIONS = (
    r"(?i)改正|纠正|更正|修正|订正|校对|校正|检查|核对|语法|拼写|错字|错别字|错误|病句|标点|逗号|句号|分号|冒号|"
    r"感叹号|问号|引号|复制|粘贴|照抄|原样|copy|paste|verbatim|exclamation|question mark|"
    r"排序|顺序|排列|排名|分类|归类|分组|匹配|选择|选出|挑选|辨别|识别|找出|指出|提取|判断|是否|哪|还是|或|吗|"
    r"correct|fix|proofread|grammar|spell|punctuat|comma|error|mistake|sort|order|arrange|rank|classif|categor|"
    r"match|select|choose|pick|identify|extract|detect|find|check|verify|whether|which|\bor\b"
)
REPEAT_OK_INSTRUCTIONS = (
    r"(?i)歌|曲|旋律|说唱|绕口令|重复|[一二两三四五六七八九十\d]\s*遍|\brap\b|song|lyric|chant|repeat"
)

_WS = re.compile(r"\s+")
_NOT_WORD = re.compile(r"[\W_]+")
_FILLER = frozenset("。.…,，、?？!！;；:：-—–_~～·")
_NO_OUTPUT_START = re.compile(r"(?i)^\s*(?:(?:<|&lt;)\s*(?:no\s*output|无输出)\s*(?:>|&gt;)|no\s+output\b)")
_STAND_IN = re.compile(r"^\s*(?:<|&lt;)([^<>&\n]{1,40})(?:>|&gt;)\s*[;；.。]?\s*$")
_STAND_IN_WORD = re.compile(
    r"(?i)[\u3400-\u9fff]|image|picture|photo|drawing|sketch|logo|chart|graph|diagram|video|audio|gif|insert|"
    r"attach|output|input|here"
)
_QUOTED = re.compile(r"“([^”]{2,})”|\"([^\"]{2,})\"|「([^」]{2,})」")
_AFTER_COLON = re.compile(r"[：:]\s*([^：:]{2,}?)\s*$")
_ECHO_EDGE = " 。.！!？?；;\"'“”‘’「」"
_CLEAN_END = frozenset("。.！!？?…」』”\"'’)）】]》>`*~")
_MID_SENTENCE = frozenset("，、,（(“‘《")  # not ：；, which end form fields and (translated) SQL
_LAST_TURN = ("instruction", "input", "output")
_VOID = ("empty_output", "placeholder_output")
_CODE_ANSWER = 0.3  # share of code-like lines from which an answer counts as code (no bracket check)


def _placeholder_key(text: str) -> str:
    return _NOT_WORD.sub("", text.replace("&lt;", "<").replace("&gt;", ">").lower())


class QualityParams(StageParams):
    """Parameters of the quality stage (see the module docstring for what each check does)."""

    empty_output: bool = True
    placeholder_output: bool = True
    too_long: bool = True
    echo: bool = True
    repetition: bool = True
    unbalanced: bool = True
    truncated: bool = False
    placeholders: tuple[str, ...] = DEFAULT_PLACEHOLDERS
    max_chars: int = Field(default=8192, ge=1)
    echo_min_coverage: float = Field(default=0.75, gt=0, le=1)
    echo_ok_instructions: str = ECHO_OK_INSTRUCTIONS
    ngram: int = Field(default=10, ge=2, le=50)
    max_dup_ngram_frac: float = Field(default=0.7, gt=0, le=1)
    min_dup_ngram_han: int = Field(default=50, ge=0)
    max_tandem_frac: float = Field(default=0.25, gt=0, le=1)
    min_tandem_block: int = Field(default=6, ge=1)
    min_tandem_run: int = Field(default=20, ge=4)
    repeat_ok_instructions: str = REPEAT_OK_INSTRUCTIONS
    max_unmatched: int = Field(default=0, ge=0, description="stray brackets that only lower quality_score")
    max_open_span: float = Field(
        default=0.5, gt=0, le=1, description="share of the answer a bracket left open may span before it is a drop"
    )
    truncated_min_content: int = Field(default=20, ge=1)

    @field_validator("echo_ok_instructions", "repeat_ok_instructions")
    @classmethod
    def _valid_regex(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as e:
            raise ValueError(f"not a valid regular expression ({e}); use '' to allow nothing") from e
        return value


class QualityStage(RecordStage):
    """Reason-coded answer checks plus a ``quality_score`` column (see the module docstring)."""

    name: ClassVar[str] = "quality"
    Params: ClassVar[type[StageParams]] = QualityParams
    added_columns: ClassVar[tuple[tuple[str, pa.DataType], ...]] = (("quality_score", pa.float64()),)

    def __init__(self, params: StageParams | None = None) -> None:
        super().__init__(params)
        if not isinstance(self.params, QualityParams):
            raise TypeError(f"QualityStage needs QualityParams, got {type(self.params).__name__}")
        p = self.p = self.params
        self._placeholders = frozenset(_placeholder_key(x) for x in p.placeholders)
        self._echo_ok = re.compile(p.echo_ok_instructions) if p.echo_ok_instructions else None
        self._repeat_ok = re.compile(p.repeat_ok_instructions) if p.repeat_ok_instructions else None

    # ------------------------------------------------------------------------------------------ batch
    def process(self, batch: pa.Table) -> StageResult:
        n = batch.num_rows
        instruction, inp, output = ([x or "" for x in batch.column(f).to_pylist()] for f in _LAST_TURN)
        # One target per answer: the n outputs first, then every history answer.
        targets: list[tuple[str, int, str, str, str]] = [  # field, row, answer, question, input
            ("output", i, output[i], instruction[i], inp[i]) for i in range(n)
        ]
        for i, turns in enumerate(batch.column("history").to_pylist()):
            for t, turn in enumerate(turns or ()):
                targets.append((f"history[{t}].assistant", i, turn["assistant"] or "", turn["user"] or "", ""))
        proses = [prose(t[2]) for t in targets]
        texts = [x[0] for x in proses]
        sig = measure(texts, self.p.ngram, self.p.min_tandem_block, self.p.min_tandem_run)
        self._recount_brackets(texts, [x[1] for x in proses], sig)
        total = self._record_chars(batch)

        reasons: list[str | None] = [None] * n
        details: list[str | None] = [None] * n
        void = np.zeros(n, dtype=np.bool_)  # empty or placeholder output: score 0
        echoed = np.zeros(n, dtype=np.bool_)
        ending = np.ones(n, dtype=np.float64)
        counters: dict[str, int] = {}
        for k, (field, row, answer, question, context) in enumerate(targets):
            hit, is_echo = self._judge(field, answer, question, context, texts[k], sig, k, counters)
            voids = hit is not None and hit[0] in _VOID
            if k < n:
                void[k], echoed[k], ending[k] = voids, is_echo, _ending(answer)
                if self.p.too_long and total[k] > self.p.max_chars and not voids:
                    hit = (
                        "too_long",
                        detail_json(check="too_long", field="record", value=int(total[k]), threshold=self.p.max_chars),
                    )
            if hit is not None and reasons[row] is None:
                reasons[row], details[row] = hit
        scores = _scores(
            sig, n, void, echoed, ending, np.fromiter((a.count("```") % 2 for a in output), dtype=np.int64, count=n)
        )
        buckets = np.bincount(np.minimum((scores * 5).astype(np.int64), 4), minlength=5)
        for b, count in enumerate(buckets):
            if count:
                counters[f"score_bucket.{b / 5:.1f}-{(b + 1) / 5:.1f}"] = int(count)
        table = batch.drop_columns(["quality_score"]) if "quality_score" in batch.column_names else batch
        table = table.append_column("quality_score", pa.array(scores, type=pa.float64()))
        return StageResult(table, reasons, details, counters)

    def _recount_brackets(self, texts: list[str], code_share: list[float], sig: Signals) -> None:
        """Answers that are mostly code (≥ 30% code-like lines) are not bracket-checked; elsewhere, where
        brackets look unmatched (rare), count again without password-like tokens."""
        suspects = [k for k in np.flatnonzero(sig.unmatched > 0) if code_share[k] < _CODE_ANSWER]
        sig.unmatched[:] = 0
        if suspects:
            again = measure([without_opaque_tokens(texts[k]) for k in suspects], self.p.ngram, 1, 4)
            sig.unmatched[suspects] = again.unmatched

    @staticmethod
    def _record_chars(batch: pa.Table) -> np.ndarray:
        """Characters of every text field and history turn of each record."""
        total = np.zeros(batch.num_rows, dtype=np.int64)
        for f in TEXT_FIELDS:
            total += pc.fill_null(pc.utf8_length(batch.column(f)), 0).to_numpy(zero_copy_only=False)
        hist = batch.column("history").combine_chunks()
        flat = pc.list_flatten(hist)
        if len(flat):
            rows = pc.list_parent_indices(hist).to_numpy()
            for f in ("user", "assistant"):
                lengths = pc.fill_null(pc.utf8_length(pc.struct_field(flat, f)), 0).to_numpy(zero_copy_only=False)
                total += np.bincount(rows, weights=lengths, minlength=batch.num_rows).astype(np.int64)
        return total

    # ------------------------------------------------------------------------------------------ one answer
    def _judge(
        self,
        field: str,
        answer: str,
        question: str,
        context: str,
        text: str,
        sig: Signals,
        k: int,
        counters: dict[str, int],
    ) -> tuple[tuple[str, str] | None, bool]:
        """The first check that fires on one answer, as (reason, detail), and whether the answer is an echo."""
        p = self.p
        stripped = answer.strip()
        if p.empty_output and (
            not stripped
            or (len(stripped) <= 20 and stripped[0] in _FILLER and stripped.count(stripped[0]) == len(stripped))
        ):
            return ("empty_output", detail_json(check="empty_output", field=field, value=stripped)), False
        if p.placeholder_output and (matched := self._placeholder(stripped)):
            return ("placeholder_output", detail_json(check="placeholder_output", field=field, matched=matched)), False
        echo = self._echo(answer, question, context)
        if echo is not None and self._echo_ok is not None and self._echo_ok.search(_QUOTED.sub("", question)):
            counters["echo_exempt"] = counters.get("echo_exempt", 0) + 1
            echo = None
        if p.echo and echo is not None:
            return ("echo", detail_json(check="echo", field=field, **echo)), True
        if p.repetition and (rep := self._repetition(sig, k, text)) is not None:
            if self._repeat_ok is not None and self._repeat_ok.search(question):
                counters["repetition_exempt"] = counters.get("repetition_exempt", 0) + 1
            elif rep["signal"] != "tandem" and is_structured(text) and (rep := repeated_lines(text)) is None:
                counters["repetition_structured"] = counters.get("repetition_structured", 0) + 1
            else:
                return ("repetition", detail_json(check="repetition", field=field, **rep)), echo is not None
        if p.unbalanced:
            fences = answer.count("```")
            if fences % 2:
                return (
                    "unbalanced",
                    detail_json(check="unbalanced", field=field, what="code_fence", value=fences, threshold="even"),
                ), echo is not None
            if sig.unmatched[k] > p.max_unmatched:
                span = open_bracket_span(text)
                if span is not None and span[0] >= p.max_open_span:
                    return (
                        "unbalanced",
                        detail_json(
                            check="unbalanced",
                            field=field,
                            what="open_bracket",
                            bracket=span[1],
                            value=round(span[0], 3),
                            threshold=p.max_open_span,
                        ),
                    ), echo is not None
                counters["flag.stray_bracket"] = counters.get("flag.stray_bracket", 0) + 1  # a flag on the score
            for what, parse in (("json", broken_json), ("python", broken_python)):
                if (broken := parse(answer, question)) is not None:
                    return (
                        "unbalanced",
                        detail_json(check="unbalanced", field=field, what=what, error=broken),
                    ), echo is not None
        if p.truncated and field == "output" and _ends_mid_sentence(stripped, int(sig.content[k]), p):
            return ("truncated", detail_json(check="truncated", field=field, value=stripped[-20:])), False
        return None, echo is not None

    def _placeholder(self, stripped: str) -> str | None:
        if len(stripped) <= 40 and _placeholder_key(stripped) in self._placeholders:
            return stripped
        if stripped[:1] not in ("<", "&", "n", "N"):
            return None
        if _NO_OUTPUT_START.match(stripped):
            return stripped[:40]
        m = _STAND_IN.match(stripped)
        if m and _STAND_IN_WORD.search(m.group(1)):
            return stripped
        return None

    def _echo(self, answer: str, question: str, context: str) -> dict[str, Any] | None:
        sources = [("input", context)] if context else []
        if "“" in question or '"' in question or "「" in question:
            sources += [("instruction_quote", next(g for g in m.groups() if g)) for m in _QUOTED.finditer(question)]
        if not context and ("：" in question or ":" in question) and (m := _AFTER_COLON.search(question)):
            sources.append(("instruction_after_colon", m.group(1)))
        if sources:
            key = _echo_key(answer)
            for name, src in sources:
                if key and len(src) + 8 >= len(key) and _echo_key(src) == key:
                    return {"matched": name, "value": 1.0, "threshold": 1.0}
        if len(answer) <= len(question) + 8:  # restating the instruction
            a = _NOT_WORD.sub("", answer).lower()
            if len(a) >= 4 and len(a) <= len(question):
                q = _NOT_WORD.sub("", question).lower()
                coverage = len(a) / len(q) if q else 0.0
                if coverage >= self.p.echo_min_coverage and a in q:
                    return {
                        "matched": "instruction",
                        "value": round(coverage, 3),
                        "threshold": self.p.echo_min_coverage,
                    }
        return None

    def _repetition(self, sig: Signals, k: int, text: str) -> dict[str, Any] | None:
        p = self.p
        at = int(sig.tandem_at[k])
        sample = text[at : at + 40].replace(BARRIER, " ") if at >= 0 else ""
        if sig.tandem[k] >= p.max_tandem_frac:
            return {
                "signal": "tandem",
                "value": round(float(sig.tandem[k]), 3),
                "threshold": p.max_tandem_frac,
                "sample": sample,
            }
        if sig.han[k] >= p.min_dup_ngram_han and sig.dup_ngram[k] >= p.max_dup_ngram_frac:
            return {
                "signal": f"dup_{p.ngram}gram_han",
                "value": round(float(sig.dup_ngram[k]), 3),
                "threshold": p.max_dup_ngram_frac,
                "sample": sample,
            }
        return None


def _echo_key(text: str) -> str:
    return _WS.sub(" ", text).strip(_ECHO_EDGE)


def _ending(answer: str) -> float:
    last = answer.rstrip()[-1:]
    return 1.0 if last in _CLEAN_END else 0.5 if last in _MID_SENTENCE else 0.8


def _scores(
    sig: Signals, n: int, void: np.ndarray, echoed: np.ndarray, ending: np.ndarray, open_fence: np.ndarray
) -> np.ndarray:
    """``quality_score`` of the n outputs (the first n measured texts); see the module docstring."""
    length = np.minimum(1.0, np.log1p(sig.content[:n]) / np.log1p(20))
    novelty = 1.0 - np.maximum(sig.dup_ngram[:n], sig.tandem[:n])
    balance = 1.0 / (1 + sig.unmatched[:n] + open_fence)
    score = 0.3 * length + 0.3 * novelty + 0.15 * balance + 0.15 * ending + 0.1 * (~echoed)
    score[void] = 0.0
    return np.round(score, 4)


def _ends_mid_sentence(stripped: str, content: int, p: QualityParams) -> bool:
    if content < p.truncated_min_content or stripped[-1:] not in _MID_SENTENCE:
        return False
    return not is_code_line(stripped.rsplit("\n", 1)[-1])
