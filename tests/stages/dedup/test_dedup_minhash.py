"""dedup_minhash: near duplicates across batches and files, kept-twin rule, short texts, determinism, and the
hashing's Jaccard estimation error against datasketch's MinHash."""

from __future__ import annotations

import json
import pickle
import random
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import pyarrow as pa
import pytest
from pydantic import ValidationError

from stages.dedup.minhash import REASON_NEAR, MinHashDedupStage, MinHashParams, optimal_bands
from stages.dedup.minhash_kernel import DROP, fold_table, minhash_signatures, pair_similarity
from tests.stages.dedup.test_dedup_common import make_batch

SPRING = (
    "春天来了，万物复苏。田野里的小草从泥土里探出头来，柳树抽出了嫩绿的枝条，桃花和杏花竞相开放，"
    "空气中弥漫着淡淡的花香。孩子们在草地上放风筝，老人们在公园里散步聊天，到处都是一片生机勃勃的景象。"
)
WALL = (
    "长城是中国古代的军事防御工程，始建于春秋战国时期，秦始皇统一六国后将各国长城连接起来。"
    "现存的长城大多为明代修建，东起山海关，西至嘉峪关，全长六千多公里，被誉为世界七大奇迹之一。"
)
TEA = (
    "泡绿茶时水温不宜过高，一般以八十摄氏度左右为宜。先用少量热水温杯，再放入茶叶，"
    "沿杯壁缓缓注水，静置两三分钟后即可饮用。这样泡出的茶汤色泽清亮，香气持久，滋味鲜爽。"
)

# Perturbed copies of SPRING: punctuation width, inserted spaces, one character changed, a sentence appended.
SPRING_COPIES = [
    SPRING.replace("，", ",").replace("。", "."),
    " ".join(SPRING[i : i + 7] for i in range(0, len(SPRING), 7)),
    SPRING.replace("桃花", "梨花"),
    SPRING + "真是一年中最美好的季节。",
]


def run_stage(stage: MinHashDedupStage, batches: list[pa.Table]) -> tuple[dict[str, str], dict[str, dict]]:
    """Run fingerprint → resolve → decide; returns (id -> reason, id -> detail) of the dropped records."""
    resolution = stage.resolve([stage.fingerprint(b) for b in batches])
    reasons: dict[str, str] = {}
    details: dict[str, dict] = {}
    for b in batches:
        result = stage.decide(b, resolution)
        for rid, reason, detail in zip(b.column("id").to_pylist(), result.reasons, result.details, strict=True):
            if reason is not None:
                reasons[rid] = reason
                details[rid] = json.loads(detail or "")
    return reasons, details


def corpus_batches(order_seed: int | None = None, batch_size: int = 3) -> list[pa.Table]:
    """The SPRING family, WALL with a copy, TEA alone; spread over two files and several batches."""
    instr = ["写一段描写春天的话。"] * 5 + ["介绍一下长城。"] * 2 + ["怎样泡绿茶？"]
    outputs = [SPRING, *SPRING_COPIES, WALL, WALL.replace("六千多公里", "六千余公里"), TEA]
    rows = list(range(len(outputs)))
    if order_seed is not None:
        random.Random(order_seed).shuffle(rows)
    batches = []
    for start in range(0, len(rows), batch_size):
        chunk = rows[start : start + batch_size]
        source = "a.json" if start == 0 else "b.jsonl"
        batches.append(make_batch([instr[i] for i in chunk], chunk, outputs=[outputs[i] for i in chunk], source=source))
    return batches


def test_near_duplicates_found_across_batches_and_files() -> None:
    reasons, details = run_stage(MinHashDedupStage(), corpus_batches())
    # every copy of SPRING and the WALL copy are dropped; the originals (earliest _seq) are kept
    assert set(reasons) == {"a.json#1", "a.json#2", "b.jsonl#3", "b.jsonl#4", "b.jsonl#6"}
    assert set(reasons.values()) == {REASON_NEAR}
    for rid in ("a.json#1", "a.json#2", "b.jsonl#3", "b.jsonl#4"):
        assert details[rid]["duplicate_of"] == "a.json#0"
        assert details[rid]["cluster_size"] == 5
        assert 0.7 <= details[rid]["similarity"] <= 1.0
    assert details["b.jsonl#6"]["duplicate_of"] == "b.jsonl#5"
    # punctuation width and inserted spaces are normalized away entirely
    assert details["a.json#1"]["similarity"] == 1.0
    assert details["a.json#2"]["similarity"] == 1.0


