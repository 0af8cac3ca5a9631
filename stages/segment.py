"""Chinese word segmentation (jieba), shared by the stages and the report that need words.

jieba runs at about 200k characters/s, far slower than everything else in ``normalize``, so it is never on
that stage's hot path: stages that need words (quality's repetition and verb–object checks, the report's word
statistics) call :func:`get_segmenter` where they use it. The dictionary is loaded once per process, on first
use, and a segmenter with a user dictionary is a separate instance, so user words never leak into another
stage's segmentation.

    seg = get_segmenter()                      # default dictionary
    seg.cut("年终奖发了")                       # ['年终奖', '发了']
    seg.posseg("我们吃苹果")                    # [('我们', 'r'), ('吃', 'v'), ('苹果', 'n')]
    get_segmenter("my_words.txt").cut(text)    # with a jieba user dictionary ("word [freq] [tag]" lines)
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path
from typing import Any

from schemas.errors import ConfigError


class Segmenter:
    """A jieba tokenizer of its own (not jieba's module-level one), loaded lazily and thread-safely.

    ``user_dict`` is a jieba user dictionary: UTF-8, one ``word [freq] [pos_tag]`` a line. ``hmm`` lets jieba
    guess words that are in no dictionary (names, new words); turn it off for strictly dictionary-based cuts.
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
        self._pos: Any = None

    def __getstate__(self) -> dict[str, Any]:
        # Loaded dictionaries and locks stay in their process; the copy loads its own on first use.
        return {"user_dict": self.user_dict, "hmm": self.hmm}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["user_dict"], state["hmm"])  # type: ignore[misc]

    @property
    def tokenizer(self) -> Any:
        """The loaded ``jieba.Tokenizer``: loaded on first access (about a second; jieba caches it on disk)."""
        if self._tokenizer is None:
            with self._lock:
                if self._tokenizer is None:
                    self._tokenizer = self._load()
        return self._tokenizer

    def _load(self) -> Any:
        return _tokenizer(str(self.user_dict) if self.user_dict is not None else None)

    def cut(self, text: str) -> list[str]:
        """The words of ``text`` in order; spaces and punctuation come back as their own tokens."""
        if not text:
            return []
        return list(self.tokenizer.cut(text, HMM=self.hmm))

    def cut_many(self, texts: Iterable[str]) -> list[list[str]]:
        """:meth:`cut` over many texts (one tokenizer lookup, same results)."""
        cut, hmm = self.tokenizer.cut, self.hmm
        return [list(cut(t, HMM=hmm)) if t else [] for t in texts]

    def words(self, text: str) -> list[str]:
        """Like :meth:`cut` without whitespace-only tokens."""
        return [w for w in self.cut(text) if not w.isspace()]

    def posseg(self, text: str) -> list[tuple[str, str]]:
        """``(word, part-of-speech tag)`` pairs with jieba's ICTCLAS-style tags: ``v`` verb, ``n`` noun,
        ``vn`` verbal noun, ``r`` pronoun, ``x`` punctuation/unknown, … (user-dictionary tags are used)."""
        if not text:
            return []
        if self._pos is None:
            tok = self.tokenizer
            with self._lock:
                if self._pos is None:
                    self._pos = _pos_tokenizer(tok, self.user_dict is None)
        pos = self._pos
        pos.makesure_userdict_loaded()
        return [(p.word, p.flag) for p in pos.cut(text, HMM=self.hmm)]


@lru_cache(maxsize=8)
def _tokenizer(user_dict: str | None) -> Any:
    """The loaded ``jieba.Tokenizer`` for a user dictionary (None: jieba's own), once per process: segmenters
    that differ only in ``hmm`` share it (HMM is a choice of each call, not of the loaded dictionary)."""
    try:
        import jieba
    except ImportError as e:  # pragma: no cover - jieba is a dependency
        raise ConfigError("segment: word segmentation needs jieba: pip install jieba") from e
    jieba.setLogLevel(logging.WARNING)  # jieba logs its loading to stderr at DEBUG; stages never print
    tok = jieba.Tokenizer()
    tok.initialize()
    if user_dict is not None:
        try:
            tok.load_userdict(user_dict)
        except (ValueError, UnicodeDecodeError) as e:
            raise ConfigError(f"segment: cannot read user dictionary '{user_dict}': {e}") from e
    return tok


_POS_LOCK = threading.Lock()
_POS: dict[int, Any] = {}


def _pos_tokenizer(tok: Any, default_dict: bool) -> Any:
    """One ``jieba.posseg.POSTokenizer`` per loaded tokenizer. For jieba's own dictionary it shares the word tags
    that importing ``jieba.posseg`` already read from that dictionary, instead of reading it a second time."""
    from jieba import posseg

    with _POS_LOCK:
        if id(tok) not in _POS:
            if default_dict and tok.dictionary == posseg.dt.tokenizer.dictionary:
                pos = posseg.POSTokenizer.__new__(posseg.POSTokenizer)
                pos.tokenizer = tok
                pos.word_tag_tab = dict(posseg.dt.word_tag_tab)
            else:
                pos = posseg.POSTokenizer(tok)
            _POS[id(tok)] = pos
        return _POS[id(tok)]


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
