"""Choose the dedup_semantic threshold for a model by precision/recall on labelled sentence pairs.

    zhcurate calibrate                          # built-in model, hybrid similarity
    zhcurate calibrate --model BAAI/bge-small-zh-v1.5 --similarity cosine
    zhcurate calibrate --pairs my_pairs.tsv --min-precision 0.95 --json out.json
    zhcurate calibrate --model e5-small --similarity cosine --select LCQMC --limit 2000
    zhcurate calibrate --similarity cosine --verify-model e5-small --propose 0.80 --select LCQMC --limit 2000

Pair files are ``s1<TAB>s2<TAB>label`` lines, label 1 = same meaning, 0 = not (other labels are skipped).
By default they are the LCQMC, BQ, ATEC and PAWSX validation sets in ``../shared/data/paraphrase/``.

The similarity is computed exactly as the stage does (:mod:`stages.dedup.embedder`: the model's normalized
embedding cosine, or the hybrid with char n-gram TF-IDF). For every threshold on a grid it prints precision
first (dedup must not drop records that mean something else), then recall, per set and pooled over the
``--select``-ed sets; the recommended threshold is the lowest one from which on the pooled precision stays at
or above ``--min-precision`` (so recall is as high as that precision allows; thresholds that predict fewer
than 50 pairs are too noisy to count). Put it in the recipe:
``dedup_semantic: {model: ..., similarity: ..., threshold: <value>}``.

``--verify-model e5-small --propose T`` scores the cascade (``dedup_semantic: {verify_model: e5-small,
threshold: T}``): a pair's score is the teacher's cosine where the main model's similarity reaches ``T`` (the
proposal), else 0. ``--limit N`` takes a seeded sample of N pairs per set (the teacher embeds ~60 texts/s;
its vectors are cached in ``--cache-dir``). A pair of sentences stands for a pair of requests, of
instructions or of outputs alike: the value chosen here serves each side of every ``mode``.

PAWSX is reported but not selected by default: its negatives are the same words in another order (``A 与 B
合并后成立了 C`` / ``C 由合并 A 和 B 成立``), which a bag-of-tokens model (the built-in one) cannot tell apart
at any threshold. All these sets are question matching with far more positives than a real dataset has
duplicates: compare thresholds with them; the precision of a real run is lower at the same false-positive rate.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
# the shared development data beside a source checkout; installed elsewhere, pass --pairs or --data
DEFAULT_DATA = REPO / ".." / "shared" / "data" / "paraphrase"
DEFAULT_SETS = ("LCQMC", "BQ", "ATEC", "PAWSX")
SELECTED = ("LCQMC", "BQ", "ATEC")
GRID = np.round(np.arange(0.50, 0.9975, 0.005), 3)
DEFAULT_CACHE = REPO / ".." / "cache" / "semantic" / "teacher"


def read_pairs(path: Path) -> tuple[list[str], list[str], np.ndarray]:
    """The (s1, s2, label) columns of a pair file; lines without a 0/1 label are skipped."""
    left: list[str] = []
    right: list[str] = []
    labels: list[int] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        cols = line.split("\t")
        if len(cols) >= 3 and cols[2].strip() in ("0", "1"):
            left.append(cols[0])
            right.append(cols[1])
            labels.append(int(cols[2]))
    return left, right, np.asarray(labels, dtype=np.int8)


def pair_scores(
    model_name: str,
    similarity: str,
    left: list[str],
    right: list[str],
    device: str,
    batch_size: int,
    cache_dir: Path = DEFAULT_CACHE,
) -> tuple[np.ndarray, float]:
    """The stage's similarity of each pair, and the texts/s the model embedded them at."""
    from stages.dedup import embedder
    from stages.dedup.semantic import _idf_for
    from stages.dedup.teacher import E5_NAME

    texts = sorted(set(left) | set(right))
    start = time.perf_counter()
    if model_name == E5_NAME:  # the teacher is slow: its vectors are cached by content
        from pipeline.tools.distil_embedder import teacher_vectors

        vectors = teacher_vectors(texts, cache_dir, threads=2)
    else:
        model = embedder.load_model(model_name, device, offline=True)
        vectors = model.encode(
            texts, batch_size=batch_size, convert_to_numpy=True, normalize_embeddings=True, show_progress_bar=False
        )
    speed = len(texts) / (time.perf_counter() - start)
    row = {text: i for i, text in enumerate(texts)}
    emb_a = vectors[[row[t] for t in left]]
    emb_b = vectors[[row[t] for t in right]]
    if similarity == "cosine":
        return np.einsum("ij,ij->i", emb_a, emb_b).astype(np.float32), speed
    idf = _idf_for(model_name)
    return embedder.pair_similarity(left, right, emb_a, emb_b, idf=idf), speed


def _sample(
    pairs: tuple[list[str], list[str], np.ndarray], limit: int, seed: int
) -> tuple[list[str], list[str], np.ndarray]:
    left, right, labels = pairs
    if len(labels) <= limit:
        return pairs
    rows = np.sort(np.random.default_rng(seed).choice(len(labels), size=limit, replace=False))
    return [left[i] for i in rows], [right[i] for i in rows], labels[rows]


def curve(scores: np.ndarray, labels: np.ndarray) -> list[dict[str, float]]:
    """Precision, recall and F1 of ``score >= t`` for every t of the grid."""
    rows = []
    positives = int(labels.sum())
    for t in GRID:
        predicted = scores >= t
        tp = int(np.count_nonzero(predicted & (labels == 1)))
        n_pred = int(np.count_nonzero(predicted))
        precision = tp / n_pred if n_pred else 1.0
        recall = tp / positives if positives else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        rows.append({"threshold": float(t), "precision": precision, "recall": recall, "f1": f1, "predicted": n_pred})
    return rows


