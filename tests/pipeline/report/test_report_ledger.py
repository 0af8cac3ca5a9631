"""The charts count every drop they claim to show (from the ledger's reason counts), reasons per input file, and a
pointer from each reason to the command that lists all of its records; ``zhcurate inspect --quarantine``."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.cli import main
from pipeline.report.charts import safety_charts
from pipeline.report.collect import ReportCollector
from pipeline.report.report import safety_drops
from stages.base import detail_json
from tests.pipeline.report_fixtures import make_run


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_run(tmp_path_factory.mktemp("ledger"))


@pytest.fixture(scope="module")
def report(run_dir: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((run_dir / "report.json").read_text(encoding="utf-8"))
    return data


def _dropped(rows: list[tuple[str, str, str]]) -> pa.Table:
    return pa.Table.from_pylist(
        [
            {
                "id": f"a.json#{i}",
                "source": src,
                "instruction": "问",
                "input": "",
                "output": "答",
                "system": "",
                "history": [],
                "reason": r,
                "detail": d,
            }
            for i, (src, r, d) in enumerate(rows)
        ]
    )


def test_classifier_drops_are_in_the_safety_chart() -> None:
    """The chart that showed "weapons 1" and left out the classifier's drops: now one bar per reason, from the
    ledger's counts, split by the detector the details name."""
    lexicon = detail_json(detector="lexicon", category="weapons", terms=["枪支"], score=1.0, threshold=1.0)
    classifier = detail_json(detector="classifier", field="output", score=0.93, threshold=0.8)
    rows = [("a.json", "harmful_weapons", lexicon)] + [("b.json", "harmful_hate", classifier)] * 57
    collector = ReportCollector()
    collector.add_dropped(_dropped(rows))
    collected = collector.result()
    assert collected["detectors"] == {"harmful_weapons": {"lexicon": 1}, "harmful_hate": {"classifier": 57}}
    assert collected["by_source"] == {"a.json": {"harmful_weapons": 1}, "b.json": {"harmful_hate": 57}}
    step = {"name": "safety", "reasons": {"harmful_hate": 57, "harmful_weapons": 1}, "collect": collected}
    drops = safety_drops([{"name": "read", "reasons": {"empty_record": 3}}, step])
    assert drops == {
        "safety/harmful_hate": {"n": 57, "detectors": {"classifier": 57}},
        "safety/harmful_weapons": {"n": 1, "detectors": {"lexicon": 1}},
    }
    (chart,) = safety_charts({"safety_drops": drops, "safety": {"categories": {}}})
    shown = [float(v) for v in re.findall(r"<title>[^<]*: ([\d.]+)</title>", chart)]
    assert sum(shown) == 58 and "(all 58)" in chart and "classifier" in chart and "hate" in chart


def test_reasons_per_file_and_inspect_pointers(run_dir: Path, report: dict[str, Any]) -> None:
    rejected = pq.read_table(run_dir / "rejected.parquet")
    cleaned = pq.read_table(run_dir / "cleaned.parquet")
    ledger: dict[str, Counter[str]] = {}
    for src, stage, reason in zip(*(rejected.column(c).to_pylist() for c in ("source", "stage", "reason"))):
        ledger.setdefault(src, Counter())[f"{stage}/{reason}"] += 1
    kept = Counter(cleaned.column("source").to_pylist())
    by_file = {f["file"]: f for f in report["by_file"]}
    assert set(by_file) == {f["path"] for f in report["inputs"]}
    for path, f in by_file.items():
        assert f["reasons"] == dict(ledger.get(path, {}))
        assert f["rejected"] == sum(ledger.get(path, Counter()).values()) and f["cleaned"] == kept.get(path, 0)
        assert f["records"] == f["cleaned"] + f["rejected"] + f["quarantined"]
    for key, n in report["reasons"].items():
        assert report["inspect"][key] == f"zhcurate inspect {run_dir} --reason {key} --limit {n}"
    page = (run_dir / "report.html").read_text(encoding="utf-8")
    assert f"zhcurate inspect {run_dir} --reason t_dedup/duplicate --limit 3" in page
    assert 'id="by-file"' in page and f"zhcurate inspect {run_dir} --quarantine" in page


def test_the_inspect_pointer_lists_every_record(
    run_dir: Path, report: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    command = report["inspect"]["t_dedup/duplicate"].split()[2:]
    assert main(["inspect", *command, "--json"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == report["reasons"]["t_dedup/duplicate"] == 3


def test_inspect_quarantine(run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    entries = [json.loads(line) for line in (run_dir / "quarantine.jsonl").read_text(encoding="utf-8").splitlines()]
    assert main(["inspect", str(run_dir), "--quarantine", "--json"]) == 0
    assert [json.loads(line) for line in capsys.readouterr().out.splitlines()] == entries
    assert main(["inspect", str(run_dir), "--quarantine"]) == 0
    table = capsys.readouterr().out
    assert "隔离 quarantine" in table and Path(entries[0]["source"]).name in table
    assert main(["inspect", str(run_dir), "--quarantine", "--source", Path(entries[0]["source"]).name, "--json"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == len(entries)
    assert main(["inspect", str(run_dir), "--quarantine", "--source", "nope.json"]) == 2
    assert "no quarantine entry from 'nope.json'" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # --reason or --quarantine, not both
        main(["inspect", str(run_dir), "--quarantine", "--reason", "duplicate"])
