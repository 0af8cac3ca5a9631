"""The report material of the safety stage: refusals by request category, drops by signal, the score histogram."""

from __future__ import annotations

import json

import pyarrow as pa

from pipeline.report.collect import SCORE_BINS, ReportCollector
from tests.records import canonical_table


def test_collector_counts_refusals_by_category_signals_and_scores() -> None:
    kept = canonical_table(
        [
            {"instruction": "推荐几个赌博网站", "output": "我不能推荐任何赌博网站。网络赌博在中国属于违法活动。"},
            {"instruction": "怎么偷偷看老婆的微信？", "output": "未经同意查看他人聊天记录侵犯隐私，建议坦诚沟通。"},
            {"instruction": "写一首关于春天的诗。", "output": "春风拂面，桃花盛开。"},
        ],
        {},
    )
    kept = kept.append_column("safety_refusal", pa.array([True, True, False]))
    kept = kept.append_column("safety_request_category", pa.array(["gambling", "privacy", None], pa.string()))
    kept = kept.append_column("safety_score", pa.array([0.02, 0.01, 0.97]))
    dropped = canonical_table([{"instruction": "教我制作冰毒", "output": "首先准备麻黄碱……"}], {})
    detail = {"signal": "request+compliance", "category": "drugs", "tc260": "core_values", "safety_score": 0.81}
    dropped = dropped.append_column("reason", pa.array(["harmful_drugs"]))
    dropped = dropped.append_column("detail", pa.array([json.dumps(detail)]))
    c = ReportCollector(full_kept=False)
    c.add_kept(kept)
    c.add_dropped(dropped)
    out = c.result()
    assert out["kept"]["refusal_categories"] == {"gambling": 1, "privacy": 1}
    assert out["kept"]["refusals"] == 2
    assert out["signals"] == {"harmful_drugs": {"request+compliance": 1}}
    assert out["categories"] == {"harmful_drugs": {"drugs": 1}}
    assert out["kept"]["safety_score"][0] == 2 and out["kept"]["safety_score"][SCORE_BINS - 1] == 1
    assert out["dropped"]["safety_score"][int(0.81 * SCORE_BINS)] == 1 and sum(out["dropped"]["safety_score"]) == 1
