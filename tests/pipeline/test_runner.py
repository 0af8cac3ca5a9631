"""End to end: the runner keeps the books, writes the five outputs and checks the balance."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from pipeline.cli import main
from pipeline.recipe import build_recipe
from pipeline.runner import OUTPUT_FILES, Runner, RunOptions
from schemas.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "samples" / "raw"
ALPACA_ZH = ROOT / ".." / "shared" / "data" / "alpaca_zh"


def run(inputs: list[str], out: Path, stages: list | None = None, **opts) -> dict:
    recipe = build_recipe({"input": inputs, "output": str(out), "stages": stages or []}, base_dir=None, source="t")
    return Runner(recipe, RunOptions(output=out, progress=False, **opts)).run()


def test_samples_every_record_accounted_for(tmp_path: Path) -> None:
    report = run([str(SAMPLES)], tmp_path / "out")
    for name in OUTPUT_FILES:
        assert (tmp_path / "out" / name).is_file(), name
    c = report["counts"]
    cleaned = pq.read_table(tmp_path / "out" / "cleaned.parquet")
    rejected = pq.read_table(tmp_path / "out" / "rejected.parquet")
    quarantine = (tmp_path / "out" / "quarantine.jsonl").read_text(encoding="utf-8").splitlines()
    assert c["cleaned"] == cleaned.num_rows and c["rejected"] == rejected.num_rows
    assert c["quarantined"] == len(quarantine)
    assert c["input"] == c["cleaned"] + c["rejected"] + c["quarantined"] and report["balance"]["ok"]
    ids = (
        cleaned.column("id").to_pylist() + rejected.column("id").to_pylist() + [json.loads(q)["id"] for q in quarantine]
    )
    assert len(ids) == len(set(ids)) == c["input"]
    assert "_seq" not in cleaned.column_names
    assert set(rejected.column("reason").to_pylist()) == {
        "empty_record",
        "conversation_ends_on_user",
        "conversation_not_alternating",
    }
    encodings = {Path(f["path"]).name: f["encoding"] for f in report["inputs"]}
    assert encodings["gbk.jsonl"] == "gb18030" and encodings["openai.jsonl"] == "utf-8-sig"
    assert len(report["recipe_hash"]) == 16 and report["versions"]["pyarrow"]


def test_resume_reuses_finished_steps(tmp_path: Path) -> None:
    first = run([str(SAMPLES)], tmp_path / "out")
    again = run([str(SAMPLES)], tmp_path / "out", resume=True)
    assert again["reused_stages"] == ["read"]
    assert again["counts"] == first["counts"]


def test_previous_outputs_are_removed_before_a_run(tmp_path: Path) -> None:
    out = tmp_path / "out"
    first = run([str(SAMPLES)], out)
    again = run([str(SAMPLES)], out)  # the same run again: allowed
    assert again["counts"] == first["counts"] and again["counts"]["input"] == 43
    bad = tmp_path / "bad.jsonl"
    bad.write_text("{not json\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"holds the outputs of another recipe or other inputs.*--force"):
        run([str(bad)], out)  # another run's outputs are not replaced without --force
    assert json.loads((out / "report.json").read_text(encoding="utf-8"))["counts"]["input"] == 43
    report = run([str(bad)], out, force=True)
    assert report["counts"] == {"input": 1, "cleaned": 0, "rejected": 0, "quarantined": 1}
    assert run([str(SAMPLES)], out, stages=["normalize"], resume=True)["counts"]["input"] == 43  # --resume too


def test_read_only_run_reports_the_cleaned_side_as_read_saw_it(tmp_path: Path) -> None:
    # No stage after read: the "after" side of the report is read's own material, and it must be what the
    # cleaned records give when collected afresh.
    from pipeline.report.collect import ReportCollector
    from pipeline.report.tasktypes import count_task_types

    report = run([str(SAMPLES)], tmp_path / "out")
    cleaned = pq.read_table(tmp_path / "out" / "cleaned.parquet")
    types = report["diversity"]["task_types"]
    assert {t: n for t, n in types["after"].items() if n} == count_task_types(cleaned) != {}
    assert types["after"] == types["before"]
    fresh = ReportCollector()
    fresh.add_kept(cleaned)
    kept = fresh.result()["kept"]
    after = report["distributions"]["instruction_length"]["after"]
    assert after == kept["instruction_len"] and sum(after) == report["counts"]["cleaned"] > 0


def test_cli_force_and_a_folder_of_unknown_outputs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "cleaned.parquet").write_bytes(b"not ours")
    recipe = tmp_path / "read_only.yaml"
    recipe.write_text("stages: []\n", encoding="utf-8")
    args = ["run", str(recipe), "--input", str(SAMPLES), "--output", str(out), "--quiet"]
    assert main([*args, "--fields", "output=answer"]) == 2
    assert "a run zhcurate cannot identify" in capsys.readouterr().err
    assert main([*args, "--force", "--fields", "instruction=instruction,output=output"]) == 0
    (out / "notes.txt").write_text("the user's own file stays", encoding="utf-8")
    assert main([*args, "--force"]) == 0
    assert (out / "notes.txt").is_file()


def test_cli_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    recipe = tmp_path / "r.yaml"
    recipe.write_text("stages: [no_such_stage]\n", encoding="utf-8")
    assert main(["run", str(recipe), "--input", str(SAMPLES), "--output", str(tmp_path / "o")]) == 2
    assert "unknown stage 'no_such_stage'" in capsys.readouterr().err
    assert main(["run", "--input", str(tmp_path / "missing.json"), "--output", str(tmp_path / "o")]) == 2
    recipe.write_text("stages: []\n", encoding="utf-8")
    assert main(["run", str(recipe), "--input", str(SAMPLES), "--output", str(tmp_path / "o"), "--quiet"]) == 0


def test_unwritable_output_fails_before_work(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code = main(["run", "--input", str(SAMPLES), "--output", str(blocker / "out"), "--quiet"])
    assert code == 1 and "cannot write to the output directory" in capsys.readouterr().err


@pytest.mark.skipif(not ALPACA_ZH.is_dir(), reason="../shared/data/alpaca_zh is absent")
def test_alpaca_zh_all_20277_records_accounted(tmp_path: Path) -> None:
    report = run([str(ALPACA_ZH)], tmp_path / "out")
    assert report["counts"]["input"] == 20277
    assert report["counts"]["quarantined"] == 0
    assert report["balance"]["ok"]


def test_samples_dir_copy_is_stable(tmp_path: Path) -> None:
    """Ids depend on file names and rows only, not on where the data lives."""
    shutil.copytree(SAMPLES, tmp_path / "raw")
    a = run([str(SAMPLES)], tmp_path / "a")
    b = run([str(tmp_path / "raw")], tmp_path / "b")
    ids_a = pq.read_table(tmp_path / "a" / "cleaned.parquet").column("id").to_pylist()
    ids_b = pq.read_table(tmp_path / "b" / "cleaned.parquet").column("id").to_pylist()
    assert ids_a == ids_b and a["counts"] == b["counts"]


def test_semantic_threshold_change_reuses_embeddings(tmp_path: Path) -> None:
    """A re-run with another dedup_semantic threshold re-resolves but does not re-embed."""
    out = tmp_path / "out"
    first = run([str(SAMPLES)], out, ["normalize", "dedup_semantic"])
    assert not first["reused_stages"]
    again = run([str(SAMPLES)], out, ["normalize", {"dedup_semantic": {"threshold": 0.99}}], resume=True)
    assert again["reused_stages"] == ["read", "normalize"]
    stats = json.loads(next((out / ".zhcurate").glob("02_dedup_semantic.stats.json")).read_text())
    assert stats["fingerprints_reused"] is True and stats["params"]["threshold"] == 0.99
    assert again["counts"]["input"] == first["counts"]["input"]
