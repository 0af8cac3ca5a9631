"""The histogram, threshold and side checks run on each search chunk as it comes (``similar_pairs(keep=...)``):
the held pairs and the counters must be exactly those of checking every searched pair afterwards."""

from __future__ import annotations

import numpy as np
import pytest

from stages.dedup.semantic_index import SearchConfig, similar_pairs
from stages.dedup.semantic_pairs import PairCheck, _subset, similarity_histogram
from stages.dedup.semantic_rows import BlockRows, PresentRows

from .test_dedup_semantic_queries import repeated_rows


def sides_for(rows: np.ndarray, seed: int = 9) -> dict[str, PresentRows]:
    """An instruction side stored for a few records, an answer side for most (unit rows near the request's)."""
    rng = np.random.default_rng(seed)
    noisy = rows.astype(np.float32) + 0.04 * rng.normal(size=rows.shape)
    noisy /= np.linalg.norm(noisy, axis=1, keepdims=True)
    instruction = PresentRows.from_dense(noisy.astype(np.float16), rng.random(rows.shape[0]) < 0.1)
    answers = rows.astype(np.float32) + 0.03 * rng.normal(size=rows.shape)
    other = rng.random(rows.shape[0]) < 0.4  # another answer to the same request
    answers[other] = rng.normal(size=(int(other.sum()), rows.shape[1]))
    answers /= np.linalg.norm(answers, axis=1, keepdims=True)
    answers[:3] = 0  # no answer
    return {"instruction": instruction, "output": PresentRows.from_dense(answers.astype(np.float16))}


def make_check(rows: BlockRows, sides: dict[str, PresentRows]) -> PairCheck:
    return PairCheck(0.8, 0.85, rows, sides, {"instruction": 0.9, "output": 0.8}, threads=2)


@pytest.mark.parametrize("index", ["flat", "ivf"])
def test_checks_during_the_search_hold_the_same_pairs_and_counters(monkeypatch: pytest.MonkeyPatch, index: str) -> None:
    rows = repeated_rows(n=4007)
    blocks, sides = BlockRows([rows[:2500], rows[2500:]]), sides_for(rows)
    config = SearchConfig(threshold=0.8, index=index, nlist=16, nprobe=4, max_neighbors=12, threads=1)  # type: ignore[arg-type]
    monkeypatch.setattr("stages.dedup.semantic_index._CHUNK", 1000)  # pairs found again across chunks
    every = similar_pairs(blocks, config)
    after = make_check(blocks, sides)
    held = _subset(every, after(every.left, every.right, every.similarity))
    during = make_check(blocks, sides)
    streamed = similar_pairs(blocks, config, keep=during)
    assert 0 < len(held) < len(every) and streamed.candidates == every.candidates
    assert np.array_equal(streamed.left, held.left) and np.array_equal(streamed.right, held.right)
    assert np.array_equal(streamed.similarity.view(np.uint32), held.similarity.view(np.uint32))
    counters = during.counters(streamed.candidates)
    assert counters == after.counters(every.candidates)
    assert list(counters) == list(after.counters(every.candidates))  # the same order in report.json
    assert counters["verified_pairs"] == int(np.count_nonzero(every.similarity >= 0.85))
    assert (
        counters["rejected_by_output"] > 0
        and counters["rejected_by_instruction"] > 0
        and counters["side_verified_pairs"] == len(held)
    )
    assert {k: v for k, v in counters.items() if k.startswith("similarity_hist.")} == similarity_histogram(
        every.similarity, 0.8
    )


def test_no_pair_reaches_the_sides_reports_no_side_counters() -> None:
    check = PairCheck(
        0.9, 0.95, np.zeros((3, 4), np.float16), {"output": np.zeros((3, 4), np.float16)}, {"output": 0.8}
    )
    ok = check(np.array([0, 1]), np.array([1, 2]), np.array([0.91, 0.94], np.float32))
    assert not ok.any()
    assert check.counters(7) == {
        "similarity_hist.0.91": 1,
        "similarity_hist.0.94": 1,
        "candidate_pairs": 7,
        "verified_pairs": 0,
        "side_verified_pairs": 0,
    }


def test_side_similarities_share_one_pool_and_give_each_sides_cosines(monkeypatch: pytest.MonkeyPatch) -> None:
    from stages.dedup import semantic_sides

    rows = repeated_rows(n=3000)
    blocks, sides = BlockRows([rows[:1000], rows[1000:]]), sides_for(rows)
    rng = np.random.default_rng(2)
    left = np.sort(rng.integers(0, 3000, 5000))
    right = rng.integers(0, 3000, 5000)
    monkeypatch.setattr(semantic_sides, "PAIR_CHUNK", 300)  # many chunks per side, the instruction side few
    pooled = semantic_sides.side_similarities(blocks, sides, left, right, threads=3)
    for name, side in sides.items():
        alone = semantic_sides.side_cosine(blocks, side, left, right, name == "instruction", threads=1)
        assert np.array_equal(pooled[name].view(np.uint32), alone.view(np.uint32))
    assert 0 < np.count_nonzero(pooled["output"] < 0.8) < 5000
