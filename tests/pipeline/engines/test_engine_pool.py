"""The local engine's worker pool: one pool for the whole run, each stage set up once per worker, record stages
fused into one pass, a global stage's ``decide`` in the driver — with the same outputs as one process."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline import registry
from pipeline.recipe import build_recipe
from pipeline.runner import Runner, RunOptions
from schemas.errors import StageError
from stages.base import RecordStage, StageParams, StageResult, detail_json

ROOT = Path(__file__).resolve().parents[3]
SAMPLES = ROOT / "samples" / "raw"


class PidParams(StageParams):
    drop_word: str = "翻译"


class PidStage(RecordStage):
    """Counts, per worker process, its setups and batches; drops instructions with ``drop_word``."""

    name = "t_pid"
    Params = PidParams

    def __init__(self, params: StageParams | None = None) -> None:
        super().__init__(params)
        self.setups = 0
        self.reported_setup = False

    def __getstate__(self) -> dict[str, Any]:
        return {"params": self.params, "setups": 0, "reported_setup": False}

    def setup(self) -> None:
        self.setups += 1

    def process(self, batch: pa.Table) -> StageResult:
        assert isinstance(self.params, PidParams)
        pid = os.getpid()
        counters = {f"batches.{pid}": 1}
        if not self.reported_setup:
            counters[f"setups.{pid}"] = self.setups
            self.reported_setup = True
        word = self.params.drop_word
        reasons: list[str | None] = [
            "has_word" if word in (t or "") else None for t in batch.column("instruction").to_pylist()
        ]
        details = [detail_json(word=word) if r else None for r in reasons]
        return StageResult(batch, reasons, details, counters)


class PidStage2(PidStage):
    name = "t_pid2"


@pytest.fixture
def pid_stages(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(registry.STAGES, "t_pid", PidStage)
    monkeypatch.setitem(registry.STAGES, "t_pid2", PidStage2)


def run(out: Path, workers: int) -> dict[str, Any]:
    stages = [{"t_pid": {}}, {"normalize": {}}, {"dedup_exact": {}}, {"t_pid2": {"drop_word": "诗"}}]
    raw = {"input": [str(SAMPLES)], "output": str(out), "stages": stages, "batch_size": 2}
    recipe = build_recipe(raw, base_dir=None, source="t")
    return Runner(recipe, RunOptions(output=out, workers=workers, progress=False)).run()


def pids(counters: dict[str, int], kind: str) -> dict[int, int]:
    return {int(k.split(".")[1]): v for k, v in counters.items() if k.startswith(kind + ".")}


def test_one_pool_for_the_run_and_one_setup_per_worker(tmp_path: Path, pid_stages: None) -> None:
    report = run(tmp_path / "w2", workers=2)
    steps = {s["stage"]: s for s in report["stages"]}
    first, last = steps["t_pid"]["counters"], steps["t_pid2"]["counters"]
    workers_first, workers_last = set(pids(first, "batches")), set(pids(last, "batches"))
    assert workers_first and workers_last and os.getpid() not in workers_first | workers_last  # ran on workers
    assert len(workers_first | workers_last) <= 2  # both passes (before and after dedup_exact) on one pool of 2
    for counters in (first, last):  # set up once in each worker that ran it
        assert pids(counters, "setups") == dict.fromkeys(pids(counters, "batches"), 1)
    work = tmp_path / "w2" / ".zhcurate"
    # t_pid and normalize are one pass: one checkpoint (after normalize), a ledger each
    assert not (work / "01_t_pid" / "kept").exists() and (work / "02_normalize" / "kept").is_dir()
    assert json.loads((work / "01_t_pid.stats.json").read_text())["fused"] == ["t_pid", "normalize"]
    assert steps["t_pid"]["reasons"] == {"has_word": 1}  # 把下面的句子翻译成英文。
    assert steps["t_pid2"]["reasons"] == {"has_word": 2}  # 写一首关于春天的诗(歌), its twin with a space is a duplicate


def test_two_workers_give_the_outputs_of_one_process(tmp_path: Path, pid_stages: None) -> None:
    one, two = run(tmp_path / "w1", workers=1), run(tmp_path / "w2", workers=2)
    for name in ("cleaned.parquet", "rejected.parquet"):
        assert pq.read_table(tmp_path / "w1" / name).equals(pq.read_table(tmp_path / "w2" / name)), name
    assert one["counts"] == two["counts"]
    for a, b in zip(one["stages"], two["stages"], strict=True):
        assert (a["stage"], a["kept"], a["reasons"]) == (b["stage"], b["kept"], b["reasons"])


class FailStage(PidStage):
    """Fails on the batch holding 写一首关于春天的诗."""

    name = "t_fail"

    def process(self, batch: pa.Table) -> StageResult:
        if any("春天的诗" in (t or "") for t in batch.column("instruction").to_pylist()):
            raise ValueError("无法处理这首诗")
        return super().process(batch)


@pytest.mark.parametrize("workers", [1, 2])
def test_a_failing_stage_is_named_from_a_worker_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, workers: int
) -> None:
    monkeypatch.setitem(registry.STAGES, "t_fail", FailStage)
    raw = {"input": [str(SAMPLES)], "output": str(tmp_path), "stages": ["normalize", "t_fail"], "batch_size": 2}
    recipe = build_recipe(raw, base_dir=None, source="t")
    with pytest.raises(StageError) as err:
        Runner(recipe, RunOptions(output=tmp_path, workers=workers, progress=False)).run()
    assert err.value.stage == "t_fail"
    assert str(err.value) == "stage 't_fail' failed: ValueError: 无法处理这首诗"
    assert not (tmp_path / "cleaned.parquet").exists()
    assert not any(".tmp-" in f.name for f in (tmp_path / ".zhcurate").iterdir())  # nothing half-written left


def test_each_new_stage_object_runs_as_itself_on_the_pool(tmp_path: Path) -> None:
    """A stage made for one step and then dropped (a dedup stage's decisions are one) must never pass for the next
    one on the workers, though CPython may give the new object the old one's id(): each of eight stages, made and
    dropped in turn, drops the records with its own word."""
    from pipeline.engines.local import LocalEngine
    from pipeline.engines.parts import REJECTED, part_files
    from pipeline.engines.work import ChunkUnit, Job
    from pipeline.read.reader import WORK_SCHEMA

    words = ["诗", "翻译", "春天", "解释", "写", "什么", "一", "的"]
    empty = {"source": "t", "system": "", "input": "", "output": "好的。", "history": []}
    rows = [{"id": f"t#{i}", "instruction": w + "。", "_seq": i, **empty} for i, w in enumerate(words)]
    records = pa.Table.from_pylist(rows, schema=WORK_SCHEMA)

    def dropped_by_a_new_stage(engine: LocalEngine, n: int, word: str) -> list[str]:
        step = tmp_path / f"{n:02d}"
        job = Job("segment", [PidStage(PidParams(drop_word=word))], 8, [str(step)], [WORK_SCHEMA])
        (parts,) = list(engine.run(job, [ChunkUnit(0, records, [], [], 8)]))
        ((report,),) = parts
        dropped: list[str] = pq.read_table(part_files(step / REJECTED)[0]).column("instruction").to_pylist()
        assert report.dropped == len(dropped)
        return dropped  # the stage is gone now: the next one may get its id

    with LocalEngine(2) as engine:
        for n, word in enumerate(words):
            assert dropped_by_a_new_stage(engine, n, word) == [word + "。"]
