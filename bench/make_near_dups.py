"""Build a near-duplicate benchmark from ../shared/data/alpaca_zh (never copied into the repo).

    python bench/make_near_dups.py --size 100000 --out /tmp/near_dups_100k.parquet
    python bench/make_near_dups.py --size 1000000 --out /tmp/near_dups_1m.parquet
    python bench/make_near_dups.py --size 100000 --edit-rates 0.01-0.02,0.03-0.05,0.06-0.08 --out /tmp/edits.parquet

How it is built (seeded, so the same command gives the same file):

1. *Bases.* The ~20k Alpaca-zh records (the file with a trailing comma is read leniently). Records that are
   already near-duplicates of one another are removed first (exact Jaccard of character 3-grams ≥ 0.5 on
   candidate pairs from a low-threshold MinHash LSH), so that distinct groups are really distinct. When more
   bases are needed than exist (``--size`` larger than ``bases × (1 + copies)``), synthetic bases are added: a
   random instruction with an output of 3–6 sentences (8–60 characters) drawn at random from the corpus.
2. *Copies.* Each base gets ``--copies`` (default 4) perturbed copies, kinds drawn uniformly:
   ``char_edit`` (1–4 % of the characters substituted, deleted or inserted), ``punct_width`` (full-width ↔
   half-width punctuation), ``append_sentence`` (one corpus sentence appended to the output), ``truncate``
   (the output cut to 85–95 %), ``insert_spaces`` (spaces at 5–15 % of positions), ``combo`` (punct_width +
   1–2 % char edits + spaces).
   With ``--edit-rates 0.01-0.02,0.03-0.05,0.06-0.08`` every copy is instead a character edit of every field
   (kind ``edit_rate``) at a rate drawn from one of the bands (the recall per band: bench/bench_peers.py).
3. The records are shuffled (so a group's copies land in different batches) and written as Parquet with the
   canonical columns plus ``group`` (the base), ``perturbation`` (``original`` or a kind) and ``edit_rate``
   (the share of characters edited, 0 for kinds without character edits). Ground truth:
   records of one group are duplicates of one another, records of different groups are not.
"""

from __future__ import annotations

import argparse
import random
import re
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import alpaca_data

from stages.dedup.common import record_text
from stages.dedup.minhash_kernel import band_hashes, minhash_signatures

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "alpaca_zh"
KINDS = ("char_edit", "punct_width", "append_sentence", "truncate", "insert_spaces", "combo")
FULL = "，。！？：；（）“”"
HALF = ',.!?:;()""'
TO_HALF = {ord(f): h for f, h in zip(FULL, HALF, strict=True)}
TO_FULL = {ord(h): f for f, h in zip(FULL[:8], HALF[:8], strict=True)}
SENTENCE = re.compile(r"[^。！？!?\n]+[。！？!?]")


def load_alpaca(path: Path = DATA) -> list[dict[str, str]]:
    """All Alpaca-zh records, in file order; a trailing comma before ] or } is forgiven."""
    return alpaca_data.load_alpaca(path)


def distinct_bases(rows: list[dict[str, str]]) -> list[dict[str, str]]:
    """Drop records whose 3-gram Jaccard with an earlier kept one is ≥ 0.5 (LSH candidates, exact check)."""
    table = to_table(rows, [0] * len(rows), ["original"] * len(rows))
    text = record_text(table)
    sig, _ = minhash_signatures(text, 3, 64, 7)
    left, right = bucket_pairs(band_hashes(sig, 16, 4))
    py = [re.sub(r"\s+", "", t) for t in text.to_pylist()]
    grams = {}
    drop = set()
    for a, b in zip(left.tolist(), right.tolist(), strict=True):
        for i in (a, b):
            if i not in grams:
                grams[i] = {py[i][j : j + 3] for j in range(max(1, len(py[i]) - 2))}
        union = len(grams[a] | grams[b])
        if union and len(grams[a] & grams[b]) / union >= 0.5:
            drop.add(max(a, b))
    return [r for i, r in enumerate(rows) if i not in drop]


