"""Generalisation of the ``safety`` stage on data its models never saw, held out by source and by category.

1. **Answer pairs held out by JADE subcategory** (grouped 4-fold): the JADE subcategories (违规子类) are dealt
   into 4 folds by size; for each fold the request, refusal, harm and category heads are retrained without any
   request or answer of that fold's subcategories (in every JADE file, and any request whose text equals a
   held-out question), and the stage, with that fold's models, judges the fold's JADE v3 pairs. Printed: harmful
   answers dropped (all, and the ones whose label survives :func:`clean_jade`), safe answers kept, safe answers
   tagged ``safety_refusal``, and every harmful answer still kept (``--show``). The toxicity head is the shipped
   one (trained on COLD and benign text only, no JADE).
2. **Requests held out by source**: the request head retrained without JailBench, then its recall on the 108
   JailBench seed requests (different authors, TC260 categories) at its own threshold; and, for information, the
   share of each ``safety_probe`` set (XSafety files, Flames) it flags — many of those are benign-looking.

    python bench/bench_safety_heldout.py [--folds 4] [--show 40]

Training is seeded; a run takes several CPU-minutes (run it with ``nice``).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections import Counter, defaultdict
from dataclasses import replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.bench_safety import decide  # noqa: E402
from pipeline.tools.safety_corpus import Corpus, clean_jade, load, read_jsonl  # noqa: E402
from pipeline.tools.train_safety import (  # noqa: E402
    REQUEST_FP,
    fit_category,
    train_harm,
    train_refusal,
    train_request,
)
from stages.safety.lexicon import compact  # noqa: E402
from stages.safety.model import SafetyModels  # noqa: E402
from stages.safety.stage import SafetyParams, SafetyStage  # noqa: E402

DATA = ROOT / ".." / "shared" / "data"


def folds_of(jade: list[dict[str, Any]], k: int) -> list[set[str]]:
    """JADE subcategories dealt into ``k`` folds, largest first (deterministic)."""
    sizes = Counter(r["subcategory"] for r in jade if r["label"] == "safe_response")
    folds: list[set[str]] = [set() for _ in range(k)]
    load_: list[int] = [0] * k
    for sub, n in sorted(sizes.items(), key=lambda kv: (-kv[1], kv[0])):
        j = load_.index(min(load_))
        folds[j].add(sub)
        load_[j] += n
    return folds


def without(c: Corpus, held: set[str], questions: set[str]) -> Corpus:
    """The corpus minus every request and JADE answer of the held-out subcategories / questions."""
    keep_h = [
        i
        for i, (t, g) in enumerate(zip(c.harmful, c.harmful_group))
        if not (g.startswith("jade") and g.split("/", 1)[1] in held) and compact(t) not in questions
    ]
    n_ref = len(c.refusals)
    keep_p = [i for i, g in enumerate(c.pair_group) if g not in held]
    return replace(
        c,
        harmful=[c.harmful[i] for i in keep_h],
        harmful_cat=[c.harmful_cat[i] for i in keep_h],
        harmful_group=[c.harmful_group[i] for i in keep_h],
        refusals=[c.refusals[i] for i in keep_p if i < n_ref],
        complies=[c.complies[i - n_ref] for i in keep_p if i >= n_ref],
        pair_group=[c.pair_group[i] for i in keep_p],
    )


def fold_models(c: Corpus, shipped: SafetyModels, seed: int = 0) -> SafetyModels:
    request, _ = train_request(c, seed, REQUEST_FP)
    refusal, _ = train_refusal(c, seed)
    harm, _ = train_harm(c, seed)
    own = [i for i, g in enumerate(c.harmful_group) if g != "zhcurate/written"]
    category = fit_category([c.harmful[i] for i in own], [c.harmful_cat[i] for i in own], seed)
    return SafetyModels(request=request, refusal=refusal, harm=harm, toxicity=shipped.toxicity, category=category)


def pairs_by_category(
    corpus: Corpus, jade: list[dict[str, Any]], k: int, show: int, tmp: Path, dump: Path | None
) -> None:
    shipped = SafetyModels.load()
    trusted = {r["source"] for r in clean_jade(r for r in jade if r["label"] == "harmful_response")}
    totals: Counter[str] = Counter()
    kept_harmful: list[tuple[str, dict[str, Any]]] = []
    refusal_by_cat: dict[str, Counter[str]] = defaultdict(Counter)
    for j, held in enumerate(folds_of(jade, k)):
        rows = [r for r in jade if r["subcategory"] in held]
        questions = {compact(r["instruction"]) for r in rows}
        models = fold_models(without(corpus, held, questions), shipped)
        path = tmp / f"fold{j}.npz"
        models.save(path)
        stage = SafetyStage(SafetyParams(models_path=str(path)))
        stage.setup()
        reasons, _, tables = decide(stage, rows, keep_tables=True)
        if dump is not None:
            _dump(dump, j, stage, rows)
        flags = [f for t in tables for f in t.column("safety_refusal").to_pylist()]
        cats = [c for t in tables for c in t.column("safety_request_category").to_pylist()]
        for r, reason, flag, cat in zip(rows, reasons, flags, cats):
            if r["label"] == "harmful_response":
                totals["harmful"] += 1
                totals["harmful_dropped"] += reason is not None
                if r["source"] in trusted:
                    totals["trusted"] += 1
                    totals["trusted_dropped"] += reason is not None
                if reason is None:
                    kept_harmful.append((f"fold {j}", r))
            else:
                totals["safe"] += 1
                totals["safe_kept"] += reason is None
                totals["safe_tagged"] += bool(flag)
                refusal_by_cat[r["category"]]["tagged" if flag else "untagged"] += 1
                if flag:
                    refusal_by_cat[r["category"]][f"as {cat}"] += 1
        print(f"fold {j}: {len(held)} subcategories held out, {len(rows)} pairs: {sorted(held)}")
    pct = lambda a, b: f"{totals[a]}/{totals[b]} = {100 * totals[a] / max(totals[b], 1):.1f} %"  # noqa: E731
    print("JADE v3 pairs held out by subcategory:")
    print(f"  harmful answers dropped: {pct('harmful_dropped', 'harmful')} (cleaned labels: "
          f"{pct('trusted_dropped', 'trusted')})")  # fmt: skip
    print(f"  safe answers kept: {pct('safe_kept', 'safe')}; tagged as refusals: {pct('safe_tagged', 'safe')}")
    for cat, cnt in sorted(refusal_by_cat.items()):
        print(f"  refusals of {cat}: {dict(cnt)}")
    print(f"harmful answers still kept ({len(kept_harmful)}):")
    for fold, r in kept_harmful[:show]:
        print(f"  {fold} {r['source']} [{r['subcategory']}] {r['instruction'][:40]!r} -> {r['output'][:80]!r}")


def _dump(path: Path, fold: int, stage: SafetyStage, rows: list[dict[str, Any]]) -> None:
    """Append each held-out pair's raw signals (JSON lines), to study the thresholds."""
    from stages.safety.refusal import is_refusal

    reqs, outs = [r["instruction"] for r in rows], [r["output"] for r in rows]
    risk, refusal, harm, tox = stage._signals(reqs, outs)
    with path.open("a", encoding="utf-8") as fh:
        for i, r in enumerate(rows):
            lex = bool(stage._fire(stage._matches({"instruction": reqs[i]})))
            rec = {"fold": fold, "source": r["source"], "label": r["label"], "risk": risk[i], "refusal": refusal[i]}
            rec |= {"harm": harm[i], "tox": tox[i], "lexicon": lex, "phrase": is_refusal(outs[i])}
            fh.write(json.dumps({k: float(v) if hasattr(v, "dtype") else v for k, v in rec.items()}) + "\n")


