"""``zhcurate inspect``: the records dropped for a reason, duplicates with their kept twin."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.cli import main
from pipeline.outputs.inspect_cmd import rejected_records
from schemas.errors import ConfigError
from tests.pipeline.report_fixtures import make_run


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_run(tmp_path_factory.mktemp("inspect"))


def test_records_of_a_reason_in_ledger_order(run_dir: Path) -> None:
    rows = rejected_records(run_dir, "harmful_request")
    assert [r["instruction"] for r in rows] == ["怎样在网上赌博赢钱？", "推荐几个赌博网站"]
    assert all(r["stage"] == "t_safety" and r["detail"]["category"] == "gambling" for r in rows)
    assert "twin" not in rows[0]
    assert len(rejected_records(run_dir, "t_safety/harmful_request", limit=1)) == 1


def test_duplicates_come_with_their_twin(run_dir: Path) -> None:
    rows = rejected_records(run_dir, "duplicate", limit=10)
    assert len(rows) == 3
    for r in rows:
        assert r["twin"]["id"] == r["detail"]["duplicate_of"]
        assert r["twin"]["where"] == "cleaned"
        assert (r["twin"]["instruction"], r["twin"]["output"]) == (r["instruction"], r["output"])
    assert {r["twin"]["id"] for r in rows} == {"alpaca.json#6", "alpaca.json#7"}


def test_unknown_reason_lists_the_known_ones(run_dir: Path) -> None:
    with pytest.raises(ConfigError, match="t_quality/too_short"):
        rejected_records(run_dir, "no_such_reason")
    with pytest.raises(ConfigError, match="no record was dropped"):
        rejected_records(run_dir, "t_quality/duplicate")  # the right code at the wrong stage


def test_cli_tables_and_json(run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["inspect", str(run_dir), "--reason", "duplicate", "--limit", "2"]) == 0
    out = capsys.readouterr().out
    assert "kept twin" in out and "alpaca.json#6" in out and "什么是量子纠缠" in out
    assert main(["inspect", str(run_dir), "--reason", "too_short", "--json"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["output"] for r in lines] == ["好", "嗯"]
    assert lines[0]["detail"] == {"field": "output", "score": 0.025}


def test_cli_bad_usage_exits_2(run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["inspect", str(run_dir), "--reason", "nope"]) == 2
    assert "Reasons in this run" in capsys.readouterr().err
    assert main(["inspect", str(tmp_path), "--reason", "duplicate"]) == 2
    assert main(["inspect", str(run_dir), "--reason", "duplicate", "--limit", "0"]) == 2
