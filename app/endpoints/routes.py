"""Pages: the user's registered models, a form to add one, and "Check connection"."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import ValidationError
from sqlalchemy.orm import Session

from app.accounts.dependencies import CurrentUser
from app.accounts.models import User
from app.deps import CsrfChecked, SessionDep
from app.endpoints import service
from app.endpoints.models import ModelKind
from app.endpoints.schemas import ModelIn
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
        form.pop("api_key", None)  # never echoed back, not even into the form
        return _page(request, session, user, status_code=422, errors=errors, form=form)
    service.create_model(session, owner=user, data=model_in, settings=get_settings())
    return RedirectResponse("/models", status_code=303)


@router.post("/models/{model_id}/check", dependencies=[CsrfChecked])
def check_model(
    request: Request, model_id: str, session: SessionDep, user: CurrentUser
) -> Response:
    model = service.require_owned(session, model_id=model_id, owner=user)
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
