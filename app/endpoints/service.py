"""Registered models: create, list, check, delete, and what a pilot needs to reach one.

Every request to an endpoint on a user's behalf is built from `endpoint_spec` or
`default_endpoint_spec`, which carry the deployment's egress policy (`egress_policy`).

Services flush; the caller owns the transaction.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from app.accounts.models import User
from app.db import utcnow
from app.domain.records import ArmModel
from app.endpoints.models import LlmModel, ModelKind
from app.endpoints.schemas import ModelIn
from app.endpoints.secrets import decrypt_api_key, encrypt_api_key
from app.errors import Invalid, NotFound
from app.integrations.egress import EgressPolicy
from app.integrations.openai_compatible.check import check_connection
from app.integrations.openai_compatible.schemas import ConnectionReport, EndpointSpec
from app.settings import Settings

MAX_MODELS_PER_USER = 50


class ModelNotUsable(Invalid):
    """A model chosen for a pilot cannot serve that role; the message says why."""


class BaseUrlRefused(Invalid):
    """The deployment's egress policy refuses the base URL; the message says why."""


class LocalModelRefused(Invalid):
    """A local model directory outside the operator's LOCAL_MODEL_ROOTS."""


def local_model_dir(path: str, settings: Settings) -> Path | None:
    """`path` with symlinks and `..` resolved, when that is under one of the deployment's
    local model roots (LOCAL_MODEL_ROOTS); None otherwise. Otherwise any user could make the
    worker load any directory on the server. Relative paths are refused: the web app and the
    worker need not share a working directory."""
    if not Path(path).is_absolute():
        return None
    resolved = Path(path).resolve()
    if any(resolved.is_relative_to(root) for root in settings.resolved_local_model_roots):
        return resolved
    return None


def _roots_named(settings: Settings) -> str:
    return ", ".join(str(root) for root in settings.resolved_local_model_roots)


def local_model_path(model: LlmModel, settings: Settings) -> str:
    """The directory a local model loads from, checked again where it is used: the roots, or
    a symlink on the way, may have changed since it was registered."""
    if model.kind != ModelKind.local:
        raise ModelNotUsable(f"model '{model.name}' is not a local model directory")
    directory = local_model_dir(model.model, settings)
    if directory is None:
        raise ModelNotUsable(
            f"model '{model.name}' cannot be used: its directory is not under this server's "
            f"model folders ({_roots_named(settings)}, LOCAL_MODEL_ROOTS)."
        )
    return str(directory)


def egress_policy(settings: Settings) -> EgressPolicy:
    """Where this deployment lets requests on a user's behalf go (app.integrations.egress). Its
    own default endpoint is always allowed: the server asks it for every pilot anyway."""
    return EgressPolicy.of(
        mode=settings.egress_mode,
        allowed=settings.endpoint_allowed_hosts,
        default_endpoint_url=settings.default_endpoint_url,
        max_answer_bytes=settings.endpoint_max_answer_bytes,
        deadline_s=settings.endpoint_request_deadline_s,
        max_per_host=settings.endpoint_max_concurrency_per_host,
    )


def owned_query(owner: User) -> Select[LlmModel]:
    """The owner's models, unordered (for `app.pagination`)."""
    return select(LlmModel).where(LlmModel.owner_id == owner.id)


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
    """Register a model; the API key is stored encrypted. A base URL the deployment's egress
    policy refuses (a private address in the shared mode) is refused here, naming base_url,
    and so is a local directory outside LOCAL_MODEL_ROOTS, naming model; ModelIn has already
    refused what every mode refuses."""
    if len(list_models(session, owner=owner)) >= MAX_MODELS_PER_USER:
        raise Invalid(f"You have {MAX_MODELS_PER_USER} models registered; delete one first.")
    if data.base_url is not None:
        problem = egress_policy(settings).url_problem(data.base_url)
        if problem is not None:
            raise BaseUrlRefused(f"base_url: {problem}")
    # The same answer whether the directory exists or not: no probing of the file system.
    if data.kind is ModelKind.local and local_model_dir(data.model, settings) is None:
        raise LocalModelRefused(
            "model: a local model is the full path of a directory under this server's model "
            f"folders ({_roots_named(settings)}; the operator sets LOCAL_MODEL_ROOTS)."
        )
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
    """How to reach an endpoint model, with its key decrypted (only for sending requests),
    under the deployment's egress policy. A URL the policy refuses now (stored before the
    policy, or before the deployment went shared) is ModelNotUsable, naming the cause."""
    if model.kind != ModelKind.openai_compatible or not model.base_url:
        raise ModelNotUsable(f"model '{model.name}' is not an OpenAI-compatible endpoint")
    key = (
        decrypt_api_key(settings, model.api_key_ciphertext, model_name=model.name)
        if model.api_key_ciphertext
        else None
    )
    try:
        return EndpointSpec(
            base_url=model.base_url,
            model=model.model,
            api_key=key,
            max_concurrency=model.max_concurrency,
            context_window=model.context_window,
            input_price_per_1m=model.input_usd_per_million,
            output_price_per_1m=model.output_usd_per_million,
            egress=egress_policy(settings),
        )
    except ValueError as refused:
        raise ModelNotUsable(
            f"model '{model.name}' cannot be used: {refused}. Register it again with a base "
            "URL this server accepts."
        ) from None


def default_endpoint_spec(settings: Settings) -> EndpointSpec | None:
    """The deployment's shared endpoint (DEFAULT_ENDPOINT_URL), when one is configured."""
    if not settings.default_endpoint_url:
        return None
    return EndpointSpec(
        base_url=settings.default_endpoint_url,
        model=settings.default_endpoint_model,
        api_key=settings.default_endpoint_api_key or None,
        egress=egress_policy(settings),
    )


def check(session: Session, *, model: LlmModel, settings: Settings) -> ConnectionReport:
    """One tiny request to the endpoint (or a look at the local directory); the outcome is
    kept on the model so the list shows when it last worked."""
    if model.kind == ModelKind.local:
        report = _check_local(model, settings)
    else:
        try:
            spec = endpoint_spec(model, settings)
        except ModelNotUsable as refused:
            report = ConnectionReport(ok=False, message=str(refused))
        else:
            report = check_connection(spec)
        if report.ok and report.context_window and not model.context_window:
            model.context_window = report.context_window
    model.checked_at = utcnow()
    model.check_ok = report.ok
    model.check_message = report.message[:2000]
    session.flush()
    return report


def _check_local(model: LlmModel, settings: Settings) -> ConnectionReport:
    directory = local_model_dir(model.model, settings)
    # One message for a directory outside the roots and a missing one: the check must not
    # tell a user what exists elsewhere on the server.
    if directory is None or not (directory / "config.json").is_file():
        return ConnectionReport(
            ok=False,
            message=(
                f"No Hugging Face model directory at {model.model} that this server may load: "
                "it must hold config.json and be under this server's model folders "
                f"({_roots_named(settings)}, LOCAL_MODEL_ROOTS)."
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
