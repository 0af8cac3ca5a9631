"""The offensive-language classifier of the ``safety`` stage: features, numpy inference, reproducible training.

Features are hashed character n-grams (1 to 4 characters) of the NFKC-folded, lower-cased text, binary
(present / absent) and L2-normalised, so one record's score is ``b + sum(w[h] for h in its n-grams) / sqrt(k)``
with ``k`` its number of distinct n-gram buckets. Hashing is done for a whole batch at once on a numpy array of
code points, so inference needs numpy only (no pickled scikit-learn objects) and runs at tens of thousands of
records per second on one core.

The weights live in ``stages/data/safety_classifier.npz`` (the non-zero ones of 2**20 buckets, float16). They
are trained by this module with scikit-learn (NB-weighted logistic regression) on COLD (Chinese Offensive
Language Dataset, Apache-2.0), with everyday sentences (Tatoeba, CC-BY 2.0 FR; PAWS-X) as extra non-offensive
examples, so that ordinary words COLD only saw in insults (``垃圾``, ``厌恶``) are not taken for insults, and
with ``stages/data/safety_neutral.txt`` (neutral sentences naming groups, social problems and emotions, written
for zhcurate) against the classic bias of toxicity classifiers: a plain mention of a group or a topic
(``艾滋病``, ``黑人``, ``歧视``) is not an insult::

    python -m stages.safety_train --cold ../shared/data/cold/train.csv \
        --clean ../shared/data/parallel/tatoeba_cmn_eng.txt --clean ../shared/data/paraphrase/PAWSX/PAWSX.valid.data \
        --out stages/data/safety_classifier.npz

Training is deterministic (fixed seed, fixed solver). COLD's dev split is never read here: the decision
threshold is the highest one whose F1 on a held-out 15 % of COLD train is within 0.005 of the best there
(real instruction data is far cleaner than COLD's 50 %, so the flat top of the F1 curve is resolved towards
precision), stored in the artifact.
"""

from __future__ import annotations

import argparse
import csv
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from stages.safety_lexicon import fold as lexicon_fold

DEFAULT_ARTIFACT = Path(__file__).resolve().parent / "data" / "safety_classifier.npz"
# Neutral sentences naming groups, social problems and emotions (written for zhcurate): always trained on.
NEUTRAL_SENTENCES = Path(__file__).resolve().parent / "data" / "safety_neutral.txt"
BUCKET_BITS = 20
NGRAM_MAX = 4
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
    return _unique(np.concatenate(parts)) if parts else np.zeros(0, dtype=np.int64)


def _member(keys: npt.NDArray[np.int64], sorted_set: npt.NDArray[np.int64]) -> npt.NDArray[np.bool_]:
    """``np.isin(keys, sorted_set)`` for a sorted ``sorted_set``, by binary search."""
    if sorted_set.shape[0] == 0:
        return np.zeros(keys.shape[0], dtype=bool)
    idx = np.minimum(np.searchsorted(sorted_set, keys), sorted_set.shape[0] - 1)
    return sorted_set[idx] == keys


