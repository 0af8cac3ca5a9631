"""``--engine ray`` and ``--workers 2`` give the local engine's results: the same cleaned records, the same
rejected records with the same stage, reason and detail (so the same kept twins), the same quarantine, the same
per-stage counts and counters — on the samples and on the 9,251 finished Alpaca-zh records, with every registered stage,
on a local Ray cluster of 2 CPUs. Also: a Ray worker killed in the middle of a run is replaced and the run's
output does not change.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any, ClassVar

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.cli import main
from pipeline.engines.local import LocalEngine
from pipeline.recipe import build_recipe
from pipeline.registry import STAGES
from pipeline.runner import Runner, RunOptions
from schemas.errors import ConfigError
from stages.base import StageResult

ROOT = Path(__file__).resolve().parents[3]
SAMPLES = ROOT / "samples" / "raw"
ALPACA_ZH = ROOT / ".." / "shared" / "data" / "alpaca_zh"

needs_ray = pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="ray is not installed")


@pytest.fixture(scope="module")
def engine() -> Any:
    """One private local Ray (2 CPUs) for the whole module, stopped at the end."""
    from pipeline.engines.ray_engine import RayEngine

    eng = RayEngine(num_cpus=2)
    yield eng
    eng.close()


def every_stage(model_dir: Path) -> list[dict[str, Any]]:
    """Every registered stage with its defaults; the semantic stage on the tiny test model."""
    stages: list[dict[str, Any]] = []
    for name in STAGES:
        params = {"model": str(model_dir), "threshold": 0.9, "device": "cpu"} if name == "dedup_semantic" else {}
        stages.append({name: params})
    return stages


def run(inputs: list[Path], out: Path, stages: list[Any], batch_size: int, engine: Any = None) -> dict[str, Any]:
    raw = {"input": [str(p) for p in inputs], "output": str(out), "stages": stages, "batch_size": batch_size}
    recipe = build_recipe(raw, base_dir=None, source="t")
    name = "local" if engine is None or isinstance(engine, LocalEngine) else "ray"
    return Runner(recipe, RunOptions(output=out, progress=False, engine_name=name), engine=engine).run()


def outcome(out: Path, report: dict[str, Any]) -> dict[str, Any]:
    """What must not depend on the engine: cleaned records in order, every rejection (with its detail), the
    quarantine, counts and counters per stage."""
    return {
        "cleaned": pq.read_table(out / "cleaned.parquet").to_pylist(),
        "rejected": pq.read_table(out / "rejected.parquet").to_pylist(),
        "quarantine": (out / "quarantine.jsonl").read_text(encoding="utf-8"),
        "stages": [(s["stage"], s["kept"], s["dropped"], s["reasons"], s["counters"]) for s in report["stages"]],
        "counts": report["counts"],
    }


def assert_same_as_local(tmp_path: Path, engine: Any, inputs: list[Path], stages: list[Any], batch: int) -> dict:
    local = outcome(tmp_path / "local", run(inputs, tmp_path / "local", stages, batch))
    with LocalEngine(2) as pool:
        two = outcome(tmp_path / "w2", run(inputs, tmp_path / "w2", stages, batch, pool))
    ray = outcome(tmp_path / "ray", run(inputs, tmp_path / "ray", stages, batch, engine))
    for other in (two, ray):
        for key in ("cleaned", "rejected", "quarantine", "stages", "counts"):
            assert other[key] == local[key], key
    return local


@needs_ray
@pytest.mark.slow
def test_samples_same_as_local(tmp_path: Path, engine: Any, tiny_model_dir: Path) -> None:
    saved = engine.part_rows
    engine.part_rows = 16  # many parts per step, written by both workers, merged back in input order
    try:
        local = assert_same_as_local(tmp_path, engine, [SAMPLES], every_stage(tiny_model_dir), batch=8)
    finally:
        engine.part_rows = saved
    reasons = {r["reason"] for r in local["rejected"]}
    assert {"empty_record", "duplicate_exact"} <= reasons  # the run exercised a dedup across batches
    assert local["quarantine"]
    parts = sorted((tmp_path / "ray" / ".zhcurate" / "05_quality" / "kept").glob("part-*.parquet"))
    assert len(parts) > 2  # the checkpoint is the workers' parts
    report = json.loads((tmp_path / "ray" / "report.json").read_text(encoding="utf-8"))
    assert report["engine"] == "ray" and report["balance"]["ok"]


@needs_ray
@pytest.mark.slow
def test_alpaca_zh_same_as_local(tmp_path: Path, engine: Any, tiny_model_dir: Path) -> None:
    if not ALPACA_ZH.is_dir():
        pytest.skip("../shared/data/alpaca_zh is absent")
    done = [ALPACA_ZH / "*已完成.json"]  # the three files the translators finished
    local = assert_same_as_local(tmp_path, engine, done, every_stage(tiny_model_dir), batch=2000)
    assert local["counts"]["input"] == 9251
    reasons = {r["reason"] for r in local["rejected"]}
    assert {"duplicate_exact", "duplicate_near"} <= reasons


def _dies_once(flag: Path) -> type:
    """The normalize stage, except that the Ray worker running it kills itself (SIGKILL) on its first batch
    after the first one, once (the flag file, holding the dead worker's pid, remembers)."""
    base = STAGES["normalize"]

    class DiesOnce(base):  # type: ignore[misc,valid-type]
        flag_path: ClassVar[str] = str(flag)

        def process(self, batch: pa.Table) -> StageResult:
            flag = Path(self.flag_path)
            if batch.column("_seq")[0].as_py() > 0 and not flag.exists():
                flag.write_text(str(os.getpid()))
                os.kill(os.getpid(), signal.SIGKILL)
            result: StageResult = super().process(batch)
            return result

    return DiesOnce


@needs_ray
@pytest.mark.slow
def test_worker_killed_mid_run_same_output(tmp_path: Path, engine: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    stages: list[Any] = [{"normalize": {}}]
    local = outcome(tmp_path / "local", run([SAMPLES], tmp_path / "local", stages, 8))
    flag = tmp_path / "killed.pid"
    monkeypatch.setitem(STAGES, "normalize", _dies_once(flag))
    ray = outcome(tmp_path / "ray", run([SAMPLES], tmp_path / "ray", stages, 8, engine))
    pid = int(flag.read_text())
    with pytest.raises(ProcessLookupError):  # the worker really died; Ray replaced it and retried the batch
        os.kill(pid, 0)
    assert ray == local


@needs_ray
@pytest.mark.slow
def test_cli_engine_ray(tmp_path: Path, engine: Any) -> None:
    out = tmp_path / "out"
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(f"input: [{SAMPLES}]\noutput: {out}\nstages:\n  - dedup_exact: {{}}\n", encoding="utf-8")
    code = main(["run", str(recipe), "--engine", "ray", "--quiet"])
    assert code == 0
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert report["engine"] == "ray" and report["balance"]["ok"]
    assert [s["stage"] for s in report["stages"]] == ["read", "dedup_exact"]


def test_address_without_ray_engine_is_bad_usage(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["run", "--input", str(SAMPLES), "--output", str(tmp_path), "--address", "auto"])
    assert code == 2
    assert "--engine ray" in capsys.readouterr().err


def test_missing_ray_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    from pipeline.engines.ray_engine import import_ray

    monkeypatch.setitem(sys.modules, "ray", None)  # makes `import ray` fail as if it were not installed
    with pytest.raises(ConfigError, match=r"zhcurate\[ray\]"):
        import_ray()
