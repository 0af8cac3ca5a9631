"""Decide how a text input file is encoded, so it is read as what it is or rejected with a message saying so.

Order: a BOM wins (UTF-8, UTF-16 LE/BE, UTF-32); then strict UTF-8 over a sample; then GB18030 (a superset of
GBK and GB2312, the usual Chinese legacy encodings) if the sample decodes cleanly; then charset-normalizer's
best guess. A file that is mostly UTF-8 with a few invalid bytes stays UTF-8: the lines or records that hold
the bad bytes are quarantined, the rest are read.
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass

SAMPLE_BYTES = 4 * 1024 * 1024

_BOMS: tuple[tuple[bytes, str], ...] = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)


@dataclass(frozen=True)
class Detected:
    encoding: str  # a Python codec name
    label: str  # what the report shows: utf-8, utf-8-sig (BOM), gb18030, utf-16 (BOM), ...
    binary: bool = False  # the file does not look like text at all


def _looks_binary(sample: bytes) -> bool:
    if not sample:
        return False
    if b"\x00" in sample[:8192] and not sample.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        # NUL bytes in the first 8 KiB: binary, unless most bytes are printable (a stray NUL in text)
        nul = sample[:8192].count(b"\x00")
        return nul > 16
    return False


def detect(sample: bytes) -> Detected:
    """Detect the encoding of a file from its first bytes (up to :data:`SAMPLE_BYTES`)."""
    for bom, enc in _BOMS:
        if sample.startswith(bom):
            label = "utf-8-sig" if enc == "utf-8-sig" else f"{enc} (BOM)"
            return Detected(enc, label)
    if _looks_binary(sample):
        return Detected("utf-8", "binary", binary=True)
    try:
        sample.decode("utf-8")
        return Detected("utf-8", "utf-8")
    except UnicodeDecodeError as e:
        # a cut multi-byte character at the very end of the sample is not an error
        if e.start >= len(sample) - 3 and e.reason == "unexpected end of data":
            return Detected("utf-8", "utf-8")
        first_bad = e.start
    # Mostly valid UTF-8 with a few bad bytes: keep UTF-8, bad units get quarantined.
    bad = _count_invalid_utf8(sample)
    if bad <= max(3, len(sample) // 10000) and first_bad > 0:
        return Detected("utf-8", "utf-8 (with invalid bytes)")
    try:
        sample.decode("gb18030")
        return Detected("gb18030", "gb18030")
    except UnicodeDecodeError as e:
        if e.start >= len(sample) - 4:
            return Detected("gb18030", "gb18030")
    from charset_normalizer import from_bytes

    best = from_bytes(sample[:262144]).best()
    if best is None:
        return Detected("utf-8", "binary", binary=True)
    return Detected(best.encoding, best.encoding)


def _count_invalid_utf8(sample: bytes) -> int:
    text = sample.decode("utf-8", errors="replace")
    return text.count("\ufffd") - sample.decode("utf-8", errors="ignore").count("\ufffd")
