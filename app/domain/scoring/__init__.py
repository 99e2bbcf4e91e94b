"""Scoring: rank prompting, RAG and fine-tuning for one intake with an auditable rubric.

Pure domain code (no web, no database). Entry point: ``app.domain.scoring.engine.score``; the chart
lives in ``app.domain.scoring.chart`` so that importing the engine does not import matplotlib.
"""

from app.domain.scoring.engine import score
from app.domain.scoring.paths import PATH_LABELS, PATHS
from app.domain.scoring.schemas import ScoreResult

__all__ = ["PATHS", "PATH_LABELS", "ScoreResult", "score"]
