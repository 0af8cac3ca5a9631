"""The runner: plans the steps, lets the engine run them as work units, keeps the books, writes the outputs.

Steps are ``read``, then every stage in recipe order. Consecutive record stages — headed by ``read`` when they
come first — are one pass over the data (a ``segment`` job, :mod:`pipeline.engines.work`); a global stage is a
``collect`` job (its fingerprints, resolved here; maybe a ``gather`` pass to complete the resolution) and then a
segment of its ``decide``. The engine runs each job over work units, which write the step's checkpoint as parts
(:mod:`pipeline.engines.parts`: ``.zhcurate/NN_<stage>/kept/``, ``.../rejected/``, ``00_read/quarantine/``) and
report their books; the runner merges the reports in input order, checks that the parts hold what they report and
that every step balances, and writes ``NN_<stage>.stats.json`` (last: the step is then complete). A step whose
fingerprint (its input's fingerprint + its name and parameters) matches a finished checkpoint is reused with
``--resume``. At the end: cleaned.parquet, rejected.parquet, quarantine.jsonl, report.json and report.html, and
``input = cleaned + rejected + quarantined``.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

from pipeline import __version__
from pipeline.books import check_parts, step_stats
from pipeline.checkpoint import (
    fingerprint,
    input_fingerprint,
    load_pickle,
    load_stats,
    write_json_atomic,
    write_pickle_atomic,
    write_text_atomic,
)
from pipeline.engines.local import Engine, LocalEngine
from pipeline.engines.parts import (
    KEPT,
    PART_ROWS,
    QUARANTINE,
    REJECTED,
    count_rows,
    merge_reports,
    parquet_files,
)
from pipeline.engines.work import Decide, Job, ReadSpec, part_units
from pipeline.outdir import check_output_folder, prepare_work_dir, run_identity
from pipeline.outputs.final import write_outputs
from pipeline.progress import progress, status
from pipeline.read.reader import WORK_SCHEMA, expand_inputs, id_prefixes
from pipeline.recipe import Recipe
from schemas.errors import StageError, ZhcurateError
from schemas.record import CANONICAL_SCHEMA
from stages.base import GlobalStage, RecordStage, Stage

WORK_DIR = ".zhcurate"
OUTPUT_FILES = ("cleaned.parquet", "rejected.parquet", "quarantine.jsonl", "report.json", "report.html")


@dataclass
class RunOptions:
    output: Path
    resume: bool = False
    workers: int = 1
    engine_name: str = "local"
    progress: bool = True
    force: bool = False  # replace another run's outputs in the output folder


class Runner:
    def __init__(self, recipe: Recipe, options: RunOptions, engine: Engine | None = None) -> None:
        self.recipe, self.opts = recipe, options
        self._own_engine = engine is None  # the runner closes the engine (its worker pool) it made itself
        self.engine: Engine = engine or LocalEngine(options.workers)
        self.out = Path(options.output)
        self.work = self.out / WORK_DIR
        self.stages: list[Stage] = [spec.build() for spec in recipe.stages]
        self.skipped: list[str] = []  # files of the input folders that are not data (for the warnings)

    def run(self) -> dict[str, Any]:
        try:
            return self._run()
        finally:
            if self._own_engine:
                self.engine.close()

    def _run(self) -> dict[str, Any]:
        started = time.time()
        self.files = expand_inputs(list(self.recipe.inputs), self.skipped)
        identity = run_identity(self.recipe.hash(), self.files)  # another run's outputs are replaced only with --force
        check_output_folder(self.out, self.work, OUTPUT_FILES, identity, resume=self.opts.resume, force=self.opts.force)
        names = " → ".join(["read", *(s.name for s in self.stages), "write"])
        status(f"{len(self.files)} input file(s); steps: {names}; checking the stages …", self.opts.progress)
        for stage in self.stages:
            stage.check()
        prepare_work_dir(self.out, self.work, OUTPUT_FILES, identity, self.opts.resume)
        r = self.recipe
        self.fps = [fingerprint(__version__, input_fingerprint(self.files), r.format, r.fields, r.batch_size)]
        self.schemas = [WORK_SCHEMA]
        for stage in self.stages:
            self.fps.append(fingerprint(self.fps[-1], stage.name, stage.fingerprint_params()))
            schema = self.schemas[-1]
            for name, typ in stage.added_columns:
                schema = schema if name in schema.names else schema.append(pa.field(name, typ))
            self.schemas.append(schema)
        steps = self._reusable()
        prepare = getattr(self.engine, "prepare", None)
        if prepare is not None:  # a pool's workers set the stages up while this process reads
            prepare(self.stages[max(0, len(steps) - 1) :])
        k = len(steps)  # the next step to run (0: read)
        while k <= len(self.stages):
            if k and isinstance(self.stages[k - 1], GlobalStage):
                steps.append(self._global_step(k, steps[-1]))
                k += 1
                continue
            end = k
            while end < len(self.stages) and isinstance(self.stages[end], RecordStage):
                end += 1  # steps k..end are one pass over the data
            steps.extend(self._segment(k, end, steps[-1] if k else None))
            k = end + 1
        totals, final = write_outputs(self.out, self.work, steps, self.schemas[-1], self.recipe.batch_size)
        from pipeline.report.report import build_report, render_html

        report = build_report(self.recipe, self.opts, steps, totals, started, time.time(), final, self.skipped)
        write_json_atomic(self.out / "report.json", report)
        write_text_atomic(self.out / "report.html", render_html(report))
        return report

    def _name(self, k: int) -> str:
        return "00_read" if k == 0 else f"{k:02d}_{self.stages[k - 1].name}"

    def _reusable(self) -> list[dict[str, Any]]:
        """With ``--resume``: the finished steps to reuse — every step up to the last one with kept records whose
        fingerprints (and those of all the steps before it) match. A step inside a fused pass has no kept records of
        its own: a change after it re-runs the pass from its start."""
        found: list[dict[str, Any]] = []
        usable = 0
        for k, fp in enumerate(self.fps if self.opts.resume else []):
            stats = load_stats(self.work / f"{self._name(k)}.stats.json", fp)
            if stats is None:
                break
            found.append({**stats, "reused": True})
            usable = len(found) if stats.get("file") else usable
        return found[:usable]

    def _units(self, prev: dict[str, Any]) -> list[Any]:
        files = parquet_files(self.work / prev["file"])
        rows = sum(count_rows(f) for f in files)
        return part_units(files, self.engine.unit_rows(rows, self.recipe.batch_size))

    def _segment(
        self, first: int, last: int, prev: dict[str, Any] | None, stages: list[Any] | None = None, **extra: Any
    ) -> list[dict[str, Any]]:
        """Steps ``first..last`` as one pass (``first`` 0: headed by read); returns their statistics."""
        t0 = time.perf_counter()
        ks = list(range(first, last + 1))
        names = [self._name(k) for k in ks]
        for name in names:
            shutil.rmtree(self.work / name, ignore_errors=True)
        stages = stages or [self.stages[k - 1] for k in ks if k]
        r = self.recipe
        read = ReadSpec(r.format, dict(r.fields), r.batch_size, PART_ROWS, os.getcwd()) if first == 0 else None
        dirs, schemas = [str(self.work / n) for n in names], [self.schemas[k] for k in ks if k]
        light = bool(stages) and isinstance(
            stages[0], Decide
        )  # cheap, with the whole resolution: the driver may keep it
        job = Job("segment", stages, r.batch_size, dirs, schemas, read, light=light)
        units = self.engine.read_units(self.files, id_prefixes(self.files), read) if read else self._units(prev or {})
        label = "+".join(s.name for s in stages) or "read"
        bar = progress(label, prev["kept"] if prev else None, self.opts.progress, sys.stderr)
        per_step: list[list[Any]] = [[] for _ in ks]
        try:
            for parts in self.engine.run(job, units):
                for reports in parts:
                    for i, report in enumerate(reports):
                        per_step[i].append(report)
                    bar.update(reports[0].rows_in)
        except ZhcurateError:
            raise
        except Exception as e:
            raise StageError(label, f"{type(e).__name__}: {e}") from e
        bar.close()
        totals = [merge_reports(reports) for reports in per_step]
        check_parts([self.work / n for n in names], per_step, totals, prev["kept"] if prev else None)
        busy = [t.seconds for t in totals]
        wall, spent = time.perf_counter() - t0, sum(busy) or 1.0
        out = []
        for i, (k, name, total) in enumerate(zip(ks, names, totals, strict=True)):
            files = {"file": f"{name}/{KEPT}" if k == last else None, "rejected_file": f"{name}/{REJECTED}"}
            if k == 0:
                files["quarantine_file"] = f"{name}/{QUARANTINE}"
            info: dict[str, Any] = {"fused": [s.name for s in stages]} if len(ks) > 1 else {}
            info.update(extra, parts=len(per_step[i]), worker_seconds=round(busy[i], 3))
            seconds = extra.get("resolve_seconds", 0.0) + (wall * busy[i] / spent if sum(busy) else wall / len(ks))
            stats = step_stats(self.stages[k - 1] if k else None, self.fps[k], files, total, seconds, info)
            write_json_atomic(self.work / f"{name}.stats.json", stats)  # last: the step is complete
            out.append(stats)
        return out

    def _global_step(self, k: int, prev: dict[str, Any]) -> dict[str, Any]:
        """A global stage: fingerprints (cached when the stage asks), the resolution here, maybe a second pass
        (``gather``) to complete it, then its ``decide`` as a pass of its own."""
        stage, t0 = self.stages[k - 1], time.perf_counter()
        assert isinstance(stage, GlobalStage)
        name, units = self._name(k), self._units(prev)
        try:
            cache = stage.fingerprint_cache_params()
            key = fingerprint(prev["fingerprint"], stage.name, cache)
            path = self.work / f"{name}.fingerprints.pkl"
            fps = load_pickle(path, key) if cache is not None and self.opts.resume else None
            reused = fps is not None
            if fps is None:
                fps = self._collect(Job("collect", [stage], self.recipe.batch_size), units, prev["kept"], "fingerprint")
                if cache is not None:
                    write_pickle_atomic(path, key, fps)
            rows = stage.group_keys(fps)  # candidates as data: the engine groups the key rows
            resolution = stage.resolve(fps, None if rows is None else self.engine.group_pairs(rows))
            if stage.needs_records(resolution):
                job = Job("collect", [stage], self.recipe.batch_size, method="gather", context=resolution, light=True)
                resolution = stage.complete(resolution, self._collect(job, units, prev["kept"], "gather"))
            counters = Counter(stage.resolution_counters(resolution))
        except ZhcurateError:
            raise
        except Exception as e:
            raise StageError(stage.name, f"{type(e).__name__}: {e}") from e
        decide, before = Decide(stage, resolution), round(time.perf_counter() - t0, 3)  # fingerprints + resolve
        (stats,) = self._segment(
            k, k, prev, [decide], fingerprints_reused=reused, resolution_counters=counters, resolve_seconds=before
        )
        return stats

    def _collect(self, job: Job, units: list[Any], rows: int, what: str) -> list[Any]:
        bar = progress(f"{job.stages[0].name} ({what})", rows, self.opts.progress, sys.stderr)
        found = []
        for n, results in self.engine.run(job, units):
            found.extend(results)
            bar.update(n)
        bar.close()
        return found


__all__ = ["CANONICAL_SCHEMA", "OUTPUT_FILES", "RunOptions", "Runner"]
