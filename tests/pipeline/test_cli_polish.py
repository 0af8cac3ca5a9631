"""The command line: --version, help text on every option, a status line at once, no \\r frames in a log file."""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline import __version__
from pipeline.cli import EXPORT_CHOICES, _parser, main
from pipeline.progress import PlainProgress, progress

ROOT = Path(__file__).resolve().parents[2]


def _parsers() -> dict[str, argparse.ArgumentParser]:
    from pipeline.tools.calibrate import build_parser as calibrate
    from pipeline.tools.train_embedder import build_parser as train_embedder
    from pipeline.tools.train_safety import build_parser as train_safety

    root = _parser()
    found = {"zhcurate": root}
    for action in root._actions:
        if isinstance(action, argparse._SubParsersAction):
            found.update({f"zhcurate {name}": p for name, p in action.choices.items()})
    found.update({"train-safety": train_safety(), "train-embedder": train_embedder(), "calibrate": calibrate()})
    return found


def test_every_option_has_help_text() -> None:
    missing = [
        f"{name} {'/'.join(a.option_strings) or a.dest}"
        for name, parser in _parsers().items()
        for a in parser._actions
        if not isinstance(a, (argparse._HelpAction, argparse._SubParsersAction)) and not (a.help or "").strip()
    ]
    assert missing == []


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out.strip() == f"zhcurate {__version__}"


def test_export_choices_are_the_export_formats() -> None:
    from pipeline.outputs.export import EXPORT_FORMATS

    assert EXPORT_CHOICES == EXPORT_FORMATS


def test_plain_progress_lines_without_carriage_returns() -> None:
    stream = io.StringIO()  # not a terminal
    bar = progress("safety", 20_000, True, stream)
    assert isinstance(bar, PlainProgress)
    bar.every_s = 0.0
    bar.update(5_000)
    bar.update(15_000)
    bar.close()
    lines = stream.getvalue().splitlines()
    assert "\r" not in stream.getvalue() and len(lines) == 3
    assert lines[0].startswith("zhcurate: safety: 5,000/20,000 records (25%)")
    assert lines[-1].startswith("zhcurate: safety: 20,000/20,000 records (100%)") and lines[-1].endswith(" done")
    quiet = io.StringIO()
    off = progress("safety", 10, False, quiet)
    off.update(10)
    off.close()
    assert quiet.getvalue() == ""


PROBE = """
import sys
from pipeline.cli import main
real = sys.stderr
class Probe:
    first = None
    def write(self, text):
        if Probe.first is None:  # what was imported when the first line was written
            Probe.first = sorted(m for m in ("pyarrow", "numpy", "torch", "jieba", "pipeline.runner") if m in sys.modules)
            real.write("IMPORTED " + ",".join(Probe.first) + "\\n")
        return real.write(text)
    def flush(self):
        real.flush()
    def isatty(self):
        return False
sys.stderr = Probe()
sys.exit(main(sys.argv[1:]))
"""


def test_a_run_into_a_log_file_has_a_status_line_first_and_no_frames(tmp_path: Path) -> None:
    data = tmp_path / "d.jsonl"
    data.write_text(
        json.dumps({"instruction": "你好", "output": "你好！"}, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    recipe = tmp_path / "r.yaml"
    recipe.write_text("stages: [normalize]\n", encoding="utf-8")
    args = ["run", str(recipe), "--input", str(data), "--output", str(tmp_path / "o")]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    res = subprocess.run(
        [sys.executable, "-c", PROBE, *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=300,
        check=False,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    lines = res.stderr.splitlines()
    # the status line is written before the heavy imports (numpy, pyarrow, torch, jieba, the runner)
    assert lines[0] == "IMPORTED " and lines[1].startswith("zhcurate: loading the recipe")
    assert "\r" not in res.stderr
    assert "zhcurate: normalize: 1 records" in res.stderr and "steps run: read → normalize → write" in res.stderr
