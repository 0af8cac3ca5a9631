"""The parts machinery (:mod:`pipeline.engines.parts`) without Ray, on the real Chinese records of samples/raw.

A parts engine's workers read the inputs and run the stages themselves, writing each step as Parquet parts named
after their first ``_seq``; the driver only merges their reports. Everything here checks that this gives the
local engine's results exactly: the same records, rejections and quarantine lines per file read in parts; the
same kept and dropped records per part booked; the same report material however the reports arrive; and, end to
end, the same outputs from :class:`~pipeline.runner.Runner` driven by :class:`InProcessPartsEngine` — a
PartsEngine that does in this process what the Ray engine does on a cluster.
"""

from __future__ import annotations

import json
import shutil
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.engines.local import LocalEngine, Method, PartsEngine, call
from pipeline.engines.parts import (
    KEPT,
    QUARANTINE,
    REJECTED,
    PartReport,
    book_part,
    iter_batches,
    ledger_schema,
    merge_reports,
    part_files,
    part_name,
    read_part,
    remove_orphans,
    split_result,
)
from pipeline.read.reader import SEQ_FILE_SHIFT, WORK_SCHEMA, Reader, expand_inputs, id_prefixes
from pipeline.recipe import Recipe, build_recipe
from pipeline.registry import DEFAULT_STAGES, STAGES
from pipeline.report.collect import ReportCollector, _mix
from pipeline.runner import Runner, RunOptions
from schemas.errors import BalanceError
from stages.base import SEQ_COLUMN, GlobalStage, RecordStage, Stage

ROOT = Path(__file__).resolve().parents[3]
SAMPLES = ROOT / "samples" / "raw"
READ_BATCH = 2  # read batches of 2 units ...
PART_ROWS = 3  # ... and parts of at least 3 units: several parts per sample file
RUN_BATCH = 4
# every default stage but the semantic one (its model would cost more than this whole file)
RUN_STAGES: list[Any] = [{name: {}} for name in DEFAULT_STAGES if name != "dedup_semantic"]
TIMING_KEYS = {"seconds", "records_per_s", "report_seconds", "started_at", "finished_at", "versions"}


# ---------------------------------------------------------------------------------------------- helpers
def sample_files() -> list[Path]:
    return expand_inputs([str(SAMPLES)])


def rows_of(folder: Path) -> list[dict[str, Any]]:
    """The records of a folder of parts, in part-name (= input) order."""
    return [row for f in part_files(folder) for row in pq.read_table(f).to_pylist()]


def lines_of(folder: Path) -> str:
    return "".join(f.read_text(encoding="utf-8") for f in part_files(folder, ".jsonl"))


def untimed(value: Any) -> Any:
    """``value`` without the keys that measure time (which no two runs share)."""
    if isinstance(value, dict):
        return {k: untimed(v) for k, v in value.items() if k not in TIMING_KEYS}
    if isinstance(value, list):
        return [untimed(v) for v in value]
    return value


def with_added_columns(stage: Stage) -> pa.Schema:
    """The schema of a step right after ``read`` (as the runner extends it)."""
    schema = WORK_SCHEMA
    for name, typ in stage.added_columns:
        if name not in schema.names:
            schema = schema.append(pa.field(name, typ))
    return schema


def read_records() -> pa.Table:
    """What the local reader keeps of samples/raw (35 records, in input order)."""
    chunks = [chunk.records for chunk in Reader(sample_files(), "auto", {}, 5)]
    return pa.concat_tables(chunks)


# ---------------------------------------------------------------------------------------------- 1. read_part
def local_read(files: list[Path]) -> tuple[list[dict[str, Any]], list[dict[str, Any]], str, Reader, ReportCollector]:
    """The local runner's read step, in memory: kept rows, ledger rows, quarantine text, reader, collector."""
    reader = Reader(files, "auto", {}, READ_BATCH)
    collector = ReportCollector()
    kept: list[dict[str, Any]] = []
    rejected: list[dict[str, Any]] = []
    quarantine = ""
    for chunk in reader:
        kept.extend(chunk.records.to_pylist())
        collector.add_kept(chunk.records)
        if chunk.rejected:
            table = pa.Table.from_pylist([{**r, "stage": "read"} for r in chunk.rejected], ledger_schema(WORK_SCHEMA))
            rejected.extend(table.to_pylist())
            collector.add_dropped(table)
        quarantine += "".join(json.dumps(q, ensure_ascii=False) + "\n" for q in chunk.quarantine)
    return kept, rejected, quarantine, reader, collector


