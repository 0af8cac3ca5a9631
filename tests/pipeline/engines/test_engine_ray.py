"""``--engine ray`` gives the local engine's results: the same cleaned ids, the same rejected records with the
same stage, reason and detail (so the same kept twins), the same per-stage counts — on the samples and on the
20,277 Alpaca-zh records, with every registered stage, on a local Ray cluster of 2 CPUs. Also: a Ray worker
killed in the middle of a run is replaced and the run's output does not change.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.cli import main
from pipeline.engines.local import LocalEngine, resolve
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
    opts = RunOptions(output=out, progress=False, engine_name="ray" if engine else "local")
    return Runner(recipe, opts, engine=engine).run()


# How much work dedup_minhash's sequential union-find did (local) or how many distinct candidate pairs the
# band shuffle found (Ray): statistics of the method, not of the result, so they differ between engines.
WORK_COUNTERS = {"candidates_verified", "candidates_linked", "candidate_pairs", "verified_pairs"}


def result_counters(stage: str, counters: dict[str, int]) -> dict[str, int]:
    if stage != "dedup_minhash":
        return counters
    return {k: v for k, v in counters.items() if k not in WORK_COUNTERS}


def outcome(out: Path, report: dict[str, Any]) -> dict[str, Any]:
    """What must not depend on the engine: cleaned ids in order, every rejection, counts per stage."""
    cleaned = pq.read_table(out / "cleaned.parquet")
    rejected = pq.read_table(out / "rejected.parquet", columns=["id", "stage", "reason", "detail"])
    return {
        "cleaned": cleaned.column("id").to_pylist(),
        "rejected": sorted(zip(*(rejected.column(c).to_pylist() for c in rejected.column_names))),
        "stages": [
            (s["stage"], s["kept"], s["dropped"], s["reasons"], result_counters(s["stage"], s["counters"]))
            for s in report["stages"]
        ],
        "counts": report["counts"],
    }


def assert_same_as_local(tmp_path: Path, engine: Any, inputs: list[Path], stages: list[Any], batch: int) -> dict:
    local = outcome(tmp_path / "local", run(inputs, tmp_path / "local", stages, batch))
    ray = outcome(tmp_path / "ray", run(inputs, tmp_path / "ray", stages, batch, engine))
    assert ray["cleaned"] == local["cleaned"]
    assert ray["rejected"] == local["rejected"]
    assert ray["stages"] == local["stages"]
    assert ray["counts"] == local["counts"]
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
    reasons = {r[2] for r in local["rejected"]}
    assert {"empty_record", "duplicate_exact"} <= reasons  # the run exercised a dedup across batches
    parts = sorted((tmp_path / "ray" / ".zhcurate" / "01_normalize" / "kept").glob("part-*.parquet"))
    assert len(parts) > 2  # the checkpoint is the workers' parts
    report = json.loads((tmp_path / "ray" / "report.json").read_text(encoding="utf-8"))
    assert report["engine"] == "ray" and report["balance"]["ok"]


@needs_ray
@pytest.mark.slow
def test_alpaca_zh_same_as_local(tmp_path: Path, engine: Any, tiny_model_dir: Path) -> None:
    if not ALPACA_ZH.is_dir():
        pytest.skip("../shared/data/alpaca_zh is absent")
    local = assert_same_as_local(tmp_path, engine, [ALPACA_ZH], every_stage(tiny_model_dir), batch=2000)
    assert local["counts"]["input"] == 20277
    reasons = {r[2] for r in local["rejected"]}
    assert {"duplicate_exact", "duplicate_near"} <= reasons


def _alpaca_or_samples_batches(batch: int) -> list[pa.Table]:
    from pipeline.read.reader import Reader, expand_inputs

    source = ALPACA_ZH if ALPACA_ZH.is_dir() else SAMPLES
    return [chunk.records for chunk in Reader(expand_inputs([str(source)]), "auto", {}, batch)]


@needs_ray
@pytest.mark.slow
def test_minhash_verified_on_workers_equals_local_resolve(engine: Any) -> None:
    """The worker-side verification shuffle (used beyond ``driver_verify_pairs`` candidates) reaches the
    stage's own resolution: same dropped records, same kept twins, same similarities and counters."""
    from stages.dedup.minhash import MinHashDedupStage, MinHashParams

    stage = MinHashDedupStage(MinHashParams(threshold=0.5))
    batches = _alpaca_or_samples_batches(2000)[:4]  # up to 8,000 records: enough near duplicates, and quick
    local = resolve(LocalEngine(), stage, batches)
    saved = engine.driver_verify_pairs
    engine.driver_verify_pairs = 0
    try:
        ray = resolve(engine, stage, batches)
    finally:
        engine.driver_verify_pairs = saved
    assert len(local) > 0
    assert np.array_equal(ray.dropped_seq, local.dropped_seq)
    assert ray.kept_id.equals(local.kept_id)
    assert np.array_equal(ray.similarity, local.similarity)
    assert np.array_equal(ray.cluster_size, local.cluster_size)
    assert result_counters("dedup_minhash", ray.counters()) == result_counters("dedup_minhash", local.counters())
    assert ray.counters()["verified_pairs"] >= len(local)


