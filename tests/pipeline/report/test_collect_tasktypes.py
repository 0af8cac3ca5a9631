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
