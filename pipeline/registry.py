"""The one place that maps recipe stage names to stage classes, in their canonical order.

A stage's module is imported when its class is first looked up (``STAGES[name]``), so a run imports only the
stages its recipe names: no torch for a recipe without ``dedup_semantic``, no numba for one without the dedup and
quality stages. Iterating over ``STAGES`` or testing ``name in STAGES`` imports nothing.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, MutableMapping

from stages.base import Stage

# name -> "module:Class". Add a stage here (one line) and a recipe can name it; it joins the default recipe only
# when it is also in DEFAULT_STAGES.
_PATHS: dict[str, str] = {
    "normalize": "stages.normalize.stage:NormalizeStage",
    "safety": "stages.safety.stage:SafetyStage",
    "language": "stages.language.stage:LanguageStage",
    "mt_damage": "stages.mt_damage:MTDamageStage",
    "quality": "stages.quality.stage:QualityStage",
    "dedup_exact": "stages.dedup.exact:ExactDedupStage",
    "dedup_minhash": "stages.dedup.minhash:MinHashDedupStage",
    "dedup_semantic": "stages.dedup.semantic:SemanticDedupStage",
}


class _Stages(MutableMapping[str, type[Stage]]):
    """A name -> stage class mapping that imports a stage's module on first lookup (a class can also be
    registered directly: ``STAGES["mine"] = MyStage``)."""

    def __init__(self, paths: dict[str, str]) -> None:
        self._paths: dict[str, str | None] = dict(paths)
        self._classes: dict[str, type[Stage]] = {}

    def __getitem__(self, name: str) -> type[Stage]:
        if name not in self._classes:
            path = self._paths[name]
            assert path is not None
            module, cls = path.split(":")
            self._classes[name] = getattr(importlib.import_module(module), cls)
        return self._classes[name]

    def __setitem__(self, name: str, cls: type[Stage]) -> None:
        self._paths[name] = None
        self._classes[name] = cls

    def __delitem__(self, name: str) -> None:
        del self._paths[name]
        self._classes.pop(name, None)

    def __iter__(self) -> Iterator[str]:
        return iter(self._paths)

    def __len__(self) -> int:
        return len(self._paths)

    def __contains__(self, name: object) -> bool:
        return name in self._paths


STAGES: MutableMapping[str, type[Stage]] = _Stages(_PATHS)

# The stages the default recipe (`zhcurate run --input ... --output ...`) runs, in this order, with default parameters.
DEFAULT_STAGES: tuple[str, ...] = (
    "normalize",
    "safety",
    "language",
    "mt_damage",
    "quality",
    "dedup_exact",
    "dedup_minhash",
    "dedup_semantic",
)
