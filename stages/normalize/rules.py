"""The text rules of ``normalize`` (see :mod:`stages.normalize.stage`), applied to one unprotected piece of
text at a time, and the batched OpenCC call of ``t2s``."""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from stages.normalize.params import NormalizeParams

# --- character classes -------------------------------------------------------------------------------------
_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002fa1f"  # kana + Han
# 、。〃 〈〉《》「」『』【】 〔〕…, the kept full-width ！（），：；？ and “”‘’…—
_CJK_PUNCT = "\u3001-\u3003\u3008-\u3011\u3014-\u301f\uff01\uff08\uff09\uff0c\uff1a\uff1b\uff1f"
_CJK_PUNCT += "\u201c\u201d\u2018\u2019\u2026\u2014"
_CLOSERS = "\u300d\u300f\uff09\u300b\u3011\u3009"  # 」』）》】〉: a half-width mark after them is Chinese too
_KEEP_FULLWIDTH = "，！？；：（）"
_FULLWIDTH_TABLE = {cp: cp - 0xFEE0 for cp in range(0xFF01, 0xFF5F) if chr(cp) not in _KEEP_FULLWIDTH}
_FULLWIDTH_CLASS = "".join(chr(cp) for cp in _FULLWIDTH_TABLE)
_INVISIBLE_TABLE: dict[int, int | None] = {
    cp: None for cp in [*range(0x00, 0x20), *range(0x7F, 0xA0), 0xAD, 0x200B, 0x200C, 0x200D, 0x2060, 0xFEFF]
}
del _INVISIBLE_TABLE[0x09], _INVISIBLE_TABLE[0x0A]
_INVISIBLE_TABLE[0x0D] = 0x0A  # a lone CR is a line break
_INVISIBLE_CLASS = "\x00-\x08\x0b-\x1f\x7f-\x9f\xad\u200b-\u200d\u2060\ufeff"
_SPACES = "\xa0\u2000-\u200a\u202f\u205f\u3000"
_SPACE_TABLE = {ord(c): 0x20 for c in "\xa0\u202f\u205f\u3000"} | {cp: 0x20 for cp in range(0x2000, 0x200B)}

# --- compiled patterns -------------------------------------------------------------------------------------
_ENTITY = re.compile(r"&(?:#[0-9]{1,7}|#[xX][0-9a-fA-F]{1,6}|[A-Za-z][A-Za-z0-9]{1,31});")
_HAS_INVISIBLE = re.compile(f"[{_INVISIBLE_CLASS}]")
_HAS_FULLWIDTH = re.compile(f"[{re.escape(_FULLWIDTH_CLASS)}]")
_HAS_SPACES = re.compile(f"[{_SPACES}]")
# Fast path (each pattern starts with a character class, which keeps re's scan fast): a character some rule
# may touch, or (in non-ASCII text) a space or ASCII mark right after Chinese.
_SPECIAL = re.compile(f"[&\r{_INVISIBLE_CLASS}{re.escape(_FULLWIDTH_CLASS)}{_SPACES}]")
_AFTER_CJK = re.compile(f"[ ,.!?:;](?<=[{_CJK}{_CJK_PUNCT}{_CLOSERS}].)")
_PUNCT_AFTER_CJK = re.compile(f"[,.!?:;](?<=[{_CJK}{_CLOSERS}].)[!?]*")
_CODE_MARKS = re.compile(r"""[={}]|[A-Za-z0-9_]\(|[A-Za-z0-9_)\]'"];[ \t]*$|</?[A-Za-z]""", re.M)
_CODE_INDENT = re.compile(r"  |\t")
_NO_FULLWIDTH_BEFORE = {".": frozenset(".0123456789_/\\"), ",": frozenset(",:;()/\\=-")}
_NO_FULLWIDTH_BEFORE[":"] = _NO_FULLWIDTH_BEFORE[";"] = _NO_FULLWIDTH_BEFORE[","]
_HALF_TO_FULL = str.maketrans(",?!:;.", "，？！：；。")
_INDENT_IDEOGRAPHIC = re.compile(r"(?<=\n)\u3000+")  # paragraph indents (the first line is stripped)
_SPACE_RUN = re.compile(r"(?<=[^ \n]) {2,}")
_TRAILING_SPACES = re.compile(r" +(?=\n)")
_NEWLINES = re.compile(r"\n{3,}")
_CJK_SPACE = re.compile(f"([{_CJK}{_CJK_PUNCT}{_CLOSERS}]) +(?=[{_CJK}{_CJK_PUNCT}])")
KANA = re.compile("[\u3040-\u30fa\u30fd-\u30ff]")  # Japanese: its kanji must not be "simplified"
OPENCC_SEP = "\x1e"  # survives every OpenCC config; NUL would truncate the text

