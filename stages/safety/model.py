"""The models of the ``safety`` stage: hashed character n-gram features and linear heads, numpy inference only.

Every text is folded (NFKC, lower case) and cut into character n-grams (1 to 4 characters), hashed into
``2**bits`` buckets, binary and L2-normalised, so a head's logit is ``b + sum(w[h] for h in its n-grams) / sqrt(k)``
with ``k`` the number of distinct buckets of the text. A whole batch is hashed at once on a numpy array of code
points, so inference needs numpy only (no pickled scikit-learn objects).

One artefact (``stages/data/safety_models.npz``, written by ``zhcurate train-safety``) holds the signals
the stage combines, each trained on its own data (see ``pipeline/tools/train_safety.py``):

* ``request`` — P(the request asks for harm), on the request (instruction, input, user turns);
* ``category`` — which category a harmful request belongs to (a multinomial head over
  :data:`stages.safety.categories.MODEL_CATEGORIES`, on 1–2-grams in ``2**16`` buckets);
* ``refusal`` — P(the answer refuses or redirects safely rather than complying), on the answer;
* ``harm`` — P(the answer is harmful help: instructions for a crime, a scam text, abuse), on the answer; it
  separates a compliant answer to a harmful request from an ordinary helpful answer;
* ``toxicity`` — P(the answer is offensive: insults, hate), on what the answer adds to its request
  (n-grams echoing the request are not counted, see :func:`novel_keys`).

Each binary head carries the decision threshold chosen when it was trained.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from stages.assets import DATA_DIR
from stages.numeric import sorted_unique
from stages.safety.lexicon import fold as lexicon_fold

DEFAULT_ARTIFACT = DATA_DIR / "safety_models.npz"
BUCKET_BITS = 20
NGRAM_MAX = 4
CATEGORY_BITS = 16
CATEGORY_NMAX = 2
HEADS = ("request", "refusal", "harm", "toxicity")
_SEP = 0  # code point that separates records in the batch array; never part of an n-gram
_MUL = np.uint64(0x100000001B3)
_MIX = np.uint64(0xFF51AFD7ED558CCD)


def fold(text: str) -> str:
    """The classifier's view of a text: the lexicon's fold (NFKC, lower case), NUL (the separator) removed."""
    return lexicon_fold(text).replace("\x00", " ")


def _hashed_ngrams(
    texts: Sequence[str], bits: int, nmax: int
) -> list[tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]]:
    """Per n (1..nmax): the start positions of every n-gram of the batch and its ``row << bits | bucket`` key.

    All texts are joined into one uint32 code-point array with a separator, every n-gram start position is hashed
    at once (FNV-style multiply/xor per extra character, then a 64-bit mix), and n-grams that would cross the
    separator are discarded. Positions index the joined array, so they are comparable across n.
    """
    joined = "\x00".join(fold(t) for t in texts) + "\x00"
    cps = np.frombuffer(joined.encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
    n_pos = cps.shape[0]
    is_sep = cps == _SEP
    row_of = (np.cumsum(is_sep) - is_sep).astype(np.int64)  # record index of each position
    mask = np.uint64((1 << bits) - 1)
    out: list[tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]] = []
    h = cps.copy()
    valid = ~is_sep
    for n in range(1, nmax + 1):
        span = n_pos - n + 1
        if span <= 0:
            break
        if n > 1:
            h = h[:span] * _MUL ^ cps[n - 1 : n - 1 + span]
            valid = valid[:span] & ~is_sep[n - 1 : n - 1 + span]
        mixed = (h + np.uint64(n)) * _MIX
        mixed ^= mixed >> np.uint64(31)
        pos = np.flatnonzero(valid)
        out.append((pos, row_of[pos] << bits | (mixed[pos] & mask).astype(np.int64)))
    return out


def ngram_keys(
    texts: Sequence[str], bits: int = BUCKET_BITS, nmax: int = NGRAM_MAX, nmin: int = 1
) -> npt.NDArray[np.int64]:
    """Distinct ``row << bits | bucket`` keys of a batch's n-grams (``nmin`` to ``nmax`` chars), sorted."""
    parts = [k for n, (_, k) in enumerate(_hashed_ngrams(texts, bits, nmax), 1) if n >= nmin]
    return sorted_unique(np.concatenate(parts)) if parts else np.zeros(0, dtype=np.int64)


