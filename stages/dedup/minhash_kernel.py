"""Compiled (numba) kernels for the dedup stages, working straight on Arrow string buffers.

* :func:`content_hashes` — a 128-bit hash of each (normalized) string, two 64-bit lanes: exact dedup keys.
* :func:`minhash_signatures` — one-permutation MinHash with optimal densification over character n-grams
  (Li, Owen & Zhang 2012; Shrivastava 2017). Each n-gram is hashed ONCE: the high 32 bits pick one of
  ``num_perm`` bins, the low 32 bits are the value, each bin keeps its minimum; an empty bin copies the bin
  that a seeded probe sequence (the same for every record) first hits non-empty. The estimator is the same as
  classic MinHash — the fraction of equal slots estimates Jaccard — at the cost of one hash per n-gram instead
  of ``num_perm`` (tests/stages/dedup/test_dedup_minhash.py checks its error against datasketch's MinHash).
  A text shorter than ``ngram`` characters is one shingle: the whole text.
* :func:`band_hashes` — LSH bands: a 64-bit hash of each band's ``rows`` slots.
* :func:`pair_similarity` — estimated Jaccard of row pairs (fraction of equal slots).

The union-find that clusters every dedup stage's pairs is in :mod:`stages.dedup.union_find`. Strings are read
as UTF-8 bytes from the Arrow buffers and decoded to code points inside the kernel: no Python object per record.
Kernels are pure functions of their inputs (safe on a process pool) and cached on disk.
"""

from __future__ import annotations

import unicodedata
from functools import lru_cache

import numba as nb
import numpy as np
import pyarrow as pa

_P1 = np.uint64(0x9E3779B97F4A7C15)
_P2 = np.uint64(0xC2B2AE3D27D4EB4F)
_FNV = np.uint64(0x100000001B3)
_MASK32 = np.uint64(0xFFFFFFFF)
_EMPTY = np.uint64(1 << 32)
_BMP = 0x10000
DROP = np.uint32(0xFFFFFFFF)  # fold_table's mark for a skipped character
_PROBES = 24  # densification probes precomputed per bin


@nb.njit(cache=True, inline="always")
def _fmix64(h: np.uint64) -> np.uint64:
    """MurmurHash3's 64-bit finalizer: every input bit affects every output bit."""
    h ^= h >> np.uint64(33)
    h *= np.uint64(0xFF51AFD7ED558CCD)
    h ^= h >> np.uint64(33)
    h *= np.uint64(0xC4CEB93FE53BCA1A)
    h ^= h >> np.uint64(33)
    return h


def int64_array(values: np.ndarray) -> pa.Array:
    """A numpy array as an Arrow int64 array, zero-copy. (``pa.array`` would import pandas, ~0.4 s.)"""
    values = np.ascontiguousarray(values, dtype=np.int64)
    return pa.Array.from_buffers(pa.int64(), len(values), [None, pa.py_buffer(values)])


def numeric_numpy(arr: pa.Array | pa.ChunkedArray, null: float = np.nan) -> np.ndarray:
    """A numeric Arrow array as numpy, zero-copy when it has no nulls; nulls become ``null`` (the result is
    then float64). (``to_numpy`` would import pandas.)"""
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    dtype = np.dtype(arr.type.to_pandas_dtype())
    data_buf = arr.buffers()[1]
    values = (
        np.frombuffer(data_buf, dtype=dtype)[arr.offset : arr.offset + len(arr)] if data_buf else np.empty(0, dtype)
    )
    if arr.null_count == 0:
        return values
    valid = np.unpackbits(np.frombuffer(arr.buffers()[0], np.uint8), bitorder="little")
    valid = valid[arr.offset : arr.offset + len(arr)].astype(bool)
    return np.where(valid, values, null)


def empty_strings() -> pa.Array:
    """An empty Arrow large_string array (built from buffers, see :func:`int64_array`)."""
    zero = pa.py_buffer(np.zeros(1, np.int64))
    return pa.Array.from_buffers(pa.large_string(), 0, [None, zero, pa.py_buffer(b"")])


def string_scalar(text: str) -> pa.Scalar:
    """An Arrow large_string scalar (built from buffers: ``pa.scalar`` would import pandas)."""
    data = text.encode("utf-8")
    offsets = np.array([0, len(data)], np.int64)
    array = pa.Array.from_buffers(pa.large_string(), 1, [None, pa.py_buffer(offsets), pa.py_buffer(data)])
    return array[0]


