"""Registered models: create, list, check, delete, and what a pilot needs to reach one.

Services flush; the caller owns the transaction.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.accounts.models import User
from app.db import utcnow
from app.domain.records import ArmModel
from app.endpoints.client import ConnectionReport, EndpointSpec, check_connection
from app.endpoints.models import LlmModel, ModelKind
from app.endpoints.schemas import ModelIn
from app.endpoints.secrets import decrypt_api_key, encrypt_api_key
from app.errors import Invalid, NotFound
from app.settings import Settings

MAX_MODELS_PER_USER = 50


class ModelNotUsable(Invalid):
    """A model chosen for a pilot cannot serve that role; the message says why."""


def list_models(session: Session, *, owner: User) -> list[LlmModel]:
    stmt = select(LlmModel).where(LlmModel.owner_id == owner.id).order_by(LlmModel.created_at)
    return list(session.scalars(stmt))


def get_owned(session: Session, *, model_id: str, owner: User) -> LlmModel | None:
    """The model when `owner` registered it, else None (callers answer 404)."""
    return session.scalar(
        select(LlmModel).where(LlmModel.id == model_id, LlmModel.owner_id == owner.id)
    )


def require_owned(session: Session, *, model_id: str, owner: User) -> LlmModel:
    model = get_owned(session, model_id=model_id, owner=owner)
    if model is None:
        raise NotFound("No such model")
    return model


def create_model(session: Session, *, owner: User, data: ModelIn, settings: Settings) -> LlmModel:
    """Register a model; the API key is stored encrypted."""
    if len(list_models(session, owner=owner)) >= MAX_MODELS_PER_USER:
        raise Invalid(f"You have {MAX_MODELS_PER_USER} models registered; delete one first.")
    model = LlmModel(
        owner_id=owner.id,
        name=data.name,
        kind=data.kind.value,
        base_url=data.base_url,
        model=data.model,
        api_key_ciphertext=encrypt_api_key(settings, data.api_key) if data.api_key else None,
        input_usd_per_million=data.input_usd_per_million,
        output_usd_per_million=data.output_usd_per_million,
        max_concurrency=data.max_concurrency,
        context_window=data.context_window,
        parameters_b=data.parameters_b,
        deployment=data.deployment,
    )
    session.add(model)
    session.flush()
    return model


def delete_model(session: Session, *, model: LlmModel) -> None:
    """Forget the model (and its key). Pilots that used it keep their results."""
    session.delete(model)
    session.flush()


def endpoint_spec(model: LlmModel, settings: Settings) -> EndpointSpec:
    """How to reach an endpoint model, with its key decrypted (only for sending requests)."""
    if model.kind != ModelKind.openai_compatible or not model.base_url:
        raise ModelNotUsable(f"model '{model.name}' is not an OpenAI-compatible endpoint")
    key = (
        decrypt_api_key(settings, model.api_key_ciphertext, model_name=model.name)
        if model.api_key_ciphertext
        else None
    )
    return EndpointSpec(
        base_url=model.base_url,
        model=model.model,
        api_key=key,
        max_concurrency=model.max_concurrency,
        context_window=model.context_window,
        input_price_per_1m=model.input_usd_per_million,
        output_price_per_1m=model.output_usd_per_million,
    )


def check(session: Session, *, model: LlmModel, settings: Settings) -> ConnectionReport:
    """One tiny request to the endpoint (or a look at the local directory); the outcome is
    kept on the model so the list shows when it last worked."""
    if model.kind == ModelKind.local:
        report = _check_local(model)
    else:
        report = check_connection(endpoint_spec(model, settings))
        if report.ok and report.context_window and not model.context_window:
            model.context_window = report.context_window
    model.checked_at = utcnow()
    model.check_ok = report.ok
    model.check_message = report.message[:2000]
    session.flush()
    return report


def _check_local(model: LlmModel) -> ConnectionReport:
    directory = Path(model.model)
    if not (directory / "config.json").is_file():
        return ConnectionReport(
            ok=False,
            message=(
                f"No Hugging Face model directory at {model.model} (no config.json there). "
                "A local model must be a directory the worker can read."
            ),
        )
    return ConnectionReport(ok=True, message=f"Found a model directory at {model.model}.")


def arm_model(model: LlmModel) -> ArmModel:
    """The facts the report's proxy rule needs about a model that answered an arm."""
    return ArmModel(
        model_id=model.model if model.kind == ModelKind.openai_compatible else model.name,
        parameters=round(model.parameters_b * 1e9) if model.parameters_b else None,
        via="endpoint" if model.kind == ModelKind.openai_compatible else "in-process",
        deployment=model.deployment,
    )