def bucket_pairs(bands: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unique (earlier, later) row pairs sharing a bucket in some band: each member with its bucket's first
    member and with its predecessor."""
    n = len(bands)
    found = []
    for b in range(bands.shape[1]):
        order = np.argsort(bands[:, b], kind="stable")
        same = np.r_[False, bands[order[1:], b] == bands[order[:-1], b]]
        head = np.maximum.accumulate(np.where(same, 0, np.arange(n)))
        members = np.flatnonzero(same)
        found += [order[head[members]] * n + order[members], order[members - 1] * n + order[members]]
    pairs = np.unique(np.concatenate(found)) if found else np.empty(0, np.int64)
    return pairs // n, pairs % n


def char_edit(text: str, rate: float, rng: random.Random) -> str:
    chars = list(text)
    for _ in range(max(1, round(rate * len(chars)))):
        if not chars:
            break
        pos = rng.randrange(len(chars))
        op = rng.random()
        if op < 0.4:
            chars[pos] = rng.choice(chars)
        elif op < 0.7:
            del chars[pos]
        else:
            chars.insert(pos, rng.choice(chars))
    return "".join(chars)


def punct_width(text: str) -> str:
    swapped = text.translate(TO_HALF)
    return swapped if swapped != text else text.translate(TO_FULL)


def insert_spaces(text: str, rate: float, rng: random.Random) -> str:
    return "".join(c + " " if rng.random() < rate else c for c in text)


def perturb(
    rec: dict[str, str], kind: str, sentences: list[str], rng: random.Random, rate: float = 0.0
) -> dict[str, str]:
    r = dict(rec)
    if kind == "edit_rate":  # every field edited at the given rate (--edit-rates)
        r = {k: char_edit(v, rate, rng) if v else v for k, v in r.items()}
    elif kind == "char_edit":
        r["output"] = char_edit(r["output"], rate, rng)
        r["instruction"] = char_edit(r["instruction"], 0.02, rng) if rng.random() < 0.5 else r["instruction"]
    elif kind == "punct_width":
        r = {k: punct_width(v) for k, v in r.items()}
    elif kind == "append_sentence":
        r["output"] = r["output"] + rng.choice(sentences)
    elif kind == "truncate":
        r["output"] = r["output"][: max(1, round(len(r["output"]) * rng.uniform(0.85, 0.95)))]
    elif kind == "insert_spaces":
        r = {k: insert_spaces(v, rng.uniform(0.05, 0.15), rng) for k, v in r.items()}
    elif kind == "combo":
        r = {k: insert_spaces(char_edit(punct_width(v), 0.015, rng) if v else v, 0.05, rng) for k, v in r.items()}
    return r


def to_table(
    rows: list[dict[str, str]],
    groups: list[int],
    kinds: list[str],
    name: str = "near_dups",
    rates: list[float] | None = None,
) -> pa.Table:
    n = len(rows)
    table = alpaca_data.canonical_table(
        name, [r["instruction"] for r in rows], [r["input"] for r in rows], [r["output"] for r in rows]
    )
    table = table.append_column("group", pa.array(groups, pa.int64()))
    table = table.append_column("perturbation", pa.array(kinds, pa.string()))
    return table.append_column("edit_rate", pa.array(rates or [0.0] * n, pa.float64()))


def build(size: int, copies: int, seed: int, edit_rates: list[tuple[float, float]] | None = None) -> pa.Table:
    rng = random.Random(seed)
    originals = load_alpaca()
    bases = distinct_bases(originals)
    sentences = [s for r in originals for s in SENTENCE.findall(r["output"]) if len(s) >= 8]
    needed = -(-size // (1 + copies))
    short = [s for s in sentences if len(s) <= 60]  # no one sentence may dominate a synthetic base
    while len(bases) < needed:  # synthetic bases: random instruction, 3–6 random corpus sentences
        out = "".join(rng.choice(short) for _ in range(rng.randint(3, 6)))
        bases.append({"instruction": rng.choice(originals)["instruction"], "input": "", "output": out})
    bases = bases[:needed]
    rows: list[dict[str, str]] = []
    groups: list[int] = []
    kinds: list[str] = []
    rates: list[float] = []
    for g, base in enumerate(bases):
        rows.append(base)
        groups.append(g)
        kinds.append("original")
        rates.append(0.0)
        for _ in range(copies):
            kind = rng.choice(KINDS) if edit_rates is None else "edit_rate"
            rate = rng.uniform(0.01, 0.04) if kind == "char_edit" else 0.015 if kind == "combo" else 0.0
            if edit_rates is not None:
                lo, hi = rng.choice(edit_rates)
                rate = round(rng.uniform(lo, hi), 3)
            rows.append(perturb(base, kind, sentences, rng, rate))
            groups.append(g)
            kinds.append(kind)
            rates.append(rate)
    order = list(range(len(rows)))
    rng.shuffle(order)
    order = order[:size]
    pick = [rows[i] for i in order], [groups[i] for i in order], [kinds[i] for i in order]
    return to_table(*pick, rates=[rates[i] for i in order])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=100_000)
    ap.add_argument("--copies", type=int, default=4)
    ap.add_argument("--seed", type=int, default=20240601)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument(
        "--edit-rates",
        help="copies are character edits of every field only, the rate drawn uniformly from one of these bands "
        "(e.g. 0.01-0.02,0.03-0.05,0.06-0.08), written to the edit_rate column",
    )
    args = ap.parse_args()
    bands = None
    if args.edit_rates:
        bands = [(float(lo), float(hi)) for lo, hi in (b.split("-") for b in args.edit_rates.split(","))]
    if not DATA.is_dir():
        print(f"no data at {DATA}", file=sys.stderr)
        return 2
    table = build(args.size, args.copies, args.seed, bands)
    pq.write_table(table, args.out, compression="zstd", row_group_size=10_000)
    print(f"{table.num_rows} records, {len(set(table['group'].to_pylist()))} groups -> {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
