"""The one place that maps recipe stage names to stage classes, in their canonical order."""

from __future__ import annotations

from stages.base import Stage
from stages.dedup_exact import ExactDedupStage
from stages.dedup_minhash import MinHashDedupStage
from stages.dedup_semantic import SemanticDedupStage
from stages.language import LanguageStage
from stages.mt_damage import MTDamageStage
from stages.normalize import NormalizeStage
from stages.quality import QualityStage
from stages.safety import SafetyStage

# name -> class, in the canonical pipeline order. Add a stage here and it can be named in a recipe.
STAGES: dict[str, type[Stage]] = {
    "normalize": NormalizeStage,
    "safety": SafetyStage,
    "language": LanguageStage,
    "mt_damage": MTDamageStage,
    "quality": QualityStage,
    "dedup_exact": ExactDedupStage,
    "dedup_minhash": MinHashDedupStage,
    "dedup_semantic": SemanticDedupStage,
}

# The stages the default recipe (`zhcurate run --input ... --output ...`) runs, with default parameters.
DEFAULT_STAGES: tuple[str, ...] = tuple(STAGES)
