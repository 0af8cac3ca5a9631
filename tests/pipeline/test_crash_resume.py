"""kill -9 in the middle of each step, then `--resume`: the result equals an uninterrupted run's, and no partial
file is ever visible under a final name. Also: resume re-runs from the first changed stage; determinism."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from pipeline.cli import main
from pipeline.registry import DEFAULT_STAGES, STAGES
from stages.base import GlobalStage

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "samples" / "raw"
# dedup_semantic loads a model in every process; its kill test would take far longer than the others
KILL_STAGES = [s for s in DEFAULT_STAGES if s != "dedup_semantic"]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("data")
    base = [json.loads(x) for x in (SAMPLES / "gbk.jsonl").read_bytes().decode("gbk").splitlines()]
    lines = []
    for i in range(4000):
        r = dict(base[i % len(base)])
        r["instruction"] = f"第{i % 1500}题：" + r["instruction"]
        r["output"] = r["output"] + ("，而且非常重要" if i % 7 else "")
        lines.append(json.dumps(r, ensure_ascii=False))
    (d / "data.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return d / "data.jsonl"


def write_recipe(path: Path, data: Path, out: Path, stages: list[str] | list[dict]) -> Path:
    path.write_text(
        json.dumps({"input": [str(data)], "output": str(out), "batch_size": 100, "stages": stages}), encoding="utf-8"
    )
    return path


def cli(*args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "pipeline.cli", *args], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )


@pytest.fixture(scope="module")
def reference(dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("ref")
    recipe = write_recipe(d / "r.yaml", dataset, d / "out", KILL_STAGES)
    assert main(["run", str(recipe), "--quiet"]) == 0
    return d / "out"


def same_outputs(a: Path, b: Path) -> None:
    for name in ("cleaned.parquet", "rejected.parquet"):
        ta, tb = pq.read_table(a / name), pq.read_table(b / name)
        assert ta.equals(tb), name
    assert (a / "quarantine.jsonl").read_text() == (b / "quarantine.jsonl").read_text()


@pytest.mark.slow
@pytest.mark.parametrize("step", ["read", *KILL_STAGES])
def test_kill_9_mid_step_then_resume(step: str, dataset: Path, reference: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    recipe = write_recipe(tmp_path / "r.yaml", dataset, out, KILL_STAGES)
    index = 0 if step == "read" else KILL_STAGES.index(step) + 1
    # a part of the step is being written: for a step inside the fused first pass (read … quality), a part of
    # any step of that pass (the pass writes its steps' parts together, unit by unit)
    first_global = next(k for k, s in enumerate(KILL_STAGES, 1) if issubclass(STAGES[s], GlobalStage))
    ks = range(first_global) if index < first_global else [index]
    work = out / ".zhcurate"
    dirs = [work / ("00_read" if k == 0 else f"{k:02d}_{KILL_STAGES[k - 1]}") for k in ks]
    proc = cli("run", str(recipe), "--quiet")
    deadline = time.monotonic() + 60
    killed = False
    while time.monotonic() < deadline and proc.poll() is None:
        if any(".tmp-" in f.name for d in dirs if d.is_dir() for f in d.rglob("*")):
            os.kill(proc.pid, signal.SIGKILL)
            killed = True
            break
        time.sleep(0.002)
    proc.wait()
    if not killed:
        pytest.skip(f"the {step} step finished before it could be interrupted")
    for name in ("cleaned.parquet", "rejected.parquet", "report.json"):
        assert not (out / name).exists(), f"{name} visible after a crash"
    assert main(["run", str(recipe), "--resume", "--quiet"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert step not in report["reused_stages"]
    same_outputs(reference, out)


@pytest.mark.skipif(len(KILL_STAGES) < 2, reason="needs two stages")
def test_resume_reruns_from_first_changed_stage(dataset: Path, reference: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    recipe = write_recipe(tmp_path / "r.yaml", dataset, out, KILL_STAGES)
    assert main(["run", str(recipe), "--quiet"]) == 0
    assert main(["run", str(recipe), "--resume", "--quiet"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["reused_stages"] == ["read", *KILL_STAGES]
    # change a parameter of the second stage: it is fused with read and the first stage (one pass over the data,
    # one checkpoint after the last record stage), so that pass re-runs from its start: nothing is reused
    second = KILL_STAGES[1]
    params = STAGES[second].Params().model_dump(mode="json")
    key, value = next((k, v) for k, v in params.items() if isinstance(v, bool))
    stages: list = [KILL_STAGES[0], {second: {key: not value}}, *KILL_STAGES[2:]]
    write_recipe(tmp_path / "r.yaml", dataset, out, stages)
    assert main(["run", str(recipe), "--resume", "--quiet"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["reused_stages"] == []
    # change the last (a dedup stage, with a checkpoint before it): every step before it is reused
    last = KILL_STAGES[-1]
    stages[-1] = {last: {"threshold": 0.75}}
    write_recipe(tmp_path / "r.yaml", dataset, out, stages)
    assert main(["run", str(recipe), "--resume", "--quiet"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["reused_stages"] == ["read", *KILL_STAGES[:-1]]
    # touching an input file re-runs everything
    os.utime(dataset)
    assert main(["run", str(recipe), "--resume", "--quiet"]) == 0
    assert json.loads((out / "report.json").read_text())["reused_stages"] == []


def test_same_input_same_output_also_with_two_workers(dataset: Path, reference: Path, tmp_path: Path) -> None:
    recipe = write_recipe(tmp_path / "r.yaml", dataset, tmp_path / "w2", KILL_STAGES)
    assert main(["run", str(recipe), "--workers", "2", "--quiet"]) == 0
    same_outputs(reference, tmp_path / "w2")
