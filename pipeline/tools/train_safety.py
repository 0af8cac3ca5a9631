"""``zhcurate train-safety``: train the models of the ``safety`` stage (seeded, deterministic) into one ``.npz``.

    zhcurate train-safety --data ../shared/data --out stages/data/safety_models.npz [--seed 0] [--limit N]

``--data`` is a folder laid out as zhcurate's shared data (``safety/``, ``cold/``, ``alpaca_zh/``,
``parallel/``, ``paraphrase/``). ``--out`` is required: nothing overwrites the shipped artefact by accident.
``--limit N`` trains on the first N records of each source (a fast smoke test, not a usable model).

What each head learns from (see :mod:`stages.safety.model` for the features):

* **request** — harmful: the ``must_refuse`` requests of ``safety/harmful_requests.jsonl`` (JADE 1.0/2.0,
  JailBench seed) and ``stages/data/safety_harmful_requests.txt`` (short, direct harmful requests written for
  zhcurate as templates x acts, on the same topics as the benign list below: the intent makes the harm). The
  ``safety_probe`` sets (XSafety, Flames) are *not* used: many of their prompts are benign-looking. Benign:
  Alpaca-zh instructions (+ input) of the files that are **not** ``*已完成.json`` (those are the evaluation set of
  ``bench/bench_safety.py``), LCQMC / BQ / ATEC questions (everyday "how do I ..."), Tatoeba sentences, and
  ``stages/data/safety_benign_requests.txt`` (benign requests about sensitive topics, written for zhcurate:
  鸦片战争, 艾滋病预防, 反对死刑的文章, 如何防范诈骗 — topic words are not harm).
* **category** — the harmful requests' own labels mapped to the stage's categories
  (``safety_corpus.source_category``).
* **refusal** — refuses / redirects: JADE v3 ``safe_response`` answers; complies: JADE ``harmful_response``
  answers, **cleaned** of the machine-made labels that are wrong (``safety_corpus.clean_jade``: the 13 harmful
  answers the data's README found to be refusals, answers under 12 characters, and answers whose first 60
  characters refuse without pivoting to compliance), plus Alpaca-zh answers (non-evaluation files) that the
  refusal regex does not flag. Classes are weighted to balance.
* **harm** — harmful help: the cleaned JADE ``harmful_response`` answers; not harmful: JADE ``safe_response``
  answers and Alpaca-zh answers (non-evaluation files). (Also tried: the harmful requests as extra positives,
  which made the head more topical and caught more short, non-JADE-style compliance, but at the same false drops
  on clean Alpaca-zh it dropped fewer held-out JADE harmful answers: 84.6 % against 89.4 %.)
* **toxicity** — COLD train (offensive 1 / safe 0) plus, as non-offensive, Tatoeba, PAWS-X, Alpaca-zh answers
  (non-evaluation files) and ``stages/data/safety_neutral.txt`` (neutral sentences naming groups and emotions).

Thresholds are chosen on a seeded 15 % hold-out of each head's data, never on the evaluation sets. Request: the
lowest score whose false-positive rate on held-out benign requests is at most ``--request-fp`` (0.5 %; the harm
head must agree before a compliant answer is dropped). Refusal: the middle of the plateau of best balanced
accuracy on held-out JADE pairs. Harm: the lowest score whose false-positive rate on held-out Alpaca answers is
at most ``--harm-fp`` (3 %; informational: the stage combines harm with request risk, see ``PAIR_THRESHOLD`` in
:mod:`stages.safety.stage`). Toxicity: the highest threshold within 0.005 of the best F1 on held-out COLD (real data
is far cleaner than COLD's 50 %). Each head is then refitted on all its data.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from pipeline.tools.safety_corpus import Corpus, load
from stages.safety.model import (
    BUCKET_BITS,
    CATEGORY_BITS,
    CATEGORY_NMAX,
    NGRAM_MAX,
    CategoryHead,
    LinearHead,
    SafetyModels,
    ngram_keys,
)

REQUEST_FP = 0.005  # benign requests flagged, on the hold-out (the harm head then gates the drop)
HARM_FP = 0.03  # ordinary Alpaca answers taken for harmful help, on the hold-out


# --- fitting ------------------------------------------------------------------------------------------------
def _matrix(texts: Sequence[str], bits: int, nmax: int) -> Any:
    """The binary, L2-normalised feature matrix (scipy CSR) the heads' inference implies."""
    from scipy.sparse import csr_matrix

    keys = ngram_keys(texts, bits, nmax)
    rows, buckets = keys >> bits, keys & ((1 << bits) - 1)
    count = np.bincount(rows, minlength=len(texts)).astype(np.float64)
    vals = 1.0 / np.sqrt(np.maximum(count[rows], 1.0))
    return csr_matrix((vals, (rows, buckets)), shape=(len(texts), 1 << bits))


