"""What a task allows: when an answer to a Chinese prompt may be in another language (stages/language/stage.py).

A task allows another language (no mismatch or code-switching is checked) when it is a translation whose target
is not Chinese; when the input is not Chinese (the output follows the input: 把下面的句子改成被动语态 with an
English sentence); when it names a foreign language (英语, English, 法语…) or is about words and grammar (单词, 时态,
形容词, 同音, 押韵, 方言…); when its answer is Latin text that is no English prose: ciphers and encodings (凯撒, 加密,
猪拉丁, reverse…), notations (国际象棋, FEN, 和弦…), names, lyrics, dishes and citations (歌, 口号, 菜, 食, 品牌,
参考文献, APA…), search syntax (搜索, 检索, 关键词…); or when the instruction quotes offending words (in quotes or
brackets, or ``foreign_quote_words`` of them anywhere): :func:`allowance`. The stage also allows a code task's
answer that reads as code or data rather than prose; in a code task or an answer with code, bare lower-case words
in Chinese prose are taken for identifiers unless they include English function words. A Chinese prompt answered
with Latin words that are mostly no word of a known language (``Wklw kh d vhfuhw phvvdjh``, ``Th qck brwn fx``)
is allowed as an encoding (profile ``zh+en``, counter ``allowed.encoding``).
"""

from __future__ import annotations

from collections.abc import Callable

from stages.language.measure import HAS_LATIN, QUOTED, latin_words
from stages.language.words import FOREIGN_LANGUAGE, OTHER_TEXT_TASKS, TARGET_ZH, TRANSLATION, WORD_TASK


def allowance(
    instruction: str,
    low: str,
    input_lang: str,
    system: str,
    offending: Callable[[tuple[str, ...], set[str]], list[str]],
    foreign_quote_words: int,
) -> str | None:
    """Why this task may be answered in another language (``translation``, ``foreign_input``,
    ``foreign_language_task``, ``word_task``, ``foreign_quote``), or None. ``low`` is the lower-cased
    instruction; ``offending`` picks the offending words of a word list (the stage's terms known), and
    ``foreign_quote_words`` of them make the instruction a quote."""
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
    if HAS_LATIN.search(instruction):
        if len(offending(latin_words(instruction), set())) >= foreign_quote_words:
            return "foreign_quote"
        quoted = " ".join(QUOTED.findall(instruction))
        if quoted and offending(latin_words(quoted), set()):
            return "foreign_quote"
    return None
