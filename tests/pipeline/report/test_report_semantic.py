"""The report's dedup_semantic section: a histogram of the searched pairs' similarity around the threshold and
the merged pairs nearest to it, each shown with its kept twin."""

from __future__ import annotations

import json
from pathlib import Path

from pipeline.recipe import build_recipe
from pipeline.report.html import render_html
from pipeline.runner import Runner, RunOptions

POEM = "春风吹绿了江南岸，桃花笑映小河湾。燕子归来寻旧垒，一犁春雨满田间。"
ROWS = [
    {"instruction": "写一首关于春天的诗", "input": "", "output": POEM},
    {"instruction": "创作一首描写春天的诗歌", "input": "", "output": POEM},
    {"instruction": "写一首关于春天的诗吧", "input": "", "output": POEM + "春"},
    {"instruction": "介绍一下长城的历史", "input": "", "output": "长城始建于春秋战国时期，秦朝把各国长城连接起来。"},
    {"instruction": "解释一下光合作用的原理", "input": "", "output": "光合作用是植物利用光能合成有机物的过程。"},
]


def test_report_shows_similarity_histogram_and_near_threshold_pairs(tiny_model_dir: Path, tmp_path: Path) -> None:
    data = tmp_path / "in.jsonl"
    data.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in ROWS), encoding="utf-8")
    out = tmp_path / "out"
    stage = {"dedup_semantic": {"model": str(tiny_model_dir), "similarity": "cosine", "threshold": 0.78}}
    recipe = build_recipe({"input": [str(data)], "output": str(out), "stages": [stage]}, base_dir=None, source="t")
    report = Runner(recipe, RunOptions(output=out, progress=False)).run()
    step = next(s for s in report["stages"] if s["stage"] == "dedup_semantic")
    hist = {k: v for k, v in step["counters"].items() if k.startswith("similarity_hist.")}
    assert step["counters"]["threshold_milli"] == 780
    assert sum(hist.values()) >= step["counters"]["verified_pairs"] >= 2  # near misses are counted too
    near = report["near_threshold"]["dedup_semantic/duplicate_semantic"]
    similarities = [ex["detail"]["similarity"] for ex in near]
    assert similarities == sorted(similarities) and all(s >= 0.78 for s in similarities)
    assert all(ex["twin"]["instruction"] for ex in near)  # the kept twin is looked up for the side-by-side view
    html = render_html(report)
    assert "dedup_semantic: 候选对相似度 pair similarity (threshold 0.78)" in html
    assert "merges nearest the threshold" in html