def string_buffers(arr: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """(utf-8 bytes, int64 offsets of length n+1) of a string array, zero-copy where Arrow allows."""
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    arr = arr.cast(pa.large_string()).fill_null(string_scalar(""))
    _, off_buf, data_buf = arr.buffers()
    offsets = np.frombuffer(off_buf, dtype=np.int64)[arr.offset : arr.offset + len(arr) + 1]
    data = np.frombuffer(data_buf, dtype=np.uint8) if data_buf is not None else np.empty(0, np.uint8)
    return data, offsets


@nb.njit(cache=True, inline="always")
def _decode(data: np.ndarray, pos: int) -> tuple[np.uint32, int]:
    """The code point of the UTF-8 sequence at ``pos`` and the position after it."""
    b0 = np.uint32(data[pos])
    if b0 < 0x80:
        return b0, pos + 1
    if b0 < 0xE0:
        return ((b0 & 0x1F) << 6) | (np.uint32(data[pos + 1]) & 0x3F), pos + 2
    if b0 < 0xF0:
        c = ((b0 & 0x0F) << 12) | ((np.uint32(data[pos + 1]) & 0x3F) << 6)
        return c | (np.uint32(data[pos + 2]) & 0x3F), pos + 3
    c = ((b0 & 0x07) << 18) | ((np.uint32(data[pos + 1]) & 0x3F) << 12)
    return c | ((np.uint32(data[pos + 2]) & 0x3F) << 6) | (np.uint32(data[pos + 3]) & 0x3F), pos + 4


@nb.njit(cache=True, nogil=True)
def _content_hashes(data: np.ndarray, offsets: np.ndarray, table: np.ndarray, seed: np.uint64) -> np.ndarray:
    n = len(offsets) - 1
    out = np.empty((n, 2), np.uint64)
    space = np.uint32(0x20)
    for i in range(n):
        h1 = np.uint64(0xCBF29CE484222325) ^ seed
        h2 = np.uint64(0x84222325CBF29CE4) ^ _fmix64(seed + _P1)
        pos = offsets[i]
        end = offsets[i + 1]
        length = np.uint64(0)
        pending_space = False
        while pos < end:
            c, pos = _decode(data, pos)
            if c < _BMP:
                c = table[c]
            if c == space:  # whitespace runs count as one space, none at either end
                pending_space = bool(length > 0)
                continue
            if pending_space:
                h1 = (h1 ^ np.uint64(space)) * _FNV
                h2 = (h2 ^ np.uint64(space)) * _P2
                length += np.uint64(1)
                pending_space = False
            h1 = (h1 ^ np.uint64(c)) * _FNV
            h2 = (h2 ^ np.uint64(c)) * _P2
            length += np.uint64(1)
        out[i, 0] = _fmix64(h1 ^ length)
        out[i, 1] = _fmix64(h2 + length * _P1)
    return out


def content_hashes(arr: pa.Array, normalize: bool = True, seed: int = 0) -> np.ndarray:
    """A (n, 2) uint64 array: a 128-bit hash of each string's code points. With ``normalize`` each character
    is folded by :func:`fold_table` (NFKC, lower case) and whitespace runs count as one space, trimmed."""
    data, offsets = string_buffers(arr)
    table = fold_table(False) if normalize else _identity_table()
    return _content_hashes(data, offsets, table, np.uint64(seed))


def fold_table(strip: bool) -> np.ndarray:
    """A uint32 map of the Basic Multilingual Plane applied to each code point before shingling.

    Each character goes to its NFKC form, lower-cased (full-width Ａ１，→ a1,), when that is one character,
    and whitespace to " "; with ``strip`` whitespace and punctuation (Unicode Z* and P*: ，。！？、“”… and
    ASCII alike) map to :data:`DROP` and are skipped. Code points beyond the BMP pass unchanged.
    """
    return _fold_tables()[1 if strip else 0]


@lru_cache(maxsize=1)
def _fold_tables() -> tuple[np.ndarray, np.ndarray]:
    """(loose, strict) tables of :func:`fold_table`, built together once per process (~0.1 s)."""
    cps = list(range(0xD800)) + list(range(0xE000, _BMP))
    folded = [unicodedata.normalize("NFKC", chr(c)).lower() for c in cps]
    folded = [f if len(f) == 1 else chr(c) for f, c in zip(folded, cps, strict=True)]
    idx = np.array(cps)
    loose = np.arange(_BMP, dtype=np.uint32)
    loose[idx] = np.frombuffer("".join(folded).encode("utf-32-le"), dtype=np.uint32)
    category = [unicodedata.category(f) for f in folded]
    space = np.array([f.isspace() or cat == "Zs" for f, cat in zip(folded, category, strict=True)])
    loose[idx[space]] = 0x20
    strict = loose.copy()
    skip = np.array([cat[0] in "PZ" for cat in category]) | space
    strict[idx[skip]] = DROP
    loose.setflags(write=False)
    strict.setflags(write=False)
    return loose, strict


@nb.njit(cache=True, inline="always")
def _probe(dseed: np.uint64, s: int, attempt: int, k: np.uint64) -> int:
    """The ``attempt``-th bin that empty bin ``s`` borrows from (1-based), the same for every record."""
    p = _fmix64(dseed ^ (np.uint64(s) * _P1 + np.uint64(attempt)))
    return int(((p >> np.uint64(32)) * k) >> np.uint64(32))


@nb.njit(cache=True, nogil=True)
def _signatures(
    data: np.ndarray,
    offsets: np.ndarray,
    strict: np.ndarray,
    loose: np.ndarray,
    ngram: int,
    num_perm: int,
    seed: np.uint64,
) -> tuple[np.ndarray, np.ndarray]:
    n = len(offsets) - 1
    k = np.uint64(num_perm)
    sig = np.empty((n, num_perm), np.uint32)
    short = np.zeros(n, np.bool_)
    bins = np.empty(num_perm, np.uint64)
    window = np.zeros(ngram, np.uint64)
    b_pow_n = np.uint64(1)
    for _ in range(ngram):
        b_pow_n *= _FNV
    dseed = _fmix64(seed ^ _P2)
    empty = np.empty(num_perm, np.int64)
    probes = np.empty((num_perm, _PROBES), np.int64)
    for s in range(num_perm):
        for attempt in range(_PROBES):
            probes[s, attempt] = _probe(dseed, s, attempt + 1, k)
    for i in range(n):
        bins[:] = _EMPTY
        count = 0
        for attempt_table in range(2):  # the strict table first; the loose one if too few characters remain
            table = strict if attempt_table == 0 else loose
            pos = offsets[i]
            end = offsets[i + 1]
            count = 0
            widx = 0
            rolling = np.uint64(0)
            window[:] = 0
            while pos < end:
                c, pos = _decode(data, pos)
                if c < _BMP:
                    c = table[c]
                    if c == DROP:
                        continue
                # polynomial rolling hash of the last `ngram` code points
                cu = np.uint64(c)
                rolling = rolling * _FNV + cu - window[widx] * b_pow_n
                window[widx] = cu
                widx += 1
                if widx == ngram:
                    widx = 0
                count += 1
                if count >= ngram:
                    h = _fmix64(rolling ^ seed)
                    slot = ((h >> np.uint64(32)) * k) >> np.uint64(32)
                    v = h & _MASK32
                    if v < bins[slot]:
                        bins[slot] = v
            if count >= ngram:
                break
        if count < ngram:  # too short for one n-gram: the whole (loosely folded) text is the one shingle
            short[i] = True
            h = _fmix64(rolling ^ seed ^ (np.uint64(count + 1) * _P2))
            bins[((h >> np.uint64(32)) * k) >> np.uint64(32)] = h & _MASK32
        # optimal densification: an empty bin takes the value of the first non-empty bin its probe hits
        n_empty = 0
        for s in range(num_perm):  # branch-free: copy every bin, list the empty ones
            sig[i, s] = np.uint32(bins[s] & _MASK32)
            empty[n_empty] = s
            n_empty += bins[s] == _EMPTY
        for e in range(n_empty):
            s = empty[e]
            found = False
            for attempt in range(_PROBES):  # the probe sequence is the same for every record: precomputed
                j = probes[s, attempt]
                if bins[j] != _EMPTY:
                    sig[i, s] = np.uint32(bins[j])
                    found = True
                    break
            attempt = _PROBES
            while not found:  # a very sparse record: continue the same sequence
                attempt += 1
                j = _probe(dseed, s, attempt, k)
                if bins[j] != _EMPTY:
                    sig[i, s] = np.uint32(bins[j])
                    found = True
    return sig, short


def minhash_signatures(
    arr: pa.Array, ngram: int, num_perm: int, seed: int, normalize: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """(uint32 signatures of shape (n, num_perm), bool mask of texts shorter than ``ngram``).

    With ``normalize``, characters are folded by :func:`fold_table` and whitespace and punctuation skipped; a
    text left with fewer than ``ngram`` characters is shingled again without skipping them, and if still
    shorter it is one shingle: the whole text. Without ``normalize`` the raw code points are shingled.
    """
    data, offsets = string_buffers(arr)
    strict = fold_table(True) if normalize else _identity_table()
    loose = fold_table(False) if normalize else strict
    return _signatures(data, offsets, strict, loose, ngram, num_perm, np.uint64(seed))


@lru_cache(maxsize=1)
def _identity_table() -> np.ndarray:
    return np.arange(_BMP, dtype=np.uint32)


@nb.njit(cache=True, nogil=True)
def band_hashes(sig: np.ndarray, bands: int, rows: int, first: int = 0) -> np.ndarray:
    """A (n, bands) uint64 array: column j is band ``b = first + j``, the hash of slots
    ``[b*rows, (b+1)*rows)`` of each signature (``first`` lets a caller hash one band at a time)."""
    n = sig.shape[0]
    out = np.empty((n, bands), np.uint64)
    for i in range(n):
        for j in range(bands):
            b = first + j
            h = np.uint64(b + 1) * _P2
            for r in range(b * rows, (b + 1) * rows):
                h = (h ^ np.uint64(sig[i, r])) * _P1
            out[i, j] = _fmix64(h)
    return out


@nb.njit(cache=True, nogil=True)
def pair_similarity(sig: np.ndarray, left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Estimated Jaccard of each pair of rows: the fraction of equal signature slots."""
    m = len(left)
    k = sig.shape[1]
    out = np.empty(m, np.float64)
    for p in range(m):
        a = left[p]
        b = right[p]
        same = 0
        for s in range(k):
            if sig[a, s] == sig[b, s]:
                same += 1
        out[p] = same / k
    return out
