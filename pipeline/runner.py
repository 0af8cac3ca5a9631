"""The runner: reads, runs each stage over Arrow batches, keeps the books, writes the outputs.

Each step (read, then every stage in recipe order) reads the previous step's checkpoint in batches and writes
its own: the kept records (``.zhcurate/NN_<stage>.parquet``), the records it dropped with stage, reason and
detail (``NN_<stage>.rejected.parquet``) and its statistics (``NN_<stage>.stats.json``, written last). A step
whose fingerprint (its input's fingerprint + its name and parameters) matches a finished checkpoint is reused
with ``--resume``. At the end the runner writes cleaned.parquet, rejected.parquet, quarantine.jsonl,
report.json and report.html, and checks ``input = cleaned + rejected + quarantined``.

An engine that can run whole steps on its workers (one with ``read_parts``, ``map_parts`` and ``resolve_parts``,
as the Ray engine has; see :mod:`pipeline.engines.parts`) gets them: the workers read the inputs and write each step's
checkpoint as Parquet parts (``.zhcurate/NN_<stage>/kept/``, ``.../rejected/``), the driver only merges their
reports into the books and checks that the parts hold what the reports say.
"""

from __future__ import annotations

import shutil
import sys
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline import __version__
from pipeline.checkpoint import (
    ParquetSink,
    clean_tmp,
    fingerprint,
    input_fingerprint,
    load_pickle,
    load_stats,
    write_json_atomic,
    write_pickle_atomic,
    write_text_atomic,
)
from pipeline.engines.fused import ReadPass
from pipeline.engines.local import Engine, LocalEngine, Method, PartsEngine
from pipeline.engines.local import complete as complete_global
from pipeline.engines.local import resolve as resolve_global
from pipeline.engines.parts import (
    KEPT,
    QUARANTINE,
    REJECTED,
    PartReport,
    count_rows,
    iter_batches,
    ledger_schema,
    merge_reports,
    parquet_files,
    part_files,
    remove_orphans,
    split_result,
)
from pipeline.outdir import RUN_FILE, check_output_folder, run_identity
from pipeline.progress import Progress, progress, status
from pipeline.read.reader import WORK_SCHEMA, Reader, expand_inputs, id_prefixes
from pipeline.recipe import Recipe
from pipeline.report.collect import ReportCollector
from schemas.errors import BalanceError, OutputError, StageError, ZhcurateError
from schemas.record import CANONICAL_SCHEMA
from stages.base import SEQ_COLUMN, GlobalStage, RecordStage, Stage, StageResult

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


def _with_columns(schema: pa.Schema, columns: tuple[tuple[str, pa.DataType], ...]) -> pa.Schema:
    for name, typ in columns:
        if name not in schema.names:
            schema = schema.append(pa.field(name, typ))
    return schema


