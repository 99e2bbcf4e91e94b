"""Every ORM model, imported in one place so Alembic and the worker see the whole schema."""

from app.accounts.models import ApiToken, User
from app.assessments.models import Assessment, DataSample, PathScore
from app.db import Base
from app.endpoints.models import LlmModel
from app.pilots.models import (
    ArmDifference,
    EndpointAnswer,
    LossCurvePoint,
    MetricRow,
    Pilot,
    PilotArm,
    SamplePrediction,
)
from app.queue import OutboxJob
from app.sharing.models import ShareLink

__all__ = [
    "ApiToken",
    "ArmDifference",
    "Assessment",
    "Base",
    "DataSample",
    "EndpointAnswer",
    "LlmModel",
    "LossCurvePoint",
    "MetricRow",
    "OutboxJob",
    "PathScore",
    "Pilot",
    "PilotArm",
    "SamplePrediction",
    "ShareLink",
    "User",
]
