"""Measuring one field for the language stage (stages/language/stage.py): its units by script.

Set aside first: code (fences, inline code; :mod:`stages.textspans`), URLs, e-mails,
LaTeX, unfenced code lines (``def f(x):``, ``SELECT ...``, ``<div>``), tags, identifiers (``root.left``,
``max_len``, ``bark()``, a name the answer assigns: ``sum = 0``), paths (``g/mol``), hashtags and domain names,
words glued to a digit (``omega-3``, ``AI4What``), a phrase glossed by its acronym (``Garbage in, garbage out
(GIGO)``), then quoted and bracketed material (“…”, "…", 《…》, （…）,
(…)): quotations, titles and glosses such as ``光合作用（photosynthesis）``. The rest is counted in *units*: Han
characters, kana, Hangul syllables, Latin words and words of other scripts (one-letter words such as the ``x``
of a formula are not units). A field is Chinese when Han is at least ``min_han_ratio`` of its units and it is
not Japanese (kana at least ``ja_kana_ratio`` of Han + kana). A field with no units (``42``) has no language.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass

from stages.language.words import LATIN, PROSE_WORDS, glossed_name
from stages.textspans import split_protected

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
LATIN_STRETCH = re.compile(f"[{_LATIN}][{_LATIN}0-9'’ ,;:.!?-]{{8,}}")
ANY_LETTER = re.compile(f"[{_LATIN}{_KANA}{_HANGUL}{_OTHER}]")
HAS_LATIN = re.compile(f"[{_LATIN}]")
_HAS_HAN = re.compile(f"[{_HAN}]")
RE2_LETTER = f"[{_LATIN}{_KANA}{_HANGUL}{_OTHER}]"  # the same classes for Arrow's RE2 (vectorised)
RE2_HAN = f"[{_HAN}]"
_NON_LATIN_FOREIGN = re.compile(f"[{_KANA}{_HANGUL}{_OTHER}]")
QUOTED = re.compile(
    r"“[^”]*”|\"[^\"\n]*\"|「[^」]*」|『[^』]*』|《[^》]*》|‘[^’]*’|（[^）]*）|\([^)\n]*\)|【[^】]*】|\[[^\]\n]*\]"
)
_TAG = re.compile(r"</?[A-Za-z][^<>\n]*>")
ASSIGNED = re.compile(r"\b([A-Za-z_]\w*)\s*(?:[-+*/%]?=(?!=))")
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


def latin_words(text: str) -> tuple[str, ...]:
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
    bare = [i for i, ln in enumerate(lines) if HAS_LATIN.search(ln) and not _han_outside_strings(ln)]
    share = len(code) / max(sum(1 for ln in lines if ln.strip()), 1)
    if (code_task and share >= 0.3) or (len(code) >= 2 and share >= 0.5):
        code.update(bare)
    elif code_task:
        code.update(i for i in bare if _CODE_SYMBOLS.search(lines[i]))
    return "\n".join(ln for i, ln in enumerate(lines) if i not in code), len(code)


def _han_outside_strings(line: str) -> bool:
    return _HAS_HAN.search(line) is not None and _HAS_HAN.search(QUOTED.sub("", line)) is not None


def prose_share(words: tuple[str, ...] | list[str]) -> float:
    """Share of English function words: about 0.3 in prose, near 0 in code, data and lists of names."""
    return sum(1 for w in words if w.lower() in PROSE_WORDS) / len(words) if words else 0.0


def measure(
    text: str,
    code_task: bool = False,
    answer: bool = True,
    phrases: re.Pattern[str] | None = None,
    phrase_list: tuple[str, ...] = (),
) -> Measure:
    """Count the scripts of ``text`` outside code, URLs, e-mails, LaTeX, quotes and brackets (falling back
    to the quoted material when nothing else is left). A prompt (``answer=False``) without Han is only
    counted: it cannot be Chinese, and its words are not judged. ``phrases`` matches the listed terms of several
    words (``phrase_list``, lower case), each counted as one accepted name."""
    if not text or not ANY_LETTER.search(text):  # fast path: Han, digits and punctuation only
        return Measure(han=sum(map(len, _HAN_RUN.findall(text))))
    if not answer and not code_task and not _HAS_HAN.search(text):
        if _NON_LATIN_FOREIGN.search(text):
            return count_scripts(text, False)
        return Measure(latin=1) if _WORD2.search(text) else Measure()  # Latin only: its share is 1
    if "&" in text and _ENTITY.search(text):
        text = html.unescape(text)  # &lt;div&gt; is markup, &#39; an apostrophe
    fenced = False
    if "`" in text or "$" in text or "\\" in text or "@" in text or "://" in text or "www." in text:
        parts = split_protected(text)
        fenced = any(prot and seg.startswith("`") for seg, prot in parts)
        text = "".join(" " if prot else seg for seg, prot in parts)
    code_lines = 0
    if HAS_LATIN.search(text):
        text, code_lines = _split_code_lines(text, code_task)
        if "=" in text or "[" in text or "/" in text:
            text = _IDENTIFIER_USE.sub(" ", text)
        if "(" in text or "（" in text:
            text = _GLOSSED.sub(glossed_name, text)
        if "<" in text:
            text = _TAG.sub(" ", text)
        if phrases is not None:
            low = text.lower()
            if any(p in low for p in phrase_list):  # a listed phrase counts as one accepted name
                text = phrases.sub(" Phrase ", text)
    frame = QUOTED.sub(" ", text)
    m = count_scripts(frame, True)
    if m.units == 0 and len(frame) != len(text):
        frame = text
        m = count_scripts(frame, True)
    m.code_lines, m.fenced_code, m.frame = code_lines, fenced, frame
    return m


def count_scripts(text: str, keep_words: bool) -> Measure:
    """The units of ``text`` by script (and its Latin words when ``keep_words``), as it stands."""
    han = sum(map(len, _HAN_RUN.findall(text)))
    words = latin_words(text) if HAS_LATIN.search(text) else ()
    m = Measure(han=han, latin=len(words), words=words if keep_words else ())
    if _NON_LATIN_FOREIGN.search(text):
        m.kana = sum(map(len, _KANA_RUN.findall(text)))
        m.hangul = sum(map(len, _HANGUL_RUN.findall(text)))
        m.other = len(_OTHER_WORD.findall(text))
    return m