def test_kept_twin_is_highest_quality_then_earliest() -> None:
    outputs = [SPRING, SPRING_COPIES[2], SPRING_COPIES[3], TEA]
    batch = make_batch(
        ["写一段描写春天的话。"] * 3 + ["怎样泡绿茶？"], [0, 1, 2, 3], [0.5, 0.9, 0.9, 0.1], outputs=outputs
    )
    reasons, details = run_stage(MinHashDedupStage(), [batch])
    assert set(reasons) == {"a.json#0", "a.json#2"}  # seq 1 and 2 tie on quality: the earlier one is kept
    assert {d["duplicate_of"] for d in details.values()} == {"a.json#1"}


def test_short_texts_are_fingerprinted_whole_and_never_collapsed() -> None:
    stage = MinHashDedupStage(MinHashParams(ngram=8, fields=("instruction",)))
    batch = make_batch(["你好", "您好", "好", "？？", "！！", "你好"], [0, 1, 2, 3, 4, 5])
    fp = stage.fingerprint(batch)
    assert fp.short_texts == 6
    reasons, details = run_stage(stage, [batch])
    # only the identical short text is a duplicate; "？？" and "！！" (nothing left without punctuation) differ
    assert reasons == {"a.json#5": REASON_NEAR}
    assert details["a.json#5"] == {"duplicate_of": "a.json#0", "similarity": 1.0, "cluster_size": 2}
    assert stage.resolution_counters(stage.resolve([fp]))["short_texts"] == 6


def test_distinct_records_are_kept() -> None:
    batch = make_batch(
        ["写一段描写春天的话。", "介绍一下长城。", "怎样泡绿茶？"], [0, 1, 2], outputs=[SPRING, WALL, TEA]
    )
    reasons, _ = run_stage(MinHashDedupStage(), [batch])
    assert reasons == {}


def test_shuffled_input_keeps_the_same_records() -> None:
    stage = MinHashDedupStage()
    reference, ref_details = run_stage(stage, corpus_batches())
    for seed in range(4):
        reasons, details = run_stage(stage, corpus_batches(order_seed=seed, batch_size=2 + seed))
        dropped_seq = {rid.split("#")[1] for rid in reasons}
        assert dropped_seq == {rid.split("#")[1] for rid in reference}
        assert {d["duplicate_of"].split("#")[1] for d in details.values()} == {
            d["duplicate_of"].split("#")[1] for d in ref_details.values()
        }


def test_duplicate_of_always_points_to_a_kept_record() -> None:
    rng = random.Random(3)
    texts = [SPRING, WALL, TEA]
    outputs = []
    for i in range(60):  # chains of small edits: a copy may be closer to another copy than to the original
        base = list(texts[i % 3])
        for _ in range(rng.randint(0, 6)):
            base[rng.randrange(len(base))] = rng.choice("的一是在不了有和人这中大为上个国")
        outputs.append("".join(base))
    batches = [
        make_batch(["写一段话。"] * 10, list(range(s, s + 10)), outputs=outputs[s : s + 10]) for s in range(0, 60, 10)
    ]
    reasons, details = run_stage(MinHashDedupStage(), batches)
    assert len(reasons) > 30
    assert all(d["duplicate_of"] not in reasons for d in details.values())


def test_fingerprint_is_pure_and_runs_on_a_process_pool() -> None:
    stage = pickle.loads(pickle.dumps(MinHashDedupStage()))
    batches = corpus_batches()
    local = [stage.fingerprint(b) for b in batches]
    with ProcessPoolExecutor(max_workers=2) as pool:
        remote = list(pool.map(stage.fingerprint, batches))
    for a, b in zip(local, remote, strict=True):
        assert np.array_equal(a.signatures, b.signatures)
        assert a.signatures.dtype == np.uint32 and a.signatures.shape[1] == 128


