"""dedup_minhash's text verification (``verify: levenshtein | both``): short Chinese texts with one or two changed
characters, minimal pairs that change meaning, the second pass that gathers only candidate texts, determinism,
and the same result through the runner in one process and on a pool of two workers."""

from __future__ import annotations

import json
import pickle
import random
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.engines.local import LocalEngine
from pipeline.recipe import build_recipe
from pipeline.runner import Runner, RunOptions
from stages.dedup.minhash import REASON_NEAR, MinHashDedupStage, MinHashParams
from stages.dedup.minhash_verify import TextVerification, levenshtein_ratio, normalized_texts
from tests.stages.dedup.test_dedup_common import make_batch

# (original, one character changed, two characters changed): typos and small rewordings of the same request
SHORT = [
    (
        "请把下面这段话翻译成英文并保持原来的意思。",
        "请把下面这段话翻泽成英文并保持原来的意思。",
        "请把下面这段化翻泽成英文并保持原来的意思。",
    ),
    (
        "帮我写一封请假邮件，说明明天需要去医院复查。",
        "帮我写一封请假邮件，说明明天要去医院复查。",
        "帮我写一封请假油件，说明明天要去医院复查。",
    ),
    (
        "用三句话介绍一下杭州西湖的美景和历史。",
        "用三句话介绍一下杭洲西湖的美景和历史。",
        "用三句话介绍下杭洲西湖的美景和历史。",
    ),
]
DISTINCT = ["怎样泡一杯好喝的绿茶？", "推荐几本适合初学者的编程书。", "解释一下光合作用的过程。"]


def batches_of(texts: list[str], size: int = 4, order_seed: int | None = None) -> list[pa.Table]:
    rows = list(range(len(texts)))
    if order_seed is not None:
        random.Random(order_seed).shuffle(rows)
    return [make_batch([texts[i] for i in rows[s : s + size]], rows[s : s + size]) for s in range(0, len(rows), size)]


def run(stage: MinHashDedupStage, batches: list[pa.Table]) -> dict[str, dict]:
    """fingerprint → resolve → (gather → complete) → decide; id -> detail of every dropped record."""
    resolution = stage.resolve([stage.fingerprint(b) for b in batches])
    if stage.needs_records(resolution):
        resolution = stage.complete(resolution, [stage.gather(b, resolution) for b in batches])
    dropped = {}
    for b in batches:
        result = stage.decide(b, resolution)
        for rid, reason, detail in zip(b.column("id").to_pylist(), result.reasons, result.details, strict=True):
            if reason is not None:
                assert reason == REASON_NEAR
                dropped[rid] = json.loads(detail or "")
    return dropped


def stage_for(verify: str) -> MinHashDedupStage:
    return MinHashDedupStage(MinHashParams(fields=("instruction",), verify=verify))  # type: ignore[arg-type]


def test_short_texts_with_one_or_two_changed_characters_merge_with_levenshtein() -> None:
    texts = [t for family in SHORT for t in family] + DISTINCT
    dropped = run(stage_for("levenshtein"), batches_of(texts))
    # each family keeps its original (the earliest) and drops both edited copies; the distinct texts stay
    assert set(dropped) == {f"a.json#{i}" for i in (1, 2, 4, 5, 7, 8)}
    for i in (1, 2, 4, 5, 7, 8):
        detail = dropped[f"a.json#{i}"]
        assert detail["duplicate_of"] == f"a.json#{i - i % 3}"
        assert 0.85 <= detail["similarity"] < 1.0  # the Levenshtein ratio to the kept twin
    # the 3-gram Jaccard alone misses most of them: two changes cost a 20-character text half its 3-grams
    assert len(run(stage_for("jaccard"), batches_of(texts))) < 6
    # `both` finds every one of them too
    assert set(run(stage_for("both"), batches_of(texts))) == set(dropped)


def test_minimal_pairs_that_change_meaning() -> None:
    """我姓余 / 我姓岳: three characters, one changed — a ratio of 2/3, below the 0.85 default: kept by every mode.
    A longer request that flips one word (升序 / 降序) is the judgement call: the default (``jaccard``) keeps
    both, ``levenshtein`` merges them (14 of 15 characters agree) — the reason it is not the default."""
    names = ["我姓余。", "我姓岳。", "我姓余。"]
    for verify in ("jaccard", "levenshtein", "both"):
        assert set(run(stage_for(verify), batches_of(names))) == {"a.json#2"}  # only the identical one
    flip = ["请将下列数字按升序排列：3、1、2", "请将下列数字按降序排列：3、1、2"]
    assert run(stage_for("jaccard"), batches_of(flip)) == {}
    assert set(run(stage_for("levenshtein"), batches_of(flip))) == {"a.json#1"}