# Bits of the per-field "changed" mask, in counter order.
RULES: tuple[str, ...] = (
    "html_entities",
    "invisible",
    "fullwidth",
    "cjk_punct",
    "whitespace",
    "cjk_spaces",
    "t2s",
    "placeholders",
)
BIT = {name: 1 << i for i, name in enumerate(RULES)}


def prose(s: str, p: NormalizeParams) -> tuple[str, int]:
    """Apply the text rules to one unprotected piece; return it and the bits of the rules that changed
    it. Each rule first checks cheaply whether it has anything to do."""
    bits = 0
    if p.html_entities and "&" in s:
        new = _ENTITY.sub(_decode_entity, s)
        if new != s:
            bits |= BIT["html_entities"]
            s = new
    if p.invisible and ("\r" in s or _HAS_INVISIBLE.search(s)):
        s = s.replace("\r\n", "\n").translate(_INVISIBLE_TABLE)
        bits |= BIT["invisible"]
    if p.fullwidth and _HAS_FULLWIDTH.search(s):
        s = s.translate(_FULLWIDTH_TABLE)
        bits |= BIT["fullwidth"]
    if p.cjk_punct and not s.isascii():
        new = _PUNCT_AFTER_CJK.sub(_to_fullwidth_punct, s)
        if new != s:
            bits |= BIT["cjk_punct"]
            s = new
    if p.whitespace:
        new = s
        if _HAS_SPACES.search(new):
            new = _INDENT_IDEOGRAPHIC.sub("", new).translate(_SPACE_TABLE)
        if "  " in new:
            new = _SPACE_RUN.sub(" ", new)
        if " \n" in new:
            new = _TRAILING_SPACES.sub("", new)
        if "\n\n\n" in new:
            new = _NEWLINES.sub("\n\n", new)
        if new != s:
            bits |= BIT["whitespace"]
            s = new
    if p.cjk_spaces and " " in s and not s.isascii():
        new = _CJK_SPACE.sub(r"\1", s)
        if new != s:
            bits |= BIT["cjk_spaces"]
            s = new
    return s, bits


def needs_work(s: str) -> bool:
    """False when no rule can change ``s`` (most texts): one or two scans that re runs fast."""
    if _SPECIAL.search(s) or "  " in s or " \n" in s or "\n\n\n" in s:
        return True
    return not s.isascii() and _AFTER_CJK.search(s) is not None


def _decode_entity(m: re.Match[str]) -> str:
    return html.unescape(m.group(0))


def _to_fullwidth_punct(m: re.Match[str]) -> str:
    """A half-width mark (or a run of ``!?``) after Chinese, unless a number, file name, ellipsis, emoticon or
    code-like line says otherwise."""
    s, mark = m.string, m.group(0)
    end = m.end()
    nxt = s[end] if end < len(s) else ""
    if len(mark) == 1 and (
        nxt in _NO_FULLWIDTH_BEFORE.get(mark, ()) or (mark == "." and nxt.isascii() and nxt.isalpha())
    ):
        return mark
    start = s.rfind("\n", 0, m.start()) + 1
    stop = s.find("\n", end)
    if _CODE_MARKS.search(s, start, len(s) if stop < 0 else stop):
        return mark
    # an indented line is code, unless it is the first line with text (the field is stripped)
    if start and _CODE_INDENT.match(s, start) and not s[:start].isspace():
        return mark
    return mark.translate(_HALF_TO_FULL)


def convert_many(convert: Callable[[str], str], texts: list[str]) -> list[str]:
    """OpenCC over many texts in one call (join, convert, split); per text if the separator occurs in them."""
    joined = OPENCC_SEP.join(texts)
    if joined.count(OPENCC_SEP) == len(texts) - 1 and "\x00" not in joined:
        out = convert(joined).split(OPENCC_SEP)
        if len(out) == len(texts):
            return out
    return [_convert_one(convert, t) for t in texts]


def _convert_one(convert: Callable[[str], str], text: str) -> str:
    # OpenCC reads C strings: a NUL would end the text, so convert around it.
    return "\x00".join(convert(t) for t in text.split("\x00")) if "\x00" in text else convert(text)