def test_read_part_equals_local_reader(tmp_path: Path) -> None:
    files = sample_files()
    assert len(files) == 6
    step_dir = tmp_path / "00_read"
    per_file = [
        read_part(f, i, prefix, "auto", {}, READ_BATCH, step_dir, PART_ROWS)
        for i, (f, prefix) in enumerate(zip(files, id_prefixes(files), strict=True))
    ]
    kept, rejected, quarantine, reader, collector = local_read(files)
    assert kept and rejected and quarantine  # the samples exercise every outcome

    assert rows_of(step_dir / KEPT) == kept  # _seq, id, source and every text field
    assert rows_of(step_dir / REJECTED) == rejected
    assert lines_of(step_dir / QUARANTINE) == quarantine

    for i, (reports, info) in enumerate(zip(per_file, reader.infos, strict=True)):
        keys = [r.key for r in reports]
        assert keys[0] == i << SEQ_FILE_SHIFT and keys == sorted(set(keys))
        if info.units > READ_BATCH * 2:
            assert len(reports) > 1, f"{info.path}: {info.units} units in one part"
        assert [vars(x) for x in reports[0].infos] == [vars(info)]  # the file's info: once, in its first part
        assert all(not r.infos for r in reports[1:])
        assert sum(r.rows_in for r in reports) == info.units
        for r in reports:
            assert r.rows_in == r.kept + r.dropped + r.quarantined > 0
            kept_part = step_dir / KEPT / part_name(r.key)
            assert (pq.read_metadata(kept_part).num_rows if kept_part.exists() else 0) == r.kept
            rejected_part = step_dir / REJECTED / part_name(r.key)
            assert (pq.read_metadata(rejected_part).num_rows if rejected_part.exists() else 0) == r.dropped
            q_part = step_dir / QUARANTINE / part_name(r.key, ".jsonl")
            assert (len(q_part.read_text(encoding="utf-8").splitlines()) if q_part.exists() else 0) == r.quarantined
            assert sum(r.reasons.values()) == r.dropped

    total = merge_reports(r for reports in reversed(per_file) for r in reports)
    assert (total.kept, total.dropped, total.quarantined) == (len(kept), len(rejected), quarantine.count("\n"))
    assert total.rows_in == sum(info.units for info in reader.infos)
    assert total.reasons == Counter(r["reason"] for r in rejected)
    assert [vars(x) for x in total.infos] == [vars(x) for x in reader.infos]
    assert untimed(total.collector.result()) == untimed(collector.result())


# ---------------------------------------------------------------------------------------------- 2. book_part
def local_booking(stage: Stage, table: pa.Table, batch: int) -> tuple[pa.Table, pa.Table, Counter[str], Counter[str]]:
    """What the local runner books for ``stage`` over ``table``: kept, dropped, reasons, counters."""
    schema = with_added_columns(stage)
    kept, dropped = [], []
    reasons: Counter[str] = Counter()
    counters: Counter[str] = Counter()
    for start in range(0, table.num_rows, batch):
        result = call(stage, "process", table.slice(start, batch))
        k, d, codes = split_result(stage.name, result)
        kept.append(k.select(schema.names).cast(schema))
        if d is not None:
            dropped.append(d.select(ledger_schema(schema).names).cast(ledger_schema(schema)))
        reasons.update(codes)
        counters.update(result.counters)
    return pa.concat_tables(kept), pa.concat_tables(dropped), reasons, counters


def test_book_part_equals_local_booking(tmp_path: Path) -> None:
    stage = STAGES["quality"]()
    stage.setup()
    records = read_records()
    schema = with_added_columns(stage)
    kept, dropped, reasons, counters = local_booking(stage, records, RUN_BATCH)
    assert kept.num_rows and dropped.num_rows  # quality drops some of the samples and keeps the rest

    report = book_part(stage, "process", records, None, tmp_path / "a", schema, RUN_BATCH)
    name = part_name(0)
    assert [p.name for p in part_files(tmp_path / "a" / KEPT)] == [name]
    assert pq.read_table(tmp_path / "a" / KEPT / name).to_pylist() == kept.to_pylist()
    assert pq.read_table(tmp_path / "a" / REJECTED / name).to_pylist() == dropped.to_pylist()
    assert (report.key, report.rows_in, report.kept, report.dropped) == (0, 35, kept.num_rows, dropped.num_rows)
    assert report.reasons == reasons and report.counters == counters
    assert report.collector.dropped.n == dropped.num_rows and report.collector.kept.n == kept.num_rows


