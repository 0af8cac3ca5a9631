"""Find the parts of a text that must not be touched or measured as prose.

Fenced code blocks (```...```), inline code (`...`), URLs, e-mail addresses and LaTeX math ($...$, $$...$$,
\\(...\\), \\[...\\]) are *protected*: normalize leaves them byte-for-byte, language does not count their
Latin letters as code-switching.
"""

from __future__ import annotations

import re

# Order matters: fences before inline code, display math before inline math.
_PROTECTED = re.compile(
    r"```.*?(?:```|\Z)"  # fenced code (an unclosed fence protects to the end)
    r"|`[^`\n]+`"  # inline code
    r"|\$\$.+?\$\$"  # display math
    r"|\\\[.+?\\\]"  # \[ ... \]
    r"|\\\(.+?\\\)"  # \( ... \)
    r"|\$[^$\n]+\$"  # inline math
    r"|(?:https?|ftp)://[^\s\u3000-\u303f\uff01-\uff0f\uff1a-\uff20\u4e00-\u9fff<>\"']+"  # URL
    r"|www\.[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+[^\s\u3000-\u303f\uff01-\uff0f\u4e00-\u9fff<>\"']*"
    r"|[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}",  # e-mail
    re.DOTALL,
)


def split_protected(text: str) -> list[tuple[str, bool]]:
    """Split ``text`` into consecutive ``(segment, protected)`` pieces that concatenate back to ``text``."""
    if not text:
        return []
    if (
        "`" not in text
        and "$" not in text
        and "\\" not in text
        and "@" not in text
        and "://" not in text
        and "www." not in text
    ):
        return [(text, False)]
    out: list[tuple[str, bool]] = []
    pos = 0
    for m in _PROTECTED.finditer(text):
        start, end = m.start(), _url_end(m.group(0), m.start(), m.end())
        if start < pos:
            continue
        if start > pos:
            out.append((text[pos:start], False))
        out.append((text[start:end], True))
        pos = end
    if pos < len(text):
        out.append((text[pos:], False))
    return out


_URL_TRAILING = ".,;:!?)]}'\"”’"
_PAIRS = {")": "(", "]": "[", "}": "{"}


def _url_end(span: str, start: int, end: int) -> int:
    """Trailing punctuation after a URL belongs to the sentence (``见(https://a.cn/x)。``), unless it closes a
    bracket opened inside the URL (``https://en.wikipedia.org/wiki/Go_(game)``)."""
    if not (span.startswith(("http", "ftp", "www.")) and span[-1] in _URL_TRAILING):
        return end
    while end > start and span[end - start - 1] in _URL_TRAILING:
        ch = span[end - start - 1]
        opener = _PAIRS.get(ch)
        body = span[: end - start - 1]
        if opener is not None and body.count(opener) > body.count(ch):
            break
        end -= 1
    return end


def strip_protected(text: str, replacement: str = " ") -> str:
    """``text`` with every protected span replaced by ``replacement`` (for measuring prose only)."""
    return "".join(replacement if prot else seg for seg, prot in split_protected(text))


def has_code_fence(text: str) -> bool:
    return "```" in text
