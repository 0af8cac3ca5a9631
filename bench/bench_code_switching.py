"""Code-switching recall and precision of the language stage on the hand-written fixture.

    python bench/bench_code_switching.py [--tatoeba N] [--show]

``tests/stages/data/code_switching.tsv`` holds 100 code-switched chat sentences (label ``cs``) and 127 native
Chinese ones (label ``zh``, many with terms, names, acronyms and units), all written by hand. Each is judged as
the answer to a Chinese prompt. Prints the share of ``cs`` sentences dropped as ``code_switching`` and the share
of ``zh`` sentences kept. ``--tatoeba N`` also runs the Chinese side of the first N Tatoeba pairs in
``../shared/data/parallel/tatoeba_cmn_eng.txt`` (native sentences, read there, never copied) through the stage.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from stages.language.stage import LanguageStage  # noqa: E402
from tests.records import canonical_table  # noqa: E402

FIXTURE = ROOT / "tests" / "stages" / "data" / "code_switching.tsv"
TATOEBA = ROOT / ".." / "shared" / "data" / "parallel" / "tatoeba_cmn_eng.txt"
PROMPT = "用一两句话回复朋友的这条消息：你最近怎么样？"


def load_fixture() -> list[tuple[str, str]]:
    rows = []
    for line in FIXTURE.read_text(encoding="utf-8").splitlines():
        if line and not line.startswith("#"):
            label, sentence = line.split("\t", 1)
            rows.append((label, sentence))
    return rows


def judge(sentences: list[str]) -> list[tuple[str | None, str | None]]:
    stage = LanguageStage()
    stage.setup()
    res = stage.process(canonical_table([{"instruction": PROMPT, "output": s} for s in sentences]))
    return list(zip(res.reasons, res.details, strict=True))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tatoeba", type=int, default=0)
    ap.add_argument("--show", action="store_true", help="print the misses and the wrong drops")
    args = ap.parse_args()
    rows = load_fixture()
    out = judge([s for _, s in rows])
    cs = [(s, r) for (label, s), (r, _) in zip(rows, out, strict=True) if label == "cs"]
    zh = [(s, r) for (label, s), (r, _) in zip(rows, out, strict=True) if label == "zh"]
    flagged = sum(r == "code_switching" for _, r in cs)
    kept = sum(r is None for _, r in zh)
    print(f"code-switched flagged: {flagged}/{len(cs)} = {flagged / len(cs):.1%}")
    print(f"native kept:           {kept}/{len(zh)} = {kept / len(zh):.1%}")
    if args.show:
        for s, r in cs:
            if r != "code_switching":
                print(f"  missed: {s}  ({r})")
        for s, r in zh:
            if r is not None:
                print(f"  dropped native: {s}  ({r})")
    if args.tatoeba:
        if not TATOEBA.is_file():
            print(f"no Tatoeba file at {TATOEBA}", file=sys.stderr)
            return 1
        lines = TATOEBA.read_text(encoding="utf-8").splitlines()[: args.tatoeba]
        native = [ln.split("\t")[1] for ln in lines if ln.count("\t") >= 1]
        res = judge(native)
        dropped = [(s, r) for s, (r, _) in zip(native, res, strict=True) if r is not None]
        print(f"Tatoeba Chinese kept:  {len(native) - len(dropped)}/{len(native)}")
        for s, r in dropped[:20]:
            print(f"  dropped: {s}  ({r})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
