"""``zhcurate report``: the funnel, the top reasons and the balance in the terminal; ``--html`` re-renders."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.cli import main
from tests.pipeline.report_fixtures import make_run


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_run(tmp_path_factory.mktemp("cli_report"))


def test_summary_shows_funnel_reasons_and_balance(run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", str(run_dir)]) == 0
    out = capsys.readouterr().out
    report = json.loads((run_dir / "report.json").read_text(encoding="utf-8"))
    for step in report["stages"]:
        assert step["stage"] in out
    assert "t_dedup/duplicate" in out and "14.3%" in out  # 3 of 21 records
    assert "balance ok: input 21 = cleaned 12 + rejected 8 + quarantined 1" in out
    lines = out.splitlines()
    order = [
        next(i for i, line in enumerate(lines) if key in line) for key in ("t_dedup/duplicate", "t_safety/harmful")
    ]
    assert order[0] < order[1]  # reasons sorted by count, most first


def test_top_limits_the_reasons(run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", str(run_dir), "--top", "1"]) == 0
    out = capsys.readouterr().out
    assert "t_dedup/duplicate" in out and "t_quality/too_short" not in out


def test_html_is_rendered_again(run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    page = run_dir / "report.html"
    page.unlink()
    assert main(["report", str(run_dir), "--html"]) == 0
    assert '<table id="funnel">' in page.read_text(encoding="utf-8")


def test_not_a_run_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", str(tmp_path)]) == 2
    assert "report.json not found" in capsys.readouterr().err
