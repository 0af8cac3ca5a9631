"""Shared dedup machinery: clustering, kept-twin rule, resolution lookups and decisions."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pyarrow as pa
import pytest

from schemas.record import CANONICAL_SCHEMA
from stages.base import detail_json
from stages.dedup.common import (
    FIELD_SEPARATOR,
    DuplicateResolution,
    RecordKeys,
    choose_kept,
    cluster_pairs,
    duplicate_detail,
    record_text,
)


def make_batch(
    texts: list[str],
    seqs: list[int],
    quality: list[float | None] | None = None,
    *,
    outputs: list[str] | None = None,
    source: str = "a.json",
    histories: list[list[dict[str, str | None]]] | None = None,
) -> pa.Table:
    """A canonical batch (instruction = texts[i]) with ``_seq`` and, if given, ``quality_score``."""
    n = len(texts)
    cols = {
        "id": [f"{source}#{s}" for s in seqs],
        "source": [source] * n,
        "system": [""] * n,
        "instruction": texts,
        "input": [""] * n,
        "output": outputs if outputs is not None else ["好的。"] * n,
        "history": histories if histories is not None else [[] for _ in range(n)],
    }
    table = pa.Table.from_pydict(cols, schema=CANONICAL_SCHEMA)
    table = table.append_column("_seq", pa.array(seqs, pa.int64()))
    if quality is not None:
        table = table.append_column("quality_score", pa.array(quality, pa.float64()))
    return table


def test_cluster_pairs_is_transitive_and_leaves_singletons_alone() -> None:
    labels = cluster_pairs(6, np.array([0, 1, 4]), np.array([1, 2, 5]))
    assert labels[0] == labels[1] == labels[2]
    assert labels[4] == labels[5]
    assert len({labels[0], labels[3], labels[4]}) == 3


def test_choose_kept_prefers_quality_then_smallest_seq() -> None:
    labels = np.array([0, 0, 0, 1, 1, 2])
    seq = np.array([10, 5, 7, 3, 1, 8])
    quality = np.array([0.5, 0.9, 0.9, np.nan, np.nan, np.nan])
    kept = choose_kept(labels, seq, quality)
    # cluster 0: rows 1 and 2 tie on quality 0.9, row 1 has the smaller seq
    assert kept.tolist() == [1, 1, 1, 4, 4, 5]


def test_choose_kept_nan_quality_loses_to_any_score() -> None:
    kept = choose_kept(np.array([0, 0]), np.array([0, 1]), np.array([np.nan, 0.1]))
    assert kept.tolist() == [1, 1]


def test_resolution_decides_across_batches_and_points_to_kept_ids() -> None:
    b1 = make_batch(["写一首关于春天的诗", "介绍一下长城的历史"], [0, 1], [0.4, 0.8])
    b2 = make_batch(["写一首关于春天的诗。", "介绍一下长城的历史！"], [2, 3], [0.7, 0.2])
    keys = RecordKeys.concat([RecordKeys.from_batch(b1), RecordKeys.from_batch(b2)])
    resolution = DuplicateResolution.from_pairs(
        keys, np.array([0, 1]), np.array([2, 3]), similarity=lambda a, b: np.full(len(a), 0.9)
    )
    resolution = pickle.loads(pickle.dumps(resolution))
    r1 = resolution.decide(b1, "duplicate_near")
    r2 = resolution.decide(b2, "duplicate_near")
    # spring poem: seq 2 has the higher quality and is kept; Great Wall: seq 1 is kept
    assert r1.reasons == ["duplicate_near", None]
    assert r2.reasons == [None, "duplicate_near"]
    d1 = json.loads(r1.details[0] or "")
    assert d1 == {"duplicate_of": "a.json#2", "similarity": 0.9, "cluster_size": 2}
    assert json.loads(r2.details[1] or "")["duplicate_of"] == "a.json#1"
    assert resolution.counters() == {"duplicates": 2, "clusters": 2, "largest_cluster": 2}


def test_resolution_without_pairs_keeps_everything() -> None:
    batch = make_batch(["解释量子纠缠", "翻译成英文：你好"], [0, 1])
    keys = RecordKeys.from_batch(batch)
    resolution = DuplicateResolution.from_pairs(keys, np.array([]), np.array([]), lambda a, b: a * 0.0)
    assert resolution.decide(batch, "duplicate_exact").reasons == [None, None]
    assert resolution.counters()["duplicates"] == 0


def test_missing_seq_column_is_a_clear_error() -> None:
    batch = make_batch(["你好"], [0]).drop_columns(["_seq"])
    with pytest.raises(ValueError, match="_seq"):
        RecordKeys.from_batch(batch)


def test_record_text_joins_fields_and_history_turns() -> None:
    history: list[list[dict[str, str | None]]] = [
        [{"user": "你好", "assistant": "您好！"}, {"user": "天气如何？", "assistant": None}],
        [],
    ]
    batch = make_batch(["今天去哪儿玩？", "写一首诗"], [0, 1], histories=history)
    sep = FIELD_SEPARATOR
    text = record_text(batch).to_pylist()
    assert text[0] == sep.join(["今天去哪儿玩？", "", "好的。", sep.join(["你好", "您好！", "天气如何？", ""])])
    assert text[1] == sep.join(["写一首诗", "", "好的。", ""])
    assert record_text(batch.slice(1), ("output",)).to_pylist() == ["好的。"]


@pytest.mark.parametrize(
    ("kept_id", "similarity", "size"),
    [("a.json#0", 1.0, 2), ("数据/训练集.jsonl#12", 0.7266, 15), ('we"ird\\name#3', 0.5, 3), ("tab\there#1", 0.81, 2)],
)
def test_duplicate_detail_is_detail_json(kept_id: str, similarity: float, size: int) -> None:
    expected = detail_json(duplicate_of=kept_id, similarity=similarity, cluster_size=size)
    assert duplicate_detail(kept_id, similarity, size) == expected
