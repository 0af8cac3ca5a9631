"""Chinese word segmentation (jieba's dictionary and algorithm, through ``rjieba``), shared by the stages and the
report that need words.

``rjieba`` binds jieba-rs, a port of jieba with jieba's own dictionary compiled in: a dictionary-only cut
(``hmm=False``) is the same as jieba 0.42's, and it loads in about 0.05 s of CPU where jieba's cached dictionary
takes 0.4 s and its part-of-speech tables another 0.35 s (fixed costs of every run that needs words). Stages that
need words (safety's lexicon word boundaries, the report's verb–object sample) call :func:`get_segmenter` where
they use it; the dictionary is loaded once per process, on first use, and a segmenter with a user dictionary is a
separate instance, so user words never leak into another stage's segmentation.

    seg = get_segmenter()                      # default dictionary
    seg.cut("年终奖发了")                       # ['年终奖', '发了']
    seg.posseg("我们吃苹果")                    # [('我们', 'r'), ('吃', 'v'), ('苹果', 'n')]
    get_segmenter("my_words.txt").cut(text)    # with a jieba user dictionary ("word [freq] [tag]" lines)
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path
from typing import Any

from schemas.errors import ConfigError
from stages.assets import text_lines


class Segmenter:
    """A tokenizer of its own (not the module-level one), loaded lazily and thread-safely.

    ``user_dict`` is a jieba user dictionary: UTF-8, one ``word [freq] [pos_tag]`` a line. ``hmm`` lets the
    tokenizer guess words that are in no dictionary (names, new words); turn it off for strictly dictionary-based
    cuts.
    """

    def __init__(self, user_dict: str | Path | None = None, hmm: bool = True) -> None:
        self.user_dict = Path(user_dict) if user_dict is not None else None
        if self.user_dict is not None and not self.user_dict.is_file():
            raise ConfigError(
                f"segment: user dictionary '{self.user_dict}' does not exist; give a UTF-8 text file "
                "with one 'word [freq] [pos_tag]' a line"
            )
        self.hmm = hmm
        self._lock = threading.Lock()
        self._tokenizer: Any = None

    def __getstate__(self) -> dict[str, Any]:
        # Loaded dictionaries and locks stay in their process; the copy loads its own on first use.
        return {"user_dict": self.user_dict, "hmm": self.hmm}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["user_dict"], state["hmm"])  # type: ignore[misc]

    @property
    def tokenizer(self) -> Any:
        """The loaded tokenizer (``rjieba``'s default or an ``rjieba.Jieba`` with the user words): loaded on first
        access (about 0.07 s)."""
        if self._tokenizer is None:
            with self._lock:
                if self._tokenizer is None:
                    self._tokenizer = _tokenizer(str(self.user_dict) if self.user_dict is not None else None)
        return self._tokenizer

    def cut(self, text: str) -> list[str]:
        """The words of ``text`` in order; spaces and punctuation come back as their own tokens."""
        if not text:
            return []
        return list(self.tokenizer.cut(text, self.hmm))

    def cut_many(self, texts: Iterable[str]) -> list[list[str]]:
        """:meth:`cut` over many texts (one tokenizer lookup, same results)."""
        cut, hmm = self.tokenizer.cut, self.hmm
        return [list(cut(t, hmm)) if t else [] for t in texts]

    def words(self, text: str) -> list[str]:
        """Like :meth:`cut` without whitespace-only tokens."""
        return [w for w in self.cut(text) if not w.isspace()]

    def posseg(self, text: str) -> list[tuple[str, str]]:
        """``(word, part-of-speech tag)`` pairs with jieba's ICTCLAS-style tags: ``v`` verb, ``n`` noun,
        ``vn`` verbal noun, ``r`` pronoun, ``x`` punctuation/unknown, … (user-dictionary tags are used)."""
        if not text:
            return []
        return [(w, t) for w, t in self.tokenizer.tag(text, self.hmm)]


@lru_cache(maxsize=8)
def _tokenizer(user_dict: str | None) -> Any:
    """The loaded tokenizer for a user dictionary (None: jieba's own), once per process: segmenters that differ
    only in ``hmm`` share it (HMM is a choice of each call, not of the loaded dictionary)."""
    try:
        import rjieba
    except ImportError as e:  # pragma: no cover - rjieba is a dependency
        raise ConfigError("segment: word segmentation needs rjieba: pip install rjieba") from e
    if user_dict is None:
        return rjieba  # its module-level cut/tag use the default dictionary it loaded on import
    tok = rjieba.Jieba()
    for number, word, freq, tag in _user_words(Path(user_dict)):
        try:
            tok.add_word(word, freq, tag)
        except (ValueError, OverflowError) as e:
            raise ConfigError(f"segment: user dictionary '{user_dict}' line {number}: {e}") from e
    return tok


def _user_words(path: Path) -> Iterable[tuple[int, str, int | None, str | None]]:
    """``(line number, word, freq, tag)`` of a jieba user dictionary: ``word [freq] [tag]`` a line, blank lines
    skipped; a word without a frequency gets the one that makes it a word (as jieba's ``suggest_freq``)."""
    for number, line in enumerate(text_lines(path, "segment: user dictionary"), 1):
        parts = line.split()
        if not parts:
            continue
        freq: int | None = None
        tag: str | None = None
        rest = parts[1:]
        if rest and rest[0].isdigit():
            freq, rest = int(rest[0]), rest[1:]
        if rest:
            tag = rest[0]
        if len(rest) > 1:
            raise ConfigError(
                f"segment: user dictionary '{path}' line {number}: '{line.strip()}' is not 'word [freq] [tag]'"
            )
        yield number, parts[0], freq, tag


@lru_cache(maxsize=8)
def _cached(user_dict: str | None, hmm: bool) -> Segmenter:
    return Segmenter(user_dict, hmm)


def get_segmenter(user_dict: str | Path | None = None, hmm: bool = True) -> Segmenter:
    """The process-wide segmenter for this user dictionary (one per dictionary path and ``hmm`` setting)."""
    key = str(Path(user_dict).resolve()) if user_dict is not None else None
    return _cached(key, hmm)


def cut(text: str, user_dict: str | Path | None = None) -> list[str]:
    """Words of ``text`` with the process-wide segmenter (see :func:`get_segmenter`)."""
    return get_segmenter(user_dict).cut(text)