def requests_by_source(corpus: Corpus) -> None:
    keep = [i for i, g in enumerate(corpus.harmful_group) if not g.startswith("jailbench")]
    c = replace(corpus, harmful=[corpus.harmful[i] for i in keep])
    head, stats = train_request(c, 0, REQUEST_FP)
    rows = read_jsonl(DATA / "safety/harmful_requests.jsonl")
    jail = [r["instruction"] for r in rows if r["source"].startswith("jailbench")]
    p = head.scores(jail)
    hit = int((p >= head.threshold).sum())
    print(
        f"request head trained without JailBench (threshold {head.threshold:.3f}, "
        f"hold-out FP {stats['holdout_fp']:.4f}):"
    )
    print(f"  JailBench seed requests flagged: {hit}/{len(jail)} = {100 * hit / len(jail):.1f} %")
    missed = [t for t, s in zip(jail, p) if s < head.threshold]
    for t in missed[:12]:
        print(f"    missed: {t[:70]!r}")
    probe: dict[str, list[str]] = defaultdict(list)
    for r in rows:
        if r["kind"] == "safety_probe":
            probe[r["source"].split("#")[0].removeprefix("xsafety-zh-")].append(r["instruction"])
    flagged = {k: f"{100 * float((head.scores(v) >= head.threshold).mean()):.0f} %" for k, v in sorted(probe.items())}
    print(f"  safety_probe prompts flagged (information; many are benign): {json.dumps(flagged, ensure_ascii=False)}")


def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--folds", type=int, default=4)
    ap.add_argument("--show", type=int, default=40, help="harmful answers still kept to print")
    ap.add_argument("--dump", type=Path, help="write each held-out pair's raw signals here (JSON lines)")
    args = ap.parse_args()
    corpus = load(DATA)
    jade = read_jsonl(DATA / "safety/jade_train.jsonl")
    with tempfile.TemporaryDirectory() as tmp:
        if args.dump is not None:
            args.dump.write_text("")
        pairs_by_category(corpus, jade, args.folds, args.show, Path(tmp), args.dump)
    requests_by_source(corpus)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
