"""dedup_semantic keeps its rows compact: side rows only where the side exists, the batches' matrices read in
place, the side checks a block of pairs at a time — and the decisions are the same as with dense matrices.

The model is the tiny deterministic one of tests/conftest.py (cosine threshold 0.78 suits it).
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from stages.dedup import semantic_sides
from stages.dedup.semantic import REASON, SemanticFingerprint
from stages.dedup.semantic_rows import BlockRows, PresentRows, dense_rows, stack_rows
from tests.stages.dedup.test_dedup_semantic import decisions, make_stage, make_table

PARAGRAPH = (
    "对于外行来说，商业世界可能是令人生畏和不知所措的。即使是最成功的新企业主也会被管理日常任务的压力压得喘不过气来。"
)
POEM = "春风吹绿了江南岸，桃花笑映小河湾。燕子归来寻旧垒，一犁春雨满田间。"
# (instruction, input, output): a paraphrase pair with equivalent answers (merged), two different tasks over one
# input (kept: their instructions differ), and unrelated records
ROWS = [
    ("写一首关于春天的诗", "", POEM),
    ("确定段落的基调。", PARAGRAPH, "该段的基调是信息丰富和鼓舞人心的。"),
    ("解释一下光合作用的原理", "", "光合作用是植物利用光能把二氧化碳和水转化为有机物并释放氧气的过程。"),
    ("用 5 句话或更少来概括段落。", PARAGRAPH, "对于新的企业主来说，创办和经营一家企业可能会令人生畏。"),
    ("介绍一下长城的历史", "", "长城始建于春秋战国时期，秦朝统一后连接成万里长城。"),
    ("创作一首描写春天的诗歌", "", POEM.replace("一犁", "满犁")),
    ("推荐几本适合初学者的Python书", "", ""),
]


def batches() -> list:
    table = make_table([(a, b) for a, b, _ in ROWS], outputs=[c for _, _, c in ROWS])
    return [table.slice(0, 3), table.slice(3, 2), table.slice(5)]


def dense_fingerprint(fp: SemanticFingerprint) -> SemanticFingerprint:
    """The fingerprint as an earlier version stored it (and as the runner may have cached it): dense sides."""
    return replace(fp, sides={name: dense_rows(rows) for name, rows in fp.sides.items()})


def test_side_rows_are_stored_only_for_records_that_have_the_side(tiny_model_dir: Path) -> None:
    stage = make_stage(tiny_model_dir, "cosine")
    stage.check()
    first = stage.fingerprint(batches()[0])
    instruction, output = first.sides["instruction"], first.sides["output"]
    assert isinstance(instruction, PresentRows) and isinstance(output, PresentRows)
    assert instruction.positions.tolist() == [1]  # only 确定段落的基调 has an input: its instruction alone
    assert instruction.rows.shape == (1, first.embeddings.shape[1]) and instruction.rows.dtype == np.float16
    assert output.positions.tolist() == [0, 1, 2]
    last = stage.fingerprint(batches()[2])
    assert last.sides["output"].positions.tolist() == [0]  # the Python books record has no output
    assert not last.sides["output"][np.array([1])].any()  # read as the zero row it used to be


def test_compact_rows_decide_as_dense_ones(tiny_model_dir: Path) -> None:
    stage = make_stage(tiny_model_dir, "cosine")
    stage.check()
    parts = batches()
    fps = [stage.fingerprint(b) for b in parts]
    compact = stage.resolve(fps)
    dense = stage.resolve([dense_fingerprint(fp) for fp in fps])
    got = decisions([stage.decide(b, compact) for b in parts])
    assert got == decisions([stage.decide(b, dense) for b in parts])
    dropped = {rid: json.loads(detail or "{}") for rid, (reason, detail) in got.items() if reason == REASON}
    assert list(dropped) == ["data.json#5"]  # 创作一首描写春天的诗歌, the paraphrase of #0
    assert dropped["data.json#5"]["duplicate_of"] == "data.json#0"
    assert dropped["data.json#5"]["output_cosine"] >= 0.78
    assert got["data.json#3"] == (None, None)  # same paragraph, another task


def test_side_checks_in_small_blocks_give_the_same_decisions(
    tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stage = make_stage(tiny_model_dir, "cosine", threshold=0.3, output_threshold=0.3)
    stage.check()
    parts = batches()
    fps = [stage.fingerprint(b) for b in parts]
    whole = stage.resolve(fps)
    monkeypatch.setattr(semantic_sides, "PAIR_CHUNK", 2)
    blocks = stage.resolve(fps)
    assert whole.counters["verified_pairs"] > 2  # several blocks of pairs were checked
    assert whole.counters == blocks.counters
    assert decisions([stage.decide(b, whole) for b in parts]) == decisions([stage.decide(b, blocks) for b in parts])


def test_block_rows_read_like_the_concatenated_matrix() -> None:
    rng = np.random.default_rng(0)
    parts = [rng.standard_normal((n, 4)).astype(np.float16) for n in (5, 0, 3, 7)]
    whole = np.concatenate(parts)
    rows = BlockRows(parts)
    assert rows.shape == whole.shape and rows.dtype == np.float16 and len(rows) == 15
    picks = np.array([14, 0, 5, 7, 5, 8, 4])
    np.testing.assert_array_equal(rows[picks], whole[picks])
    np.testing.assert_array_equal(rows[3:11], whole[3:11])
    np.testing.assert_array_equal(BlockRows([], dim=4)[np.zeros(0, np.int64)], np.zeros((0, 4), np.float32))


def test_present_rows_stack_and_read_zero_rows_elsewhere() -> None:
    a = np.zeros((4, 3), np.float16)
    a[2] = [1, 0, 0]
    b = np.zeros((3, 3), np.float16)
    b[0], b[2] = [0, 1, 0], [0, 0, 1]
    stacked = stack_rows([PresentRows.from_dense(a), PresentRows.from_dense(b)], 3, np.float16)
    assert isinstance(stacked, PresentRows) and stacked.positions.tolist() == [2, 4, 6]
    np.testing.assert_array_equal(stacked.dense(), np.concatenate([a, b]))
    np.testing.assert_array_equal(stacked[np.array([6, 0, 4])], np.concatenate([a, b])[[6, 0, 4]])
    mixed = stack_rows([PresentRows.from_dense(a), b], 3, np.float16)  # a dense (older) part: read in place
    np.testing.assert_array_equal(mixed[np.arange(7)], np.concatenate([a, b]))


def test_pairs_found_from_both_ends_are_kept_once_whatever_the_query_chunks(
    tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from stages.dedup import semantic_index
    from stages.dedup.semantic_index import SearchConfig, similar_pairs

    stage = make_stage(tiny_model_dir, "cosine")
    stage.check()
    rows = BlockRows([stage.fingerprint(b).embeddings for b in batches()])
    config = SearchConfig(threshold=0.3, index="flat")
    whole = similar_pairs(rows, config)
    monkeypatch.setattr(semantic_index, "_CHUNK", 2)  # four chunks of queries: most pairs span two of them
    chunked = similar_pairs(rows, config)
    keys = whole.left * len(rows) + whole.right
    assert len(whole) > 3 and bool(np.all(whole.left < whole.right)) and bool(np.all(np.diff(keys) > 0))
    for name in ("left", "right", "similarity"):
        np.testing.assert_array_equal(getattr(whole, name), getattr(chunked, name))
    assert whole.candidates == chunked.candidates == 2 * len(whole)  # a flat search finds each pair from both ends
    assert (0, 5) in set(zip(whole.left.tolist(), whole.right.tolist(), strict=True))  # the two spring poems