def fit_binary(
    texts: Sequence[str], y: npt.NDArray[np.int64], c: float, seed: int, balanced: bool = False
) -> LinearHead:
    """NB-weighted logistic regression (Wang & Manning 2012) over hashed 1–4-grams; threshold 0.5 (set later)."""
    from scipy.sparse import diags
    from sklearn.linear_model import LogisticRegression

    x = _matrix(texts, BUCKET_BITS, NGRAM_MAX)
    present = (x > 0).astype(np.float64)
    pos = 1.0 + np.asarray(present[y == 1].sum(axis=0)).ravel()
    neg = 1.0 + np.asarray(present[y == 0].sum(axis=0)).ravel()
    ratio = np.log((pos / pos.sum()) / (neg / neg.sum()))
    model = LogisticRegression(
        C=c, solver="liblinear", max_iter=1000, random_state=seed, class_weight="balanced" if balanced else None
    )
    model.fit(x @ diags(ratio), y)
    w = (model.coef_[0] * ratio).astype(np.float16).astype(np.float32)
    return LinearHead(w, float(model.intercept_[0]), 0.5, BUCKET_BITS)


def fit_category(texts: Sequence[str], labels: Sequence[str], seed: int, c: float = 8.0) -> CategoryHead:
    """Multinomial logistic regression over hashed 1–2-grams; classes with fewer than 3 examples are left out."""
    from collections import Counter

    from sklearn.linear_model import LogisticRegression

    counts = Counter(labels)
    keep = [i for i, lab in enumerate(labels) if counts[lab] >= 3]
    x = _matrix([texts[i] for i in keep], CATEGORY_BITS, CATEGORY_NMAX)
    y = np.array([labels[i] for i in keep])
    model = LogisticRegression(C=c, max_iter=2000, random_state=seed)
    model.fit(x, y)
    return CategoryHead(
        weights=model.coef_.astype(np.float16).astype(np.float32),
        bias=model.intercept_.astype(np.float32),
        classes=tuple(str(k) for k in model.classes_),
    )


def _split(n: int, rng: np.random.Generator, share: float = 0.15) -> tuple[npt.NDArray[np.int64], ...]:
    order = rng.permutation(n)
    k = int(n * share)
    return order[:k], order[k:]


def _with_threshold(head: LinearHead, t: float) -> LinearHead:
    return LinearHead(head.weights, head.bias, round(float(t), 4), head.bits)


def train_request(c: Corpus, seed: int, max_fp: float) -> tuple[LinearHead, dict[str, float]]:
    texts = c.harmful + c.benign
    y = np.array([1] * len(c.harmful) + [0] * len(c.benign), dtype=np.int64)
    hold, fit = _split(len(texts), np.random.default_rng(seed))
    head = fit_binary([texts[i] for i in fit], y[fit], 4.0, seed, balanced=True)
    p = head.scores([texts[i] for i in hold])
    neg, pos = np.sort(p[y[hold] == 0]), p[y[hold] == 1]
    t = max(0.05, float(neg[min(len(neg) - 1, int(np.floor(len(neg) * (1 - max_fp))))]) + 1e-4) if len(neg) else 0.5
    stats = {"threshold": t, "holdout_recall": float(np.mean(pos >= t)), "holdout_fp": float(np.mean(neg >= t))}
    return _with_threshold(fit_binary(texts, y, 4.0, seed, balanced=True), min(t, 0.99)), stats