def test_book_part_sorts_its_input_and_is_named_after_the_first_seq(tmp_path: Path) -> None:
    stage = STAGES["quality"]()
    stage.setup()
    records = read_records().slice(7)
    first = records.column(SEQ_COLUMN)[0].as_py()
    assert first > 0
    kept, dropped, reasons, _ = local_booking(stage, records, RUN_BATCH)
    shuffled = records.take(pa.array([*range(records.num_rows - 1, 10, -1), *range(11)]))
    assert shuffled.column(SEQ_COLUMN).to_pylist() != sorted(shuffled.column(SEQ_COLUMN).to_pylist())

    report = book_part(stage, "process", shuffled, None, tmp_path, with_added_columns(stage), RUN_BATCH)
    assert report.key == first
    assert [p.name for p in part_files(tmp_path / KEPT)] == [part_name(first)]
    assert rows_of(tmp_path / KEPT) == kept.to_pylist()
    assert rows_of(tmp_path / REJECTED) == dropped.to_pylist()
    assert report.reasons == reasons


# ---------------------------------------------------------------------------------------------- 3. merge
def tiled_records(tiles: int) -> pa.Table:
    """The sample records ``tiles`` times, each copy made distinct (a numbered suffix, its own id and _seq) so
    that exact dedup finds only the sample's own duplicates, once per copy."""
    base = read_records()
    copies = []
    for k in range(tiles):
        t = base.set_column(
            base.schema.get_field_index("id"), "id", pa.array([f"{i}~{k}" for i in base.column("id").to_pylist()])
        )
        t = t.set_column(
            t.schema.get_field_index("instruction"),
            "instruction",
            pa.array([f"{s}（第{k}组）" for s in t.column("instruction").to_pylist()]),
        )
        copies.append(t)
    table = pa.concat_tables(copies)
    return table.set_column(table.schema.get_field_index(SEQ_COLUMN), SEQ_COLUMN, pa.array(range(table.num_rows)))


def collector_events(tiles: int, batch: int) -> list[list[tuple[str, pa.Table]]]:
    """Per input batch, in input order, what a step's collector is fed: safety's and quality's drops (categories,
    examples), exact dedup's drops (cluster sizes, after normalize) and the records they all keep (scores,
    instructions)."""
    normalize, safety, quality = STAGES["normalize"](), STAGES["safety"](), STAGES["quality"]()
    dedup = STAGES["dedup_exact"]()
    for stage in (normalize, safety, quality, dedup):
        stage.setup()
    records = tiled_records(tiles)
    after: list[tuple[pa.Table, list[tuple[str, pa.Table]]]] = []
    for start in range(0, records.num_rows, batch):
        events: list[tuple[str, pa.Table]] = []
        table = records.slice(start, batch)
        for stage in (normalize, safety, quality):
            assert isinstance(stage, RecordStage)
            table, dropped, _ = split_result(stage.name, stage.process(table))
            if dropped is not None:
                events.append(("dropped", dropped))
        after.append((table, events))
    assert isinstance(dedup, GlobalStage)
    resolution = dedup.resolve([dedup.fingerprint(t) for t, _ in after])
    batches = []
    for table, events in after:
        kept, dropped, _ = split_result(dedup.name, dedup.decide(table, resolution))
        if dropped is not None:
            events.append(("dropped", dropped))
        batches.append([*events, ("kept", kept)])
    return batches


def feed(collector: ReportCollector, batches: list[list[tuple[str, pa.Table]]]) -> ReportCollector:
    for events in batches:
        for kind, table in events:
            (collector.add_kept if kind == "kept" else collector.add_dropped)(table)
    return collector


