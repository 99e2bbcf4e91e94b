from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import ValidationError

from app.accounts import service
from app.accounts.schemas import Credentials, SignUp
from app.assessments.wizard import friendly_message
from app.deps import CsrfChecked, OptionalUser, SessionDep, start_session
from app.web import render

router = APIRouter(tags=["accounts"], include_in_schema=False)


def _safe_next(next_url: str | None) -> str:
    # Only same-site paths: an open redirect would let a phishing link borrow our log-in page.
    if next_url and next_url.startswith("/") and not next_url.startswith("//"):
        return next_url
    return "/"


def _errors(exc: ValidationError) -> dict[str, str]:
    return {str(e["loc"][0]): friendly_message(dict(e)) for e in exc.errors()}


@router.get("/signup")
def signup_page(request: Request, user: OptionalUser) -> Response:
    return render(request, "accounts/signup.html", {"errors": {}, "email": ""})


@router.post("/signup", dependencies=[CsrfChecked])
def signup(
    request: Request,
    session: SessionDep,
    email: Annotated[str, Form()] = "",
    password: Annotated[str, Form()] = "",
) -> Response:
    try:
        data = SignUp(email=email, password=password)
        user = service.create_user(session, email=data.email, password=data.password)
    except ValidationError as exc:
        return render(
            request, "accounts/signup.html", {"errors": _errors(exc), "email": email},
            status_code=422,
        )
    except service.EmailTaken:
        errors = {"email": "An account with this email exists. Log in instead."}
        return render(
            request, "accounts/signup.html", {"errors": errors, "email": email}, status_code=409
        )
    start_session(request, user.id)
    return RedirectResponse("/", status_code=303)


@router.get("/login")
def login_page(request: Request, next: str | None = None) -> Response:
    return render(request, "accounts/login.html", {"error": None, "email": "", "next": next})


@router.post("/login", dependencies=[CsrfChecked])
def login(
    request: Request,
    session: SessionDep,
    email: Annotated[str, Form()] = "",
    password: Annotated[str, Form()] = "",
    next: Annotated[str | None, Form()] = None,
) -> Response:
    user = None
    try:
        creds = Credentials(email=email, password=password)
        user = service.authenticate(session, email=creds.email, password=creds.password)
    except ValidationError:
        user = None
    if user is None:
        ctx = {"error": "Email or password is wrong.", "email": email, "next": next}
        return render(request, "accounts/login.html", ctx, status_code=401)
    start_session(request, user.id)
    return RedirectResponse(_safe_next(next), status_code=303)


@router.post("/logout", dependencies=[CsrfChecked])
def logout(request: Request) -> Response:
    request.session.clear()
    return RedirectResponse("/login", status_code=303)