def train_refusal(c: Corpus, seed: int) -> tuple[LinearHead, dict[str, float]]:
    jade = c.refusals + c.complies
    jy = np.array([1] * len(c.refusals) + [0] * len(c.complies), dtype=np.int64)
    hold, fit = _split(len(jade), np.random.default_rng(seed))
    texts = [jade[i] for i in fit] + c.helpful
    y = np.concatenate([jy[fit], np.zeros(len(c.helpful), dtype=np.int64)])
    head = fit_binary(texts, y, 4.0, seed, balanced=True)
    p = head.scores([jade[i] for i in hold])
    grid = np.arange(0.2, 0.81, 0.01)
    acc = [(np.mean(p[jy[hold] == 1] >= t) + np.mean(p[jy[hold] == 0] < t)) / 2 for t in grid]
    best = [float(t) for t, a in zip(grid, acc) if a >= max(acc) - 1e-9]
    t = round(best[len(best) // 2], 2)  # the middle of the best plateau, not its edge
    final = fit_binary(
        jade + c.helpful, np.concatenate([jy, np.zeros(len(c.helpful), dtype=np.int64)]), 4.0, seed, True
    )
    return _with_threshold(final, t), {"threshold": t, "holdout_balanced_accuracy": float(max(acc))}


def train_harm(c: Corpus, seed: int, max_fp: float = HARM_FP) -> tuple[LinearHead, dict[str, float]]:
    texts = c.complies + c.refusals + c.helpful
    y = np.array([1] * len(c.complies) + [0] * (len(c.refusals) + len(c.helpful)), dtype=np.int64)
    hold, fit = _split(len(texts), np.random.default_rng(seed))
    head = fit_binary([texts[i] for i in fit], y[fit], 4.0, seed, balanced=True)
    p = head.scores([texts[i] for i in hold])
    helpful = np.sort(p[hold >= len(c.complies) + len(c.refusals)])
    t = float(helpful[min(len(helpful) - 1, int(len(helpful) * (1 - max_fp)))]) if len(helpful) else 0.5
    recall = float(np.mean(p[y[hold] == 1] >= t))
    final = fit_binary(texts, y, 4.0, seed, balanced=True)
    return _with_threshold(final, min(max(t, 0.01), 0.99)), {"threshold": t, "holdout_recall": recall}


def train_toxicity(c: Corpus, seed: int, slack: float = 0.005) -> tuple[LinearHead, dict[str, float]]:
    cy = np.array(c.cold_y, dtype=np.int64)
    hold, fit = _split(len(c.cold), np.random.default_rng(seed))
    zeros = np.zeros(len(c.clean), dtype=np.int64)
    head = fit_binary([c.cold[i] for i in fit] + c.clean, np.concatenate([cy[fit], zeros]), 16.0, seed)
    p = head.scores([c.cold[i] for i in hold])
    grid = [round(float(t), 2) for t in np.arange(0.30, 0.801, 0.01)]

    def f1(t: float) -> float:
        pred, gold = p >= t, cy[hold] == 1
        tp = float(np.sum(pred & gold))
        return 2 * tp / max(float(pred.sum() + gold.sum()), 1.0)

    f1s = [f1(t) for t in grid]
    t = max(t for t, f in zip(grid, f1s) if f >= max(f1s) - slack)
    final = fit_binary(c.cold + c.clean, np.concatenate([cy, zeros]), 16.0, seed)
    return _with_threshold(final, t), {"threshold": t, "holdout_f1": f1(t)}


def train(
    c: Corpus, seed: int = 0, request_fp: float = 0.005, harm_fp: float = 0.03
) -> tuple[SafetyModels, dict[str, dict[str, float]]]:
    """All heads from one corpus."""
    request, rs = train_request(c, seed, request_fp)
    refusal, fs = train_refusal(c, seed)
    harm, hs = train_harm(c, seed, harm_fp)
    toxicity, ts = train_toxicity(c, seed)
    own = [i for i, g in enumerate(c.harmful_group) if g != "zhcurate/written"]
    category = fit_category([c.harmful[i] for i in own], [c.harmful_cat[i] for i in own], seed)
    stats = {"request": rs, "refusal": fs, "harm": hs, "toxicity": ts}
    return SafetyModels(request=request, refusal=refusal, harm=harm, toxicity=toxicity, category=category), stats


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``zhcurate train-safety``."""
    ap = argparse.ArgumentParser(prog="zhcurate train-safety", description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--data", type=Path, required=True, help="shared-data folder (safety/, cold/, alpaca_zh/, ...)")
    ap.add_argument(
        "--out",
        type=Path,
        required=True,
        help="artefact to write (.npz); the stage's default is stages/data/safety_models.npz",
    )
    ap.add_argument("--seed", type=int, default=0, help="seed of every split and fit (default 0)")
    ap.add_argument("--limit", type=int, default=None, help="first N records of each source (smoke test)")
    ap.add_argument(
        "--request-fp",
        type=float,
        default=REQUEST_FP,
        help="false-positive rate allowed on held-out benign requests when choosing the request threshold",
    )
    ap.add_argument(
        "--harm-fp",
        type=float,
        default=HARM_FP,
        help="false-positive rate allowed on held-out Alpaca answers when choosing the harm threshold",
    )
    return ap


def main(argv: Sequence[str] | None = None) -> int:
    """Train every head and write the artefact; prints the hold-out figures."""
    args = build_parser().parse_args(argv)
    needed = ["safety/harmful_requests.jsonl", "safety/jade_train.jsonl", "cold/train.csv", "alpaca_zh",
              "parallel/tatoeba_cmn_eng.txt", "paraphrase/PAWSX/PAWSX.valid.data", "paraphrase/LCQMC/LCQMC.valid.data",
              "paraphrase/BQ/BQ.valid.data", "paraphrase/ATEC/ATEC.valid.data"]  # fmt: skip
    missing = [p for p in needed if not (args.data / p).exists()]
    if missing:
        print(f"error: --data {args.data} lacks {', '.join(missing)}", file=sys.stderr)
        return 2
    corpus = load(args.data, args.limit)
    models, stats = train(corpus, args.seed, args.request_fp, args.harm_fp)
    models.save(args.out)
    print(
        f"trained: request {len(corpus.harmful)} harmful / {len(corpus.benign)} benign; refusal "
        f"{len(corpus.refusals)} refusals / {len(corpus.complies)} JADE complies + {len(corpus.helpful)} Alpaca "
        f"answers; toxicity {len(corpus.cold)} COLD + {len(corpus.clean)} clean; categories "
        f"{', '.join(models.category.classes)} -> {args.out}"
    )
    for head, figures in stats.items():
        print(f"  {head}: " + " ".join(f"{k}={v:.4f}" for k, v in figures.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
