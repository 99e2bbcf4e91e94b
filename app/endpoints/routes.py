"""Pages: the user's registered models, a form to add one, and "Check connection"."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import ValidationError
from sqlalchemy.orm import Session

from app.accounts.dependencies import CurrentUser
from app.accounts.models import User
from app.deps import CsrfChecked, SessionDep
from app.endpoints import service
from app.endpoints.models import ModelKind
from app.endpoints.schemas import ModelIn
from app.endpoints.throttle import CheckLimiter, get_check_limiter
from app.integrations.openai_compatible.schemas import ConnectionReport
from app.settings import get_settings
from app.validation import friendly_message
from app.web import is_htmx, render

router = APIRouter(tags=["models"], include_in_schema=False)

# Form fields a browser sends as text; blank means "not given".
_OPTIONAL_NUMBERS = (
    "input_usd_per_million",
    "output_usd_per_million",
    "context_window",
    "parameters_b",
)


def _page(
    request: Request,
    session: Session,
    user: User,
    *,
    status_code: int = 200,
    errors: dict[str, str] | None = None,
    form: dict[str, Any] | None = None,
) -> Response:
    ctx = {
        "models": service.list_models(session, owner=user),
        "kinds": list(ModelKind),
        "errors": errors or {},
        "form": form or {},
    }
    return render(request, "endpoints/list.html", ctx, status_code=status_code)


def _forget_secrets(form: dict[str, Any]) -> None:
    """What the form must not echo back: the key, and a base URL that may carry a credential
    (user:password@, ?key=, #...). Such a URL is refused anyway; the user types it again."""
    form.pop("api_key", None)
    if any(mark in form.get("base_url", "") for mark in "@?#"):
        form.pop("base_url")


@router.get("/models")
def models_page(request: Request, session: SessionDep, user: CurrentUser) -> Response:
    return _page(request, session, user)


@router.post("/models", dependencies=[CsrfChecked])
async def add_model(request: Request, session: SessionDep, user: CurrentUser) -> Response:
    raw = await request.form()
    form: dict[str, Any] = {k: str(v) for k, v in raw.items() if k != "csrf_token"}
    data = {k: v for k, v in form.items() if not (k in _OPTIONAL_NUMBERS and not v.strip())}
    data["deployment"] = form.get("deployment") == "on"
    data.pop("api_key", None) if not form.get("api_key", "").strip() else None
    try:
        model_in = ModelIn.model_validate(data)
    except ValidationError as exc:
        errors: dict[str, str] = {}
        for error in exc.errors():
            field = str(error["loc"][0]) if error["loc"] else "form"
            message = friendly_message(dict(error))
            if field == "form" and ":" in message:
                field, _, message = message.partition(": ")
            errors.setdefault(field, message)
        _forget_secrets(form)
        return _page(request, session, user, status_code=422, errors=errors, form=form)
    try:
        service.create_model(session, owner=user, data=model_in, settings=get_settings())
    except service.BaseUrlRefused as refused:
        _forget_secrets(form)
        _, _, message = str(refused).partition(": ")
        errors = {"base_url": message}
        return _page(request, session, user, status_code=422, errors=errors, form=form)
    return RedirectResponse("/models", status_code=303)


@router.post("/models/{model_id}/check", dependencies=[CsrfChecked])
def check_model(
    request: Request,
    model_id: str,
    session: SessionDep,
    user: CurrentUser,
    limiter: Annotated[CheckLimiter, Depends(get_check_limiter)],
) -> Response:
    model = service.require_owned(session, model_id=model_id, owner=user)
    throttled = limiter.attempt(user.id)
    if throttled is not None:
        retry = {"Retry-After": str(throttled.retry_after)}
        if not is_htmx(request):
            raise HTTPException(429, throttled.message, headers=retry)
        ctx = {"m": model, "report": ConnectionReport(ok=False, message=throttled.message)}
        response = render(
            request, "endpoints/list.html", ctx, block="check_result", status_code=429
        )
        response.headers.update(retry)
        return response
    report = service.check(session, model=model, settings=get_settings())
    if is_htmx(request):
        ctx = {"m": model, "report": report}
        return render(request, "endpoints/list.html", ctx, block="check_result")
    return RedirectResponse("/models", status_code=303)


@router.post("/models/{model_id}/delete", dependencies=[CsrfChecked])
def delete_model(model_id: str, session: SessionDep, user: CurrentUser) -> Response:
    model = service.require_owned(session, model_id=model_id, owner=user)
    service.delete_model(session, model=model)
    return RedirectResponse("/models", status_code=303)
