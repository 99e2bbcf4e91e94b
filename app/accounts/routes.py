from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form, HTTPException, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import ValidationError

from app.accounts import service, tokens
from app.accounts.dependencies import CurrentUser, OptionalUser, start_session
from app.accounts.ratelimit import (
    LoginLimiter,
    SignupLimiter,
    client_ip,
    get_login_limiter,
    get_signup_limiter,
)
from app.accounts.schemas import Credentials, SignUp, TokenName
from app.deps import CsrfChecked, SessionDep
from app.validation import friendly_message
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


SignupLimiterDep = Annotated[SignupLimiter, Depends(get_signup_limiter)]


@router.post("/signup", dependencies=[CsrfChecked])
def signup(
    request: Request,
    session: SessionDep,
    limiter: SignupLimiterDep,
    email: Annotated[str, Form()] = "",
    password: Annotated[str, Form()] = "",
) -> Response:
    ip = client_ip(request)
    throttled = limiter.check(ip=ip)
    if throttled is not None:
        ctx = {"errors": {"email": throttled.message}, "email": email}
        response = render(request, "accounts/signup.html", ctx, status_code=429)
        response.headers["Retry-After"] = str(throttled.retry_after)
        return response
    try:
        data = SignUp(email=email, password=password)
        # Counted only once the input is valid: only then can the answer reveal an account.
        limiter.attempted(ip=ip)
        user = service.create_user(session, email=data.email, password=data.password)
    except ValidationError as exc:
        return render(
            request,
            "accounts/signup.html",
            {"errors": _errors(exc), "email": email},
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


LimiterDep = Annotated[LoginLimiter, Depends(get_login_limiter)]


@router.post("/login", dependencies=[CsrfChecked])
def login(
    request: Request,
    session: SessionDep,
    limiter: LimiterDep,
    email: Annotated[str, Form()] = "",
    password: Annotated[str, Form()] = "",
    next: Annotated[str | None, Form()] = None,
) -> Response:
    ip = client_ip(request)
    throttled = limiter.check(email=email, ip=ip)
    if throttled is not None:
        # Checked before the password, so a locked account cannot be probed further.
        ctx = {"error": throttled.message, "email": email, "next": next}
        response = render(request, "accounts/login.html", ctx, status_code=429)
        response.headers["Retry-After"] = str(throttled.retry_after)
        return response
    user = None
    try:
        creds = Credentials(email=email, password=password)
        user = service.authenticate(session, email=creds.email, password=creds.password)
    except ValidationError:
        user = None
    if user is None:
        limiter.failed(email=email, ip=ip)
        ctx = {"error": "Email or password is wrong.", "email": email, "next": next}
        return render(request, "accounts/login.html", ctx, status_code=401)
    limiter.succeeded(email=email, ip=ip)
    start_session(request, user.id)
    return RedirectResponse(_safe_next(next), status_code=303)


@router.post("/logout", dependencies=[CsrfChecked])
def logout(request: Request) -> Response:
    request.session.clear()
    return RedirectResponse("/login", status_code=303)


NO_STORE = {"Cache-Control": "no-store"}


def _tokens_page(
    request: Request,
    session: SessionDep,
    user: CurrentUser,
    *,
    status_code: int = 200,
    **extra: object,
) -> Response:
    ctx = {
        "tokens": tokens.list_tokens(session, owner=user),
        "new_secret": None,
        "name": "",
        "error": None,
        "max_tokens": tokens.MAX_ACTIVE_TOKENS,
        **extra,
    }
    response = render(request, "accounts/tokens.html", ctx, status_code=status_code)
    response.headers.update(NO_STORE)
    return response


@router.get("/account/tokens")
def tokens_page(request: Request, session: SessionDep, user: CurrentUser) -> Response:
    return _tokens_page(request, session, user)


@router.post("/account/tokens", dependencies=[CsrfChecked])
def create_token(
    request: Request,
    session: SessionDep,
    user: CurrentUser,
    name: Annotated[str, Form()] = "",
) -> Response:
    """Create a token and show it once: this response is the only place the secret appears."""
    try:
        label = TokenName(name=name).name
        token, secret = tokens.create_token(session, owner=user, name=label)
    except ValidationError as exc:
        error = "Token name: " + friendly_message(dict(exc.errors()[0]))
        return _tokens_page(request, session, user, status_code=422, error=error, name=name)
    except tokens.TooManyTokens as exc:
        return _tokens_page(request, session, user, status_code=409, error=str(exc), name=name)
    return _tokens_page(request, session, user, status_code=201, new_secret=secret, new_token=token)


@router.post("/account/tokens/{token_id}/revoke", dependencies=[CsrfChecked])
def revoke_token(token_id: int, session: SessionDep, user: CurrentUser) -> Response:
    if not tokens.revoke_token(session, owner=user, token_id=token_id):
        raise HTTPException(404, "No such token")
    return RedirectResponse("/account/tokens", status_code=303)
