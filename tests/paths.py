"""Where things are, for every test."""

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHIPPED_MODELS = REPO / "model_repo"