def choose(rows: list[dict[str, float]], min_precision: float, support: int = 50) -> dict[str, float] | None:
    """The lowest threshold whose precision reaches ``min_precision`` and stays there at every higher threshold
    that still predicts at least ``support`` pairs (fewer is noise: 35 of 39 is 0.897); None if there is none."""
    ok = [r["precision"] >= min_precision or r["predicted"] < support for r in rows]
    for i in range(len(rows)):
        if rows[i]["predicted"] >= support and all(ok[i:]):
            return rows[i]
    return None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="zhcurate calibrate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None, help="local path or cached model name (default: built-in)")
    parser.add_argument(
        "--similarity",
        choices=("hybrid", "cosine"),
        default="hybrid",
        help="hybrid: 0.7 x embedding cosine + 0.3 x char n-gram TF-IDF cosine (the built-in model); cosine: the "
        "embedding cosine alone (for a stronger model)",
    )
    parser.add_argument("--pairs", nargs="*", type=Path, help="pair files (default: the shared validation sets)")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder of the default sets")
    parser.add_argument("--select", nargs="*", default=list(SELECTED), help="sets pooled for the choice")
    parser.add_argument(
        "--min-precision",
        type=float,
        default=0.9,
        help="the recommended threshold is the lowest one with at least this precision (default 0.9)",
    )
    parser.add_argument("--support", type=int, default=50, help="fewest predicted pairs that count")
    parser.add_argument("--device", default="cpu", help="torch device: cpu, cuda, cuda:1, mps (default cpu)")
    parser.add_argument("--batch-size", type=int, default=256, help="texts per encoding batch (default 256)")
    parser.add_argument("--json", type=Path, help="write all figures to this file")
    parser.add_argument("--limit", type=int, help="a seeded sample of this many pairs per set")
    parser.add_argument("--seed", type=int, default=0, help="seed of --limit's sample")
    parser.add_argument("--verify-model", choices=("e5-small",), help="score the cascade with this teacher")
    parser.add_argument("--propose", type=float, help="the main model's threshold that proposes (cascade)")
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE, help="teacher vector cache")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Print the threshold table and the recommendation; 0 on success, 2 on bad usage or missing data."""
    args = build_parser().parse_args(argv)

    from schemas.errors import ConfigError
    from stages.dedup import embedder

    files = args.pairs or [args.data / name / f"{name}.valid.data" for name in DEFAULT_SETS]
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        print(f"pair files not found: {', '.join(missing)}", file=sys.stderr)
        return 2
    model_name = args.model or str(embedder.DEFAULT_MODEL_DIR)
    sets = {f.parent.name if f.name.endswith(".valid.data") else f.stem: read_pairs(f) for f in files}
    if args.limit:
        sets = {name: _sample(pairs, args.limit, args.seed) for name, pairs in sets.items()}
    left = [s for a, _, _ in sets.values() for s in a]
    right = [s for _, b, _ in sets.values() for s in b]
    if args.verify_model and args.propose is None:
        print("--verify-model needs --propose (the main model's threshold in the cascade)", file=sys.stderr)
        return 2
    try:
        scores, speed = pair_scores(model_name, args.similarity, left, right, args.device, args.batch_size)
        if args.verify_model:
            teacher, _ = pair_scores(args.verify_model, "cosine", left, right, args.device, 64, args.cache_dir)
            scores = np.where(scores >= args.propose, teacher, 0.0).astype(np.float32)
            model_name = f"{model_name} >= {args.propose} -> {args.verify_model}"
    except ConfigError as error:
        print(str(error), file=sys.stderr)
        return 2
    result: dict[str, object] = {"model": model_name, "similarity": args.similarity, "texts_per_s": speed}
    starts = np.cumsum([0] + [len(labels) for _, _, labels in sets.values()])
    rows = {name: np.arange(a, b) for name, a, b in zip(sets, starts[:-1], starts[1:], strict=True)}
    curves = {name: curve(scores[rows[name]], labels) for name, (_, _, labels) in sets.items()}
    chosen_sets = [name for name in sets if name in args.select] or list(sets)
    pooled = np.concatenate([rows[name] for name in chosen_sets])
    curves["pooled"] = curve(scores[pooled], np.concatenate([sets[name][2] for name in chosen_sets]))
    result["pooled_sets"] = chosen_sets
    chosen = choose(curves["pooled"], args.min_precision, args.support)
    result["curves"] = curves
    result["chosen"] = chosen

    print(f"model {model_name} | similarity {args.similarity} | {speed:,.0f} texts/s embedded")
    print(f"pooled = {' + '.join(chosen_sets)}; each cell is precision/recall")
    print(f"{'threshold':>9} " + " ".join(f"{name + ' P/R':>15}" for name in curves))
    for i, t in enumerate(GRID):
        if i % 4 and not (chosen and chosen["threshold"] == t):
            continue
        cells = " ".join(f"{c[i]['precision']:>7.3f}/{c[i]['recall']:.3f}" for c in curves.values())
        print(f"{t:>9.2f} {cells}")
    if chosen is None:
        print(f"no threshold reaches pooled precision {args.min_precision}")
    else:
        print(
            f"recommended threshold {chosen['threshold']:.2f}: pooled precision {chosen['precision']:.3f}, "
            f"recall {chosen['recall']:.3f}, F1 {chosen['f1']:.3f}"
        )
    if args.json:
        args.json.write_text(json.dumps(result, indent=1, ensure_ascii=False), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
