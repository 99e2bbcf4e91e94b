"""JSON API for registered models. The API key is write-only: never in any response."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request, Response
from pydantic import BaseModel

from app.accounts.dependencies import ApiUser
from app.deps import SessionDep
from app.endpoints import service
from app.endpoints.models import LlmModel
from app.endpoints.schemas import ModelIn
from app.endpoints.throttle import CheckLimiter, get_check_limiter
from app.pagination import LIST_RESPONSES, PageRequest, page_request, paginate, set_page_headers
from app.settings import get_settings

router = APIRouter(prefix="/api/v1", tags=["models"])


class ModelOut(BaseModel):
    id: str
    name: str
    kind: str
    base_url: str | None
    model: str
    has_api_key: bool
    input_usd_per_million: float | None
    output_usd_per_million: float | None
    max_concurrency: int
    context_window: int | None
    parameters_b: float | None
    deployment: bool
    created_at: datetime
    checked_at: datetime | None
    check_ok: bool | None
    check_message: str | None

    @classmethod
    def of(cls, model: LlmModel) -> ModelOut:
        return cls(
            id=model.id,
            name=model.name,
            kind=model.kind,
            base_url=model.base_url,
            model=model.model,
            has_api_key=model.has_api_key,
            input_usd_per_million=model.input_usd_per_million,
            output_usd_per_million=model.output_usd_per_million,
            max_concurrency=model.max_concurrency,
            context_window=model.context_window,
            parameters_b=model.parameters_b,
            deployment=model.deployment,
            created_at=model.created_at,
            checked_at=model.checked_at,
            check_ok=model.check_ok,
            check_message=model.check_message,
        )


class CheckOut(BaseModel):
    ok: bool
    message: str
    model: str | None
    latency_ms: float | None
    context_window: int | None
    served_models: list[str]


@router.get("/models", response_model=list[ModelOut], responses=LIST_RESPONSES)
def list_models(
    request: Request,
    response: Response,
    session: SessionDep,
    user: ApiUser,
    page: Annotated[PageRequest, Depends(page_request)],
) -> list[ModelOut]:
    """Your registered models, newest first, a page at a time (follow the Link header). The
    API key is never returned, only `has_api_key`."""
    found = paginate(session, service.owned_query(user), page)
    set_page_headers(request, response, found)
    return [ModelOut.of(m) for m in found.items]


@router.post("/models", status_code=201, response_model=ModelOut)
def create_model(body: ModelIn, session: SessionDep, user: ApiUser) -> ModelOut:
    """Register a local model directory or an OpenAI-compatible endpoint."""
    model = service.create_model(session, owner=user, data=body, settings=get_settings())
    return ModelOut.of(model)


@router.get("/models/{model_id}", response_model=ModelOut)
def get_model(model_id: str, session: SessionDep, user: ApiUser) -> ModelOut:
    return ModelOut.of(service.require_owned(session, model_id=model_id, owner=user))


@router.post(
    "/models/{model_id}/check",
    response_model=CheckOut,
    responses={429: {"description": "Too many connection checks; see Retry-After"}},
)
def check_model(
    model_id: str,
    session: SessionDep,
    user: ApiUser,
    limiter: Annotated[CheckLimiter, Depends(get_check_limiter)],
) -> CheckOut:
    """Send one tiny request; says the model id, latency and context window, or what is wrong.
    At most 10 checks a minute per user."""
    model = service.require_owned(session, model_id=model_id, owner=user)
    throttled = limiter.attempt(user.id)
    if throttled is not None:
        raise HTTPException(
            429, throttled.message, headers={"Retry-After": str(throttled.retry_after)}
        )
    report = service.check(session, model=model, settings=get_settings())
    return CheckOut(
        ok=report.ok,
        message=report.message,
        model=report.model,
        latency_ms=report.latency_ms,
        context_window=report.context_window,
        served_models=list(report.served_models),
    )


@router.delete("/models/{model_id}", status_code=204)
def delete_model(model_id: str, session: SessionDep, user: ApiUser) -> Response:
    model = service.require_owned(session, model_id=model_id, owner=user)
    service.delete_model(session, model=model)
    return Response(status_code=204)
