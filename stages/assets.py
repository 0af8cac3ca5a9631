"""Where the files shipped with the stages live (lexicons, classifier weights, the built-in embedding model)."""

from __future__ import annotations

from pathlib import Path

STAGES_DIR = Path(__file__).resolve().parent
DATA_DIR = STAGES_DIR / "data"
MODELS_DIR = STAGES_DIR / "models"


def text_lines(path: Path, what: str) -> list[str]:
    """The lines of a user's UTF-8 text file (a BOM is allowed); :class:`ConfigError` naming ``what`` and the file
    when it cannot be read."""
    from schemas.errors import ConfigError

    try:
        return Path(path).read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{what}: cannot read {path}: {e}; give a readable UTF-8 text file") from e
