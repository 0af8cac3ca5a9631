"""Task types are counted over gathered batches (one regex compilation per rule and block): the counts are the
same however the records arrive, through merges and pickling (a worker's collector travels to the driver)."""

from __future__ import annotations

import pickle

import pyarrow as pa
import pytest

from pipeline.report import collect
from pipeline.report.collect import ReportCollector
from pipeline.report.tasktypes import count_task_types
from schemas.record import CANONICAL_SCHEMA

INSTRUCTIONS = [
    "把这句话翻译成英文",
    "写一首关于秋天的诗",
    "用Python写一个排序函数",
    "总结这篇文章",
    "一共有多少个苹果？",
    "你好",
]


def table(start: int, n: int) -> pa.Table:
    rows = [
        {
            "id": f"t#{i}",
            "source": "t",
            "system": "",
            "instruction": INSTRUCTIONS[i % len(INSTRUCTIONS)],
            "input": "",
            "output": "好的",
            "history": [{"user": "你好", "assistant": "你好！"}] if i % 7 == 0 else [],
        }
        for i in range(start, start + n)
    ]
    return pa.Table.from_pylist(rows, schema=CANONICAL_SCHEMA)


@pytest.mark.parametrize("block", [1, 5, 1000])
def test_counts_do_not_depend_on_batching(monkeypatch: pytest.MonkeyPatch, block: int) -> None:
    monkeypatch.setattr(collect, "TASK_BLOCK", block)
    expected = count_task_types(table(0, 60))
    assert set(expected) >= {"翻译/改写", "创作/写作", "代码", "摘要", "推理/数学", "多轮对话"}
    one = ReportCollector()
    for start in range(0, 60, 7):
        one.add_kept(table(start, min(7, 60 - start)))
    assert one.result()["kept"]["task_types"] == expected

    first, second = ReportCollector(), ReportCollector()
    first.add_kept(table(0, 25))
    second.add_kept(table(25, 35))
    second = pickle.loads(pickle.dumps(second))  # pending batches are counted before they travel
    first.merge(second)
    assert first.result()["kept"]["task_types"] == expected


# ---------------------------------------------------------------- drops: duplicate details read by Arrow
def dropped(start: int, n: int) -> pa.Table:
    from stages.base import detail_json

    base = table(start, n)
    reasons, details = [], []
    for i in range(start, start + n):
        kind = i % 6
        if kind in (0, 1, 2):
            sim = [1.0, 0.75, 0.9219, 0.8, 1e-05][i % 5]  # ties and an exponent
            reasons.append("duplicate_near" if kind else "duplicate_exact")
            details.append(detail_json(cluster_size=2 + i % 4, duplicate_of=f't#{i // 2}"\\', similarity=sim))
        elif kind == 3:  # an int similarity, or an extra key: parsed one by one, ties with the others kept in order
            reasons.append("duplicate_near")
            sim = [1, 1e-05][i % 2]
            details.append(detail_json(cluster_size=3, duplicate_of=f"t#{i}", similarity=sim, fields=["instruction"]))
        elif kind == 4:
            reasons.append("harmful_violence")
            details.append(detail_json(category="violence", detector="lexicon", signal="term", safety_score=0.93))
        else:
            reasons.append("low_quality")
            details.append(detail_json(score=0.1))
    return base.append_column("reason", pa.array(reasons)).append_column("detail", pa.array(details))


def test_duplicate_details_read_by_arrow_equal_parsed_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    def run() -> dict[str, object]:
        c = ReportCollector()
        for start in range(0, 400, 37):
            c.add_dropped(dropped(start, min(37, 400 - start)))
        out = c.result()
        out.pop("seconds")
        return out

    got = run()
    with monkeypatch.context() as m:
        m.setattr(collect.drops, "DUPLICATE_DETAIL", "^never$")
        expected = run()
    assert got == expected
    assert len(got["near_threshold"]["duplicate_near"]) == collect.NEAR_THRESHOLD
    assert [ex["detail"]["similarity"] for ex in got["near_threshold"]["duplicate_near"]][:2] == [1e-05, 1e-05]
    assert got["cluster_sizes"] and got["examples"]["duplicate_exact"][0]["id"] == "t#0"
    assert got["categories"]["harmful_violence"] == {"violence": 66}
