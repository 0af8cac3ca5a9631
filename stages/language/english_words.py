"""Which Latin words are everyday words of a language: the ``wordfreq`` word lists (shipped inside the wheel,
read offline; https://github.com/rspeer/wordfreq).

The language stage uses two sets:

* *everyday English*: the ``small`` English list of wordfreq — about 29,000 words with a Zipf frequency of 3 or
  more (once per million words: ``amazing``, ``lonely``, ``deadline``). An everyday English word written inside
  Chinese prose is code-switching, unless it is a term, a name or a word of the prompt.
* *known words*: everyday words of English, Spanish, French, German, Italian, Portuguese or Dutch. A run of
  Latin words most of which are no word of these (``Wklw kh d vhfuhw phvvdjh``, ``Ellohay orldway``, FEN
  ``rnbqkbnr/pppppppp``) is a cipher, an encoding or a notation, not a language.
"""

from __future__ import annotations

from functools import lru_cache

from schemas.errors import ConfigError

KNOWN_LANGUAGES = ("en", "es", "fr", "de", "it", "pt", "nl")


@lru_cache(maxsize=1)
def word_sets() -> tuple[frozenset[str], frozenset[str]]:
    """(everyday English words, known words of the :data:`KNOWN_LANGUAGES`), lower-case; loaded once per
    process (about 50 ms)."""
    try:
        import wordfreq
    except ImportError as exc:  # a declared dependency; a broken install gets a hint, not a traceback
        raise ConfigError("language: the 'wordfreq' package is missing; run: pip install 'wordfreq>=3.0'") from exc
    english = frozenset(wordfreq.get_frequency_dict("en", wordlist="small"))
    known = set(english)
    for lang in KNOWN_LANGUAGES[1:]:
        known.update(wordfreq.get_frequency_dict(lang, wordlist="small"))
    return english, frozenset(known)