def test_collectors_merged_part_by_part_equal_one_collector() -> None:
    batches = collector_events(tiles=60, batch=50)
    whole = feed(ReportCollector(), batches)
    expected = whole.result()
    assert expected["kept"]["n"] > 1000 and expected["verb_object"]["sample"] == 1000  # the sample is full
    assert expected["categories"] and expected["cluster_sizes"] and expected["kept"]["quality_score"]
    dropped = pa.concat_tables([t.select(["id", "reason"]) for events in batches for k, t in events if k != "kept"])
    first_ids: dict[str, list[str]] = {}
    for rid, reason in zip(dropped.column("id").to_pylist(), dropped.column("reason").to_pylist(), strict=True):
        first_ids.setdefault(reason, [])
        if len(first_ids[reason]) < 5:
            first_ids[reason].append(rid)
    assert {r: [e["id"] for e in ex] for r, ex in expected["examples"].items()} == first_ids
    assert max(Counter(dropped.column("reason").to_pylist()).values()) > 5 * 7  # reasons recur in every part

    groups = [batches[i : i + 7] for i in range(0, len(batches), 7)]
    parts = [feed(ReportCollector(), group) for group in groups]
    merged = ReportCollector()
    for part in parts:
        merged.merge(part)
    assert untimed(merged.result()) == untimed(expected)
    assert merged._sample_text == whole._sample_text  # the same 1,000 instructions, in the same order
    kept = pa.concat_tables([t for events in batches for k, t in events if k == "kept"])
    smallest = np.argsort(_mix(kept.column(SEQ_COLUMN).to_numpy()), kind="stable")[:1000]
    assert whole._sample_text == kept.column("instruction").take(pa.array(smallest)).to_pylist()

    part_results = [p.result() for p in parts]
    for side in ("kept", "dropped"):
        for hist in ("instruction_len", "output_len", "quality_score"):
            summed = [sum(col) for col in zip(*(r[side][hist] for r in part_results), strict=True)]
            assert summed == expected[side][hist]

    # a part's key is the _seq of its first record: batch number x batch size here
    reports = [PartReport(k * 7 * 50, collector=feed(ReportCollector(), g)) for k, g in enumerate(groups)]
    total = merge_reports(reversed(reports))  # reports arrive in any order; they are merged in input order
    assert untimed(total.collector.result()) == untimed(expected)


# ---------------------------------------------------------------------------------------------- 4. orphans
def test_remove_orphans_keeps_only_reported_parts(tmp_path: Path) -> None:
    files = sample_files()
    reports = [
        report
        for i, (f, prefix) in enumerate(zip(files, id_prefixes(files), strict=True))
        for report in read_part(f, i, prefix, "auto", {}, READ_BATCH, tmp_path, PART_ROWS)
    ]
    for kind in (KEPT, REJECTED, QUARANTINE):
        assert part_files(tmp_path / kind, ".jsonl" if kind == QUARANTINE else ".parquet")
    leftover = tmp_path / KEPT / (part_name(reports[0].key) + ".tmp-4242")
    leftover.write_bytes(b"half a part")
    keep = {r.key for r in reports[::2]}
    before = {p.relative_to(tmp_path) for p in tmp_path.rglob("part-*") if ".tmp-" not in p.name}

    remove_orphans(tmp_path, keep)
    after = {p.relative_to(tmp_path) for p in tmp_path.rglob("part-*")}
    assert not leftover.exists()
    assert after == {p for p in before if int(p.name[5:25]) in keep}
    assert after and after != before


# ---------------------------------------------------------------------------------------------- 5./6. runner
class InProcessPartsEngine:
    """A :class:`~pipeline.engines.local.PartsEngine` in this process, doing what the Ray engine does on a cluster: a
    task per input file (``read_part``), blocks of a few records booked one by one (``book_part``, some blocks
    handed over in reverse order), fingerprints resolved by the stage — and reports returned last first, as
    workers finish in any order. ``lose_kept_of``: after that stage's parts are written, one kept part vanishes."""

    workers = 1

    def __init__(self, part_rows: int = PART_ROWS, block_rows: int = 7, lose_kept_of: str | None = None) -> None:
        self.part_rows, self.block_rows, self.lose_kept_of = part_rows, block_rows, lose_kept_of
        self.local = LocalEngine(1)
        self.calls: Counter[str] = Counter()
        self._ready: set[int] = set()

    def map(self, stage: Stage, method: Method, batches: Any, context: Any = None) -> Iterator[Any]:
        return self.local.map(stage, method, batches, context)

    def _setup(self, stage: Stage) -> None:
        if id(stage) not in self._ready:
            stage.setup()
            self._ready.add(id(stage))

    def read_parts(
        self, files: list[Path], prefixes: list[str], recipe: Recipe, step_dir: Path
    ) -> Iterator[PartReport]:
        self.calls["read_parts"] += 1
        reports = [
            report
            for i, (path, prefix) in enumerate(zip(files, prefixes, strict=True))
            for report in read_part(
                path, i, prefix, recipe.format, dict(recipe.fields), recipe.batch_size, step_dir, self.part_rows
            )
        ]
        yield from reversed(reports)

    def map_parts(
        self,
        stage: Stage,
        method: Method,
        inputs: list[Path],
        step_dir: Path,
        schema: pa.Schema,
        batch_size: int,
        context: Any = None,
    ) -> Iterator[PartReport]:
        self.calls["map_parts"] += 1
        if not inputs:
            return
        self._setup(stage)
        records = pa.concat_tables([pq.read_table(p) for p in inputs])
        reports = []
        for n, start in enumerate(range(0, records.num_rows, self.block_rows)):
            block = records.slice(start, self.block_rows)
            if n % 2:
                block = block.take(pa.array(range(block.num_rows - 1, -1, -1)))
            reports.append(book_part(stage, method, block, context, step_dir, schema, batch_size))
        if stage.name == self.lose_kept_of:
            lost = next(r for r in reports if r.kept)
            (step_dir / KEPT / part_name(lost.key)).unlink()
        yield from reversed(reports)

    def resolve_parts(self, stage: GlobalStage, inputs: list[Path]) -> Any:
        self.calls["resolve_parts"] += 1
        self._setup(stage)
        return stage.resolve([stage.fingerprint(b) for p in inputs for b in iter_batches(p, self.block_rows)])


