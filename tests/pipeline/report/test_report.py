"""report.json agrees with the Parquet files it summarises; report.html is self-contained and loads in Chromium."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.read.reader import Reader, expand_inputs
from pipeline.report.collect import SCORE_BINS, length_hist, score_hist
from pipeline.report.report import render_html
from pipeline.report.tasktypes import TASK_TYPES, classify
from tests.pipeline.report_fixtures import make_run


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_run(tmp_path_factory.mktemp("report"))


@pytest.fixture(scope="module")
def report(run_dir: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((run_dir / "report.json").read_text(encoding="utf-8"))
    return data


def _table(path: Path) -> pa.Table:
    return pq.read_table(path)


def test_counts_and_reasons_match_the_ledger(run_dir: Path, report: dict[str, Any]) -> None:
    cleaned, rejected = _table(run_dir / "cleaned.parquet"), _table(run_dir / "rejected.parquet")
    quarantined = len((run_dir / "quarantine.jsonl").read_text(encoding="utf-8").splitlines())
    c = report["counts"]
    assert (c["cleaned"], c["rejected"], c["quarantined"]) == (cleaned.num_rows, rejected.num_rows, quarantined)
    assert c["input"] == cleaned.num_rows + rejected.num_rows + quarantined == 21
    assert report["balance"]["ok"] is True
    ledger = Counter(
        f"{s}/{r}" for s, r in zip(rejected.column("stage").to_pylist(), rejected.column("reason").to_pylist())
    )
    assert report["reasons"] == dict(ledger)
    assert report["reasons"] == {
        "read/conversation_ends_on_user": 1,
        "t_safety/harmful_request": 2,
        "t_quality/too_short": 2,
        "t_dedup/duplicate": 3,
    }
    for step in report["stages"]:
        assert step["input"] == step["kept"] + step["dropped"] + step["quarantined"]
        assert step["seconds"] >= 0 and (step["records_per_s"] is None or step["records_per_s"] > 0)
    assert report["stages"][-1]["kept"] == cleaned.num_rows


def test_distributions_match_the_parquet_files(run_dir: Path, report: dict[str, Any]) -> None:
    cleaned = _table(run_dir / "cleaned.parquet")
    # what read kept, the input of the first stage (read is fused with the record stages: no checkpoint of it)
    before = pa.concat_tables(c.records for c in Reader(expand_inputs([str(run_dir.parent / "raw")]), "auto", {}, 7))
    d = report["distributions"]
    assert d["instruction_length"]["after"] == length_hist(cleaned.column("instruction"))
    assert d["output_length"]["after"] == length_hist(cleaned.column("output"))
    assert d["instruction_length"]["before"] == length_hist(before.column("instruction"))
    assert sum(d["output_length"]["before"]) == before.num_rows == 19
    assert d["quality_score"]["kept"] == score_hist(cleaned.column("quality_score"))
    assert len(d["quality_score"]["kept"]) == SCORE_BINS
    profiles = Counter(cleaned.column("language_profile").to_pylist())
    assert d["language_profile"]["kept"] == dict(profiles) == {"zh": 11, "zh+code": 1}
    assert d["safety"]["refusals_kept"] == sum(cleaned.column("safety_refusal").to_pylist()) == 1
    assert d["safety"]["categories"] == {"t_safety/harmful_request": {"gambling": 2}}
    # 什么是量子纠缠 twice (a cluster of 2), 为什么天空是蓝色的 three times (a cluster of 3)
    assert d["duplicate_clusters"] == {"t_dedup": {"2": 1, "3": 1}}


def test_task_types_match_the_rules_over_the_cleaned_records(run_dir: Path, report: dict[str, Any]) -> None:
    rows = _table(run_dir / "cleaned.parquet").to_pylist()
    expected = Counter(classify(r["instruction"], r["input"], len(r["history"])) for r in rows)
    after = report["diversity"]["task_types"]["after"]
    assert after == {t: expected.get(t, 0) for t in TASK_TYPES}
    assert after["多轮对话"] == 1 and after["代码"] == 1 and after["创作/写作"] == 2
    assert sum(report["diversity"]["task_types"]["before"].values()) == 19
    vo = report["diversity"]["verb_object"]["after"]
    assert vo["sample"] == len(rows)
    pairs = {(v, o): n for v, o, n in vo["pairs"]}
    assert pairs[("写", "七言绝句")] == 1  # 写一首关于春天的七言绝句


def test_examples_come_from_the_ledger_with_duplicate_twins(run_dir: Path, report: dict[str, Any]) -> None:
    rejected = _table(run_dir / "rejected.parquet").to_pylist()
    by_id = {r["id"]: r for r in rejected}
    cleaned = {r["id"]: r for r in _table(run_dir / "cleaned.parquet").to_pylist()}
    assert set(report["examples"]) == set(report["reasons"])
    for key, rows in report["examples"].items():
        assert 1 <= len(rows) <= 5
        for ex in rows:
            assert f"{by_id[ex['id']]['stage']}/{by_id[ex['id']]['reason']}" == key
            assert ex["detail"] == json.loads(by_id[ex["id"]]["detail"])
    harmful = report["examples"]["t_safety/harmful_request"][0]
    assert harmful["detail"]["term"] == "赌博" and "赌博" in harmful["instruction"]
    for ex in report["examples"]["t_dedup/duplicate"]:
        twin = ex["twin"]
        assert twin["id"] == ex["detail"]["duplicate_of"] and twin["where"] == "cleaned"
        assert twin["instruction"] == cleaned[twin["id"]]["instruction"] == ex["instruction"]
    assert report["quarantine_examples"][0]["source"].endswith("broken.jsonl")


def test_resume_keeps_the_collected_sections(tmp_path: Path) -> None:
    first = json.loads((make_run(tmp_path) / "report.json").read_text(encoding="utf-8"))
    again = json.loads((make_run(tmp_path, resume=True) / "report.json").read_text(encoding="utf-8"))
    assert again["reused_stages"] == ["read", "t_safety", "t_quality", "t_dedup"]
    for key in ("distributions", "diversity", "examples", "reasons", "counts"):
        assert again[key] == first[key], key


def test_html_is_self_contained_and_in_chinese(run_dir: Path, report: dict[str, Any]) -> None:
    page = (run_dir / "report.html").read_text(encoding="utf-8")
    assert page == render_html(report)
    assert '<table id="funnel">' in page and "漏斗" in page and "质量报告" in page
    assert page.count("<svg") >= 6  # funnel, 2 lengths, quality, language, safety, clusters, task types
    assert not re.search(r"(src|href)\s*=\s*[\"']?(https?:)?//", page), "the page must not load anything"
    assert "<script" not in page
    assert "<mark>赌博</mark>" in page  # the matched term is highlighted
    assert "保留的孪生" in page and "alpaca.json#6" in page  # a duplicate next to its kept twin
    assert "input 21 = 保留 cleaned 12" in page.replace("输入 ", "")


def _chromium() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        pytest.skip("headless Chromium is not installed (apt-get install chromium); report.html not browser-tested")
    return exe


CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def test_html_loads_in_headless_chromium_and_shows_the_funnel(run_dir: Path, tmp_path: Path) -> None:
    exe = _chromium()
    url = (run_dir / "report.html").resolve().as_uri()
    profile = f"--user-data-dir={tmp_path / 'profile'}"
    dom = subprocess.run(
        [exe, *CHROMIUM_FLAGS, profile, "--dump-dom", url], capture_output=True, text=True, timeout=120, check=False
    )
    assert dom.returncode == 0, dom.stderr[-2000:]
    html = dom.stdout
    funnel = re.search(r'<table id="funnel">(.*?)</table>', html, re.S)
    assert funnel is not None, "the funnel table is not in the rendered page"
    steps = re.findall(r"<tr><td>([a-z_]+)</td>", funnel.group(1))
    assert steps == ["read", "t_safety", "t_quality", "t_dedup"]
    shot = tmp_path / "report.png"
    res = subprocess.run(
        [exe, *CHROMIUM_FLAGS, profile, f"--screenshot={shot}", "--window-size=1280,1600", url],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000
