"""The IVF search asks FAISS once per distinct row and gives every record its row's neighbour list: the pairs must
be exactly those of searching every record; the side checks skip pairs of two absent side rows (1.0)."""

from __future__ import annotations

import numpy as np
import pytest

from stages.dedup import semantic_queries
from stages.dedup.semantic_index import SearchConfig, similar_pairs
from stages.dedup.semantic_queries import distinct_rows, row_hashes
from stages.dedup.semantic_rows import BlockRows, PresentRows, stack_rows
from stages.dedup.semantic_sides import side_cosine


def repeated_rows(n: int = 4000, distinct: int = 700, seed: int = 3) -> np.ndarray:
    """Unit float16 rows, many repeated (as requests are), some near each other (as paraphrases are)."""
    rng = np.random.default_rng(seed)
    bases = rng.normal(size=(distinct // 7, 64))
    family = bases[rng.integers(0, bases.shape[0], distinct)] + 0.15 * rng.normal(size=(distinct, 64))
    family /= np.linalg.norm(family, axis=1, keepdims=True)
    rows = family[rng.integers(0, distinct, n)].astype(np.float16)
    rows[:5] = 0  # records with nothing to embed
    return rows


def test_distinct_rows_groups_identical_bytes() -> None:
    rows = repeated_rows()
    first, inverse = distinct_rows(BlockRows([rows[:1500], rows[1500:]]))
    assert np.all(np.diff(first) > 0) and first[0] == 0
    assert np.array_equal(rows[first[inverse]], rows)
    assert first.size == np.unique(rows.view(np.uint16), axis=0).shape[0]


def test_distinct_rows_survives_hash_collisions(monkeypatch: pytest.MonkeyPatch) -> None:
    rows = repeated_rows(n=300, distinct=40)
    monkeypatch.setattr(semantic_queries, "row_hashes", lambda r: np.zeros(int(r.shape[0]), np.uint64))
    first, inverse = semantic_queries.distinct_rows(rows)
    assert np.array_equal(rows[first[inverse]], rows)  # every row still maps to a row with its bytes
    assert row_hashes(rows[:2]).dtype == np.uint64


@pytest.mark.parametrize("n", [4000, 4000 + 7])  # the last chunk of queries under and over 20 rows
def test_search_per_distinct_row_gives_the_same_pairs(monkeypatch: pytest.MonkeyPatch, n: int) -> None:
    rows = repeated_rows(n=n)
    config = SearchConfig(threshold=0.8, index="ivf", nlist=16, nprobe=4, max_neighbors=12, threads=1)
    monkeypatch.setattr("stages.dedup.semantic_index._CHUNK", 1000)
    monkeypatch.setattr(semantic_queries, "DISTINCT_SHARE", 0.0)  # every record searched
    every = similar_pairs(BlockRows([rows[:2500], rows[2500:]]), config)
    monkeypatch.setattr(semantic_queries, "DISTINCT_SHARE", 1.0)
    once = similar_pairs(BlockRows([rows[:2500], rows[2500:]]), config)
    assert len(every) > 1000 and every.candidates == once.candidates
    assert np.array_equal(every.left, once.left) and np.array_equal(every.right, once.right)
    assert np.array_equal(every.similarity.view(np.uint32), once.similarity.view(np.uint32))


def test_present_rows_read_in_place_and_absent_pairs_skip() -> None:
    rng = np.random.default_rng(5)
    main = rng.normal(size=(12, 8)).astype(np.float16)
    side = np.zeros((12, 8), np.float16)
    side[[2, 7, 9]] = rng.normal(size=(3, 8))
    parts = [PresentRows.from_dense(side[:6]), PresentRows.from_dense(side[6:])]
    stacked = stack_rows(parts, 8, np.float16)
    assert isinstance(stacked, PresentRows) and isinstance(stacked.rows, BlockRows)  # no copy of the rows
    assert np.array_equal(stacked[np.arange(12)], side) and np.array_equal(stacked.dense(), side)
    assert stacked.stored(np.array([2, 3, 9])).tolist() == [True, False, True]
    left = np.array([0, 0, 2, 3, 7, 9, 1], np.int64)
    right = np.array([1, 2, 7, 4, 9, 11, 5], np.int64)
    for fallback in (True, False):
        dense = side_cosine(main, side, left, right, fallback)
        assert np.array_equal(side_cosine(main, stacked, left, right, fallback), dense)
        assert dense[3] == 1.0 and dense[6] == 1.0  # neither record has the side


def test_side_checks_in_threads_are_the_same(monkeypatch: pytest.MonkeyPatch) -> None:
    import stages.dedup.semantic_sides as sides

    rows = repeated_rows(n=3000, distinct=400)
    answers = repeated_rows(n=3000, distinct=900, seed=8)
    answers[::7] = 0  # no answer
    blocks = stack_rows(
        [PresentRows.from_dense(answers[:1700]), PresentRows.from_dense(answers[1700:])], 64, np.float16
    )
    rng = np.random.default_rng(1)
    left = np.sort(rng.integers(0, 3000, 20_000))
    right = rng.integers(0, 3000, 20_000)
    monkeypatch.setattr(sides, "PAIR_CHUNK", 1024)
    for fallback in (True, False):
        alone = sides.side_cosine(rows, blocks, left, right, fallback)
        assert np.array_equal(sides.side_cosine(rows, blocks, left, right, fallback, threads=3), alone)
        assert np.array_equal(alone, sides.side_cosine(rows, answers, left, right, fallback))  # dense rows