def test_lsh_bands_find_pairs_at_the_threshold() -> None:
    """Every slot is used, a pair at the threshold is a candidate ≥ 98 % of the time, and one more row per band
    would lose that (datasketch's equal weighting, 14 × 9 at 0.7, finds such a pair 44 % of the time)."""
    for threshold in (0.5, 0.7, 0.8, 0.9):
        for num_perm in (64, 128):
            b, r = optimal_bands(threshold, num_perm)
            assert b == num_perm // r
            assert 1 - (1 - threshold**r) ** b >= 0.98
            b2 = num_perm // (r + 1)
            assert 1 - (1 - threshold ** (r + 1)) ** b2 < 0.98
    assert optimal_bands(0.7, 128) == (25, 5)


def test_params_are_validated() -> None:
    with pytest.raises(ValidationError):
        MinHashParams(threshold=1.5)
    with pytest.raises(ValidationError):
        MinHashParams(fields=("output", "output"))
    with pytest.raises(ValidationError):
        MinHashParams(bands=4)  # type: ignore[call-arg]
    assert MinHashParams().bands_rows == (25, 5)
    with pytest.raises(ValidationError):
        MinHashParams(verify="edit")  # type: ignore[arg-type]


def _shingles(text: str, n: int) -> set[str]:
    table = fold_table(True)
    folded = "".join(chr(v) for v in (table[ord(c)] if ord(c) < len(table) else ord(c) for c in text) if v != DROP)
    return {folded[i : i + n] for i in range(len(folded) - n + 1)}


def test_jaccard_estimation_error_matches_datasketch() -> None:
    """Same pairs, same shingles: our one-permutation signatures estimate Jaccard as well as datasketch's
    classic MinHash (mean absolute error within 15 %, no bias)."""
    from datasketch import MinHash

    corpus = SPRING + WALL + TEA + SPRING[::-1] + WALL[::-1]
    rng = random.Random(11)
    pairs = []
    for _ in range(300):  # overlapping windows and edited copies: Jaccard spread over 0..1
        length = rng.randint(30, 150)
        a = rng.randrange(len(corpus) - length)
        b = min(len(corpus) - length, a + rng.randint(0, length))
        second = list(corpus[b : b + length])
        for _ in range(rng.randint(0, 5)):
            second[rng.randrange(length)] = rng.choice(corpus)
        pairs.append((corpus[a : a + length], "".join(second)))
    n, k = 3, 128
    truth = np.array(
        [len(_shingles(x, n) & _shingles(y, n)) / len(_shingles(x, n) | _shingles(y, n)) for x, y in pairs]
    )
    texts = pa.array([t for pair in pairs for t in pair])
    ours, theirs = [], []
    for seed in range(4):  # the corpus is small: average over hash seeds, not one seed's luck
        sig, _ = minhash_signatures(texts, n, k, seed=seed)
        ours.append(pair_similarity(sig, np.arange(0, len(texts), 2), np.arange(1, len(texts), 2)) - truth)
        template = MinHash(num_perm=k, seed=seed)
        for (x, y), j in zip(pairs, truth, strict=True):
            ma, mb = (MinHash(k, seed, permutations=template.permutations, scheme=template.scheme) for _ in "ab")
            ma.update_batch([s.encode() for s in _shingles(x, n)])
            mb.update_batch([s.encode() for s in _shingles(y, n)])
            theirs.append(ma.jaccard(mb) - j)
    our_err, their_err = np.concatenate(ours), np.array(theirs)
    our_mae, their_mae = float(np.abs(our_err).mean()), float(np.abs(their_err).mean())
    assert truth.min() < 0.2 and truth.max() > 0.9
    assert our_mae <= 1.15 * their_mae, (our_mae, their_mae)
    assert abs(float(our_err.mean())) < 0.01
