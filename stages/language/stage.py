"""Keep Chinese instruction data Chinese, and keep the English that belongs in it.

**Measuring a field** (:mod:`stages.language.measure`): code, URLs, quotes and brackets are set aside and the
rest is counted in units (Han characters, kana, Hangul syllables, Latin words, words of other scripts). A field
is Chinese when Han is at least ``min_han_ratio`` of its units and it is not Japanese (kana at least
``ja_kana_ratio`` of Han + kana). A field with no units (``42``) has no language.

**Offending words.** A Latin word is legitimate when it is a term (``stages/data/tech_terms.txt`` plus
``extra_terms`` / ``terms_file``; units and formulas included), a name or acronym (capitalised, all-caps or
mixed-case and not an English function word or chat word: Google, NBA, iPhone, OR; "of"/"the" inside "Lord of
the Flies"; a capitalised function word before another capitalised word: "There Will Come Soft Rains"), pinyin
(nǐ hǎo ma), or, in an answer, a word the prompt already contains, inflections included (``serendipity的意思是…``,
``memes`` for ``meme``). Every other Latin word offends. Word lists: :mod:`stages.language.words`.

**Everyday English** (:mod:`stages.language.english_words`, wordfreq's English list): an offending word that is an
everyday English word (``amazing``, ``lonely``, ``and``, ``deadline``) is code-switching, the mixing a native
Chinese text does not have; an offending word that is no word of a known language (``Wklw``, ``vhfuhw``) is a
cipher, an encoding or a notation, not a language.

**Reasons** (the first that applies):

* ``non_chinese``: neither the prompt (the instruction, or the input when the instruction is empty) nor the
  output is Chinese: untranslated rows, Japanese or Korean rows.
* ``language_mismatch``: a Chinese prompt answered in another language (at least ``min_mismatch_words``
  offending words or foreign-script units) when the task does not ask for it; or a non-Chinese prompt
  answered in Chinese that is not a translation.
* ``code_switching``: a Chinese answer with more than ``max_everyday_words`` (0) everyday English words
  (``我今天感觉amazing！``; a lone word needs three letters), unless the words are mostly no English (a dish
  name in Spanish); or with more than ``max_code_switch_words`` offending English words that are more than
  ``max_code_switch_ratio`` of its units; or with one untranslated English clause of more than
  ``max_english_run`` offending words (a half-translated record). In a code task or an answer with code,
  everyday words are taken for identifiers and only the clause rule applies. ``detail`` lists
  ``everyday_english`` and the ``clause``.

**The task allows another language** (neither mismatch nor code-switching is checked; :mod:`stages.language.tasks`)
when it is a translation whose target is not Chinese, has a foreign input, names a foreign language, is about
words and grammar, asks for Latin text that is no English prose (ciphers, notations, names, lyrics, dishes,
citations, search syntax) or quotes offending words; a code task's answer that reads as code or data; an answer
whose Latin words are mostly no word of a known language (an encoding: profile ``zh+en``, ``allowed.encoding``).

**Speed.** Rows whose instruction is Han without letters and whose output has no letters (most of a Chinese
dataset) are settled by Arrow's vectorised RE2 (:meth:`LanguageStage.plain_chinese`); the rest take a Python
path with fast exits (prompts without Han are not analysed word by word; what a task allows is only worked out
for answers that are not plain Chinese).

Only answers (the output, and history assistant turns when ``check_history``) are checked for mismatch and
code-switching; prompts may mix languages. The system prompt is read only for what language it asks for.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import ClassVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field

from schemas.errors import ConfigError
from stages.assets import DATA_DIR
from stages.base import RecordStage, StageParams, StageResult, detail_json
from stages.language.english_words import word_sets
from stages.language.measure import (
    ANY_LETTER,
    ASSIGNED,
    LATIN_STRETCH,
    RE2_HAN,
    RE2_LETTER,
    Measure,
    latin_words,
    measure,
    prose_share,
)
from stages.language.tasks import allowance
from stages.language.words import (
    CODE_TASK,
    LATIN,
    TRANSLATION,
    offending,
    prompt_words,
)

BUILTIN_TERMS = DATA_DIR / "tech_terms.txt"


class LanguageParams(StageParams):
    """Thresholds of the language stage (the module docstring says what each measures)."""

    min_han_ratio: float = Field(default=0.3, ge=0.0, le=1.0, description="Han share making a field Chinese")
    ja_kana_ratio: float = Field(default=0.15, gt=0.0, le=1.0, description="kana share of Han+kana: Japanese")
    min_mismatch_words: int = Field(default=3, ge=1, description="offending words/units for a mismatch")
    max_everyday_words: int = Field(
        default=0, ge=0, description="everyday English words (wordfreq) a Chinese answer may hold"
    )
    max_code_switch_words: int = Field(default=2, ge=0, description="other offending words a Chinese answer may hold")
    max_code_switch_ratio: float = Field(default=0.05, ge=0.0, le=1.0, description="their share of its units")
    max_english_run: int = Field(default=3, ge=1, description="offending words one English clause may hold")
    foreign_quote_words: int = Field(default=3, ge=1, description="offending words making an instruction a quote")
    extra_terms: tuple[str, ...] = Field(default=(), description="more terms (words or phrases)")
    terms_file: str | None = Field(default=None, description="UTF-8 file of more terms, one a line, # comments")
    check_history: bool = Field(default=True, description="also check assistant turns of the history")


def _load_terms(lines: list[str], words: set[str], phrases: set[str]) -> None:
    for raw in lines:
        term = raw.strip()
        if term and not term.startswith("#"):
            (phrases if " " in term else words).add(term.lower())


class LanguageStage(RecordStage):
    """Drop records that are not Chinese, answered in the wrong language, or code-switched; tag every record
    with its ``language_profile``: ``zh``, ``zh+terms``, ``zh+code``, ``zh+en`` (foreign text the task asks
    for), ``zh+translation``, ``zh+mixed`` (offending words under the thresholds) or ``neutral`` (no letters);
    dropped records get e.g. ``latin``, ``ja`` or ``zh>latin``."""

    name: ClassVar[str] = "language"
    Params: ClassVar[type[StageParams]] = LanguageParams
    added_columns: ClassVar[tuple[tuple[str, pa.DataType], ...]] = (("language_profile", pa.string()),)
    # Loaded by setup() in each process (wordfreq's word sets are large).
    resources: ClassVar[tuple[str, ...]] = ("_terms", "_phrases", "_phrase_list", "_english", "_known")

    def __init__(self, params: StageParams | None = None) -> None:
        super().__init__(params)
        self.p: LanguageParams = self.params  # type: ignore[assignment]
        self._terms: frozenset[str] | None = None
        self._phrases: re.Pattern[str] | None = None
        self._phrase_list: tuple[str, ...] = ()
        self._detail_cache: dict[tuple[object, ...], str] = {}
        self._english: frozenset[str] = frozenset()
        self._known: frozenset[str] = frozenset()

    def check(self) -> None:
        path = self.p.terms_file
        if path is not None and not Path(path).is_file():
            raise ConfigError(f"language.terms_file: '{path}' is not a file (UTF-8, one term per line)")

    def setup(self) -> None:
        if self._terms is not None:
            return
        words: set[str] = set()
        phrases: set[str] = set()
        _load_terms(BUILTIN_TERMS.read_text(encoding="utf-8").splitlines(), words, phrases)
        if self.p.terms_file is not None:
            try:
                extra = Path(self.p.terms_file).read_text(encoding="utf-8").splitlines()
            except (OSError, UnicodeDecodeError) as exc:
                raise ConfigError(f"language.terms_file: cannot read '{self.p.terms_file}': {exc}") from exc
            _load_terms(extra, words, phrases)
        _load_terms(list(self.p.extra_terms), words, phrases)
        self._terms = frozenset(words)
        self._english, self._known = word_sets()
        self._phrase_list = tuple(sorted(phrases))
        if phrases:
            alts = "|".join(re.escape(p) for p in sorted(phrases, key=len, reverse=True))
            self._phrases = re.compile(f"(?<![{LATIN}])(?:{alts})(?![{LATIN}])", re.I)

    # ---- measuring -----------------------------------------------------------------------------------------

    def measure(self, text: str, code_task: bool = False, answer: bool = True) -> Measure:
        """:func:`stages.language.measure.measure` with this stage's phrases."""
        return measure(text, code_task, answer, self._phrases, self._phrase_list or ())

    def language(self, m: Measure) -> str:
        """``zh``, ``ja``, ``ko``, ``latin``, ``other`` or ``none`` (no units)."""
        n = m.units
        if n == 0:
            return "none"
        if m.kana and m.kana >= self.p.ja_kana_ratio * (m.han + m.kana):
            return "ja"
        if m.han >= self.p.min_han_ratio * n:
            return "zh"
        return max((m.latin, "latin"), (m.hangul, "ko"), (m.kana + m.han, "ja"), (m.other, "other"))[1]

    def offending(self, words: tuple[str, ...], vocab: set[str]) -> list[str]:
        """:func:`stages.language.words.offending` with this stage's terms."""
        return offending(words, vocab, self._terms if self._terms is not None else frozenset())

    # ---- judging -----------------------------------------------------------------------------------------
    def judge_answer(
        self, field: str, answer: str, prompt: str, input_: str, system: str, input_lang: str | None
    ) -> tuple[str | None, str | None, str, str | None]:
        """(reason, detail, profile, exemption) of the ``answer`` to a Chinese ``prompt``. What the task allows
        is only worked out when the answer is not plain Chinese."""
        if not ANY_LETTER.search(answer):
            return None, None, "zh", None
        low = prompt.lower()
        code_task = CODE_TASK.search(low) is not None
        m = self.measure(answer, code_task)
        lang = self.language(m)
        code = m.fenced_code or m.code_lines > 0
        if lang == "none":
            return None, None, ("zh+code" if code else "zh"), ("code" if code else None)
        vocab = prompt_words(prompt, input_, system) if m.words else set()
        if m.words and "=" in answer:  # a name the answer assigns (sum = 0) is an identifier wherever it appears
            vocab.update(x.lower() for x in ASSIGNED.findall(answer))
        bad = self.offending(m.words, vocab)
        if lang != "zh" or bad:
            if input_lang is None:
                input_lang = self.language(self.measure(input_, code_task, answer=False))
            allow = allowance(prompt, low, input_lang, system, self.offending, self.p.foreign_quote_words)
            if allow is not None:
                return None, None, ("zh+translation" if allow == "translation" else "zh+en"), allow
        if lang != "zh":
            if code_task and lang == "latin" and prose_share(m.words) < 0.12:
                return None, None, "zh+code", "code"  # a code task's output: code or data, not prose
            if lang == "latin" and bad and not self._words_of_a_language(bad):
                return None, None, "zh+en", "encoding"  # a cipher, an encoding or a notation, not a language
            if len(bad) + m.kana + m.hangul + m.other >= self.p.min_mismatch_words:
                return "language_mismatch", self._detail(field, m, lang, bad), f"zh>{lang}", None
        elif bad and (not (code_task or code) or prose_share(bad) > 0):  # near code, bare words are identifiers
            clause = self._english_clause(m.frame, vocab)
            many = (
                len(bad) > self.p.max_code_switch_words
                and len(bad) > self.p.max_code_switch_ratio * m.units
                and self._words_of_a_language(bad, self._english)  # not a dish or a place in another language
            )
            everyday = [] if code_task or code else self.everyday(bad)  # near code they are identifiers
            if many or clause or len(everyday) > self.p.max_everyday_words:
                detail = self._detail(field, m, lang, bad, clause=clause, everyday=everyday)
                return "code_switching", detail, "zh+mixed", None
        if code:
            return None, None, "zh+code", "code"
        return None, None, ("zh+mixed" if bad else "zh+terms" if m.words else "zh"), None

    def everyday(self, bad: list[str]) -> list[str]:
        """The everyday English words among the offending words ``bad`` (:mod:`stages.language.english_words`): the
        code-switching of ``我今天感觉amazing``. None when the words are mostly no word of a known language (a
        cipher, a dish or place name in another language), and a lone word must have three letters (``go``,
        ``ma`` are too often something else)."""
        if not self._words_of_a_language(bad, self._english):
            return []
        out = [w for w in bad if w.lower() in self._english]
        return out if len(out) > 1 or (out and len(out[0]) >= 3) else []

    def _words_of_a_language(self, words: list[str], vocabulary: frozenset[str] | None = None) -> bool:
        """Whether at least half of ``words`` are everyday words of a language (of ``vocabulary``; by default
        of any language :mod:`stages.language.english_words` knows)."""
        known = self._known if vocabulary is None else vocabulary
        return 2 * sum(1 for w in words if w.lower() in known) >= len(words)

    def _english_clause(self, frame: str, vocab: set[str]) -> str | None:
        """The first untranslated English clause in Chinese text: an unbroken Latin stretch with more than
        ``max_english_run`` offending words, one of them a function word ("he was elected to the Senate")."""
        for run in LATIN_STRETCH.findall(frame):
            words = latin_words(run)
            if len(words) > self.p.max_english_run:
                bad = self.offending(words, vocab)
                if len(bad) > self.p.max_english_run and prose_share(bad) > 0:
                    return run.strip()
        return None

    @staticmethod
    def _detail(
        field: str, m: Measure, lang: str, bad: list[str], clause: str | None = None, everyday: list[str] | None = None
    ) -> str:
        extra: dict[str, object] = {"clause": clause} if clause else {}
        if everyday:
            extra["everyday_english"] = everyday[:12]
        return detail_json(
            field=field,
            language=lang,
            ratios=m.ratios(),
            units=m.units,
            offending_count=len(bad),
            offending=bad[:12],
            **extra,
        )

    def judge(
        self, system: str, instruction: str, input_: str, output: str, history: list[dict[str, str]] | None
    ) -> tuple[str | None, str | None, str, str | None]:
        """(reason, detail, profile, exemption) of one record."""
        ins = self.measure(instruction, answer=False)
        ins_lang = self.language(ins)
        input_lang = None
        if ins_lang == "none":
            inp = self.measure(input_, answer=False)
            input_lang = self.language(inp)
            if input_lang != "zh":
                return self._judge_foreign_prompt(instruction, "input", inp, output)
        elif ins_lang != "zh":
            return self._judge_foreign_prompt(instruction, "instruction", ins, output)
        reason, detail, profile, exempt = self.judge_answer("output", output, instruction, input_, system, input_lang)
        if reason is None and history and self.p.check_history:
            for i, turn in enumerate(history):
                user, assistant = turn.get("user") or "", turn.get("assistant") or ""
                if not ANY_LETTER.search(assistant) or self.language(self.measure(user, answer=False)) != "zh":
                    continue
                r, d, _, _ = self.judge_answer(f"history[{i}].assistant", assistant, user, "", system, "none")
                if r is not None:
                    return r, d, profile, None
        return reason, detail, profile, exempt

    def _judge_foreign_prompt(
        self, instruction: str, field: str, prompt: Measure, output: str
    ) -> tuple[str | None, str | None, str, str | None]:
        """A prompt that is not Chinese, or has no letters at all."""
        prompt_lang = self.language(prompt)
        out = self.measure(output, answer=False)
        out_lang = self.language(out)
        if prompt_lang == "none" and out_lang in ("zh", "none"):
            return None, None, ("zh" if out_lang == "zh" else "neutral"), None
        if out_lang != "zh":
            ratios = (tuple(prompt.ratios().items()), tuple(out.ratios().items()))
            key = (field, prompt_lang, out_lang, ratios)
            detail = self._detail_cache.get(key)  # untranslated rows repeat the same few details
            if detail is None:
                detail = detail_json(
                    field=field,
                    language=prompt_lang,
                    ratios=dict(ratios[0]),
                    output_language=out_lang,
                    output_ratios=dict(ratios[1]),
                )
                if len(self._detail_cache) < 4096:
                    self._detail_cache[key] = detail
            return "non_chinese", detail, prompt_lang, None
        if TRANSLATION.search(instruction.lower()):
            return None, None, "zh+translation", "translation"
        detail = detail_json(field="output", language="zh", prompt_field=field, prompt_language=prompt_lang)
        return "language_mismatch", detail, f"{prompt_lang}>zh", None

    # ---- the stage ---------------------------------------------------------------------------------------
    def process(self, batch: pa.Table) -> StageResult:
        """Judge a batch. Rows whose instruction is Han without any letters and whose output has no letters
        are plain Chinese: found with Arrow's vectorised regex (RE2) and never looked at in Python."""
        if self._terms is None:
            self.setup()
        n = batch.num_rows
        plain = self.plain_chinese(batch)
        reasons: list[str | None] = [None] * n
        details: list[str | None] = [None] * n
        profiles = ["zh"] * n
        counters: dict[str, int] = {}
        if n_plain := int(plain.sum()):
            counters["profile.zh"] = n_plain
        rest = np.flatnonzero(~plain)
        if len(rest):
            sub = batch.take(pa.array(rest))
            cols = [sub.column(c).to_pylist() for c in ("system", "instruction", "input", "output", "history")]
            for k, system, instruction, input_, output, history in zip(rest.tolist(), *cols, strict=True):
                reason, detail, profile, exempt = self.judge(
                    system or "", instruction or "", input_ or "", output or "", history
                )
                reasons[k], details[k], profiles[k] = reason, detail, profile
                if reason is None:
                    counters[f"profile.{profile}"] = counters.get(f"profile.{profile}", 0) + 1
                    if exempt is not None:
                        counters[f"allowed.{exempt}"] = counters.get(f"allowed.{exempt}", 0) + 1
        table = batch.append_column("language_profile", pa.array(profiles, pa.string()))
        return StageResult(table, reasons, details, counters)

    def plain_chinese(self, batch: pa.Table) -> np.ndarray:
        """Boolean mask of the rows :meth:`judge` would keep as ``zh`` without measuring a Latin word."""
        if batch.num_rows == 0:
            return np.zeros(0, dtype=bool)
        ins = pc.fill_null(batch.column("instruction"), "")
        out = pc.fill_null(batch.column("output"), "")
        mask = pc.and_(
            pc.and_(pc.invert(pc.match_substring_regex(ins, RE2_LETTER)), pc.match_substring_regex(ins, RE2_HAN)),
            pc.invert(pc.match_substring_regex(out, RE2_LETTER)),
        )
        if self.p.check_history:
            turns = pc.fill_null(pc.list_value_length(batch.column("history")), 0)
            mask = pc.and_(mask, pc.equal(turns, 0))
        return np.asarray(mask.to_numpy(zero_copy_only=False), dtype=bool)
