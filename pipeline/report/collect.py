"""What the report needs from one step, gathered while the runner books each batch (never by re-reading data).

The runner feeds a :class:`ReportCollector` with every batch a step keeps and every batch it drops (with the
``reason`` and ``detail`` columns) and stores :meth:`ReportCollector.result` in the step's ``.stats.json``, so
that ``--resume`` keeps it. Everything here is small and bounded whatever the input size:

* fixed-bin histograms of instruction / output length (characters) and of ``quality_score``;
* counts: task types (:mod:`pipeline.report.tasktypes`), ``language_profile`` values, refusals kept
  (``safety_refusal``) by request category (``safety_request_category``), safety categories and signals of the
  drops (``detail.category``, ``detail.signal``), duplicate cluster sizes (``detail.cluster_size``);
* a histogram of ``safety_score`` (kept: the column; dropped: ``detail.safety_score``);
* the first :data:`EXAMPLES_PER_REASON` dropped records of each reason (texts cut to :data:`EXAMPLE_CHARS`),
  and for duplicates with a ``similarity`` the :data:`NEAR_THRESHOLD` drops of lowest similarity (the pairs
  that raising the threshold would keep);
* a sample of :data:`SAMPLE_SIZE` kept instructions, chosen by the smallest hash of ``_seq`` (the same records
  are chosen at every step where they survive), reduced to leading verb–object pairs when the step ends.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.report import drops
from pipeline.report.tasktypes import count_task_types, verb_objects

LENGTH_EDGES: tuple[int, ...] = (0, 1, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000)
"""Left edges of the length bins (characters); the last bin is open-ended."""
SCORE_BINS = 20
"""``quality_score`` bins of width 0.05 over [0, 1]."""
EXAMPLES_PER_REASON = 5
NEAR_THRESHOLD = drops.NEAR_THRESHOLD
EXAMPLE_CHARS = 600
SAMPLE_SIZE = 1000
TASK_BLOCK = 1 << 16
"""Rows whose task types are classified in one go: Arrow compiles each rule's regex once per array it scans,
which costs about as much as scanning 5,000 instructions, so batches are gathered first."""
TEXT_FIELDS = ("system", "instruction", "input", "output")


def length_hist(column: pa.ChunkedArray | pa.Array) -> list[int]:
    """Counts of string lengths (characters) in the bins of :data:`LENGTH_EDGES`."""
    lengths = pc.fill_null(pc.utf8_length(column), 0).to_numpy(zero_copy_only=False)
    idx = np.searchsorted(np.asarray(LENGTH_EDGES), lengths, side="right") - 1
    return [int(c) for c in np.bincount(idx, minlength=len(LENGTH_EDGES))]


def score_hist(column: pa.ChunkedArray | pa.Array) -> list[int]:
    """Counts of non-null scores in :data:`SCORE_BINS` equal bins over [0, 1] (1.0 in the last bin)."""
    values = pc.drop_null(column).to_numpy(zero_copy_only=False).astype(np.float64)
    idx = np.clip((values * SCORE_BINS).astype(np.int64), 0, SCORE_BINS - 1)
    return [int(c) for c in np.bincount(idx, minlength=SCORE_BINS)]


def _mix(seq: np.ndarray) -> np.ndarray:
    """splitmix64 of the record positions: a fixed pseudo-random order for sampling."""
    with np.errstate(over="ignore"):
        z = seq.astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def _add(into: list[int], more: list[int]) -> None:
    for i, v in enumerate(more):
        into[i] += v


class _Side:
    """Counters of one side (kept or dropped) of a step."""

    def __init__(self) -> None:
        self.n = 0
        self.instruction_len = [0] * len(LENGTH_EDGES)
        self.output_len = [0] * len(LENGTH_EDGES)
        self.quality_score = [0] * SCORE_BINS
        self.task_types: Counter[str] = Counter()
        self.language_profile: Counter[str] = Counter()
        self.refusals = 0
        self.safety_score = [0] * SCORE_BINS
        self.refusal_categories: Counter[str] = Counter()
        self._pending: list[pa.Table] = []  # batches whose task types are not counted yet
        self._pending_rows = 0

    def __getstate__(self) -> dict[str, Any]:
        self.flush()
        return self.__dict__

    def flush(self) -> None:
        """Count the task types of the gathered batches."""
        if self._pending:
            table = pa.concat_tables(self._pending, promote_options="permissive").combine_chunks()
            self.task_types.update(count_task_types(table))
            self._pending, self._pending_rows = [], 0

    def add(self, table: pa.Table, task_types: bool = True, dropped: bool = False) -> None:
        self.n += table.num_rows
        _add(self.instruction_len, length_hist(table.column("instruction")))
        _add(self.output_len, length_hist(table.column("output")))
        if task_types:
            self._pending.append(table.select(["instruction", "input", "history"]))
            self._pending_rows += table.num_rows
            if self._pending_rows >= TASK_BLOCK:
                self.flush()
        names = table.column_names
        if "quality_score" in names:
            _add(self.quality_score, score_hist(table.column("quality_score")))
        if "language_profile" in names:
            vc = pc.value_counts(pc.drop_null(table.column("language_profile"))).to_pylist()
            self.language_profile.update({d["values"]: d["counts"] for d in vc})
        if "safety_refusal" in names:
            self.refusals += int(
                pc.sum(pc.cast(pc.fill_null(table.column("safety_refusal"), False), pa.int64())).as_py() or 0
            )
            if "safety_request_category" in names:
                refused = table.filter(pc.fill_null(table.column("safety_refusal"), False))
                vc = pc.value_counts(pc.drop_null(refused.column("safety_request_category"))).to_pylist()
                self.refusal_categories.update({d["values"]: d["counts"] for d in vc})
        if "safety_score" in names and not dropped:  # a drop's own score is in its detail (safety's drops only)
            _add(self.safety_score, score_hist(table.column("safety_score")))

    def merge(self, other: _Side) -> None:
        # Batches not counted yet move over (a part's collector in this process), so the task types of small
        # parts are classified together, one regex compilation per rule for each TASK_BLOCK rows.
        self._pending.extend(other._pending)
        self._pending_rows += other._pending_rows
        other._pending, other._pending_rows = [], 0
        if self._pending_rows >= TASK_BLOCK:
            self.flush()
        self.n += other.n
        _add(self.instruction_len, other.instruction_len)
        _add(self.output_len, other.output_len)
        _add(self.quality_score, other.quality_score)
        self.task_types.update(other.task_types)
        self.language_profile.update(other.language_profile)
        self.refusals += other.refusals
        _add(self.safety_score, other.safety_score)
        self.refusal_categories.update(other.refusal_categories)

    def result(self) -> dict[str, Any]:
        self.flush()
        return {
            "n": self.n,
            "instruction_len": self.instruction_len,
            "output_len": self.output_len,
            "quality_score": self.quality_score,
            "task_types": dict(self.task_types),
            "language_profile": dict(self.language_profile),
            "refusals": self.refusals,
            "safety_score": self.safety_score,
            "refusal_categories": dict(self.refusal_categories),
        }


def _cut(text: Any) -> str:
    s = text if isinstance(text, str) else ""
    return s if len(s) <= EXAMPLE_CHARS else s[:EXAMPLE_CHARS] + "…"


class ReportCollector:
    """Gathers one step's report material from the batches it keeps and drops.

    With ``full_kept=False`` the kept side gets only the cheap vectorized counters (lengths, scores, language,
    refusals): task types and the verb–object sample, which cost a regex pass and jieba, are gathered for the
    records ``read`` keeps ("before") and for the cleaned records as the runner writes them ("after"), never for
    dropped records (the report does not show them)."""

    def __init__(
        self, full_kept: bool = True, sample_size: int = SAMPLE_SIZE, examples_per_reason: int = EXAMPLES_PER_REASON
    ) -> None:
        self.full_kept = full_kept
        self.kept = _Side()
        self.dropped = _Side()
        self.examples: dict[str, list[dict[str, Any]]] = {}
        self.categories: dict[str, Counter[str]] = {}
        self.signals: dict[str, Counter[str]] = {}
        self.cluster_drops: Counter[int] = Counter()
        self.detectors: dict[str, Counter[str]] = {}  # reason -> detail.detector counts (lexicon, classifier …)
        self.by_source: dict[str, Counter[str]] = {}  # input file -> reason -> dropped records
        self.kept_by_source: Counter[str] = Counter()  # input file -> kept records (read and final only)
        self.near: dict[str, list[dict[str, Any]]] = {}  # per reason: lowest-similarity drops, ascending
        self.sample_size = sample_size
        self.examples_per_reason = examples_per_reason
        self._sample_keys = np.empty(0, dtype=np.uint64)
        self._sample_text: list[str] = []
        self.seconds = 0.0

    def add_kept(self, table: pa.Table) -> None:
        """A batch of records the step keeps."""
        if table.num_rows == 0:
            return
        t0 = time.perf_counter()
        self.kept.add(table, task_types=self.full_kept)
        if self.full_kept and "source" in table.column_names:
            for d in pc.value_counts(table.column("source")).to_pylist():
                self.kept_by_source[str(d["values"])] += d["counts"]
        if self.full_kept and self.sample_size and "_seq" in table.column_names:
            self._sample(table)
        self.seconds += time.perf_counter() - t0

    def add_dropped(self, table: pa.Table) -> None:
        """A batch of records the step drops, with ``reason`` and ``detail`` columns."""
        if table.num_rows == 0:
            return
        t0 = time.perf_counter()
        self._add_dropped(table)
        self.seconds += time.perf_counter() - t0

    def _add_dropped(self, table: pa.Table) -> None:
        self.dropped.add(table, task_types=False, dropped=True)  # task types: before and after only
        if "source" in table.column_names:
            grouped = table.group_by(["source", "reason"]).aggregate([([], "count_all")]).to_pylist()
            for g in grouped:
                self.by_source.setdefault(str(g["source"]), Counter())[str(g["reason"])] += g["count_all"]
        reasons = table.column("reason").to_pylist()
        detail = table.column("detail")
        want = [i for i, r in enumerate(reasons) if len(self.examples.get(r, ())) < self.examples_per_reason]
        wanted = set(want)
        parsed: dict[int, dict[str, Any]] = {}
        near: dict[str, list[tuple[Any, int]]] = {}  # reason -> (similarity, row) of the drops that may be near
        simple = pc.fill_null(pc.match_substring_regex(detail, drops.DUPLICATE_DETAIL), False)
        simple_rows = np.nonzero(simple.to_numpy(zero_copy_only=False))[0]
        other_rows = np.nonzero(~simple.to_numpy(zero_copy_only=False))[0]
        if len(other_rows):
            texts = detail.take(drops.int64_indices(other_rows)).to_pylist()
            for i, text in zip(other_rows.tolist(), texts):
                if i in wanted or (text and ('"categor' in text or '"cluster_size"' in text or '"detector"' in text)):
                    reason = reasons[i]
                    parsed[i] = _parse(text)
                    self._count_detail(reason, parsed[i])
                    similarity = parsed[i].get("similarity")
                    if isinstance(similarity, (int, float)) and self._is_near(reason, parsed[i]):
                        near.setdefault(reason, []).append((similarity, i))
        if len(simple_rows):
            self.cluster_drops.update(drops.duplicate_details(detail, simple_rows, reasons, self.near, near))
        chosen: list[int] = []  # of each reason, the rows that can still be among its lowest similarities
        for cands in near.values():
            chosen += [i for _, i in sorted(cands, key=lambda c: c[0])[:NEAR_THRESHOLD]]  # stable: input order
        chosen.sort()
        examples: list[int] = []  # the first rows of each reason whose examples are not full yet
        taken: Counter[str] = Counter()
        for i in want:
            r = reasons[i]
            if len(self.examples.get(r, ())) + taken[r] < self.examples_per_reason:
                examples.append(i)
                taken[r] += 1
        unparsed = sorted({*chosen, *examples} - parsed.keys())
        if unparsed:
            for i, text in zip(unparsed, detail.take(drops.int64_indices(np.asarray(unparsed))).to_pylist()):
                parsed[i] = _parse(text)
        if chosen:
            rows = table.take(drops.int64_indices(np.asarray(chosen))).select(self._example_columns(table)).to_pylist()
            for i, row in zip(chosen, rows):
                self._add_near(reasons[i], [self._example(row, parsed[i])])
        if examples:
            rows = (
                table.take(drops.int64_indices(np.asarray(examples))).select(self._example_columns(table)).to_pylist()
            )
            for i, row in zip(examples, rows):
                self.examples.setdefault(reasons[i], []).append(self._example(row, parsed[i]))

    @staticmethod
    def _example_columns(table: pa.Table) -> list[str]:
        return [c for c in ("id", "source", *TEXT_FIELDS, "history") if c in table.column_names]

    @staticmethod
    def _example(row: dict[str, Any], detail: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": row.get("id"),
            "source": row.get("source"),
            **{f: _cut(row.get(f)) for f in TEXT_FIELDS},
            "history_turns": len(row.get("history") or []),
            "detail": detail,
        }

    def _is_near(self, reason: str, detail: dict[str, Any]) -> bool:
        bucket = self.near.get(reason, [])
        return len(bucket) < NEAR_THRESHOLD or detail["similarity"] < bucket[-1]["detail"]["similarity"]

    def _add_near(self, reason: str, rows: list[dict[str, Any]]) -> None:
        bucket = self.near.get(reason, []) + rows
        bucket.sort(key=lambda ex: ex["detail"]["similarity"])  # stable: ties keep input order
        self.near[reason] = bucket[:NEAR_THRESHOLD]

    def _count_detail(self, reason: str, detail: dict[str, Any]) -> None:
        cats = detail.get("category", detail.get("categories"))
        if cats:
            counter = self.categories.setdefault(reason, Counter())
            counter.update([cats] if isinstance(cats, str) else [str(c) for c in cats])
        detector = detail.get("detector")
        if isinstance(detector, str):
            self.detectors.setdefault(reason, Counter())[detector] += 1
        signal = detail.get("signal")
        if isinstance(signal, str) and cats:  # details with a category are always parsed, so this adds up
            self.signals.setdefault(reason, Counter())[signal] += 1
        score = detail.get("safety_score")
        if isinstance(score, (int, float)):
            self.dropped.safety_score[min(max(int(score * SCORE_BINS), 0), SCORE_BINS - 1)] += 1
        size = detail.get("cluster_size")
        if isinstance(size, int) and size >= 2:
            self.cluster_drops[size] += 1

    def merge(self, other: ReportCollector) -> None:
        """Add what ``other`` gathered from the batches that come *after* this one's (a worker's part of a step,
        merged in input order: the examples of each reason stay the first ones in input order)."""
        self.kept.merge(other.kept)
        self.dropped.merge(other.dropped)
        for reason, rows in other.examples.items():
            bucket = self.examples.setdefault(reason, [])
            bucket.extend(rows[: max(0, self.examples_per_reason - len(bucket))])
        for reason, counter in other.categories.items():
            self.categories.setdefault(reason, Counter()).update(counter)
        for reason, counter in other.signals.items():
            self.signals.setdefault(reason, Counter()).update(counter)
        self.cluster_drops.update(other.cluster_drops)
        for reason, counter in other.detectors.items():
            self.detectors.setdefault(reason, Counter()).update(counter)
        for source, counter in other.by_source.items():
            self.by_source.setdefault(source, Counter()).update(counter)
        self.kept_by_source.update(other.kept_by_source)
        for reason, rows in other.near.items():
            self._add_near(reason, rows)
        if len(other._sample_keys):
            self._keep_smallest(other._sample_keys, other._sample_text)
        self.seconds += other.seconds

    def _sample(self, table: pa.Table) -> None:
        keys = _mix(table.column("_seq").to_numpy(zero_copy_only=False))
        if len(self._sample_keys) >= self.sample_size:
            cand = np.nonzero(keys < self._sample_keys.max())[0]
        else:
            cand = np.arange(len(keys))
        if len(cand) == 0:
            return
        texts = table.column("instruction").take(pa.array(cand, pa.int64())).to_pylist()
        self._keep_smallest(keys[cand], [t or "" for t in texts])

    def _keep_smallest(self, keys: np.ndarray, texts: list[str]) -> None:
        all_keys = np.concatenate([self._sample_keys, keys])
        all_text = self._sample_text + texts
        order = np.argsort(all_keys, kind="stable")[: self.sample_size]
        self._sample_keys = all_keys[order]
        self._sample_text = [all_text[i] for i in order]

    def verb_object_pairs(self) -> dict[str, Any]:
        """Leading verb–object counts over the sampled instructions (jieba part-of-speech tagging)."""
        pairs: Counter[tuple[str, str]] = Counter()
        no_verb = 0
        for vo in verb_objects(self._sample_text):
            if vo is None:
                no_verb += 1
            else:
                pairs[vo] += 1
        return {
            "sample": len(self._sample_text),
            "no_verb": no_verb,
            "pairs": [[v, o, n] for (v, o), n in sorted(pairs.items(), key=lambda kv: (-kv[1], kv[0]))[:200]],
        }

    def result(self) -> dict[str, Any]:
        """The step's compact, JSON-ready report material (stored in its ``.stats.json``)."""
        t0 = time.perf_counter()
        self.kept.flush()
        self.dropped.flush()
        clusters = {str(s): n // (s - 1) for s, n in sorted(self.cluster_drops.items())}
        pairs = self.verb_object_pairs()
        self.seconds += time.perf_counter() - t0
        return {
            "version": 1,
            "kept": self.kept.result(),
            "dropped": self.dropped.result(),
            "examples": self.examples,
            "near_threshold": self.near,
            "categories": {r: dict(c) for r, c in self.categories.items()},
            "signals": {r: dict(c) for r, c in self.signals.items()},
            "cluster_sizes": clusters,
            "detectors": {r: dict(c) for r, c in self.detectors.items()},
            "by_source": {src: dict(c) for src, c in self.by_source.items()},
            "kept_by_source": dict(self.kept_by_source),
            "verb_object": pairs,
            "seconds": round(self.seconds, 3),
        }


def _parse(text: Any) -> dict[str, Any]:
    if not isinstance(text, str) or not text:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return {"text": text}
    return value if isinstance(value, dict) else {"value": value}
