"""dedup_exact: identical normalized content across batches and files, kept-twin rule, fields, determinism."""

from __future__ import annotations

import json
import random

import pyarrow as pa
import pytest
from pydantic import ValidationError

from stages.dedup.exact import REASON_EXACT, ExactDedupParams, ExactDedupStage
from tests.stages.dedup.test_dedup_common import make_batch


def run_stage(stage: ExactDedupStage, batches: list[pa.Table]) -> tuple[dict[str, str], dict[str, dict]]:
    """fingerprint → resolve → decide; returns (id -> reason, id -> detail) of the dropped records."""
    resolution = stage.resolve([stage.fingerprint(b) for b in batches])
    reasons: dict[str, str] = {}
    details: dict[str, dict] = {}
    for b in batches:
        result = stage.decide(b, resolution)
        assert result.table is b
        for rid, reason, detail in zip(b.column("id").to_pylist(), result.reasons, result.details, strict=True):
            if reason is not None:
                reasons[rid] = reason
                details[rid] = json.loads(detail or "")
    return reasons, details


def test_exact_duplicates_across_batches_and_files_after_normalization() -> None:
    first = make_batch(["把下面的句子翻译成英文：我爱北京。", "写一首关于秋天的诗"], [0, 1], source="a.json")
    second = make_batch(
        ["把下面的句子翻译成英文：我爱北京。", "写一首关于秋天的诗。", "  把下面的句子翻译成英文：我爱北京。\t"],
        [2, 3, 4],
        source="b.jsonl",
    )
    # full-width letters and digits fold to half-width, case and runs of spaces do not matter
    third = make_batch(
        ["用Python写一个  Hello   World 程序"], [5], outputs=["ｐｒｉｎｔ（'ｈｅｌｌｏ'）"], source="c.csv"
    )
    fourth = make_batch(["用python写一个 hello world 程序"], [6], outputs=["print('hello')"], source="c.csv")
    reasons, details = run_stage(ExactDedupStage(), [first, second, third, fourth])
    assert reasons == {"b.jsonl#2": REASON_EXACT, "b.jsonl#4": REASON_EXACT, "c.csv#6": REASON_EXACT}
    assert details["b.jsonl#2"] == {"duplicate_of": "a.json#0", "similarity": 1.0, "cluster_size": 3}
    assert details["b.jsonl#4"]["duplicate_of"] == "a.json#0"
    assert details["c.csv#6"]["duplicate_of"] == "c.csv#5"
    # "写一首关于秋天的诗" and "写一首关于秋天的诗。" differ by a full stop: not exact duplicates


def test_without_normalize_only_identical_bytes_match() -> None:
    batch = make_batch(["写一首关于秋天的诗", "写一首关于秋天的诗", "写一首关于秋天的诗 "], [0, 1, 2])
    reasons, _ = run_stage(ExactDedupStage(ExactDedupParams(normalize=False)), [batch])
    assert reasons == {"a.json#1": REASON_EXACT}


def test_kept_twin_is_highest_quality_then_earliest_seq() -> None:
    batch = make_batch(["解释什么是光合作用"] * 4, [7, 3, 9, 5], [0.2, 0.6, 0.6, None])
    reasons, details = run_stage(ExactDedupStage(), [batch])
    # seq 3 and 9 tie on quality 0.6: seq 3 is kept; the record without a score loses to any score
    assert set(reasons) == {"a.json#7", "a.json#9", "a.json#5"}
    assert {d["duplicate_of"] for d in details.values()} == {"a.json#3"}


def test_outputs_and_history_are_part_of_the_content() -> None:
    turns: list[dict[str, str | None]] = [{"user": "推荐一本书", "assistant": "《三体》"}]
    batch = make_batch(
        ["它讲了什么？", "它讲了什么？", "它讲了什么？"],
        [0, 1, 2],
        outputs=["讲的是地球文明与三体文明的故事。"] * 2 + ["讲的是一个少年的成长。"],
        histories=[turns, [], turns],
    )
    assert run_stage(ExactDedupStage(), [batch])[0] == {}
    # compared on the instruction alone, all three are one
    only_instruction = ExactDedupStage(ExactDedupParams(fields=("instruction",)))
    assert set(run_stage(only_instruction, [batch])[0]) == {"a.json#1", "a.json#2"}


def test_shuffled_input_keeps_the_same_records() -> None:
    texts = ["什么是机器学习？", "什么是机器学习？", "列出三种水果", "什么是机器学习？", "列出三种水果", "今天星期几"]
    quality = [0.3, 0.8, 0.5, 0.8, 0.5, 0.9]

    def dropped(order: list[int], size: int) -> set[int]:
        batches = [
            make_batch(
                [texts[i] for i in order[s : s + size]], order[s : s + size], [quality[i] for i in order[s : s + size]]
            )
            for s in range(0, len(order), size)
        ]
        reasons, details = run_stage(ExactDedupStage(), batches)
        assert all(d["duplicate_of"] not in reasons for d in details.values())
        return {int(rid.split("#")[1]) for rid in reasons}

    reference = dropped(list(range(6)), 6)
    assert reference == {0, 3, 4}
    for seed in range(5):
        order = list(range(6))
        random.Random(seed).shuffle(order)
        assert dropped(order, 1 + seed % 3) == reference


def test_params_are_validated() -> None:
    with pytest.raises(ValidationError):
        ExactDedupParams(fields=())
    with pytest.raises(ValidationError):
        ExactDedupParams(fields=("instruction", "instruction"))
    with pytest.raises(ValidationError):
        ExactDedupParams(fields=("title",))  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        ExactDedupParams(lowercase=True)  # type: ignore[call-arg]
