"""Where the files shipped with the stages live (lexicons, classifier weights, the built-in embedding model)."""

from __future__ import annotations

from pathlib import Path

STAGES_DIR = Path(__file__).resolve().parent
DATA_DIR = STAGES_DIR / "data"
MODELS_DIR = STAGES_DIR / "models"
