"""Keep Chinese instruction data Chinese, and keep the English that belongs in it.

**Measuring a field.** Set aside first: code (fences, inline code; :mod:`stages.textspans`), URLs, e-mails,
LaTeX, unfenced code lines (``def f(x):``, ``SELECT ...``, ``<div>``), tags, identifiers (``root.left``,
``max_len``, ``bark()``, a name the answer assigns: ``sum = 0``), paths (``g/mol``), hashtags and domain names,
words glued to a digit (``omega-3``, ``AI4What``), a phrase glossed by its acronym (``Garbage in, garbage out
(GIGO)``), then quoted and bracketed material (“…”, "…", 《…》, （…）,
(…)): quotations, titles and glosses such as ``光合作用（photosynthesis）``. The rest is counted in *units*: Han
characters, kana, Hangul syllables, Latin words and words of other scripts (one-letter words such as the ``x``
of a formula are not units). A field is Chinese when Han is at least ``min_han_ratio`` of its units and it is
not Japanese (kana at least ``ja_kana_ratio`` of Han + kana). A field with no units (``42``) has no language.

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

**The task allows another language** (neither mismatch nor code-switching is checked) when it is a translation
whose target is not Chinese; when the input is not Chinese (the output follows the input: 把下面的句子改成被动语态
with an English sentence); when it names a foreign language (英语, English, 法语…) or is about words and
grammar (单词, 时态, 形容词, 同音, 押韵, 方言…); when its answer is Latin text that is no English prose: ciphers and
encodings (凯撒, 加密, 猪拉丁, reverse…), notations (国际象棋, FEN, 和弦…), names, lyrics, dishes and citations
(歌, 口号, 菜, 食, 品牌, 参考文献, APA…), search syntax (搜索, 检索, 关键词…); or when the instruction quotes offending
words (in quotes or brackets, or
``foreign_quote_words`` of them anywhere). A code task's answer that reads as code or data rather than prose is
allowed too; in a code task or an answer with code, bare lower-case words in Chinese prose are taken for
identifiers unless they include English function words. A Chinese prompt answered with Latin words that are
mostly no word of a known language (``Wklw kh d vhfuhw phvvdjh``, ``Th qck brwn fx``) is allowed as an
encoding (profile ``zh+en``, counter ``allowed.encoding``).

**Speed.** Rows whose instruction is Han without letters and whose output has no letters (most of a Chinese
dataset) are settled by Arrow's vectorised RE2 (:meth:`LanguageStage.plain_chinese`); the rest take a Python
path with fast exits (prompts without Han are not analysed word by word; what a task allows is only worked out
for answers that are not plain Chinese).

Only answers (the output, and history assistant turns when ``check_history``) are checked for mismatch and
code-switching; prompts may mix languages. The system prompt is read only for what language it asks for.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
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
from stages.language.words import (
    CHAT_WORDS,
    CODE_TASK,
    FOREIGN_LANGUAGE,
    FUNCTION_WORDS,
    LATIN,
    NAME_LINKS,
    OTHER_TEXT_TASKS,
    PROSE_WORDS,
    TARGET_ZH,
    TRANSLATION,
    WORD_TASK,
    glossed_name,
    in_vocab,
    inside_name,
    pinyin_words,
    prompt_words,
    title_next,
)
from stages.textspans import split_protected

BUILTIN_TERMS = DATA_DIR / "tech_terms.txt"

_HAN = "\u3007\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002fa1f"
_KANA = "\u3041-\u3096\u30a1-\u30fa\u31f0-\u31ff\uff66-\uff9d"
_HANGUL = "\uac00-\ud7a3\u1100-\u11ff\u3131-\u318e"
_LATIN = LATIN
# Greek, Cyrillic, Armenian, Hebrew, Arabic, Indic, Thai, Lao, Tibetan, Myanmar, Georgian, Ethiopic.
_OTHER = "\u0370-\u03ff\u0400-\u052f\u0531-\u058f\u0590-\u05ff\u0600-\u06ff\u0750-\u077f\u0900-\u0fff\u1000-\u137f"

_HAN_RUN = re.compile(f"[{_HAN}]+")
_KANA_RUN = re.compile(f"[{_KANA}]+")
_HANGUL_RUN = re.compile(f"[{_HANGUL}]+")
_OTHER_WORD = re.compile(f"[{_OTHER}]{{2,}}")
_WORD2 = re.compile(f"[{_LATIN}]{{2,}}")
# A Latin token; hashtags, mentions, identifiers, domains and calls are recognised by what they carry.
_TOKEN = re.compile(f"[#@{_LATIN}_][{_LATIN}_.'’-]*(?:\\(\\))?")
_LATIN_STRETCH = re.compile(f"[{_LATIN}][{_LATIN}0-9'’ ,;:.!?-]{{8,}}")
_ANY_LETTER = re.compile(f"[{_LATIN}{_KANA}{_HANGUL}{_OTHER}]")
_HAS_LATIN = re.compile(f"[{_LATIN}]")
_HAS_HAN = re.compile(f"[{_HAN}]")
_RE2_LETTER = f"[{_LATIN}{_KANA}{_HANGUL}{_OTHER}]"  # the same classes for Arrow's RE2 (vectorised)
_RE2_HAN = f"[{_HAN}]"
_NON_LATIN_FOREIGN = re.compile(f"[{_KANA}{_HANGUL}{_OTHER}]")
_QUOTED = re.compile(
    r"“[^”]*”|\"[^\"\n]*\"|「[^」]*」|『[^』]*』|《[^》]*》|‘[^’]*’|（[^）]*）|\([^)\n]*\)|【[^】]*】|\[[^\]\n]*\]"
)
_TAG = re.compile(r"</?[A-Za-z][^<>\n]*>")
_ASSIGNED = re.compile(r"\b([A-Za-z_]\w*)\s*(?:[-+*/%]?=(?!=))")
# An English phrase glossed by its acronym: "Garbage in, garbage out (GIGO)", "machine learning (ML)".
_GLOSSED = re.compile(r"((?:[A-Za-z]+[ ,，-]+){1,7}[A-Za-z]+)\s*[(（]([A-Z]{2,8})[)）]")
# Identifiers by their use (``sum = 0``, ``arr[i]``) and paths (``g/mol``, ``site.net/plays/romeo``).
_IDENTIFIER_USE = re.compile(r"\b[A-Za-z_]\w*(?=\s*(?:[-+*/%]?=(?!=)|\[))|[\w.%-]*[A-Za-z0-9](?:/[\w.%-]+)+/?")
_ENTITY = re.compile(r"&(?:[A-Za-z]{2,8}|#\d{1,6}|#[xX][0-9A-Fa-f]{1,6});")

# A line of code. Strong: a statement keyword, a comment or a tag first, or ending in ; { }.
# Weak (only with no Han outside string literals): a whole call, a bracketed literal, or an assignment.
_STRONG_CODE = re.compile(
    r"^[ \t]*(?:def|class|import|return|elif|else|try|except|lambda|yield|raise|function|var|let|const|public|"
    r"private|protected|static|void|int|float|double|char|bool|struct|enum|namespace|using|package|fn|func|"
    r"echo|print|printf|println|console|System|SELECT|INSERT|UPDATE|DELETE|CREATE|DROP|ALTER|FROM|WHERE|INNER|"
    r"ORDER|GROUP|VALUES|BEGIN|END|ENDIF|WHILE|ENDWHILE|FOR|ENDFOR|PRINT|RETURN|for|while|if|switch|case|"
    r"break)\b|^[ \t]*from[ \t]+\S+[ \t]+import\b|^[ \t]*(?:#(?![A-Za-z])|#include|#define|#!|//|/\*|"
    r"<[!/a-zA-Z]|[{}\])])|[;{}][ \t]*$",
    re.M,
)
_WEAK_CODE = re.compile(
    r"^[ \t]*[\w.$]+\(.*\)[ \t]*[;:]?[ \t]*$|^[ \t]*[\[{].*[\]}][ \t]*$"
    r"|^[ \t]*[\w.$\[\]'\"]+[ \t]*(?:[-+*/%]?=|:=)[ \t]*\S",
    re.M,
)
_CODE_FIRST = frozenset("_#/<{}[]()$")
_CODE_SYMBOLS = re.compile(r"[(){}\[\];=<>]|^\s{2,}\S")


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


@dataclass
class Measure:
    """Script counts of one field, after code, quotes and brackets were set aside."""

    han: int = 0
    kana: int = 0
    hangul: int = 0
    other: int = 0
    latin: int = 0  # Latin words of two letters or more
    words: tuple[str, ...] = ()  # those words (answers only; prompts without Han are only counted)
    code_lines: int = 0
    fenced_code: bool = False
    frame: str = ""  # the text that was measured

    @property
    def units(self) -> int:
        return self.han + self.kana + self.hangul + self.other + self.latin

    def ratios(self) -> dict[str, float]:
        n = self.units or 1
        counts = (("han", self.han), ("latin", self.latin), ("kana", self.kana), ("hangul", self.hangul))
        return {k: round(v / n, 3) for k, v in (*counts, ("other", self.other))}


def _load_terms(lines: list[str], words: set[str], phrases: set[str]) -> None:
    for raw in lines:
        term = raw.strip()
        if term and not term.startswith("#"):
            (phrases if " " in term else words).add(term.lower())


def _latin_words(text: str) -> tuple[str, ...]:
    """Latin words of two letters or more, without hashtags, mentions, identifiers, domains, calls and words
    glued to a digit (``omega-3``, ``AI4What``, ``d3.js``: names and units)."""
    out = []
    for m in _TOKEN.finditer(text):
        tok = m.group(0)
        if tok[0] in "#@" or tok[-1] == ")":
            continue
        if (m.start() and text[m.start() - 1].isdigit()) or text[m.end() : m.end() + 1].isdigit():
            continue
        tok = tok.rstrip(".'’-")
        if len(tok) > 1 and "_" not in tok and "." not in tok:
            out.append(tok)
    return tuple(out)


def _split_code_lines(text: str, code_task: bool) -> tuple[str, int]:
    """``text`` without its unfenced code lines, and how many there were. When code dominates (or appears at all
    in a code task), the Han-free lines around it (comments, docstrings, sample output) are code too."""
    lines = text.split("\n")
    code: set[int] = set()
    for i, ln in enumerate(lines):
        s = ln.strip()
        # Only a line that starts with ASCII code-like text or ends in ; { } can be code (cheap test first).
        if not s or not ((s[0].isascii() and (s[0].isalpha() or s[0] in _CODE_FIRST)) or s[-1] in ";{}"):
            continue
        if not _WORD2.search(s):
            continue  # no word of two letters: a formula ("x = 3") or a placeholder, nothing to measure
        if _STRONG_CODE.search(s) or (_WEAK_CODE.search(s) and not _han_outside_strings(s)):
            code.add(i)
    if not code:
        return text, 0
    bare = [i for i, ln in enumerate(lines) if _HAS_LATIN.search(ln) and not _han_outside_strings(ln)]
    share = len(code) / max(sum(1 for ln in lines if ln.strip()), 1)
    if (code_task and share >= 0.3) or (len(code) >= 2 and share >= 0.5):
        code.update(bare)
    elif code_task:
        code.update(i for i in bare if _CODE_SYMBOLS.search(lines[i]))
    return "\n".join(ln for i, ln in enumerate(lines) if i not in code), len(code)


def _han_outside_strings(line: str) -> bool:
    return _HAS_HAN.search(line) is not None and _HAS_HAN.search(_QUOTED.sub("", line)) is not None


def _prose_share(words: tuple[str, ...] | list[str]) -> float:
    """Share of English function words: about 0.3 in prose, near 0 in code, data and lists of names."""
    return sum(1 for w in words if w.lower() in PROSE_WORDS) / len(words) if words else 0.0


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
            self._phrases = re.compile(f"(?<![{_LATIN}])(?:{alts})(?![{_LATIN}])", re.I)

    # ---- measuring -----------------------------------------------------------------------------------------
    def measure(self, text: str, code_task: bool = False, answer: bool = True) -> Measure:
        """Count the scripts of ``text`` outside code, URLs, e-mails, LaTeX, quotes and brackets (falling back
        to the quoted material when nothing else is left). A prompt (``answer=False``) without Han is only
        counted: it cannot be Chinese, and its words are not judged."""
        if not text or not _ANY_LETTER.search(text):  # fast path: Han, digits and punctuation only
            return Measure(han=sum(map(len, _HAN_RUN.findall(text))))
        if not answer and not code_task and not _HAS_HAN.search(text):
            if _NON_LATIN_FOREIGN.search(text):
                return self._count(text, False)
            return Measure(latin=1) if _WORD2.search(text) else Measure()  # Latin only: its share is 1
        if "&" in text and _ENTITY.search(text):
            text = html.unescape(text)  # &lt;div&gt; is markup, &#39; an apostrophe
        fenced = False
        if "`" in text or "$" in text or "\\" in text or "@" in text or "://" in text or "www." in text:
            parts = split_protected(text)
            fenced = any(prot and seg.startswith("`") for seg, prot in parts)
            text = "".join(" " if prot else seg for seg, prot in parts)
        code_lines = 0
        if _HAS_LATIN.search(text):
            text, code_lines = _split_code_lines(text, code_task)
            if "=" in text or "[" in text or "/" in text:
                text = _IDENTIFIER_USE.sub(" ", text)
            if "(" in text or "（" in text:
                text = _GLOSSED.sub(glossed_name, text)
            if "<" in text:
                text = _TAG.sub(" ", text)
            if self._phrases is not None:
                low = text.lower()
                if any(p in low for p in self._phrase_list):  # a listed phrase counts as one accepted name
                    text = self._phrases.sub(" Phrase ", text)
        frame = _QUOTED.sub(" ", text)
        m = self._count(frame, True)
        if m.units == 0 and len(frame) != len(text):
            frame = text
            m = self._count(frame, True)
        m.code_lines, m.fenced_code, m.frame = code_lines, fenced, frame
        return m

    @staticmethod
    def _count(text: str, keep_words: bool) -> Measure:
        han = sum(map(len, _HAN_RUN.findall(text)))
        words = _latin_words(text) if _HAS_LATIN.search(text) else ()
        m = Measure(han=han, latin=len(words), words=words if keep_words else ())
        if _NON_LATIN_FOREIGN.search(text):
            m.kana = sum(map(len, _KANA_RUN.findall(text)))
            m.hangul = sum(map(len, _HANGUL_RUN.findall(text)))
            m.other = len(_OTHER_WORD.findall(text))
        return m

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
        """The words that are neither terms, names, acronyms, parts of names, nor in the prompt (``vocab``)."""
        terms = self._terms if self._terms is not None else frozenset()
        pinyin = pinyin_words(words)
        out = []
        last = len(words) - 1
        for k, w in enumerate(words):
            lw = w.lower()
            if lw in terms or k in pinyin or (vocab and in_vocab(lw, vocab)):
                continue
            if not w.islower():
                if w.isupper():
                    continue  # an acronym or an operator (search syntax: OR, AND, NOT)
                if lw not in FUNCTION_WORDS and not (lw in CHAT_WORDS and not title_next(words, k)):
                    continue  # a name ("Google"); but "Anyway，我们走吧" and "我觉得Amazing" are no names
                if k < last and words[k + 1][0].isupper():
                    continue  # a title in title case: "The Tickle Monster", "There Will Come Soft Rains"
            elif lw in NAME_LINKS and inside_name(words, k):
                continue
            out.append(w)
        return out

    # ---- judging -----------------------------------------------------------------------------------------
    def allowance(self, instruction: str, low: str, input_lang: str, system: str) -> str | None:
        """Why this task may be answered in another language (``translation``, ``foreign_input``,
        ``foreign_language_task``, ``word_task``, ``foreign_quote``), or None. ``low`` is the lower-cased
        instruction."""
        low_system = system.lower()
        if TRANSLATION.search(low) or TRANSLATION.search(low_system):
            return None if TARGET_ZH.search(low) or TARGET_ZH.search(low_system) else "translation"
        if input_lang not in ("zh", "none"):
            return "foreign_input"
        if FOREIGN_LANGUAGE.search(low) or FOREIGN_LANGUAGE.search(low_system):
            return "foreign_language_task"
        if WORD_TASK.search(instruction):
            return "word_task"
        for name, pattern in OTHER_TEXT_TASKS:
            if pattern.search(low):
                return name
        if _HAS_LATIN.search(instruction):
            if len(self.offending(_latin_words(instruction), set())) >= self.p.foreign_quote_words:
                return "foreign_quote"
            quoted = " ".join(_QUOTED.findall(instruction))
            if quoted and self.offending(_latin_words(quoted), set()):
                return "foreign_quote"
        return None

    def judge_answer(
        self, field: str, answer: str, prompt: str, input_: str, system: str, input_lang: str | None
    ) -> tuple[str | None, str | None, str, str | None]:
        """(reason, detail, profile, exemption) of the ``answer`` to a Chinese ``prompt``. What the task allows
        is only worked out when the answer is not plain Chinese."""
        if not _ANY_LETTER.search(answer):
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
            vocab.update(x.lower() for x in _ASSIGNED.findall(answer))
        bad = self.offending(m.words, vocab)
        if lang != "zh" or bad:
            if input_lang is None:
                input_lang = self.language(self.measure(input_, code_task, answer=False))
            allow = self.allowance(prompt, low, input_lang, system)
            if allow is not None:
                return None, None, ("zh+translation" if allow == "translation" else "zh+en"), allow
        if lang != "zh":
            if code_task and lang == "latin" and _prose_share(m.words) < 0.12:
                return None, None, "zh+code", "code"  # a code task's output: code or data, not prose
            if lang == "latin" and bad and not self._words_of_a_language(bad):
                return None, None, "zh+en", "encoding"  # a cipher, an encoding or a notation, not a language
            if len(bad) + m.kana + m.hangul + m.other >= self.p.min_mismatch_words:
                return "language_mismatch", self._detail(field, m, lang, bad), f"zh>{lang}", None
        elif bad and (not (code_task or code) or _prose_share(bad) > 0):  # near code, bare words are identifiers
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
        for run in _LATIN_STRETCH.findall(frame):
            words = _latin_words(run)
            if len(words) > self.p.max_english_run:
                bad = self.offending(words, vocab)
                if len(bad) > self.p.max_english_run and _prose_share(bad) > 0:
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
                if not _ANY_LETTER.search(assistant) or self.language(self.measure(user, answer=False)) != "zh":
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
            pc.and_(pc.invert(pc.match_substring_regex(ins, _RE2_LETTER)), pc.match_substring_regex(ins, _RE2_HAN)),
            pc.invert(pc.match_substring_regex(out, _RE2_LETTER)),
        )
        if self.p.check_history:
            turns = pc.fill_null(pc.list_value_length(batch.column("history")), 0)
            mask = pc.and_(mask, pc.equal(turns, 0))
        return np.asarray(mask.to_numpy(zero_copy_only=False), dtype=bool)
