"""The three customisation paths the rubric scores, in one place so keys never drift."""

from __future__ import annotations

from typing import Final, Literal

PathId = Literal["prompting", "rag", "fine_tuning"]

# Declared order doubles as the tie-break in rankings: on equal scores the cheaper, simpler
# path comes first, because every guide says to start from a prompt baseline.
PATHS: Final[tuple[PathId, ...]] = ("prompting", "rag", "fine_tuning")

PATH_LABELS: Final[dict[str, str]] = {
    "prompting": "Prompting",
    "rag": "RAG",
    "fine_tuning": "Fine-tuning",
}

HYBRID_FT_RAG: Final = "fine_tuning+rag"
HYBRID_LABELS: Final[dict[str, str]] = {HYBRID_FT_RAG: "Fine-tuning + RAG"}
