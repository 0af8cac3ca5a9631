"""Load and validate a recipe: where to read, where to write, and an ordered list of stages with parameters.

Everything is checked here, before any work starts: unknown top-level keys, unknown stage names, unknown or
ill-typed stage parameters all raise :class:`ConfigError` naming the key and the allowed values. YAML is read
with ``yaml.safe_load`` (no code execution); relative paths are resolved against the recipe's folder.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from pipeline.read.layouts import CANONICAL_FIELDS, check_fields
from pipeline.registry import DEFAULT_STAGES, STAGES
from schemas.errors import ConfigError
from stages.base import Stage, StageParams

__all__ = ["CANONICAL_FIELDS", "Recipe", "StageSpec", "build_recipe", "default_recipe", "load_recipe"]


class RecipeModel(BaseModel):
    """The top-level keys of a recipe."""

    model_config = ConfigDict(extra="forbid")

    input: list[str] = Field(default_factory=list)
    output: str | None = None
    format: Literal["auto", "alpaca", "sharegpt", "openai"] = "auto"
    fields: dict[str, str] = Field(default_factory=dict)
    batch_size: int = Field(default=5000, ge=1, le=1_000_000)
    stages: list[Any] | None = None  # None (no 'stages:' key): the default recipe's stages; []: read only


@dataclass(frozen=True)
class StageSpec:
    name: str
    params: StageParams

    def build(self) -> Stage:
        return STAGES[self.name](self.params)


@dataclass(frozen=True)
class Recipe:
    inputs: tuple[str, ...]
    output: str | None
    format: str
    fields: dict[str, str]
    batch_size: int
    stages: tuple[StageSpec, ...]
    source: str  # the recipe file, or "default"

    def to_dict(self) -> dict[str, Any]:
        return {
            "input": list(self.inputs),
            "output": self.output,
            "format": self.format,
            "fields": self.fields,
            "batch_size": self.batch_size,
            "stages": [{s.name: s.params.model_dump(mode="json")} for s in self.stages],
        }

    def hash(self) -> str:
        """A hash of what the recipe does (stages and parameters, format, fields), not of where it reads."""
        d = self.to_dict()
        d.pop("input")
        d.pop("output")
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


def _loc(err: Any) -> str:
    return ".".join(str(p) for p in err.get("loc", ()))


def _stage_spec(item: Any, index: int) -> StageSpec:
    allowed = ", ".join(STAGES) or "(none registered)"
    raw: Any
    if isinstance(item, str):
        name, raw = item, {}
    elif isinstance(item, dict) and len(item) == 1:
        name, raw = next(iter(item.items()))
        raw = raw or {}
    else:
        raise ConfigError(
            f"stages[{index}]: each stage is a name or a one-key mapping like '- dedup_minhash: {{threshold: 0.8}}',"
            f" got {item!r}"
        )
    if name not in STAGES:
        raise ConfigError(f"stages[{index}]: unknown stage '{name}'. Allowed stages: {allowed}")
    cls = STAGES[name]
    if not isinstance(raw, dict):
        raise ConfigError(f"stages[{index}] '{name}': parameters must be a mapping, got {raw!r}")
    try:
        params = cls.Params.model_validate(raw)
    except ValidationError as e:
        allowed_keys = ", ".join(cls.Params.model_fields) or "(none)"
        problems = []
        for err in e.errors():
            key = _loc(err)
            if err["type"] == "extra_forbidden":
                problems.append(f"unknown key '{key}' (allowed keys: {allowed_keys})")
            else:
                problems.append(f"key '{key}': {err['msg']} (got {err.get('input')!r})")
        raise ConfigError(f"stages[{index}] '{name}': " + "; ".join(problems)) from None
    return StageSpec(name, params)


def build_recipe(raw: dict[str, Any], *, base_dir: Path | None, source: str) -> Recipe:
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: a recipe is a YAML mapping with keys input, output, format, fields, stages")
    try:
        model = RecipeModel.model_validate(
            {**raw, "input": [raw["input"]] if isinstance(raw.get("input"), str) else raw.get("input", [])}
        )
    except ValidationError as e:
        allowed = ", ".join(RecipeModel.model_fields)
        msgs = []
        for err in e.errors():
            if err["type"] == "extra_forbidden":
                msgs.append(f"unknown key '{_loc(err)}' (allowed keys: {allowed})")
            else:
                msgs.append(f"key '{_loc(err)}': {err['msg']} (got {err.get('input')!r})")
        raise ConfigError(f"{source}: " + "; ".join(msgs)) from None
    check_fields(model.fields, f"{source}: fields")
    stage_items = list(DEFAULT_STAGES) if model.stages is None else model.stages
    specs = tuple(_stage_spec(item, i) for i, item in enumerate(stage_items))
    names = [s.name for s in specs]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ConfigError(f"{source}: stage(s) {dupes} listed more than once; list each stage once")

    def resolve(p: str) -> str:
        if base_dir is None or Path(p).is_absolute():
            return p
        return os.path.normpath(base_dir / p)

    return Recipe(
        inputs=tuple(resolve(p) for p in model.input),
        output=resolve(model.output) if model.output else None,
        format=model.format,
        fields=dict(model.fields),
        batch_size=model.batch_size,
        stages=specs,
        source=source,
    )


def load_recipe(path: str | Path) -> Recipe:
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"recipe file not found: {p}")
    try:
        raw = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise ConfigError(f"{p}: not valid YAML: {e}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{p}: the recipe must be UTF-8 text") from None
    return build_recipe(raw or {}, base_dir=p.parent, source=str(p))


def default_recipe() -> Recipe:
    """The recipe `zhcurate run --input ... --output ...` runs: every default stage with default parameters."""
    return build_recipe({}, base_dir=None, source="default")