def run(
    out: Path, engine: Any = None, resume: bool = False, inputs: Path = SAMPLES, stages: list[Any] = RUN_STAGES
) -> dict[str, Any]:
    raw = {"input": [str(inputs)], "output": str(out), "stages": stages, "batch_size": RUN_BATCH}
    recipe = build_recipe(raw, base_dir=None, source="t")
    return Runner(recipe, RunOptions(output=out, resume=resume, progress=False), engine=engine).run()


def outcome(out: Path, report: dict[str, Any]) -> dict[str, Any]:
    """What must not depend on the engine: the output files and the report, bar timings and the engine's name."""
    return {
        "cleaned": pq.read_table(out / "cleaned.parquet").to_pylist(),
        "rejected": pq.read_table(out / "rejected.parquet").to_pylist(),
        "quarantine": (out / "quarantine.jsonl").read_text(encoding="utf-8"),
        "report": untimed(
            json.loads(  # the output folder is named in the inspect commands: the same run elsewhere is the same
                json.dumps(
                    {k: v for k, v in report.items() if k not in ("recipe", "recipe_source", "recipe_hash")}
                ).replace(str(out), "OUT")
            )
        ),
    }


@pytest.fixture(scope="module")
def local_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("local")
    return outcome(out, run(out))


@pytest.fixture(scope="module")
def parts_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    out = tmp_path_factory.mktemp("parts")
    engine = InProcessPartsEngine()
    report = run(out, engine)
    assert engine.calls["read_parts"] == 1 and engine.calls["map_parts"] == len(RUN_STAGES)
    assert engine.calls["resolve_parts"] == 2  # dedup_exact, dedup_minhash
    return out, report


def test_in_process_engine_is_a_parts_engine() -> None:
    assert isinstance(InProcessPartsEngine(), PartsEngine)
    assert not isinstance(LocalEngine(), PartsEngine)


def test_parts_run_equals_local_run(local_run: dict[str, Any], parts_run: tuple[Path, dict[str, Any]]) -> None:
    out, report = parts_run
    parts = outcome(out, report)
    assert parts["cleaned"] == local_run["cleaned"]
    assert parts["rejected"] == local_run["rejected"]
    assert parts["quarantine"] == local_run["quarantine"]
    assert (
        parts["report"]["counts"]
        == local_run["report"]["counts"]
        == {
            "input": 43,
            "cleaned": 22,
            "rejected": 16,
            "quarantined": 5,
        }
    )
    assert parts["report"]["stages"] == local_run["report"]["stages"]
    assert parts["report"] == local_run["report"]


def test_parts_run_checkpoints_are_folders_of_parts(parts_run: tuple[Path, dict[str, Any]]) -> None:
    out, report = parts_run
    work = out / ".zhcurate"
    names = ["00_read", *(f"{k:02d}_{next(iter(s))}" for k, s in enumerate(RUN_STAGES, start=1))]
    for name, step in zip(names, report["stages"], strict=True):
        stats = json.loads((work / f"{name}.stats.json").read_text(encoding="utf-8"))
        kept = part_files(work / name / KEPT)
        assert kept and all(p.name.startswith("part-") and len(p.name) == len("part-.parquet") + 20 for p in kept)
        assert stats["file"] == f"{name}/{KEPT}" and stats["parts"] > 1
        assert sum(pq.read_metadata(p).num_rows for p in kept) == step["kept"]
        assert sum(pq.read_metadata(p).num_rows for p in part_files(work / name / REJECTED)) == step["dropped"]
        assert not (work / f"{name}.parquet").exists()
    assert len(lines_of(work / "00_read" / QUARANTINE).splitlines()) == 5