class Runner:
    def __init__(self, recipe: Recipe, options: RunOptions, engine: Engine | None = None) -> None:
        self.recipe = recipe
        self.opts = options
        self._own_engine = engine is None  # the runner closes the engine (its worker pool) it made itself
        self.engine: Engine = engine or LocalEngine(options.workers)
        self.out = Path(options.output)
        self.work = self.out / WORK_DIR
        self.stages: list[Stage] = [spec.build() for spec in recipe.stages]
        # an engine that runs whole steps on its workers, writing parts (see pipeline.engines.parts)
        self.parts: PartsEngine | None = self.engine if isinstance(self.engine, PartsEngine) else None
        self.final_collect: dict[str, Any] = {}  # report material of cleaned.parquet, gathered while writing it
        self.skipped: list[str] = []  # files of the input folders that are not data (for the warnings)

    # ---------------------------------------------------------------- public
    def run(self) -> dict[str, Any]:
        try:
            return self._run()
        finally:
            if self._own_engine:
                self.engine.close()  # type: ignore[attr-defined]

    def _run(self) -> dict[str, Any]:
        started = time.time()
        files = expand_inputs(list(self.recipe.inputs), self.skipped)
        identity = run_identity(self.recipe.hash(), files)  # another run's outputs are replaced only with --force
        check_output_folder(self.out, self.work, OUTPUT_FILES, identity, resume=self.opts.resume, force=self.opts.force)
        names = " → ".join(["read", *(s.name for s in self.stages), "write"])
        status(f"{len(files)} input file(s); steps: {names}; checking the stages …", self.opts.progress)
        for stage in self.stages:
            stage.check()
        self._prepare_output(files)
        fp = fingerprint(
            __version__,
            input_fingerprint(files),
            self.recipe.format,
            self.recipe.fields,
            self.recipe.batch_size,
        )
        fps, schemas = [fp], [WORK_SCHEMA]
        for stage in self.stages:
            fps.append(fingerprint(fps[-1], stage.name, stage.fingerprint_params()))
            schemas.append(_with_columns(schemas[-1], stage.added_columns))
        steps = self._reusable(fps)
        prepare = getattr(self.engine, "prepare", None)
        if prepare is not None:  # a pool's workers set the stages up while this process reads
            prepare(self.stages[max(0, len(steps) - 1) :])
        fuse = self.parts is None  # the local engine fuses each run of record stages into one pass
        if not steps and not (fuse and self.stages and isinstance(self.stages[0], RecordStage)):
            steps.append(self._read_step(files, fps[0]))
        k = max(1, len(steps))
        while k <= len(self.stages):
            stage = self.stages[k - 1]
            if isinstance(stage, RecordStage) and fuse:
                end = k
                while end < len(self.stages) and isinstance(self.stages[end], RecordStage):
                    end += 1  # the run of record stages k..end (1-based) is one pass over the data
                steps.extend(self._segment_step(k, end, steps[-1] if steps else files, schemas, fps))
                k = end + 1
            else:
                steps.append(self._stage_step(k, stage, steps[-1], schemas[k], fps[k]))
                k += 1
        totals = self._finish(self.work / steps[-1]["file"], schemas[-1], steps)
        from pipeline.report.report import build_report, render_html

        report = build_report(
            self.recipe, self.opts, steps, totals, started, time.time(), final=self.final_collect, skipped=self.skipped
        )
        write_json_atomic(self.out / "report.json", report)
        write_text_atomic(self.out / "report.html", render_html(report))
        return report

    def _step_name(self, k: int) -> str:
        return "00_read" if k == 0 else f"{k:02d}_{self.stages[k - 1].name}"

    def _reusable(self, fps: list[str]) -> list[dict[str, Any]]:
        """With ``--resume``: the finished steps to reuse — every step up to the last one with a checkpoint of its
        kept records whose fingerprints (and those of all the steps before it) match. A step inside a fused run of
        record stages has no checkpoint of its own: a change after it re-runs that run from its start."""
        if not self.opts.resume:
            return []
        found: list[dict[str, Any]] = []
        usable = 0
        for k, fp in enumerate(fps):
            stats = load_stats(self.work / f"{self._step_name(k)}.stats.json", fp)
            if stats is None:
                break
            found.append({**stats, "reused": True})
            if stats.get("file"):
                usable = len(found)
        return found[:usable]

    # ---------------------------------------------------------------- steps
    def _prepare_output(self, files: list[Path]) -> None:
        try:
            self.work.mkdir(parents=True, exist_ok=True)
            probe = self.work / f".write-probe-{id(self)}"
            probe.write_text("ok")
            probe.unlink()
        except OSError as e:
            raise OutputError(
                f"cannot write to the output directory {self.out}: {e.strerror or e}. Choose a writable --output."
            ) from None
        need = 3 * sum(f.stat().st_size for f in files)
        free = shutil.disk_usage(self.work).free
        if free < need:
            raise OutputError(
                f"not enough free disk space in {self.out}: {free / 1e6:.0f} MB free, about "
                f"{need / 1e6:.0f} MB needed (3x the input). Free space or choose another --output."
            )
        if not self.opts.resume:
            for f in self.work.iterdir():
                if f.is_file():
                    f.unlink()
                elif f.is_dir():
                    shutil.rmtree(f)
        clean_tmp(self.work)
        for name in OUTPUT_FILES:  # a previous run's outputs must never pass for this run's
            (self.out / name).unlink(missing_ok=True)
        write_json_atomic(self.work / RUN_FILE, run_identity(self.recipe.hash(), files))

    def _read_step(self, files: list[Path], fp: str) -> dict[str, Any]:
        name = "00_read"
        if self.parts is not None:
            return self._read_step_parts(files, fp, name)
        t0 = time.perf_counter()
        read = self._read_pass(files)
        kept = ParquetSink(self.work / f"{name}.parquet", WORK_SCHEMA)
        bar = self._bar("read", None)
        try:
            for records in read.records(bar.update):
                kept.write(records)
        except BaseException:
            read.abort()
            kept.abort()
            raise
        bar.close()
        kept.close()
        return self._save_read_stats(fp, read.close(), t0, f"{name}.parquet")

    def _read_pass(self, files: list[Path]) -> ReadPass:
        return ReadPass(Reader(files, self.recipe.format, self.recipe.fields, self.recipe.batch_size), self.work)

    def _save_read_stats(self, fp: str, total: PartReport, t0: float, file: str | None) -> dict[str, Any]:
        written = {"file": file, "rejected_file": "00_read.rejected.parquet", "quarantine_file": "quarantine.jsonl"}
        return self._save_stats("00_read", "read", "read", fp, written, total, t0)

    def _read_step_parts(self, files: list[Path], fp: str, name: str) -> dict[str, Any]:
        """The read step on a parts engine: every input file is read by a worker into parts."""
        assert self.parts is not None
        t0 = time.perf_counter()
        step_dir = self._fresh_step_dir(name)
        bar = self._bar("read", None)
        reports: list[PartReport] = []
        for report in self.parts.read_parts(files, id_prefixes(files), self.recipe, step_dir):
            reports.append(report)
            bar.update(report.rows_in)
        bar.close()
        total = self._check_parts(name, step_dir, reports)
        written = {"file": f"{name}/{KEPT}", **{f"{kind}_file": f"{name}/{kind}" for kind in (REJECTED, QUARANTINE)}}
        return self._save_stats(name, "read", "read", fp, written, total, t0, parts=len(reports))

    def _fresh_step_dir(self, name: str) -> Path:
        step_dir = self.work / name
        if step_dir.exists():
            shutil.rmtree(step_dir)
        step_dir.mkdir(parents=True)
        return step_dir

    def _check_parts(self, name: str, step_dir: Path, reports: list[PartReport]) -> PartReport:
        """Merge the parts' reports, and check that the parts on disk hold exactly what they report."""
        remove_orphans(step_dir, {r.key for r in reports})
        total = merge_reports(reports)
        on_disk = (
            count_rows(step_dir / KEPT),
            count_rows(step_dir / REJECTED),
            sum(_count_lines(f) for f in part_files(step_dir / QUARANTINE, ".jsonl")),
        )
        if on_disk != (total.kept, total.dropped, total.quarantined):
            raise BalanceError(
                f"step '{name}': the workers reported {total.kept} kept, {total.dropped} dropped and "
                f"{total.quarantined} quarantined records, but its parts in {step_dir} hold {on_disk[0]}, "
                f"{on_disk[1]} and {on_disk[2]}. This is a bug; please report it with that folder."
            )
        return total

    def _batches(self, path: Path) -> Iterator[pa.Table]:
        return iter_batches(path, self.recipe.batch_size)

    def _stage_step(
        self, k: int, stage: Stage, prev_stats: dict[str, Any], schema: pa.Schema, fp: str
    ) -> dict[str, Any]:
        name = f"{k:02d}_{stage.name}"
        prev = self.work / prev_stats["file"]
        if self.parts is not None:
            return self._stage_step_parts(name, stage, prev, schema, fp)
        t0 = time.perf_counter()
        n_in = count_rows(prev)
        kept = ParquetSink(self.work / f"{name}.parquet", schema)
        rej = ParquetSink(self.work / f"{name}.rejected.parquet", ledger_schema(schema))
        reasons: Counter[str] = Counter()
        counters: Counter[str] = Counter()
        collector = ReportCollector(full_kept=False)  # kept records are described once, at the end
        fingerprints_reused = False
        try:
            if not isinstance(stage, GlobalStage):
                raise StageError(stage.name, f"{type(stage).__name__} is neither a RecordStage nor a GlobalStage")
            bar = self._bar(f"{stage.name} (fingerprint)", n_in)
            resolution, fingerprints_reused = self._resolve(stage, name, prev, prev_stats["fingerprint"], bar)
            resolution = complete_global(self.engine, stage, resolution, lambda: self._batches(prev))
            bar.close()
            counters.update(stage.resolution_counters(resolution))
            results = self.engine.map(stage, "decide", self._batches(prev), context=resolution)
            bar = self._bar(stage.name, n_in)
            for result in results:
                self._book(stage, result, kept, rej, reasons, counters, collector)
                bar.update(result.table.num_rows)
            bar.close()
        except ZhcurateError:
            kept.abort()
            rej.abort()
            raise
        except Exception as e:
            kept.abort()
            rej.abort()
            raise StageError(stage.name, f"{type(e).__name__}: {e}") from e
        kept.close()
        rej.close()
        if kept.rows + rej.rows != n_in:
            raise BalanceError(
                f"stage '{stage.name}' received {n_in} records but returned {kept.rows} kept + {rej.rows} dropped"
            )
        total = PartReport(0, n_in, kept.rows, rej.rows, 0, reasons, counters, collector)
        files = {"file": f"{name}.parquet", "rejected_file": f"{name}.rejected.parquet"}
        return self._save_stage_stats(name, stage, fp, files, total, t0, fingerprints_reused=fingerprints_reused)

    def _segment_step(
        self, first: int, last: int, prev: dict[str, Any] | list[Path], schemas: list[pa.Schema], fps: list[str]
    ) -> list[dict[str, Any]]:
        """Record stages ``first..last`` (1-based) fused: one pass over each batch of the previous checkpoint — or,
        when ``prev`` is the input files, of the records ``read`` keeps, read in the same pass — (see
        :mod:`pipeline.engines.fused`), each stage's dropped records in its own ledger file, the kept records of the
        last one in the only checkpoint. A stage's seconds are the pass's wall time (less what reading took) shared
        out by the time each stage spent on its batches (with workers, that time is summed over them:
        ``worker_seconds``)."""
        t0 = time.perf_counter()
        ks = list(range(first, last + 1))
        stages = [s for s in (self.stages[k - 1] for k in ks) if isinstance(s, RecordStage)]
        assert len(stages) == len(ks)
        names = [self._step_name(k) for k in ks]
        read: ReadPass | None = None
        if isinstance(prev, list):
            read = self._read_pass(prev)
            batches, n_in = read.records(), None
        else:
            batches, n_in = self._batches(self.work / prev["file"]), count_rows(self.work / prev["file"])
        kept = ParquetSink(self.work / f"{names[-1]}.parquet", schemas[last])
        rejs = [ParquetSink(self.work / f"{n}.rejected.parquet", ledger_schema(schemas[k])) for n, k in zip(names, ks)]
        totals = [PartReport(0, collector=ReportCollector(full_kept=False)) for _ in ks]
        busy = [0.0] * len(ks)
        run_segment = getattr(self.engine, "map_segment", None)
        bar = self._bar("+".join(s.name for s in stages), n_in)
        try:
            if run_segment is None:  # an engine that only maps single methods: the pass runs in this process
                run_segment = LocalEngine(1).map_segment
            results = run_segment(stages, [schemas[k] for k in ks], batches)
            for records, books in results:
                for i, b in enumerate(books):
                    total = totals[i]
                    total.rows_in += b.rows_in
                    total.kept += b.kept
                    if b.dropped is not None:
                        rejs[i].write(b.dropped)
                        total.dropped += b.dropped.num_rows
                    total.reasons.update(b.reasons)
                    total.counters.update(b.counters)
                    total.collector.merge(b.collector)
                    busy[i] += b.seconds
                kept.write(records)
                bar.update(books[0].rows_in)
            bar.close()
        except BaseException as e:
            for sink in (kept, *rejs):
                sink.abort()
            if read is not None:
                read.abort()
            if isinstance(e, ZhcurateError) or not isinstance(e, Exception):
                raise
            raise StageError("+".join(s.name for s in stages), f"{type(e).__name__}: {e}") from e
        kept.close()
        for sink in rejs:
            sink.close()
        out = []
        read_seconds = 0.0
        if read is not None:
            total_read = read.close()
            read_seconds = read.seconds
            out.append(self._save_read_stats(fps[0], total_read, time.perf_counter() - read_seconds, None))
            n_in = total_read.kept
        expected = n_in
        for stage, total in zip(stages, totals):
            if total.rows_in != expected or total.kept + total.dropped != total.rows_in:
                raise BalanceError(
                    f"stage '{stage.name}' received {total.rows_in} of {expected} records and returned "
                    f"{total.kept} kept + {total.dropped} dropped"
                )
            expected = total.kept
        if kept.rows != expected:
            raise BalanceError(f"stage '{stages[-1].name}' kept {expected} records but {kept.rows} were written")
        wall = time.perf_counter() - t0 - read_seconds
        spent = sum(busy) or 1.0
        for i, (k, name, stage, total) in enumerate(zip(ks, names, stages, totals, strict=True)):
            files = {"file": f"{name}.parquet" if k == last else None, "rejected_file": f"{name}.rejected.parquet"}
            extra = {"fused": [s.name for s in stages], "worker_seconds": round(busy[i], 3)}
            seconds = wall * busy[i] / spent if sum(busy) else wall / len(ks)
            start = time.perf_counter() - seconds
            out.append(self._save_stage_stats(name, stage, fps[k], files, total, start, **extra))
        return out

    def _stage_step_parts(self, name: str, stage: Stage, prev: Path, schema: pa.Schema, fp: str) -> dict[str, Any]:
        """A stage on a parts engine: the workers run it over the previous step's parts and write their own."""
        assert self.parts is not None
        t0 = time.perf_counter()
        inputs = parquet_files(prev)
        n_in = count_rows(prev)
        step_dir = self._fresh_step_dir(name)
        counters: Counter[str] = Counter()
        reports: list[PartReport] = []
        try:
            context = None
            if isinstance(stage, GlobalStage):
                bar = self._bar(f"{stage.name} (fingerprint)", None)
                context = self.parts.resolve_parts(stage, inputs)
                # a second pass the engine left to us (the Ray engine does its own on the workers): read here
                context = complete_global(LocalEngine(), stage, context, lambda: self._batches(prev))
                bar.close()
                counters.update(stage.resolution_counters(context))
            method: Method = "decide" if isinstance(stage, GlobalStage) else "process"
            bar = self._bar(stage.name, n_in)
            for report in self.parts.map_parts(
                stage, method, inputs, step_dir, schema, self.recipe.batch_size, context
            ):
                reports.append(report)
                bar.update(report.rows_in)
            bar.close()
        except ZhcurateError:
            raise
        except Exception as e:
            raise StageError(stage.name, f"{type(e).__name__}: {e}") from e
        total = self._check_parts(name, step_dir, reports)
        if total.kept + total.dropped != n_in:
            raise BalanceError(
                f"stage '{stage.name}' received {n_in} records but returned {total.kept} kept + {total.dropped} dropped"
            )
        counters.update(total.counters)  # the resolution's counters, then the workers'
        total.counters = counters
        files = {"file": f"{name}/{KEPT}", "rejected_file": f"{name}/{REJECTED}"}
        return self._save_stage_stats(name, stage, fp, files, total, t0, fingerprints_reused=False, parts=len(reports))

    def _save_stage_stats(
        self,
        name: str,
        stage: Stage,
        fp: str,
        files: Mapping[str, str | None],
        total: PartReport,
        t0: float,
        **extra: Any,
    ) -> dict[str, Any]:
        kind = "global" if isinstance(stage, GlobalStage) else "record"
        params = stage.params.model_dump(mode="json")
        return self._save_stats(name, stage.name, kind, fp, files, total, t0, params=params, **extra)

    def _save_stats(
        self,
        name: str,
        label: str,
        kind: str,
        fp: str,
        files: Mapping[str, str | None],
        total: PartReport,
        t0: float,
        **extra: Any,
    ) -> dict[str, Any]:
        """A finished step's ``.stats.json`` (written last: the step is complete once it exists), from its books."""
        stats: dict[str, Any] = {
            "name": label,
            "kind": kind,
            **files,
            "fingerprint": fp,
            "input": total.rows_in,
            "kept": total.kept,
            "dropped": total.dropped,
            "reasons": dict(total.reasons),
            "counters": dict(total.counters),
            "seconds": round(time.perf_counter() - t0, 3),
            "reused": False,
            **extra,
        }
        if kind == "read":
            stats["quarantined"] = total.quarantined
            stats["files"] = [vars(info) for info in total.infos]
        stats["collect"] = total.collector.result()
        write_json_atomic(self.work / f"{name}.stats.json", stats)
        return stats

    def _resolve(self, stage: GlobalStage, name: str, prev: Path, prev_fp: str, bar: Progress) -> tuple[Any, bool]:
        """Fingerprint and resolve; fingerprints the stage asks to cache are kept beside the checkpoint, keyed
        by the input and the parameters they depend on, so a re-run with another threshold reuses them."""
        cache_params = stage.fingerprint_cache_params()
        if cache_params is None or hasattr(self.engine, "resolve"):
            return resolve_global(self.engine, stage, _counted(self._batches(prev), bar)), False
        key = fingerprint(prev_fp, stage.name, cache_params)
        path = self.work / f"{name}.fingerprints.pkl"
        cached = load_pickle(path, key) if self.opts.resume else None
        reused = cached is not None
        if cached is None:
            cached = list(self.engine.map(stage, "fingerprint", _counted(self._batches(prev), bar)))
            write_pickle_atomic(path, key, cached)
        else:
            bar.update(bar.total or 0)
        return stage.resolve(cached), reused

    def _book(
        self,
        stage: Stage,
        result: StageResult,
        kept: ParquetSink,
        rej: ParquetSink,
        reasons: Counter[str],
        counters: Counter[str],
        collector: ReportCollector,
    ) -> None:
        table = result.table
        missing = [n for n in kept.schema.names if n not in table.column_names]
        if missing:
            raise StageError(stage.name, f"returned a batch without the column(s) {missing}")
        counters.update(result.counters)
        kept_table, dropped, codes = split_result(stage.name, result)
        kept.write(kept_table)
        collector.add_kept(kept_table)
        if dropped is not None:
            reasons.update(codes)
            rej.write(dropped)
            collector.add_dropped(dropped)

    # ---------------------------------------------------------------- outputs
    def _finish(self, last: Path, schema: pa.Schema, steps: list[dict[str, Any]]) -> dict[str, int]:
        final_schema = pa.schema([f for f in schema if f.name != SEQ_COLUMN])
        cleaned = ParquetSink(self.out / "cleaned.parquet", final_schema)
        final = ReportCollector()  # the "after" side of the report: every cleaned record, as it is written
        for batch in self._batches(last):
            cleaned.write(batch)
            final.add_kept(batch)
        cleaned.close()
        self.final_collect = final.result()
        rejected_schema = ledger_schema(final_schema)
        rejected = ParquetSink(self.out / "rejected.parquet", rejected_schema)
        for step in steps:
            part = self.work / (step.get("rejected_file") or step["file"].replace(".parquet", ".rejected.parquet"))
            for batch in self._batches(part):
                for f in rejected_schema:
                    if f.name not in batch.column_names:
                        batch = batch.append_column(f.name, pa.nulls(batch.num_rows, f.type))
                rejected.write(batch)
        rejected.close()
        src = self.work / steps[0].get("quarantine_file", "quarantine.jsonl")
        sources = [src] if src.suffix == ".jsonl" else part_files(src, ".jsonl")
        write_text_atomic(self.out / "quarantine.jsonl", "".join(f.read_text(encoding="utf-8") for f in sources))
        n_quarantined = sum(1 for _ in open(self.out / "quarantine.jsonl", encoding="utf-8"))
        totals = {
            "input": steps[0]["input"],
            "cleaned": pq.ParquetFile(self.out / "cleaned.parquet").metadata.num_rows,
            "rejected": pq.ParquetFile(self.out / "rejected.parquet").metadata.num_rows,
            "quarantined": n_quarantined,
        }
        if totals["input"] != totals["cleaned"] + totals["rejected"] + totals["quarantined"]:
            raise BalanceError(
                f"records were lost: input {totals['input']} != cleaned {totals['cleaned']} + rejected "
                f"{totals['rejected']} + quarantined {totals['quarantined']}. This is a bug; please report it "
                f"with the checkpoint folder {self.work}."
            )
        return totals

    def _bar(self, desc: str, total: int | None) -> Progress:
        return progress(desc, total, self.opts.progress, sys.stderr)


def _count_lines(path: Path) -> int:
    with open(path, "rb") as f:
        return sum(1 for _ in f)


def _counted(batches: Iterator[pa.Table], bar: Progress) -> Iterator[pa.Table]:
    for batch in batches:
        yield batch
        bar.update(batch.num_rows)


__all__ = ["CANONICAL_SCHEMA", "OUTPUT_FILES", "RunOptions", "Runner"]
