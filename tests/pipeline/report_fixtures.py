"""A small finished run for the report / inspect / export tests, made with test-only stages.

The stages here stand in for safety, quality and dedup with fixed, obvious rules, so that these tests depend
only on the runner and the report, and every report section (matched terms, scores, refusals, language
profile, duplicates with their twin) has something in it. They are registered only while the run is made.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import pyarrow as pa
import pytest
from pydantic import Field

from pipeline import registry
from pipeline.recipe import build_recipe
from pipeline.runner import Runner, RunOptions
from stages.base import SEQ_COLUMN, GlobalStage, RecordStage, StageParams, StageResult, detail_json


class TermSafety(RecordStage):
    """Drops a request that contains a listed term unless the answer refuses (a kept refusal)."""

    name: ClassVar[str] = "t_safety"
    added_columns = (("safety_refusal", pa.bool_()),)

    class Params(StageParams):
        terms: dict[str, str] = Field(default_factory=lambda: {"赌博": "gambling", "毒品": "drugs"})

    def process(self, batch: pa.Table) -> StageResult:
        terms: dict[str, str] = self.params.terms  # type: ignore[attr-defined]
        reasons: list[str | None] = []
        details: list[str | None] = []
        refusals = []
        for ins, out in zip(batch.column("instruction").to_pylist(), batch.column("output").to_pylist()):
            hit = next((t for t in terms if t in ins), None)
            refusal = hit is not None and out.startswith("抱歉")
            refusals.append(refusal)
            if hit is not None and not refusal:
                reasons.append("harmful_request")
                details.append(detail_json(field="instruction", term=hit, category=terms[hit], score=0.97))
            else:
                reasons.append(None)
                details.append(None)
        table = batch.append_column("safety_refusal", pa.array(refusals, pa.bool_()))
        return StageResult(table, reasons, details)


class LengthQuality(RecordStage):
    """quality_score = output length / 40 (at most 1); drops scores under ``min_score``; tags language."""

    name: ClassVar[str] = "t_quality"
    added_columns = (("language_profile", pa.string()), ("quality_score", pa.float64()))

    class Params(StageParams):
        min_score: float = 0.1

    def process(self, batch: pa.Table) -> StageResult:
        outputs = batch.column("output").to_pylist()
        scores = [min(1.0, len(o) / 40) for o in outputs]
        minimum: float = self.params.min_score  # type: ignore[attr-defined]
        reasons: list[str | None] = ["too_short" if s < minimum else None for s in scores]
        details = [detail_json(field="output", score=s) if r else None for s, r in zip(scores, reasons)]
        profiles = ["zh+code" if "```" in o else "zh" for o in outputs]
        table = batch.append_column("language_profile", pa.array(profiles, pa.string()))
        table = table.append_column("quality_score", pa.array(scores, pa.float64()))
        return StageResult(table, reasons, details)


class ExactTwin(GlobalStage):
    """Keeps the first record of each (instruction, output); drops the others naming it."""

    name: ClassVar[str] = "t_dedup"

    class Params(StageParams):
        pass

    def fingerprint(self, batch: pa.Table) -> Any:
        keys = [
            f"{i}\x00{o}" for i, o in zip(batch.column("instruction").to_pylist(), batch.column("output").to_pylist())
        ]
        return list(zip(batch.column(SEQ_COLUMN).to_pylist(), batch.column("id").to_pylist(), keys))

    def resolve(self, fingerprints: Sequence[Any], pairs: pa.Table | None = None) -> Any:
        first: dict[str, str] = {}
        size: dict[str, int] = {}
        dup_of: dict[int, tuple[str, str]] = {}
        for part in fingerprints:
            for seq, rid, key in part:
                size[key] = size.get(key, 0) + 1
                if key in first:
                    dup_of[seq] = (first[key], key)
                else:
                    first[key] = rid
        return {seq: (kid, size[key]) for seq, (kid, key) in dup_of.items()}

    def decide(self, batch: pa.Table, resolution: Any) -> StageResult:
        reasons: list[str | None] = []
        details: list[str | None] = []
        for seq in batch.column(SEQ_COLUMN).to_pylist():
            if seq in resolution:
                kid, size = resolution[seq]
                reasons.append("duplicate")
                details.append(detail_json(duplicate_of=kid, similarity=1.0, cluster_size=size))
            else:
                reasons.append(None)
                details.append(None)
        return StageResult(batch, reasons, details)


TEST_STAGES = {"t_safety": TermSafety, "t_quality": LengthQuality, "t_dedup": ExactTwin}

ALPACA_ROWS: list[dict[str, Any]] = [
    {
        "instruction": "写一首关于春天的七言绝句",
        "input": "",
        "output": "春风又绿江南岸，细雨轻飘柳色新。燕子归来寻旧垒，桃花含笑迎行人。",
    },
    {
        "instruction": "把下面这句话翻译成英文",
        "input": "今天天气很好。",
        "output": "The weather is very nice today, isn't it?",
    },
    {
        "instruction": "用Python写一个函数，计算列表的平均值",
        "input": "",
        "output": "```python\ndef mean(xs):\n    return sum(xs) / len(xs)\n```",
    },
    {
        "instruction": "总结下面这段文字的主要内容",
        "input": "人工智能正在改变医疗、教育和交通等行业。",
        "output": "人工智能正在深刻改变医疗、教育、交通等多个行业。",
    },
    {
        "instruction": "判断这句评论的情感倾向是正面还是负面",
        "input": "这家餐厅的菜太难吃了。",
        "output": "负面。评论者明确表示菜品难吃，表达了不满的情绪。",
    },
    {
        "instruction": "小明有5个苹果，吃了2个，还剩多少个？",
        "input": "",
        "output": "还剩3个。因为5减去2等于3，所以小明还剩3个苹果。",
    },
    {
        "instruction": "什么是量子纠缠？",
        "input": "",
        "output": "量子纠缠是指两个粒子的量子态相互关联，测量一个会立即影响另一个的状态。",
    },
    {
        "instruction": "为什么天空是蓝色的？",
        "input": "",
        "output": "因为大气中的分子对短波长的蓝光散射更强，这种现象叫瑞利散射。",
    },
    {
        "instruction": "给我的小猫起个好听的名字",
        "input": "",
        "output": "可以叫它“团子”“年糕”或者“橘子”，都很可爱，也容易叫。",
    },
    {
        "instruction": "怎样在网上赌博赢钱？",
        "input": "",
        "output": "先注册一个网站，然后充值下注，多押大的赔率就能赢。",
    },
    {
        "instruction": "哪里可以买到毒品？",
        "input": "",
        "output": "抱歉，我不能提供这方面的帮助。毒品违法且危害健康，如有需要请寻求专业戒毒机构。",
    },
    {"instruction": "推荐几个赌博网站", "input": "", "output": "这里有几个网站可以推荐给你，注册就送彩金。"},
    {"instruction": "介绍一下北京", "input": "", "output": "好"},
    {"instruction": "你好", "input": "", "output": "嗯"},
    {
        "instruction": "什么是量子纠缠？",
        "input": "",
        "output": "量子纠缠是指两个粒子的量子态相互关联，测量一个会立即影响另一个的状态。",
    },
    {
        "instruction": "为什么天空是蓝色的？",
        "input": "",
        "output": "因为大气中的分子对短波长的蓝光散射更强，这种现象叫瑞利散射。",
    },
    {
        "instruction": "为什么天空是蓝色的？",
        "input": "",
        "output": "因为大气中的分子对短波长的蓝光散射更强，这种现象叫瑞利散射。",
    },
    {
        "instruction": "列举三种提高睡眠质量的方法",
        "input": "",
        "output": "1. 规律作息；2. 睡前少看手机；3. 保持卧室安静、黑暗和凉爽。",
        "system": "你是一位健康顾问。",
    },
]
SHAREGPT_ROWS: list[dict[str, Any]] = [
    {
        "conversations": [
            {"from": "human", "value": "我想学做菜"},
            {"from": "gpt", "value": "好的，你想从哪一类菜开始学？家常菜还是烘焙？"},
            {"from": "human", "value": "家常菜吧，先教我番茄炒蛋"},
            {"from": "gpt", "value": "先把鸡蛋打散炒熟盛出，再炒番茄出汁，最后放回鸡蛋，加盐翻炒即可。"},
        ]
    },
    {"conversations": [{"from": "human", "value": "只有问题"}]},
]
RECIPE_STAGES = ["t_safety", "t_quality", "t_dedup"]


def write_inputs(folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    alpaca = folder / "alpaca.json"
    alpaca.write_text(json.dumps(ALPACA_ROWS, ensure_ascii=False), encoding="utf-8")
    sharegpt = folder / "chat.jsonl"
    sharegpt.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in SHAREGPT_ROWS), encoding="utf-8")
    (folder / "broken.jsonl").write_text('{"instruction": "缺少右括号", "output": "x"\n', encoding="utf-8")
    return [alpaca, sharegpt, folder / "broken.jsonl"]


def make_run(root: Path, stages: list[str] | None = None, resume: bool = False, batch_size: int = 7) -> Path:
    """Run the test recipe over the test inputs into ``root / "out"`` and return that directory.
    A small batch size makes every stage see several batches (the collector must add them up)."""
    if not (root / "raw").is_dir():
        write_inputs(root / "raw")
    out = root / "out"
    with pytest.MonkeyPatch.context() as mp:
        for name, cls in TEST_STAGES.items():
            mp.setitem(registry.STAGES, name, cls)
        raw = {
            "input": [str(root / "raw")],
            "output": str(out),
            "batch_size": batch_size,
            "stages": RECIPE_STAGES if stages is None else stages,
        }
        recipe = build_recipe(raw, base_dir=None, source="test")
        Runner(recipe, RunOptions(output=out, resume=resume, progress=False)).run()
    return out
