"""The per-record filter base: one judge per record (or per batch), the base builds the result and counters."""

from __future__ import annotations

import json
from typing import ClassVar

import pyarrow as pa
import pyarrow.compute as pc

from schemas.record import CANONICAL_SCHEMA
from stages.base import SEQ_COLUMN, StageParams
from stages.filter import Drop, Record, RecordFilter
from tests.records import canonical_table


class WordParams(StageParams):
    word: str = "广告"


class WordFilter(RecordFilter):
    """Drops answers (output or a history answer) that contain ``word``; counts answers with history."""

    name = "t_word"
    Params = WordParams
    reads: ClassVar[tuple[str, ...]] = ("output", "history")
    params: WordParams

    def judge(self, record: Record) -> Drop | None:
        if record["history"]:
            self.count("with_history")
        answers = [("output", record["output"])]
        answers += [(f"history[{t}].assistant", h["assistant"] or "") for t, h in enumerate(record["history"])]
        for field, text in answers:
            if self.params.word in text:
                return Drop("has_word", {"word": self.params.word, "field": field})
        return None


class ShortFilter(RecordFilter):
    """Vectorized: drops outputs shorter than 3 characters."""

    name = "t_short"
    Params = StageParams

    def judge_batch(self, batch: pa.Table) -> list[Drop | None]:
        lengths = pc.fill_null(pc.utf8_length(batch.column("output")), 0).to_numpy(zero_copy_only=False)
        return [Drop("output_too_short", {"chars": int(n), "threshold": 3}) if n < 3 else None for n in lengths]


ROWS = [
    {"instruction": "推荐一本书", "output": "《红楼梦》是一部古典小说。"},
    {"instruction": "写一句宣传语", "output": "点击链接看广告，领取红包！"},
    {
        "instruction": "继续",
        "output": "好的。",
        "history": [{"user": "你好", "assistant": "你好！这里有广告位出租。"}],
    },
]


def test_judge_per_record_builds_reasons_details_and_counters() -> None:
    batch = canonical_table(ROWS)
    res = WordFilter().process(batch)
    assert res.table is batch  # a filter never changes the records
    assert res.reasons == [None, "has_word", "has_word"]
    assert res.details[0] is None
    assert json.loads(res.details[1] or "") == {"field": "output", "word": "广告"}
    assert json.loads(res.details[2] or "") == {"field": "history[0].assistant", "word": "广告"}
    assert res.counters == {"with_history": 1}
    # counters belong to one batch: a second batch starts from zero
    assert WordFilter(WordParams(word="红包")).process(canonical_table(ROWS[:1])).counters == {}


def test_judge_sees_nulls_as_empty_text_and_history() -> None:
    table = pa.Table.from_pylist(
        [
            {
                "id": "t#0",
                "source": "t",
                "system": None,
                "instruction": "问",
                "input": None,
                "output": None,
                "history": None,
            }
        ],
        schema=CANONICAL_SCHEMA,
    ).append_column(SEQ_COLUMN, pa.array([0], pa.int64()))
    seen: list[Record] = []

    class Spy(RecordFilter):
        name = "t_spy"
        Params = StageParams

        def judge(self, record: Record) -> Drop | None:
            seen.append(record)
            return None

    assert Spy().process(table).reasons == [None]
    assert seen == [{"system": "", "instruction": "问", "input": "", "output": "", "history": []}]


def test_judge_batch_vectorized() -> None:
    res = ShortFilter().process(canonical_table([{"output": "北京。"}, {"output": "是"}, {"output": ""}]))
    assert res.reasons == [None, "output_too_short", "output_too_short"]
    assert [json.loads(d)["chars"] for d in res.details if d] == [1, 0]


def test_empty_batch() -> None:
    res = WordFilter().process(canonical_table([]))
    assert res.reasons == [] and res.details == [] and res.counters == {}