def test_missing_part_is_a_balance_error(tmp_path: Path) -> None:
    engine = InProcessPartsEngine(lose_kept_of="quality")
    with pytest.raises(BalanceError) as err:
        run(tmp_path, engine)
    message = str(err.value)
    assert "step '05_quality'" in message and str(tmp_path / ".zhcurate" / "05_quality") in message
    assert engine.calls["map_parts"] == 5  # normalize, safety, language, mt_damage, quality: the run stopped there


def test_resume_reuses_every_parts_step(tmp_path: Path, parts_run: tuple[Path, dict[str, Any]]) -> None:
    first_out, first = parts_run
    out = tmp_path / "out"
    shutil.copytree(first_out, out)
    engine = InProcessPartsEngine()
    report = run(out, engine, resume=True)
    assert not engine.calls  # no step ran again
    assert report["reused_stages"] == [s["stage"] for s in first["stages"]]
    assert all(s["reused"] for s in report["stages"])
    again, before = outcome(out, report), outcome(first_out, first)
    for side in (again, before):  # a reused step says so; all else is the same
        side["report"].pop("reused_stages")
        for step in side["report"]["stages"]:
            step.pop("reused")
    assert again == before


def test_parts_run_with_an_empty_file_and_a_step_that_keeps_nothing(tmp_path: Path) -> None:
    """An empty input file (no part, but its FileInfo), a file of unparseable lines only (quarantine parts
    without records) and a stage that drops everything (later steps get no parts at all) change nothing."""
    inputs = tmp_path / "in"
    shutil.copytree(SAMPLES, inputs)
    (inputs / "empty.jsonl").write_text("", encoding="utf-8")
    (inputs / "broken.jsonl").write_text('{"instruction": "写一首诗\n[1, 2\n', encoding="utf-8")
    stages: list[Any] = [{"normalize": {}}, {"quality": {"max_chars": 1}}, {"dedup_exact": {}}, {"dedup_minhash": {}}]
    local = outcome(tmp_path / "local", run(tmp_path / "local", inputs=inputs, stages=stages))
    engine = InProcessPartsEngine()
    parts = outcome(tmp_path / "parts", run(tmp_path / "parts", engine, inputs=inputs, stages=stages))
    assert parts == local
    assert local["report"]["counts"] == {"input": 45, "cleaned": 0, "rejected": 38, "quarantined": 7}
    assert [s["kept"] for s in local["report"]["stages"]] == [35, 35, 0, 0, 0]
    assert any(f["path"].endswith("empty.jsonl") and f["units"] == 0 for f in local["report"]["inputs"])
    assert not (tmp_path / "parts" / ".zhcurate" / "03_dedup_exact" / KEPT).exists()


@pytest.mark.parametrize("first_parts", [False, True], ids=["local-then-parts", "parts-then-local"])
def test_resume_across_engines(tmp_path: Path, first_parts: bool) -> None:
    """A run started on one engine resumes on the other: the unchanged steps are reused whatever wrote them
    (one file or a folder of parts), the changed last stage runs on the other engine, and the outputs equal a
    fresh local run with the changed recipe."""
    changed = [*RUN_STAGES[:-1], {"dedup_minhash": {"threshold": 0.5}}]
    out = tmp_path / "out"
    run(out, InProcessPartsEngine() if first_parts else None)
    engine = None if first_parts else InProcessPartsEngine()
    report = run(out, engine, resume=True, stages=changed)
    assert report["reused_stages"] == ["read", *(next(iter(s)) for s in RUN_STAGES[:-1])]
    if engine is not None:
        assert engine.calls["map_parts"] == 1 and "read_parts" not in engine.calls
    fresh = tmp_path / "fresh"
    expected = outcome(fresh, run(fresh, stages=changed))
    got = outcome(out, report)
    assert got["cleaned"] == expected["cleaned"]
    assert got["rejected"] == expected["rejected"]
    assert got["quarantine"] == expected["quarantine"]
    assert got["report"]["counts"] == expected["report"]["counts"]