@needs_ray
@pytest.mark.slow
def test_minhash_text_verification_on_ray_equals_local(engine: Any) -> None:
    """``verify: both``: the Ray engine gathers the candidate texts on its workers (a second map over the records)
    and reaches the local resolution — same dropped records, kept twins, similarities and counters."""
    from pipeline.engines.local import complete
    from stages.dedup.minhash import MinHashDedupStage, MinHashParams

    stage = MinHashDedupStage(MinHashParams(verify="both", threshold=0.8))
    batches = _alpaca_or_samples_batches(2000)[:3]
    local = complete(LocalEngine(), stage, resolve(LocalEngine(), stage, batches), lambda: batches)
    ray = resolve(engine, stage, batches)
    assert len(local) > 0 and local.counters()["candidates_linked_levenshtein"] > 0
    assert np.array_equal(ray.dropped_seq, local.dropped_seq)
    assert ray.kept_id.equals(local.kept_id)
    assert np.array_equal(ray.similarity, local.similarity)
    assert np.array_equal(ray.cluster_size, local.cluster_size)
    assert ray.counters() == local.counters()


@needs_ray
@pytest.mark.slow
def test_exact_dedup_hash_shuffle_equals_local_resolve(engine: Any) -> None:
    """dedup_exact on Ray (hashes grouped by a shuffle; only duplicate groups reach the driver) resolves exactly
    as the stage does locally: same dropped records, kept twins and cluster sizes."""
    from stages.dedup.exact import ExactDedupParams, ExactDedupStage

    stage = ExactDedupStage(ExactDedupParams())
    batches = _alpaca_or_samples_batches(2000)  # all of it: exact duplicates are spread over the files
    local = resolve(LocalEngine(), stage, batches)
    ray = resolve(engine, stage, batches)
    assert len(local) > 0
    assert np.array_equal(ray.dropped_seq, local.dropped_seq)
    assert ray.kept_id.equals(local.kept_id)
    assert np.array_equal(ray.cluster_size, local.cluster_size)
    assert ray.counters() == local.counters()


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


def _result(texts: list[str], first: int) -> StageResult:
    table = pa.table({"id": [f"t#{first + i}" for i in range(len(texts))], "instruction": texts})
    reasons = [None if "春" in t else "empty_output" for t in texts]
    details = [None if r is None else '{"field": "output"}' for r in reasons]
    return StageResult(table, reasons, details, {"changed.t2s": first})


def test_stage_result_round_trips_through_arrow() -> None:
    from pipeline.engines.ray_engine import decode_result, encode_result

    result = _result(["写一首关于春天的诗", "解释一下光合作用", "春眠不觉晓"], 3)
    back = decode_result(encode_result(result, 7))
    assert back.table.equals(result.table)
    assert back.reasons == [None, "empty_output", None]
    assert back.details == result.details and back.counters == {"changed.t2s": 3}


def test_reassemble_books_batches_in_input_order() -> None:
    """Blocks that come back out of order, or split, are put back into whole batches in input order."""
    from pipeline.engines.ray_engine import _reassemble, encode_result

    batches = [_result(["春天来了", "夏天很热"], 0), _result(["秋高气爽"], 2), _result(["冬天下雪", "春节快乐"], 3)]
    encoded = [encode_result(r, i) for i, r in enumerate(batches)]
    arrival = [encoded[2].slice(1), encoded[1], encoded[2].slice(0, 1), encoded[0]]
    out = list(_reassemble(arrival, [2, 1, 2], "process", {}))
    assert [r.table.column("id").to_pylist() for r in out] == [["t#0", "t#1"], ["t#2"], ["t#3", "t#4"]]
    assert [r.counters for r in out] == [{"changed.t2s": 0}, {"changed.t2s": 2}, {"changed.t2s": 3}]
