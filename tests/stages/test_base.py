"""The stage base: a stage pickles without the resources its setup() loaded, and a copy loads its own."""

from __future__ import annotations

import ast
import pickle
import threading
from pathlib import Path
from typing import Any

import pyarrow as pa

from stages.base import RecordStage, StageParams, StageResult


class TermsStage(RecordStage):
    name = "t_terms"
    Params = StageParams
    resources = ("_terms", "_lock")

    def __init__(self, params: StageParams | None = None) -> None:
        super().__init__(params)
        self._terms: frozenset[str] | None = None
        self._lock: Any = None
        self.loads = 0

    def setup(self) -> None:
        if self._terms is not None:
            return
        self._terms, self._lock = frozenset({"赌博", "诈骗"}), threading.Lock()  # a lock does not pickle
        self.loads += 1

    def process(self, batch: pa.Table) -> StageResult:
        self.setup()
        assert self._terms is not None
        reasons = ["term" if any(t in s for t in self._terms) else None for s in batch.column("output").to_pylist()]
        return StageResult(batch, reasons, [None] * batch.num_rows)


def test_resources_are_not_pickled_and_are_loaded_again() -> None:
    stage = TermsStage()
    stage.setup()
    stage.setup()  # idempotent
    copy = pickle.loads(pickle.dumps(stage))
    assert copy._terms is None and copy._lock is None and copy.params == stage.params
    assert copy.loads == 1  # other attributes travel as they are
    batch = pa.table({"output": ["网络诈骗的手法", "春天来了"]})
    assert copy.process(batch).reasons == ["term", None]
    assert copy.loads == 2 and stage._terms is not None  # the original keeps its own


def test_stages_stand_alone() -> None:
    """No module under stages/ imports pipeline/ or prints: a stage returns decisions, the runner keeps the books."""
    root = Path(__file__).resolve().parents[2] / "stages"
    found: list[str] = []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            found += [f"{path.name}: import {n}" for n in names if n == "pipeline" or n.startswith("pipeline.")]
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "print":
                found.append(f"{path.name}:{node.lineno}: print()")
    assert len(list(root.rglob("*.py"))) > 20 and found == []
