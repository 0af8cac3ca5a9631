"""Whose outputs an output folder holds: a run never replaces another run's outputs without ``--force``.

A run is identified by its recipe hash (stages, parameters, format, fields) and its input files (absolute
paths), written to ``OUTPUT/.zhcurate/run.json`` when the run starts (and found in ``report.json`` for a run
of an older version). Running the same recipe over the same inputs again into its folder is allowed;
``--resume`` continues (or re-does) whatever run is there; anything else needs ``--force``.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from pipeline.checkpoint import clean_tmp, write_json_atomic
from schemas.errors import ConfigError, OutputError

RUN_FILE = "run.json"


def run_identity(recipe_hash: str, inputs: list[Path]) -> dict[str, Any]:
    return {"recipe_hash": recipe_hash, "inputs": sorted(os.path.abspath(p) for p in inputs)}


def _previous(out: Path, work: Path) -> dict[str, Any] | None:
    for path in (work / RUN_FILE, out / "report.json"):
        if not path.is_file():
            continue
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError, OSError):
            return None
        if not isinstance(data, dict):
            return None
        if path.name == RUN_FILE:
            return data
        inputs = [os.path.abspath(p) for p in (data.get("recipe") or {}).get("input", [])]
        return {"recipe_hash": data.get("recipe_hash"), "inputs": sorted(inputs)}
    return None


def check_output_folder(
    out: Path, work: Path, outputs: tuple[str, ...], identity: dict[str, Any], *, resume: bool, force: bool
) -> None:
    """Raise :class:`ConfigError` when ``out`` holds a different run's outputs (and neither flag is given)."""
    if resume or force:
        return
    present = [name for name in outputs if (out / name).exists()]
    if work.is_dir() and any(work.iterdir()):
        present.append(work.name + "/")
    if not present:
        return
    previous = _previous(out, work)
    if previous == identity:
        return
    what = "another recipe or other inputs" if previous is not None else "a run zhcurate cannot identify"
    raise ConfigError(
        f"the output folder {out} holds the outputs of {what} ({', '.join(present)}). "
        "Add --force to replace them, --resume to continue that run, or choose another --output."
    )


def prepare_work_dir(out: Path, work: Path, outputs: tuple[str, ...], identity: dict[str, Any], resume: bool) -> None:
    """Make the checkpoint folder (emptied unless ``resume``) and check that it is writable and that the disk has
    room for about 3x the input; remove the previous outputs (they must never pass for this run's)."""
    try:
        work.mkdir(parents=True, exist_ok=True)
        probe = work / f".write-probe-{os.getpid()}"
        probe.write_text("ok")
        probe.unlink()
    except OSError as e:
        raise OutputError(
            f"cannot write to the output directory {out}: {e.strerror or e}. Choose a writable --output."
        ) from None
    need = 3 * sum(os.path.getsize(f) for f in identity["inputs"])
    free = shutil.disk_usage(work).free
    if free < need:
        raise OutputError(
            f"not enough free disk space in {out}: {free / 1e6:.0f} MB free, about "
            f"{need / 1e6:.0f} MB needed (3x the input). Free space or choose another --output."
        )
    if not resume:
        for f in work.iterdir():
            if f.is_file():
                f.unlink()
            elif f.is_dir():
                shutil.rmtree(f)
    clean_tmp(work)
    for name in outputs:
        (out / name).unlink(missing_ok=True)
    write_json_atomic(work / RUN_FILE, identity)
