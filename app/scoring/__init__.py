"""Scoring: rank prompting, RAG and fine-tuning for one intake with an auditable rubric.

Pure domain code (no web, no database). Entry point: ``app.scoring.engine.score``; the chart
lives in ``app.scoring.chart`` so that importing the engine does not import matplotlib.
"""

from app.scoring.engine import score
from app.scoring.paths import PATH_LABELS, PATHS
from app.scoring.schemas import ScoreResult

__all__ = ["PATHS", "PATH_LABELS", "ScoreResult", "score"]
