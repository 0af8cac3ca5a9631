"""The one place that maps recipe stage names to stage classes, in their canonical order."""

from __future__ import annotations

from stages.base import Stage

# name -> class, in the canonical pipeline order. Add a stage here and it can be named in a recipe.
STAGES: dict[str, type[Stage]] = {}

# The stages the default recipe (`zhcurate run --input ... --output ...`) runs, with default parameters.
DEFAULT_STAGES: tuple[str, ...] = tuple(STAGES)
