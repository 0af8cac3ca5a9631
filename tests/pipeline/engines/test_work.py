"""Work units (:mod:`pipeline.engines.work`) and their parts (:mod:`pipeline.engines.parts`), on the real Chinese
records of samples/raw.

Every engine runs a step as work units that read their input and write the step's parts named after their first
``_seq``; the driver only merges their reports. Everything here checks that how the units are cut and in what
order they finish changes nothing: a file read as a unit of its own (as on Ray) equals the reader of all the
inputs; report material merged part by part equals one collector's; and, end to end, :class:`ShuffledEngine` —
the local engine with Ray's units (one per input file, parts of 3 units, steps cut into units of 7 records) whose
reports come back last first — gives the outputs and the report of the plain local engine.
"""

from __future__ import annotations

import json
import shutil
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.engines.local import LocalEngine
from pipeline.engines.parts import (
    KEPT,
    QUARANTINE,
    REJECTED,
    PartReport,
    ledger_schema,
    merge_reports,
    part_files,
    part_name,
    remove_orphans,
    split_result,
)
from pipeline.engines.work import FileUnit, Job, ReadSpec, Unit, run_unit
from pipeline.read.reader import SEQ_FILE_SHIFT, WORK_SCHEMA, Reader, expand_inputs, id_prefixes
from pipeline.recipe import build_recipe
from pipeline.registry import DEFAULT_STAGES, STAGES
from pipeline.report.collect import ReportCollector, _mix
from pipeline.runner import Runner, RunOptions
from schemas.errors import BalanceError
from stages.base import SEQ_COLUMN, GlobalStage, RecordStage
from stages.dedup.grouping import group_pairs

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


def read_records() -> pa.Table:
    """What the local reader keeps of samples/raw (35 records, in input order)."""
    chunks = [chunk.records for chunk in Reader(sample_files(), "auto", {}, 5)]
    return pa.concat_tables(chunks)


# ---------------------------------------------------------------------------------------------- 1. read units
def local_read(files: list[Path]) -> tuple[list[dict[str, Any]], list[dict[str, Any]], str, Reader, ReportCollector]:
    """One reader of all the inputs, in memory: kept rows, ledger rows, quarantine text, reader, collector."""
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


def read_job(step_dir: Path) -> Job:
    spec = ReadSpec("auto", {}, READ_BATCH, PART_ROWS)
    return Job("segment", [], READ_BATCH, [str(step_dir)], [], spec)


