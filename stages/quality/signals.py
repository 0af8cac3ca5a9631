"""Text measurements behind the ``quality`` stage; no thresholds here, only values.

*Prose vs code.* Repetition and bracket balance are measured on prose only (:func:`prose`): lines that look
like unfenced code or markup and are not mostly Han characters are removed, and so are protected spans (fenced
and inline code, URLs, e-mails, LaTeX; see stages/textspans.py). Each removed piece leaves a :data:`BARRIER`
line behind, so two sentences around a code block are not "back to back". Alpaca answers often hold bare HTML,
SQL or Python, whose similar lines are not degenerate repetition and whose brackets are not prose.

*Batch kernel.* :func:`measure` packs a batch of texts into one UTF-32 array and runs a numba kernel over it
(no Python per character). Per text:

``content``
    characters that are Han, letters or digits (not spaces, punctuation, symbols, emoji); ``han``: Han chars.
``dup_ngram``
    share of the Han characters covered by a Han-character ``ngram`` occurring more than once: Gopher's
    ``dup_ngram_char_frac`` (Rae et al. 2021, table A1) with characters as units, the usual choice for Chinese;
    punctuation, Latin and digits are skipped.
``tandem``
    share of the content characters that are *back-to-back* extra copies: a block of 1–8 sentences
    repeated (punctuation included, spaces not) right after itself (block ≥ ``min_block`` content chars),
    or a short unit (1–20 chars, holding a Han char or letter) repeated ≥ 4 times in a row over ≥ ``min_run`` chars.
    The first copy is not counted, so
    ``A A`` gives 0.5. ``tandem_at``: offset of the first repeated sentence block, else of the first run (-1 if none).
``unmatched``
    brackets and quotes without partner, per family ``()（）``, ``[]【】``, ``《》``, ``「」``, ``『』``, ``“”``;
    a ``)``/``）`` with no round bracket open after a list marker (``1)``, ``a）``, ``以及3）``) or in an
    emoticon (``:)``) is not a bracket. Curly braces are left out (they are code's).

Sentences end at ``。！？!?；;``, a line break, or a ``.`` before a space. Refrains and choruses repeat a block
*with other text between the copies*, so they are not tandem repeats; a loop (``A A A``) or an answer that
says the same thing twice in a row is.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numba
import numpy as np

from stages.textspans import strip_protected

_CODE_CHAR = re.compile(r"[<>=;{}]")
_CODE_WORDS = ("&lt;", "def ", "class ", "return", "import ", "print", "SELECT ", "function", "var ", "let ", "const ")
# Starts like a tag, comment or statement; ends like a statement; or holds an assignment/comparison operator.
_CODE_LINE = re.compile(
    r"^[ \t]*(?:<|&lt;|[{}\]]|//|/\*|#include|(?:def|class|return|import|from|print|for|if|elif|else|while|"
    r"function|var|let|const|public|private|static|SELECT|INSERT|UPDATE|DELETE|CREATE)\b)"
    r"|[;{}][ \t]*$|[^=!<>]=[^=]|==|!=|<=|>=|->|=>"  # statement end, operators
    r"|^[ \t]*[\[\](){},;]+[ \t]*$"  # a line of brackets only (JSON, C)
    r"|\w\([^()\n]*\)[ \t]*[:;]?[ \t]*$"  # ends with a call: foo(x), obj.method(a, b):
)
# A closing bracket or quote right after a URL belongs to the text, not to the URL span.
_URL_TAIL = re.compile(r"((?:https?|ftp)://[^\s()”’」』）】》]*)([)”’」』）】》])")
_OPAQUE = re.compile(
    r"(?<!\S)(?=[\x21-\x7e]{6,40}(?!\S))(?=\S*[A-Za-z])(?=\S*\d)[\x21-\x7e]+?[][(){}][\x21-\x7e]+(?!\S)"
)
_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")


def is_code_line(line: str) -> bool:
    """A line that looks like code or markup and is not mostly Han characters."""
    if not _CODE_LINE.search(line):
        return False
    visible = len(line) - line.count(" ") - line.count("\t")
    return len(_HAN.findall(line)) * 2 < visible


def prose(text: str) -> tuple[str, float]:
    """``text`` without code-like lines and protected spans (each replaced by a :data:`BARRIER` line), and the
    share of its non-empty lines that were code-like."""
    t = text
    share = 0.0
    if _CODE_CHAR.search(t) or any(w in t for w in _CODE_WORDS):  # cheap test before looking at lines
        lines = t.split("\n")
        code = [is_code_line(line) for line in lines]
        share = sum(code) / max(1, sum(1 for line in lines if line.strip()))
        t = "\n".join(BARRIER if c else line for line, c in zip(lines, code, strict=True))
    if "://" in t:
        t = _URL_TAIL.sub(r"\1 \2", t)
    return strip_protected(t, "\n" + BARRIER + "\n"), share


def without_opaque_tokens(text: str) -> str:
    """``text`` without password- or hash-like tokens (``B9u(h#-g7WH1y``, ``eT]8V7#u``): 6–40 visible ASCII
    characters with a letter, a digit and a bracket inside (not at either end), whose brackets are not brackets."""
    return _OPAQUE.sub(" ", text)


@dataclass(frozen=True)
class Signals:
    """Per-text measurements of one batch (arrays aligned with the texts given to :func:`measure`)."""

    content: np.ndarray  # int64
    han: np.ndarray  # int64, Han characters
    dup_ngram: np.ndarray  # float64
    tandem: np.ndarray  # float64
    tandem_at: np.ndarray  # int64
    unmatched: np.ndarray  # int64


def measure(texts: list[str], ngram: int, min_block: int, min_run: int) -> Signals:
    """Measure every text of ``texts`` (already reduced to prose) in one kernel call."""
    lengths = np.fromiter((len(t) for t in texts), dtype=np.int64, count=len(texts))
    starts = np.zeros(len(texts) + 1, dtype=np.int64)
    np.cumsum(lengths, out=starts[1:])
    buf = "".join(texts).encode("utf-32-le", "surrogatepass")
    cps = np.frombuffer(buf, dtype=np.uint32)
    out_i = np.zeros((len(texts), 4), dtype=np.int64)
    out_f = np.zeros((len(texts), 2), dtype=np.float64)
    _kernel(cps, starts, ngram, min_block, min_run, out_i, out_f)
    return Signals(out_i[:, 0], out_i[:, 3], out_f[:, 0], out_f[:, 1], out_i[:, 1], out_i[:, 2])


# ---------------------------------------------------------------------------------------------- kernel
BARRIER = "\ufffc"  # stands in for removed code and protected spans; ends a sentence, matches none
BARRIER_CP = np.uint32(0xFFFC)
_BASE = np.uint64(1_000_003)
# Bracket families (curly braces are left out: in answers they belong to code, not prose).
_OPEN = np.array([0x28, 0xFF08, 0x5B, 0x3010, 0x300A, 0x300C, 0x300E, 0x201C], dtype=np.uint32)
_CLOSE = np.array([0x29, 0xFF09, 0x5D, 0x3011, 0x300B, 0x300D, 0x300F, 0x201D], dtype=np.uint32)
_FAMILY = np.array([0, 0, 1, 1, 2, 3, 4, 5], dtype=np.int64)
_N_FAMILIES = 6


@numba.njit(cache=True)
def _is_han(c: int) -> bool:
    return (0x4E00 <= c <= 0x9FFF) or (0x3400 <= c <= 0x4DBF) or (0xF900 <= c <= 0xFAFF) or (0x20000 <= c <= 0x2FFFF)


@numba.njit(cache=True)
def _is_letter(c: int) -> bool:
    """Han, Latin or other alphabetic letters; not digits, punctuation, symbols, emoji."""
    if c < 0x80:
        return (0x41 <= c <= 0x5A) or (0x61 <= c <= 0x7A)
    if _is_han(c):
        return True
    if 0xC0 <= c <= 0x1FFF:  # Latin-1 letters … Greek extended
        return c != 0xD7 and c != 0xF7
    return (0x3040 <= c <= 0x30FF) or (0xAC00 <= c <= 0xD7AF) or (0xFF21 <= c <= 0xFF3A) or (0xFF41 <= c <= 0xFF5A)


@numba.njit(cache=True)
def _is_content(c: int) -> bool:
    return _is_letter(c) or (0x30 <= c <= 0x39) or (0xFF10 <= c <= 0xFF19)


@numba.njit(cache=True)
def _is_sentence_end(c: int) -> bool:  # 。！？!?；; and line break
    if c < 0x80:
        return c == 0x0A or c == 0x21 or c == 0x3F or c == 0x3B
    return c == 0x3002 or c == 0xFF01 or c == 0xFF1F or c == 0xFF1B


@numba.njit(cache=True)
def _dup_ngram(cps: np.ndarray, s: int, e: int, n: int) -> float:
    """Rolling hash of every Han n-gram, an open-addressing table of first occurrences, then coverage."""
    han = np.empty(e - s, dtype=np.uint64)
    m = 0
    for j in range(s, e):
        if _is_han(cps[j]):
            han[m] = cps[j]
            m += 1
    grams = m - n + 1
    if grams < 2:
        return 0.0
    top = np.uint64(1)  # _BASE ** (n - 1)
    for _ in range(n - 1):
        top = top * _BASE
    size = 4
    while size < 2 * grams:
        size *= 2
    mask = np.uint64(size - 1)
    keys = np.empty(size, dtype=np.uint64)
    first = np.zeros(size, dtype=np.int64)  # 1 + index of the first n-gram with that hash; 0 = empty slot
    diff = np.zeros(m + 1, dtype=np.int64)
    h = np.uint64(0)
    for k in range(n):
        h = h * _BASE + han[k]
    for i in range(grams):
        if i > 0:
            h = (h - han[i - 1] * top) * _BASE + han[i + n - 1]
        slot = (h ^ (h >> np.uint64(29))) & mask
        while first[slot] != 0 and keys[slot] != h:
            slot = (slot + np.uint64(1)) & mask
        if first[slot] == 0:
            keys[slot] = h
            first[slot] = i + 1
            continue
        j = first[slot] - 1
        if j >= 0:  # mark the first occurrence once
            diff[j] += 1
            diff[j + n] -= 1
            first[slot] = -1  # still occupied, first occurrence already marked
        diff[i] += 1
        diff[i + n] -= 1
    covered = 0
    depth = 0
    for k in range(m):
        depth += diff[k]
        if depth > 0:
            covered += 1
    return covered / m


@numba.njit(cache=True)
def _char_runs(cps: np.ndarray, s: int, e: int, min_run: int, extra: np.ndarray) -> int:
    """Mark in ``extra`` the later copies of short units repeated ≥ 4 times in a row; first run's offset."""
    first = -1
    for p in range(1, 21):
        run = 0
        for j in range(s, e - p + 1):
            same = j < e - p and cps[j] == cps[j + p]
            if same:
                run += 1
                continue
            if run > 0:
                r0 = j - run
                copies = (run + p) // p
                if copies >= 4 and copies * p >= min_run:
                    has_letter = False
                    for k in range(r0, r0 + p):
                        if _is_letter(cps[k]):
                            has_letter = True
                    if has_letter:
                        for k in range(r0 + p, r0 + copies * p):
                            extra[k - s] = True
                        if first < 0 or r0 - s < first:
                            first = r0 - s
            run = 0
    return first


@numba.njit(cache=True)
def _sentence_runs(cps: np.ndarray, s: int, e: int, min_block: int, extra: np.ndarray) -> int:
    """Mark in ``extra`` sentences that repeat the block of sentences right before them; first offset."""
    n_max = 2 * (e - s) + 2  # every position ends at most one sentence and one barrier
    hashes = np.empty(n_max, dtype=np.uint64)
    sizes = np.empty(n_max, dtype=np.int64)
    begins = np.empty(n_max, dtype=np.int64)
    ends = np.empty(n_max, dtype=np.int64)
    n = 0
    h = np.uint64(0)
    size = 0
    begin = s
    for j in range(s, e + 1):
        c = int(cps[j]) if j < e else 0x0A
        barrier = c == BARRIER_CP
        end_here = barrier or (c == 0x2E and (j + 1 >= e or cps[j + 1] == 0x20 or cps[j + 1] == 0x0A))
        if _is_sentence_end(c):
            end_here = True
        if not end_here and c != 0x20 and c != 0x09 and c != 0x3000:
            h = h * _BASE + np.uint64(c)  # punctuation counts: a list and its ranking (、 vs >) differ
            if _is_content(c):
                size += 1
        if end_here:
            if size > 0:
                hashes[n], sizes[n], begins[n], ends[n] = h, size, begin, j
                n += 1
            if barrier:  # removed code or markup: a sentence equal to no other
                hashes[n], sizes[n], begins[n], ends[n] = np.uint64(j) | np.uint64(1 << 63), 0, j, j
                n += 1
            h = np.uint64(0)
            size = 0
            begin = j + 1
    first = -1
    for b in range(1, 9):
        i = 0
        while i + 2 * b <= n:
            block_size = 0
            same = True
            for k in range(b):
                block_size += sizes[i + k]
                if hashes[i + k] != hashes[i + b + k]:
                    same = False
            if not same or block_size < min_block:
                i += 1
                continue
            j = i + b
            while j + b <= n:
                again = True
                for k in range(b):
                    if hashes[i + k] != hashes[j + k]:
                        again = False
                if not again:
                    break
                for k in range(begins[j], ends[j + b - 1]):
                    extra[k - s] = True
                j += b
            if first < 0 or begins[i] - s < first:
                first = begins[i] - s
            i = j
    return first


@numba.njit(cache=True)
def _is_marker_char(c: int) -> bool:
    return (
        (0x30 <= c <= 0x39)
        or (0x41 <= c <= 0x5A)
        or (0x61 <= c <= 0x7A)
        or (0xFF10 <= c <= 0xFF19)
        or (
            c in (0x4E00, 0x4E8C, 0x4E09, 0x56DB, 0x4E94, 0x516D, 0x4E03, 0x516B, 0x4E5D, 0x5341)  # 一…十
        )
    )


@numba.njit(cache=True)
def _is_boundary(c: int) -> bool:
    return c in (0x20, 0x09, 0x0A, 0x3000, 0x3A, 0xFF1A, 0x3B, 0xFF1B, 0x2C, 0xFF0C, 0x3002, 0x3001, 0x2E)


@numba.njit(cache=True)
def _is_list_marker_or_emoticon(cps: np.ndarray, s: int, j: int) -> bool:
    """``1)``, ``a）``, ``iv)``, ``三）`` at the start or after a space, punctuation or Han char (``以及3）``);
    ``:)``, ``;)``, ``:-)``. Only asked when no round bracket is open."""
    if j > s and cps[j - 1] in (0x3A, 0x3B, 0x2D):
        return True
    k = j - 1
    while k >= s and j - k <= 3 and _is_marker_char(cps[k]):
        k -= 1
    return k < j - 1 and (k < s or _is_boundary(cps[k]) or _is_han(cps[k]))


@numba.njit(cache=True)
def _unmatched(cps: np.ndarray, s: int, e: int) -> int:
    depth = np.zeros(_N_FAMILIES, dtype=np.int64)
    stray = 0
    for j in range(s, e):
        c = cps[j]
        if not (
            c == 0x28
            or c == 0x29
            or c == 0x5B
            or c == 0x5D
            or 0x201C <= c <= 0x201D
            or 0x300A <= c <= 0x3011
            or c == 0xFF08
            or c == 0xFF09
        ):
            continue
        for f in range(_OPEN.size):
            if c == _OPEN[f]:
                depth[_FAMILY[f]] += 1
            elif c == _CLOSE[f]:
                if (c == 0x29 or c == 0xFF09) and depth[0] == 0 and _is_list_marker_or_emoticon(cps, s, j):
                    continue
                fam = _FAMILY[f]
                if depth[fam] > 0:
                    depth[fam] -= 1
                else:
                    stray += 1
    return stray + int(depth.sum())


@numba.njit(cache=True)
def _kernel(
    cps: np.ndarray, starts: np.ndarray, ngram: int, min_block: int, min_run: int, out_i: np.ndarray, out_f: np.ndarray
) -> None:
    for r in range(starts.size - 1):
        s = starts[r]
        e = starts[r + 1]
        content = 0
        han = 0
        for j in range(s, e):
            if _is_content(cps[j]):
                content += 1
                if _is_han(cps[j]):
                    han += 1
        out_i[r, 0] = content
        out_i[r, 3] = han
        if content == 0:
            out_i[r, 1] = -1
            continue
        out_f[r, 0] = _dup_ngram(cps, s, e, ngram)
        extra = np.zeros(e - s, dtype=np.bool_)
        at_c = _char_runs(cps, s, e, min_run, extra)
        at_s = _sentence_runs(cps, s, e, min_block, extra)
        n_extra = 0
        for k in range(e - s):
            if extra[k] and _is_content(cps[s + k]):
                n_extra += 1
        out_f[r, 1] = n_extra / content
        out_i[r, 1] = at_s if at_s >= 0 else at_c
        out_i[r, 2] = _unmatched(cps, s, e)