def _member(keys: npt.NDArray[np.int64], sorted_set: npt.NDArray[np.int64]) -> npt.NDArray[np.bool_]:
    """``np.isin(keys, sorted_set)`` for a sorted ``sorted_set``, by binary search."""
    if sorted_set.shape[0] == 0:
        return np.zeros(keys.shape[0], dtype=bool)
    idx = np.minimum(np.searchsorted(sorted_set, keys), sorted_set.shape[0] - 1)
    return sorted_set[idx] == keys


def novel_keys(
    texts: Sequence[str], contexts: Sequence[str], bits: int = BUCKET_BITS, nmax: int = NGRAM_MAX
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """``(all_keys, novel_keys)`` of each text: all its distinct n-gram keys, and those not echoing its context.

    A character of a text is *echoed* when it lies inside an n-gram (two or more characters) that the text's
    own context also contains; an n-gram made only of echoed characters is not novel. So in ``不是垃圾邮件``
    answering "classify as 垃圾邮件 or not", every n-gram inside ``垃圾邮件`` (its single characters too) is
    echoed and only ``不是`` and the n-grams that straddle it are novel.
    """
    grams = _hashed_ngrams(texts, bits, nmax)
    ctx_parts = [k for n, (_, k) in enumerate(_hashed_ngrams(contexts, bits, nmax), 1) if n >= 2]
    ctx = np.sort(np.concatenate([np.zeros(0, dtype=np.int64), *ctx_parts]))
    n_pos = int(grams[0][0][-1]) + 2 if grams and grams[0][0].size else 1
    diff = np.zeros(n_pos + nmax + 1, dtype=np.int64)
    for n, (pos, keys) in enumerate(grams, 1):
        if n >= 2:
            hit = pos[_member(keys, ctx)]
            diff += np.bincount(hit, minlength=diff.shape[0]) - np.bincount(hit + n, minlength=diff.shape[0])
    covered = np.concatenate([[0], np.cumsum(np.cumsum(diff)[:n_pos] > 0)])
    # One sort for both answers: the lowest bit flags an echoed occurrence, so a key's novel occurrence (0)
    # sorts first among its occurrences.
    flagged = np.sort(
        np.concatenate(
            [
                keys << 1 | (covered[np.minimum(pos + n, n_pos)] - covered[pos] >= n)
                for n, (pos, keys) in enumerate(grams, 1)
            ]
        )
    )
    first = np.empty(flagged.shape[0], dtype=bool)
    first[:1] = True
    np.not_equal(flagged[1:] >> 1, flagged[:-1] >> 1, out=first[1:])
    heads = flagged[first]
    return heads >> 1, heads[(heads & 1) == 0] >> 1


def key_counts(keys: npt.NDArray[np.int64], n: int, bits: int) -> npt.NDArray[np.int64]:
    """Distinct n-gram buckets per row of a batch (the normaliser of :meth:`LinearHead.logits`)."""
    return np.bincount(keys >> bits, minlength=n)


@dataclass(frozen=True)
class LinearHead:
    """One binary linear head over hashed n-grams: weights (dense, float32), bias, decision threshold."""

    weights: npt.NDArray[np.float32]
    bias: float
    threshold: float
    bits: int = BUCKET_BITS

    def probs(self, keys: npt.NDArray[np.int64], count: npt.NDArray[np.int64]) -> npt.NDArray[np.float64]:
        """P(positive) per row, from the keys that count (``row << bits | bucket``) and each row's number of
        distinct buckets; a row with no n-gram at all scores 0."""
        n = count.shape[0]
        rows, buckets = keys >> self.bits, keys & ((1 << self.bits) - 1)
        total = np.bincount(rows, weights=self.weights[buckets], minlength=n)
        logit = self.bias + total / np.sqrt(np.maximum(count, 1))
        return np.where(count > 0, 1.0 / (1.0 + np.exp(-logit)), 0.0)

    def scores(self, texts: Sequence[str]) -> npt.NDArray[np.float64]:
        """P(positive) of each text on all its n-grams."""
        keys = ngram_keys(texts, self.bits)
        return self.probs(keys, key_counts(keys, len(texts), self.bits))


@dataclass(frozen=True)
class CategoryHead:
    """A multinomial head (one weight row per class) over hashed 1–2-grams."""

    weights: npt.NDArray[np.float32]  # (classes, 2**bits)
    bias: npt.NDArray[np.float32]
    classes: tuple[str, ...]
    bits: int = CATEGORY_BITS
    nmax: int = CATEGORY_NMAX

    def probs(self, texts: Sequence[str]) -> npt.NDArray[np.float64]:
        """Class probabilities, one row per text (softmax)."""
        n = len(texts)
        keys = ngram_keys(texts, self.bits, self.nmax)
        rows, buckets = keys >> self.bits, keys & ((1 << self.bits) - 1)
        norm = 1.0 / np.sqrt(np.maximum(np.bincount(rows, minlength=n), 1))
        logits = np.zeros((n, len(self.classes)))
        np.add.at(logits, rows, self.weights[:, buckets].T.astype(np.float64))
        logits = logits * norm[:, None] + self.bias
        logits -= logits.max(axis=1, keepdims=True)
        e = np.exp(logits)
        return e / e.sum(axis=1, keepdims=True)


@dataclass(frozen=True)
class SafetyModels:
    """The stage's binary heads and its category head, loaded from one ``.npz``."""

    request: LinearHead
    refusal: LinearHead
    harm: LinearHead
    toxicity: LinearHead
    category: CategoryHead

    @classmethod
    def load(cls, path: Path = DEFAULT_ARTIFACT) -> SafetyModels:
        with np.load(path) as z:
            heads = {}
            for name in HEADS:
                bits = int(z[f"{name}.bits"])
                w = np.zeros(1 << bits, dtype=np.float32)
                w[np.cumsum(z[f"{name}.index_delta"], dtype=np.int64)] = z[f"{name}.value"]
                heads[name] = LinearHead(w, float(z[f"{name}.bias"]), float(z[f"{name}.threshold"]), bits)
            category = CategoryHead(
                weights=z["category.weights"].astype(np.float32),
                bias=z["category.bias"].astype(np.float32),
                classes=tuple(str(c) for c in z["category.classes"]),
                bits=int(z["category.bits"]),
                nmax=int(z["category.nmax"]),
            )
        return cls(category=category, **heads)

    def save(self, path: Path) -> None:
        """Write the artefact: for each binary head only its non-zero weights (delta-encoded bucket numbers,
        float16 values); the category head dense in float16."""
        path.parent.mkdir(parents=True, exist_ok=True)
        arrays: dict[str, Any] = {}
        for name in HEADS:
            head: LinearHead = getattr(self, name)
            index = np.flatnonzero(head.weights)
            arrays[f"{name}.index_delta"] = np.diff(index, prepend=0).astype(np.uint32)
            arrays[f"{name}.value"] = head.weights[index].astype(np.float16)
            arrays[f"{name}.bias"] = np.float64(head.bias)
            arrays[f"{name}.threshold"] = np.float64(head.threshold)
            arrays[f"{name}.bits"] = np.int64(head.bits)
        arrays["category.weights"] = self.category.weights.astype(np.float16)
        arrays["category.bias"] = self.category.bias.astype(np.float32)
        arrays["category.classes"] = np.array(self.category.classes)
        arrays["category.bits"] = np.int64(self.category.bits)
        arrays["category.nmax"] = np.int64(self.category.nmax)
        np.savez_compressed(path, **arrays)