def test_a_file_read_as_its_own_unit_equals_the_reader_of_all_inputs(tmp_path: Path) -> None:
    files = sample_files()
    assert len(files) == 6
    step_dir = tmp_path / "00_read"
    job = read_job(step_dir)
    per_file = [
        [reports[0] for reports in run_unit(job, FileUnit(str(f), i, prefix))]
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
        assert [vars(x) for x in reports[-1].infos] == [vars(info)]  # the file's info: once, in its last part
        assert all(not r.infos for r in reports[:-1])
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
    job = read_job(tmp_path)
    reports = [
        parts[0]
        for i, (f, prefix) in enumerate(zip(files, id_prefixes(files), strict=True))
        for parts in run_unit(job, FileUnit(str(f), i, prefix))
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
class ShuffledEngine(LocalEngine):
    """The local engine in this process with Ray's units — a unit per input file (read into parts of
    ``PART_ROWS`` units), steps cut into units of ``unit`` records — and the reports of every pass returned last
    first, as workers finish in any order. ``lose_kept_of``: after that step's parts are written, one kept part
    vanishes. ``calls`` counts the jobs run, by kind."""

    def __init__(self, unit: int = 7, lose_kept_of: str | None = None) -> None:
        super().__init__(1)
        self.unit, self.lose_kept_of = unit, lose_kept_of
        self.calls: Counter[str] = Counter()

    def read_units(self, files: list[Path], prefixes: list[str], spec: ReadSpec) -> list[Unit]:
        return [FileUnit(str(f), i, p) for i, (f, p) in enumerate(zip(files, prefixes, strict=True))]

    def unit_rows(self, rows: int, batch_size: int) -> int:
        return self.unit

    def run(self, job: Job, units: Iterable[Unit]) -> Iterator[Any]:
        self.calls[job.kind] += 1
        if job.read is not None:
            job.read = ReadSpec(job.read.fmt, job.read.fields, job.read.batch_size, PART_ROWS)
        results = list(super().run(job, units))
        if job.kind == "collect":  # fingerprints are resolved in input order
            yield from results
            return
        last = Path(job.step_dirs[-1])
        if last.name.endswith(f"_{self.lose_kept_of}"):
            next(iter(part_files(last / KEPT))).unlink()
        yield from reversed(results)

    def group_pairs(self, rows: pa.Table) -> pa.Table:
        """As Ray groups: the rows shuffled, hash-partitioned by key, each partition paired on its own."""
        self.calls["group_pairs"] += 1
        rows = rows.take(np.random.default_rng(7).permutation(rows.num_rows))
        part = rows.column("key").to_numpy() % np.uint64(3)
        found = [group_pairs(rows.filter(pa.array(part == p))) for p in range(3)]
        return pa.concat_tables(found[::-1])


def run(
    out: Path, engine: Any = None, resume: bool = False, inputs: Path = SAMPLES, stages: list[Any] = RUN_STAGES
) -> dict[str, Any]:
    raw = {"input": [str(inputs)], "output": str(out), "stages": stages, "batch_size": RUN_BATCH}
    recipe = build_recipe(raw, base_dir=None, source="t")
    return Runner(recipe, RunOptions(output=out, resume=resume, progress=False), engine=engine).run()


def outcome(out: Path, report: dict[str, Any]) -> dict[str, Any]:
    """What must not depend on the engine: the output files and the report, bar timings, the engine's name and
    how many parts each step has."""
    for step in report["stages"]:
        step.pop("parts", None)
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
def shuffled_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    out = tmp_path_factory.mktemp("shuffled")
    engine = ShuffledEngine()
    report = run(out, engine)
    # read + the record stages (one pass), then per dedup stage: fingerprints, then decisions,
    # and the key rows of dedup_exact and dedup_minhash grouped by the engine
    assert engine.calls == {"segment": 3, "collect": 2, "group_pairs": 2}
    return out, report


def test_shuffled_units_give_the_local_run(
    local_run: dict[str, Any], shuffled_run: tuple[Path, dict[str, Any]]
) -> None:
    out, report = shuffled_run
    got = outcome(out, report)
    assert got["cleaned"] == local_run["cleaned"]
    assert got["rejected"] == local_run["rejected"]
    assert got["quarantine"] == local_run["quarantine"]
    assert (
        got["report"]["counts"]
        == local_run["report"]["counts"]
        == {
            "input": 43,
            "cleaned": 22,
            "rejected": 16,
            "quarantined": 5,
        }
    )
    assert got["report"]["stages"] == local_run["report"]["stages"]  # counters too
    assert got["report"] == local_run["report"]


def test_checkpoints_are_folders_of_parts(shuffled_run: tuple[Path, dict[str, Any]]) -> None:
    out, report = shuffled_run
    work = out / ".zhcurate"
    names = ["00_read", *(f"{k:02d}_{next(iter(s))}" for k, s in enumerate(RUN_STAGES, start=1))]
    for name, step in zip(names, report["stages"], strict=True):
        stats = json.loads((work / f"{name}.stats.json").read_text(encoding="utf-8"))
        kept = part_files(work / name / KEPT)
        assert all(p.name.startswith("part-") and len(p.name) == len("part-.parquet") + 20 for p in kept)
        if stats["file"] is None:  # inside the fused pass: a ledger, no kept records
            assert not kept and stats["fused"][-1] == "quality"
        else:
            assert stats["file"] == f"{name}/{KEPT}" and stats["parts"] > 1
            assert sum(pq.read_metadata(p).num_rows for p in kept) == step["kept"]
        assert sum(pq.read_metadata(p).num_rows for p in part_files(work / name / REJECTED)) == step["dropped"]
    assert len(lines_of(work / "00_read" / QUARANTINE).splitlines()) == 5


def test_missing_part_is_a_balance_error(tmp_path: Path) -> None:
    engine = ShuffledEngine(lose_kept_of="quality")
    with pytest.raises(BalanceError) as err:
        run(tmp_path, engine)
    message = str(err.value)
    assert "step '05_quality'" in message and str(tmp_path / ".zhcurate" / "05_quality") in message
    assert engine.calls == {"segment": 1}  # read + normalize … quality: the run stopped there


def test_resume_reuses_every_step(tmp_path: Path, shuffled_run: tuple[Path, dict[str, Any]]) -> None:
    first_out, first = shuffled_run
    out = tmp_path / "out"
    shutil.copytree(first_out, out)
    engine = ShuffledEngine()
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


def test_an_empty_file_and_a_step_that_keeps_nothing(tmp_path: Path) -> None:
    """An empty input file (no records, but its FileInfo), a file of unparseable lines only (quarantine parts
    without records) and a stage that drops everything (later steps get no units at all) change nothing."""
    inputs = tmp_path / "in"
    shutil.copytree(SAMPLES, inputs)
    (inputs / "empty.jsonl").write_text("", encoding="utf-8")
    (inputs / "broken.jsonl").write_text('{"instruction": "写一首诗\n[1, 2\n', encoding="utf-8")
    stages: list[Any] = [{"normalize": {}}, {"quality": {"max_chars": 1}}, {"dedup_exact": {}}, {"dedup_minhash": {}}]
    local = outcome(tmp_path / "local", run(tmp_path / "local", inputs=inputs, stages=stages))
    shuffled = outcome(tmp_path / "s", run(tmp_path / "s", ShuffledEngine(), inputs=inputs, stages=stages))
    assert shuffled == local
    assert local["report"]["counts"] == {"input": 45, "cleaned": 0, "rejected": 38, "quarantined": 7}
    assert [s["kept"] for s in local["report"]["stages"]] == [35, 35, 0, 0, 0]
    assert any(f["path"].endswith("empty.jsonl") and f["units"] == 0 for f in local["report"]["inputs"])
    assert not (tmp_path / "s" / ".zhcurate" / "03_dedup_exact" / KEPT).exists()