def _unique(keys: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """Sorted distinct values (a sort and a mask: several times faster than ``np.unique``'s hashing here)."""
    keys = np.sort(keys)
    keep = np.empty(keys.shape[0], dtype=bool)
    keep[:1] = True
    np.not_equal(keys[1:], keys[:-1], out=keep[1:])
    return keys[keep]


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


@dataclass(frozen=True)
class SafetyClassifier:
    """A linear model over hashed char n-grams; :meth:`scores` gives P(offensive) per text."""

    weights: npt.NDArray[np.float32]
    bias: float
    threshold: float
    bits: int = BUCKET_BITS
    nmax: int = NGRAM_MAX

    @classmethod
    def load(cls, path: Path = DEFAULT_ARTIFACT) -> SafetyClassifier:
        with np.load(path) as z:
            bits = int(z["bits"])
            weights = np.zeros(1 << bits, dtype=np.float32)
            weights[np.cumsum(z["index_delta"], dtype=np.int64)] = z["value"]
            return cls(
                weights=weights,
                bias=float(z["bias"]),
                threshold=float(z["threshold"]),
                bits=bits,
                nmax=int(z["nmax"]),
            )

    def scores(self, texts: Sequence[str], contexts: Sequence[str] | None = None) -> npt.NDArray[np.float64]:
        """Probability of the offensive class for each text (0.0 for empty texts).

        With ``contexts`` (one per text, e.g. the request a text answers), the n-grams that only echo the
        context contribute nothing (see :func:`novel_keys`): an answer is judged on what it adds to its
        request, so ``垃圾邮件`` answering "classify as 垃圾邮件 or not" scores as an empty text would.
        """
        n = len(texts)
        if n == 0:
            return np.zeros(0)
        if contexts is None:
            keys = novel = ngram_keys(texts, self.bits, self.nmax)
        else:
            keys, novel = novel_keys(texts, contexts, self.bits, self.nmax)
        count = np.bincount(keys >> self.bits, minlength=n)
        rows, buckets = novel >> self.bits, novel & ((1 << self.bits) - 1)
        total = np.bincount(rows, weights=self.weights[buckets], minlength=n)
        logit = self.bias + total / np.sqrt(np.maximum(count, 1))
        prob = 1.0 / (1.0 + np.exp(-logit))
        return np.where(count > 0, prob, 0.0)


def read_cold(path: Path) -> tuple[list[str], npt.NDArray[np.int64]]:
    """COLD's CSV (``split,topic,label,TEXT``, UTF-8 with BOM): texts and 0/1 labels."""
    with path.open(encoding="utf-8-sig", newline="") as fh:
        rows = list(csv.DictReader(fh))
    return [r["TEXT"] for r in rows], np.array([int(r["label"]) for r in rows], dtype=np.int64)


_HAN = re.compile(r"[\u4e00-\u9fff]")


def read_clean(path: Path) -> list[str]:
    """Everyday Chinese sentences from a text or TSV file (Tatoeba pairs, PAWS-X, ...): every tab-separated
    field that is mostly Han characters, converted to Simplified Chinese (the pipeline's ``normalize`` does
    the same before ``safety``), deduplicated, in file order."""
    import opencc

    t2s = opencc.OpenCC("t2s")
    seen: dict[str, None] = {}
    for line in path.read_text(encoding="utf-8-sig").splitlines():
        for cell in line.split("\t"):
            cell = cell.strip()
            if len(_HAN.findall(cell)) >= max(2, len(cell) // 3):
                seen.setdefault(t2s.convert(cell))
    return list(seen)


def _matrix(texts: Sequence[str], bits: int, nmax: int):
    """The binary, L2-normalised feature matrix (scipy CSR) that :meth:`SafetyClassifier.scores` implies."""
    from scipy.sparse import csr_matrix

    keys = ngram_keys(texts, bits, nmax)
    rows, buckets = keys >> bits, keys & ((1 << bits) - 1)
    count = np.bincount(rows, minlength=len(texts)).astype(np.float64)
    vals = 1.0 / np.sqrt(np.maximum(count[rows], 1.0))
    return csr_matrix((vals, (rows, buckets)), shape=(len(texts), 1 << bits))


def _f1_at(prob: npt.NDArray[np.float64], y: npt.NDArray[np.int64], t: float) -> tuple[float, float, float]:
    pred = prob >= t
    tp = float(np.sum(pred & (y == 1)))
    p = tp / max(float(pred.sum()), 1.0)
    r = tp / max(float((y == 1).sum()), 1.0)
    return p, r, 2 * p * r / max(p + r, 1e-9)


def _fit(x, y: npt.NDArray[np.int64], c: float, seed: int) -> tuple[npt.NDArray[np.float64], float]:
    """NB-weighted logistic regression (Wang & Manning 2012): scale each feature by its log-count ratio
    between the classes, fit an L2 logistic regression, fold the scaling back into one weight vector."""
    from scipy.sparse import diags
    from sklearn.linear_model import LogisticRegression

    present = (x > 0).astype(np.float64)
    pos = 1.0 + np.asarray(present[y == 1].sum(axis=0)).ravel()
    neg = 1.0 + np.asarray(present[y == 0].sum(axis=0)).ravel()
    ratio = np.log((pos / pos.sum()) / (neg / neg.sum()))
    model = LogisticRegression(C=c, solver="liblinear", max_iter=1000, random_state=seed)
    model.fit(x @ diags(ratio), y)
    return model.coef_[0] * ratio, float(model.intercept_[0])


def train(
    cold_texts: Sequence[str],
    cold_labels: npt.NDArray[np.int64],
    clean: Sequence[str],
    c: float = 16.0,
    seed: int = 0,
    bits: int = BUCKET_BITS,
    f1_slack: float = 0.005,
) -> tuple[SafetyClassifier, dict[str, float]]:
    """Fit on 85 % of COLD (plus all ``clean`` sentences, as label 0), pick the threshold on the other 15 % of
    COLD (the highest one within ``f1_slack`` of the best F1), then refit on everything with it."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(cold_texts))
    n_hold = len(cold_texts) * 15 // 100
    hold, fit = order[:n_hold], order[n_hold:]
    zeros = np.zeros(len(clean), dtype=np.int64)

    def fit_on(idx: npt.NDArray[np.int64]) -> SafetyClassifier:
        texts = [cold_texts[i] for i in idx] + list(clean)
        w, b = _fit(_matrix(texts, bits, NGRAM_MAX), np.concatenate([cold_labels[idx], zeros]), c, seed)
        return SafetyClassifier(weights=w.astype(np.float16).astype(np.float32), bias=b, threshold=0.5, bits=bits)

    prob = fit_on(fit).scores([cold_texts[i] for i in hold])
    grid = [round(float(t), 2) for t in np.arange(0.30, 0.701, 0.01)]
    f1s = [_f1_at(prob, cold_labels[hold], t)[2] for t in grid]
    # COLD is half offensive; real instruction data is mostly clean, so precision matters more there: take the
    # highest threshold whose held-out F1 is within `f1_slack` of the best.
    threshold = max(t for t, f in zip(grid, f1s) if f >= max(f1s) - f1_slack)
    p, r, f1 = _f1_at(prob, cold_labels[hold], threshold)
    final = fit_on(order)
    clf = SafetyClassifier(final.weights, final.bias, threshold, bits)
    return clf, {"threshold": threshold, "holdout_precision": p, "holdout_recall": r, "holdout_f1": f1}


def save(clf: SafetyClassifier, path: Path) -> None:
    """Write the artifact: only the non-zero weights (buckets no training text touched stay zero), their
    bucket numbers delta-encoded (small gaps compress to almost nothing)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    index = np.flatnonzero(clf.weights)
    np.savez_compressed(
        path,
        index_delta=np.diff(index, prepend=0).astype(np.uint32),
        value=clf.weights[index].astype(np.float16),
        bias=np.float64(clf.bias),
        threshold=np.float64(clf.threshold),
        bits=np.int64(clf.bits),
        nmax=np.int64(clf.nmax),
    )


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="zhcurate train-safety", description=__doc__.split("\n\n")[0])
    ap.add_argument("--cold", type=Path, required=True, help="COLD train.csv (split,topic,label,TEXT)")
    ap.add_argument(
        "--clean",
        type=Path,
        action="append",
        default=[],
        help="everyday Chinese text used as extra non-offensive examples (repeatable; TSV fields that are mostly "
        "Han are used), e.g. Tatoeba cmn-eng pairs and PAWS-X",
    )
    ap.add_argument("--out", type=Path, default=DEFAULT_ARTIFACT, help="artifact to write (.npz)")
    ap.add_argument("--c", type=float, default=16.0, help="inverse L2 regularisation strength")
    ap.add_argument("--bits", type=int, default=BUCKET_BITS, help="log2 of the number of hash buckets")
    ap.add_argument("--seed", type=int, default=0, help="seed of the train/held-out split (default 0)")
    return ap


def main(argv: Sequence[str] | None = None) -> int:
    """Train the classifier and write the artifact; prints the held-out figures."""
    args = build_parser().parse_args(argv)
    for f in [args.cold, *args.clean]:
        if not f.is_file():
            print(f"error: {f} not found", file=sys.stderr)
            return 2
    texts, labels = read_cold(args.cold)
    clean = [t for f in args.clean for t in read_clean(f)]
    clean += [s for s in NEUTRAL_SENTENCES.read_text(encoding="utf-8").splitlines() if s and not s.startswith("#")]
    clf, stats = train(texts, labels, clean, args.c, args.seed, args.bits)
    save(clf, args.out)
    figures = " ".join(f"{k}={v:.3f}" for k, v in stats.items())
    print(f"trained on {len(texts)} COLD texts + {len(clean)} clean sentences -> {args.out} {figures}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
