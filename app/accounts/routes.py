from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form, HTTPException, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import ValidationError

from app.accounts import service, tokens
from app.accounts.dependencies import CurrentUser, OptionalUser, end_session, start_session
from app.accounts.models import TokenScope
from app.accounts.ratelimit import (
    LoginLimiter,
    SignupLimiter,
    client_ip,
    get_login_limiter,
    get_signup_limiter,
)
from app.accounts.schemas import Credentials, PasswordChange, SignUp, TokenName, TokenOptions
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
    start_session(request, user)
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
    start_session(request, user)
    return RedirectResponse(_safe_next(next), status_code=303)


@router.post("/logout", dependencies=[CsrfChecked])
def logout(request: Request) -> Response:
    request.session.clear()
    return RedirectResponse("/login", status_code=303)


NO_STORE = {"Cache-Control": "no-store"}


def _account_page(
    request: Request, user: CurrentUser, *, status_code: int = 200, **extra: object
) -> Response:
    ctx = {"email": user.email, "errors": {}, "changed": False, **extra}
    response = render(request, "accounts/account.html", ctx, status_code=status_code)
    response.headers.update(NO_STORE)
    return response


@router.get("/account")
def account_page(request: Request, user: CurrentUser) -> Response:
    return _account_page(request, user)


@router.post("/account/password", dependencies=[CsrfChecked])
def change_password(
    request: Request,
    session: SessionDep,
    user: CurrentUser,
    limiter: LimiterDep,
    current_password: Annotated[str, Form()] = "",
    new_password: Annotated[str, Form()] = "",
) -> Response:
    """A new password, given the current one; every other session of this user ends."""
    ip = client_ip(request)
    # The current password is a guess like a log-in's: the same limiter, so a borrowed
    # session cannot try passwords here faster than on the log-in page.
    throttled = limiter.check(email=user.email, ip=ip)
    if throttled is not None:
        errors = {"current_password": throttled.message}
        response = _account_page(request, user, status_code=429, errors=errors)
        response.headers["Retry-After"] = str(throttled.retry_after)
        return response
    try:
        data = PasswordChange(current_password=current_password, new_password=new_password)
        service.change_password(
            session,
            user=user,
            current_password=data.current_password,
            new_password=data.new_password,
        )
    except ValidationError as exc:
        return _account_page(request, user, status_code=422, errors=_errors(exc))
    except service.WrongPassword:
        limiter.failed(email=user.email, ip=ip)
        errors = {"current_password": "The current password is wrong."}
        return _account_page(request, user, status_code=403, errors=errors)
    limiter.succeeded(email=user.email, ip=ip)
    # This browser carries the new version and stays logged in; every other session ends.
    start_session(request, user)
    return _account_page(request, user, changed=True)


@router.post("/account/logout-everywhere", dependencies=[CsrfChecked])
def logout_everywhere(request: Request, session: SessionDep, user: CurrentUser) -> Response:
    """End every session of this user, this one included (API tokens are not sessions)."""
    service.end_other_sessions(session, user=user)
    end_session(request)
    return RedirectResponse("/login", status_code=303)


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
        "expires_days": "",
        "read_only": False,
        "error": None,
        "max_tokens": tokens.MAX_ACTIVE_TOKENS,
        "max_expiry_days": tokens.MAX_EXPIRY_DAYS,
        "is_expired": tokens.is_expired,
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
    expires_days: Annotated[str, Form()] = "",
    read_only: Annotated[bool, Form()] = False,
) -> Response:
    """Create a token and show it once: this response is the only place the secret appears."""
    form = {"name": name, "expires_days": expires_days, "read_only": read_only}
    try:
        label = TokenName(name=name).name
    except ValidationError as exc:
        error = "Token name: " + friendly_message(dict(exc.errors()[0]))
        return _tokens_page(request, session, user, status_code=422, error=error, **form)
    try:
        options = TokenOptions(expires_days=expires_days, read_only=read_only)
    except ValidationError as exc:
        error = "Expires after (days): " + friendly_message(dict(exc.errors()[0]))
        return _tokens_page(request, session, user, status_code=422, error=error, **form)
    try:
        token, secret = tokens.create_token(
            session,
            owner=user,
            name=label,
            expires_in_days=options.expires_days,
            scope=TokenScope.read_only if options.read_only else TokenScope.read_write,
        )
    except tokens.TooManyTokens as exc:
        return _tokens_page(request, session, user, status_code=409, error=str(exc), **form)
    return _tokens_page(request, session, user, status_code=201, new_secret=secret, new_token=token)


@router.post("/account/tokens/{token_id}/revoke", dependencies=[CsrfChecked])
def revoke_token(token_id: int, session: SessionDep, user: CurrentUser) -> Response:
    if not tokens.revoke_token(session, owner=user, token_id=token_id):
        raise HTTPException(404, "No such token")
    return RedirectResponse("/account/tokens", status_code=303)
