"""Lexicon matching for the ``safety`` stage: loading term lists, Aho-Corasick search, false-positive guards.

Text is folded (NFKC, lower case) and *compacted*: whitespace and symbols that people interleave to dodge
filters (``傻*逼``, ``傻 逼``, ``傻_逼``) are removed, while sentence punctuation (``。，！？`` …) and line breaks
stay, so a term never matches across two sentences. Terms are compacted the same way when loaded. Terms made
only of ASCII letters and digits are matched on the folded text instead, as whole words.

Two guards keep benign words from firing:

* a hit of a short term (``boundary_max_len`` characters or fewer) counts only if it starts and ends on a
  jieba word boundary, so ``鸦片`` does not fire inside ``鸦片战争`` nor ``艾滋`` inside ``艾滋病预防``;
* an allow-listed phrase masks every hit inside it (``乳腺癌``, ``杀毒软件``), and an allow-listed term is
  removed from the lexicon.

Files: one term a line, optionally followed by a label after a tab (or the last space): a category code
(``hate``), a weight (``0.5``), or a tag the caller maps to a category (e.g. houbb's ``0``..``4``; with several
tags, ``1,4``, the first names the category). Lines
starting with ``#`` are comments.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import ahocorasick

from schemas.errors import ConfigError
from stages.assets import DATA_DIR, text_lines
from stages.safety.categories import CATEGORIES, Category

BUILTIN_DIR = DATA_DIR / "safety_lexicon"

# Everything that is not a word character, a line break or sentence punctuation is dropped before matching.
_OBFUSCATION = re.compile(r"[^\w\n。、，,!?;:！？；：()（）《》「」『』【】“”\"']|_")
_ASCII_TERM = re.compile(r"[a-z0-9]+(?: [a-z0-9]+)*")
_ASCII_WORD = re.compile(r"[a-z0-9]")


def fold(text: str) -> str:
    """NFKC and lower case (full-width letters, compatibility forms); cheap on text already folded."""
    if not unicodedata.is_normalized("NFKC", text):
        text = unicodedata.normalize("NFKC", text)
    return text.lower()


def compact(text: str) -> str:
    """The folded text without interleaved spaces and symbols: the view CJK terms are matched on."""
    return _OBFUSCATION.sub("", fold(text))


@dataclass(frozen=True)
class Hit:
    """One lexicon match that survived the guards."""

    term: str
    category: Category
    weight: float


@dataclass
class Lexicon:
    """Weighted terms by category plus an allow list, compiled into Aho-Corasick automata on first use."""

    terms: dict[str, tuple[Category, float]] = field(default_factory=dict)
    allow: set[str] = field(default_factory=set)
    boundary_max_len: int = 3
    _cjk: ahocorasick.Automaton | None = None
    _ascii: ahocorasick.Automaton | None = None
    _allow: ahocorasick.Automaton | None = None

    def add(self, term: str, category: Category, weight: float = 1.0) -> None:
        """Add a term (compacted); a term listed twice keeps the larger weight."""
        key = _key(term)
        if not key:
            return
        old = self.terms.get(key)
        if old is None or old[1] < weight:
            self.terms[key] = (category, weight)
        self._cjk = None

    def add_allow(self, phrase: str) -> None:
        key = _key(phrase)
        if key:
            self.allow.add(key)
            self._cjk = None

    def compile(self) -> None:
        """Build the automata (called lazily; call it in ``setup`` to pay the cost up front)."""
        cjk, asc, allow = ahocorasick.Automaton(), ahocorasick.Automaton(), ahocorasick.Automaton()
        for term, (cat, weight) in self.terms.items():
            if term in self.allow:
                continue
            target = asc if _ASCII_TERM.fullmatch(term) else cjk
            target.add_word(term, (term, cat, weight))
        for phrase in self.allow:
            allow.add_word(phrase, len(phrase))
        for auto in (cjk, asc, allow):
            auto.make_automaton()
        self._cjk, self._ascii, self._allow = cjk, asc, allow

    def match(self, text: str, cut: Callable[[str], list[str]]) -> list[Hit]:
        """Distinct terms found in ``text`` after the boundary and allow-list guards (``cut`` segments words)."""
        if not text:
            return []
        if self._cjk is None:
            self.compile()
        assert self._cjk is not None and self._ascii is not None and self._allow is not None
        found: dict[str, Hit] = {}
        folded = fold(text)
        dense = _OBFUSCATION.sub("", folded)
        if len(self._cjk):
            allowed = _spans(self._allow, dense) if len(self._allow) else []
            for end, (term, cat, weight) in self._cjk.iter(dense):
                start = end - len(term) + 1
                if term in found or any(a <= start and end < b for a, b in allowed):
                    continue
                if len(term) <= self.boundary_max_len and not _on_boundaries(dense, start, end + 1, cut):
                    continue
                found[term] = Hit(term, cat, weight)
        if len(self._ascii):
            folded = " ".join(folded.split())
            for end, (term, cat, weight) in self._ascii.iter(folded):
                start = end - len(term) + 1
                before = folded[start - 1] if start > 0 else " "
                after = folded[end + 1] if end + 1 < len(folded) else " "
                if not _ASCII_WORD.match(before) and not _ASCII_WORD.match(after):
                    found.setdefault(term, Hit(term, cat, weight))
        return list(found.values())


def _key(term: str) -> str:
    """How a term is stored: compacted, except ASCII phrases, which keep single spaces between words."""
    folded = " ".join(fold(term).split())
    return folded if _ASCII_TERM.fullmatch(folded) else compact(term)


def _spans(auto: ahocorasick.Automaton, text: str) -> list[tuple[int, int]]:
    return [(end - length + 1, end + 1) for end, length in auto.iter(text)]


def _on_boundaries(text: str, start: int, stop: int, cut: Callable[[str], list[str]], pad: int = 8) -> bool:
    """Whether ``text[start:stop]`` starts and ends on word boundaries of a segmentation of its neighbourhood."""
    lo, hi = max(0, start - pad), min(len(text), stop + pad)
    bounds = {lo}
    pos = lo
    for token in cut(text[lo:hi]):
        pos += len(token)
        bounds.add(pos)
    return start in bounds and stop in bounds


def read_terms(
    path: Path,
    category: Category | None = None,
    tags: Mapping[str, Category] | None = None,
    weight: float = 1.0,
) -> Iterable[tuple[str, Category, float]]:
    """Parse a term file into ``(term, category, weight)``; raises ConfigError naming the file and line."""
    tags = tags or {}
    for no, raw in enumerate(text_lines(path, "safety: lexicon"), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        term, label = _split_label(line, tags)
        cat, w = category, weight
        if label is not None:
            if _is_tag(label, tags):
                cat = tags[label.split(",")[0]]  # several tags ("1,4"): the first one names the category
            elif label in CATEGORIES:
                cat = label
            else:
                w = float(label)
        if cat is None:
            raise ConfigError(
                f"safety: {path}:{no}: '{line}' has no category; give the file a `category:` in the recipe "
                f"or write 'term<TAB>category' with one of {', '.join(CATEGORIES)}"
            )
        yield term, cat, w


def _split_label(line: str, tags: Mapping[str, Category]) -> tuple[str, str | None]:
    """Split ``term<TAB>label`` (strict) or ``term label`` (only when the last word is a known label)."""
    if "\t" in line:
        term, label = (s.strip() for s in line.rsplit("\t", 1))
        if not (_is_tag(label, tags) or label in CATEGORIES or _is_number(label)):
            raise ConfigError(
                f"safety: unknown label '{label}' after a tab in lexicon line '{line}'; use a category "
                f"({', '.join(CATEGORIES)}), a weight, or map it with `tags:`"
            )
        return term, label
    parts = line.rsplit(None, 1)
    if len(parts) == 2 and (_is_tag(parts[1], tags) or parts[1] in CATEGORIES or _is_number(parts[1])):
        return parts[0], parts[1]
    return line, None


def _is_tag(label: str, tags: Mapping[str, Category]) -> bool:
    """A tag of the file's own scheme, or several of them joined by commas (houbb: ``1,4``)."""
    return bool(tags) and all(part in tags for part in label.split(","))


def _is_number(s: str) -> bool:
    try:
        float(s)
    except ValueError:
        return False
    return True