def test_second_pass_gathers_only_the_texts_of_pending_pairs() -> None:
    texts = [t for family in SHORT for t in family] + DISTINCT
    stage = stage_for("levenshtein")
    batches = batches_of(texts)
    pending = stage.resolve([stage.fingerprint(b) for b in batches])
    assert isinstance(pending, TextVerification) and stage.needs_records(pending)
    pending = pickle.loads(pickle.dumps(pending))  # it travels to the workers of a pool or a cluster
    gathered = [stage.gather(b, pending) for b in batches]
    seqs = sorted(s for g in gathered for s in g.column("_seq").to_pylist())
    assert seqs == pending.wanted_seq.tolist()
    assert not set(seqs) & {9, 10, 11}  # the distinct texts are in no candidate pair: their texts stay put
    texts_out = {s: t for g in gathered for s, t in zip(g.column("_seq").to_pylist(), g.column("text").to_pylist())}
    assert texts_out[0] == "请把下面这段话翻译成英文并保持原来的意思"  # normalized: no punctuation
    assert normalized_texts(pa.array(["a", "Ｂ，c"]), 3, False, np.array([1])) == ["Ｂ，c"]
    # the default needs no second pass at all
    jac = stage_for("jaccard")
    assert not jac.needs_records(jac.resolve([jac.fingerprint(b) for b in batches]))


def test_levenshtein_verification_is_deterministic() -> None:
    texts = [t for family in SHORT for t in family] + DISTINCT
    stage = stage_for("both")
    reference = run(stage, batches_of(texts))
    for seed in range(3):
        shuffled = run(stage, batches_of(texts, size=2 + seed, order_seed=seed))
        assert shuffled == reference


def test_normalized_texts_and_ratio() -> None:
    texts = pa.array(["Ｈｅｌｌｏ， 世界！", "？？", "写一首诗𠀀。"])
    assert normalized_texts(texts, 3, True) == ["hello世界", "??", "写一首诗𠀀"]  # too short: folded only
    ratio = levenshtein_ratio(["我姓余", "我姓岳", None], np.array([0, 0]), np.array([1, 2]))
    assert ratio[0] == pytest.approx(2 / 3) and np.isnan(ratio[1])
    # a ratio exactly at the threshold counts (17 of 20 characters kept: rapidfuzz's own cutoff would drop it)
    twenty = "春眠不觉晓处处闻啼鸟夜来风雨声花落知多少"
    edited = "春眠不觉晓处处闻啼鸟夜来风语声花落知啊小"  # 雨→语, 多→啊, 少→小
    at = levenshtein_ratio([twenty, edited], np.array([0]), np.array([1]), cutoff=0.85)
    assert at[0] == 0.85 and at[0] >= 0.85


@pytest.mark.parametrize("workers", [1, 2])
def test_runner_completes_the_second_pass_on_every_engine(tmp_path: Path, workers: int) -> None:
    texts = [t for family in SHORT for t in family] + DISTINCT
    data = tmp_path / "in.jsonl"
    data.write_text(
        "".join(
            json.dumps({"instruction": t, "input": "", "output": "好的。"}, ensure_ascii=False) + "\n" for t in texts
        ),
        encoding="utf-8",
    )
    stages = [{"dedup_minhash": {"verify": "levenshtein", "fields": ["instruction"]}}]
    raw = {"input": [str(data)], "output": str(tmp_path / "out"), "stages": stages, "batch_size": 4}
    recipe = build_recipe(raw, base_dir=None, source="t")
    with LocalEngine(workers) as engine:
        Runner(recipe, RunOptions(output=tmp_path / "out", progress=False), engine=engine).run()
    rejected = pq.read_table(tmp_path / "out" / "rejected.parquet").to_pylist()
    assert sorted(r["instruction"] for r in rejected) == sorted(t for family in SHORT for t in family[1:])
    assert {r["reason"] for r in rejected} == {REASON_NEAR}
