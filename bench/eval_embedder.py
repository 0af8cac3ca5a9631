"""Measure the built-in embedder against lexical baselines on the Chinese paraphrase validation sets.

    python bench/eval_embedder.py [--model DIR] [--data ../shared/data] [--weights 0.3,0.5,0.7]

Prints, for LCQMC, BQ, ATEC, PAWSX (ROC-AUC of similarity vs label) and STS-B (Spearman vs the 0–5 score):
char-bigram Jaccard, TF-IDF over char 1–3 grams (IDF fitted on the set's own sentences), the model's embedding
cosine alone, the TF-IDF of the shipped (training-text) IDF alone, and the shipped hybrid ``pair_similarity``;
then precision/recall at ``DEFAULT_THRESHOLD`` on each binary set, and encode speed in Alpaca-zh records/s.
These are validation sets: they measure; the model is never trained on them.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from stages.dedup.embedder import (  # noqa: E402
    DEFAULT_MODEL_DIR,
    DEFAULT_THRESHOLD,
    EMBED_WEIGHT,
    NgramIdf,
    load_model,
    pair_similarity,
)

SETS = ("LCQMC", "BQ", "ATEC", "PAWSX", "STS-B")
Pairs = tuple[list[str], list[str], np.ndarray]
ENCODE_BATCH = 4096  # static embeddings: tokenizing is the cost, and big batches amortise it
SHIPPED = f"shipped: pair_similarity (hybrid w={EMBED_WEIGHT:g})"


def read_pairs(path: Path) -> Pairs:
    a: list[str] = []
    b: list[str] = []
    labels: list[float] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        cols = line.split("\t")
        if len(cols) == 3:
            a.append(cols[0])
            b.append(cols[1])
            labels.append(float(cols[2]))
    return a, b, np.asarray(labels)


def score(name: str, labels: np.ndarray, sims: np.ndarray) -> float:
    from scipy.stats import spearmanr
    from sklearn.metrics import roc_auc_score

    if name == "STS-B":
        return float(spearmanr(sims, labels).statistic)
    return float(roc_auc_score(labels, sims))


def bigram_jaccard(a: list[str], b: list[str]) -> np.ndarray:
    def grams(text: str) -> set[str]:
        return {text[i : i + 2] for i in range(len(text) - 1)} or {text}

    out = np.empty(len(a))
    for i, (x, y) in enumerate(zip(a, b, strict=True)):
        gx, gy = grams(x), grams(y)
        out[i] = len(gx & gy) / max(1, len(gx | gy))
    return out


def tfidf_on_set(a: list[str], b: list[str]) -> np.ndarray:
    from sklearn.feature_extraction.text import TfidfVectorizer

    vec = TfidfVectorizer(analyzer="char", ngram_range=(1, 3)).fit(a + b)
    return np.asarray(vec.transform(a).multiply(vec.transform(b)).sum(axis=1)).ravel()


def encode_speed(model_dir: Path, data: Path, repeats: int = 2) -> float:
    """Best of ``repeats`` runs: Alpaca-zh records (instruction + input + output) encoded per second."""
    from pipeline.tools.static_model import read_json_lenient

    model = load_model(model_dir)
    texts = [
        "\n".join(str(r.get(k) or "") for k in ("instruction", "input", "output")).strip()
        for path in sorted((data / "alpaca_zh").glob("*.json"))
        for r in read_json_lenient(path)
    ]
    best = 0.0
    for _ in range(repeats):
        start = time.perf_counter()
        model.encode(texts, batch_size=ENCODE_BATCH, convert_to_numpy=True)
        best = max(best, len(texts) / (time.perf_counter() - start))
    return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL_DIR)
    parser.add_argument("--data", type=Path, default=REPO / ".." / "shared" / "data")
    parser.add_argument("--weights", default="", help="extra embedding weights of the hybrid to show")
    parser.add_argument("--no-speed", action="store_true")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)

    model = load_model(args.model)
    idf = NgramIdf.load(args.model)
    rows: dict[str, dict[str, float]] = {}
    pr: dict[str, tuple[float, float]] = {}
    extra = [float(w) for w in args.weights.split(",") if w]
    for name in SETS:
        a, b, labels = read_pairs(args.data / "paraphrase" / name / f"{name}.valid.data")
        emb_a = model.encode(a, batch_size=512, convert_to_numpy=True)
        emb_b = model.encode(b, batch_size=512, convert_to_numpy=True)
        cosine = pair_similarity(a, b, emb_a, emb_b, idf=idf, embed_weight=1.0)
        ngram = idf.pair_cosine(a, b)
        methods: dict[str, np.ndarray] = {
            "char-bigram Jaccard": bigram_jaccard(a, b),
            "TF-IDF char 1-3 (set IDF)": tfidf_on_set(a, b),
            "TF-IDF char 1-3 (shipped IDF)": ngram,
            "embedding cosine": cosine,
        }
        for w in extra:
            methods[f"hybrid w={w:g}"] = w * cosine + (1 - w) * ngram
        methods[SHIPPED] = pair_similarity(a, b, emb_a, emb_b, idf=idf)
        for method, sims in methods.items():
            rows.setdefault(method, {})[name] = score(name, labels, sims)
            if method == SHIPPED and name != "STS-B":
                hit = sims >= DEFAULT_THRESHOLD
                tp = float((hit & (labels == 1)).sum())
                pr[name] = (tp / max(1.0, float(hit.sum())), tp / max(1.0, float((labels == 1).sum())))

    print(f"| method | {' | '.join(SETS[:-1])} | STS-B (Spearman) |")
    print("|---|" + "---|" * len(SETS))
    for method, vals in rows.items():
        print(f"| {method} | " + " | ".join(f"{vals[s]:.3f}" for s in SETS) + " |")
    print(
        f"\nat DEFAULT_THRESHOLD={DEFAULT_THRESHOLD}: "
        + ", ".join(f"{s} precision {p:.3f} recall {r:.3f}" for s, (p, r) in pr.items())
    )
    figures: dict[str, object] = {"auc": rows, "precision_recall": pr, "threshold": DEFAULT_THRESHOLD}
    if not args.no_speed:
        speed = encode_speed(args.model, args.data)
        figures["records_per_s"] = speed
        print(f"encode speed: {speed:,.0f} Alpaca-zh records/s (batch {ENCODE_BATCH}, best of 2, shared CPU)")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
