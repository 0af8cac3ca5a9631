"""Throughput and decisions of the language stage on the 7 Alpaca-zh files of ../shared/data/alpaca_zh.

    python bench/bench_language.py [--repeat 3] [--samples 8] [--batch 4096] [--seed 0]

Prints records/s of ``LanguageStage.process`` (single process, best of ``--repeat`` runs, loading excluded), the
count of each reason and profile per file and in total, and random samples of each reason and of each exemption
(kept records whose answer is not plain Chinese) so a reader can judge the decisions.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections import Counter
from pathlib import Path

import pyarrow as pa

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import alpaca_data  # noqa: E402  (bench/ is on sys.path when run as a script)

from schemas.record import CANONICAL_SCHEMA  # noqa: E402
from stages.base import SEQ_COLUMN  # noqa: E402
from stages.language.stage import LanguageStage  # noqa: E402

DATA = ROOT / ".." / "shared" / "data" / "alpaca_zh"


def load_lenient(path: Path) -> list[dict[str, str]]:
    """A JSON array of Alpaca rows; a trailing comma before the closing bracket is forgiven."""
    return alpaca_data.read_alpaca_file(path)


def to_table(name: str, rows: list[dict[str, str]], seq0: int) -> pa.Table:
    n = len(rows)
    cols = {
        "id": [f"{name}#{i}" for i in range(n)],
        "source": [name] * n,
        "system": [""] * n,
        "instruction": [r.get("instruction", "") or "" for r in rows],
        "input": [r.get("input", "") or "" for r in rows],
        "output": [r.get("output", "") or "" for r in rows],
        "history": [[] for _ in range(n)],
    }
    table = pa.Table.from_pydict(cols, schema=CANONICAL_SCHEMA)
    return table.append_column(SEQ_COLUMN, pa.array(range(seq0, seq0 + n), pa.int64()))


def clip(text: str, n: int = 110) -> str:
    text = text.replace("\n", "⏎")
    return text if len(text) <= n else text[:n] + "…"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--samples", type=int, default=8)
    ap.add_argument("--batch", type=int, default=4096)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    files = sorted(DATA.glob("*.json"))
    if not files:
        print(f"no data at {DATA.resolve()}", file=sys.stderr)
        return 1
    tables, seq = [], 0
    for f in files:
        t = to_table(f.name, load_lenient(f), seq)
        seq += t.num_rows
        tables.append(t)
    whole = pa.concat_tables(tables)
    batches = [whole.slice(i, args.batch) for i in range(0, whole.num_rows, args.batch)]

    stage = LanguageStage()
    stage.setup()
    best = float("inf")
    results = []
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        results = [stage.process(b) for b in batches]
        best = min(best, time.perf_counter() - t0)
    n = whole.num_rows
    print(f"records: {n}   best of {args.repeat}: {best:.3f} s   {n / best:,.0f} records/s (single process)")
    # The same, on the rows the vectorised pre-filter cannot settle (letters in the instruction or output).
    hard = whole.filter(pa.array(~stage.plain_chinese(whole)))
    hard_batches = [hard.slice(i, args.batch) for i in range(0, hard.num_rows, args.batch)]
    best_hard = float("inf")
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        for b in hard_batches:
            stage.process(b)
        best_hard = min(best_hard, time.perf_counter() - t0)
    print(f"rows with letters only: {hard.num_rows}   {best_hard:.3f} s   {hard.num_rows / best_hard:,.0f} records/s")

    rows = []
    for r in results:
        d = r.table.to_pydict()
        for i in range(r.table.num_rows):
            rows.append(
                {k: d[k][i] for k in ("id", "source", "instruction", "input", "output", "language_profile")}
                | {"reason": r.reasons[i], "detail": r.details[i]}
            )
    print("\nper file: reason counts")
    for f in files:
        c = Counter(x["reason"] or "kept" for x in rows if x["source"] == f.name)
        print(f"  {f.name}: {dict(sorted(c.items()))}")
    reasons = Counter(x["reason"] for x in rows if x["reason"])
    profiles = Counter(x["language_profile"] for x in rows if not x["reason"])
    counters: Counter[str] = Counter()
    for r in results:
        counters.update(r.counters)
    print(f"\ntotal reasons: {dict(reasons.most_common())}")
    print(f"kept profiles: {dict(profiles.most_common())}")
    print(f"exemptions:    {dict(sorted((k, v) for k, v in counters.items() if k.startswith('allowed.')))}")

    rng = random.Random(args.seed)

    def show(title: str, pool: list[dict[str, str]]) -> None:
        print(f"\n=== {title}: {len(pool)} (showing {min(args.samples, len(pool))}) ===")
        for x in rng.sample(pool, min(args.samples, len(pool))):
            print(f"- {x['id']}\n  I: {clip(x['instruction'])}\n  N: {clip(x['input'])}\n  O: {clip(x['output'])}")
            if x["detail"]:
                print(f"  D: {x['detail']}")
            else:
                print(f"  profile: {x['language_profile']}")

    for reason in sorted(reasons):
        show(f"reason {reason}", [x for x in rows if x["reason"] == reason])
    for prof in ("zh+en", "zh+translation", "zh+code", "zh+mixed", "zh+terms", "neutral"):
        show(f"kept profile {prof}", [x for x in rows if not x["reason"] and x["language_profile"] == prof])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
