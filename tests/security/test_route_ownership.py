"""Every protected route, discovered from the app, against anonymous, other and owner callers.

The route list comes from the app itself: a new route that is neither in CASES nor in the
public allowlist fails `test_every_route_is_classified`, so nobody can add an endpoint
without saying who may call it, and every case then proves it:

- anonymous: a page redirects to /login, an API route answers 401;
- another logged-in user: 404 for a route about someone else's resource (the same answer as
  for an id that does not exist), and never the owner's data;
- the owner: the expected success.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from fastapi.routing import iter_route_contexts

from app.main import create_app
from app.settings import Settings
from tests.factories.assessments import GOOD_CSV, intake
from tests.factories.models import in_models_dir
from tests.security.world import OWNER_MARKER, World, build_world

# Routes anyone may call. Share links are capability URLs: the token is the authorisation,
# tested below (reads the report and PDF only; revoked → 404).
PUBLIC_ROUTES = {
    ("GET", "/login"),
    ("POST", "/login"),
    ("GET", "/signup"),
    ("POST", "/signup"),
    ("POST", "/logout"),  # clears the caller's own session, nothing else
    ("GET", "/healthz"),
    ("GET", "/openapi.json"),
    ("GET", "/docs"),  # the API reference page (vendored Swagger UI)
    ("GET", "/share/{token}"),
    ("GET", "/share/{token}/report.pdf"),
    ("GET", "/share/{token}/export.zip"),  # only for a link that includes data and adapter
    ("MOUNT", "/static"),
}

Payload = Callable[[World], dict[str, Any]]


def _nothing(world: World) -> dict[str, Any]:
    return {}


@dataclass(frozen=True)
class Case:
    """How to call one route, and what its owner gets."""

    owner_status: int
    payload: Payload = _nothing  # keyword arguments for the request (data/files/json/...)
    cross_user: bool = True  # the route is about one resource another user must not reach
    notes: str = ""
    extra_headers: dict[str, str] = field(default_factory=dict)


def _step(world: World) -> dict[str, Any]:
    data = {"title": OWNER_MARKER, "use_case": "Route messages.", "task_type": "classification"}
    return {"data": data}


def _sample(world: World) -> dict[str, Any]:
    return {"files": {"file": ("t.csv", GOOD_CSV, "text/csv")}}


def _documents(world: World) -> dict[str, Any]:
    text = b"Refunds take five days. Cards can be frozen in the app."
    return {"files": [("files", ("faq.txt", text, "text/plain"))]}


def _pilot_form(world: World) -> dict[str, Any]:
    return {"data": {"max_train": "60", "arms": ["fewshot"]}}


def _compare(world: World) -> dict[str, Any]:
    return {"params": [("pilots", p) for p in world.pilot_ids]}


def _what_if(world: World) -> dict[str, Any]:
    return {"params": {"queries_per_day": "1000", "gpu_access": "none"}}


def _intake(world: World) -> dict[str, Any]:
    return {"json": intake()}


def _pilot_body(world: World) -> dict[str, Any]:
    return {"json": {"max_train": 60, "arms": ["fewshot"]}}


def _token_form(world: World) -> dict[str, Any]:
    return {"data": {"name": "another"}}


def _link_form(world: World) -> dict[str, Any]:
    return {"data": {"label": "another"}}


def _model_form(world: World) -> dict[str, Any]:
    return {"data": {"name": "another", "kind": "local", "model": in_models_dir("other")}}


def _model_body(world: World) -> dict[str, Any]:
    return {"json": {"name": "another", "kind": "local", "model": in_models_dir("other")}}


CASES: dict[tuple[str, str], Case] = {
    ("GET", "/"): Case(200, cross_user=False),
    ("POST", "/assessments"): Case(303, cross_user=False),
    ("GET", "/assessments/{assessment_id}"): Case(200),
    ("GET", "/assessments/{assessment_id}/steps/{step_name}"): Case(200),
    ("POST", "/assessments/{assessment_id}/steps/{step_name}"): Case(303, _step),
    ("POST", "/assessments/{assessment_id}/sample"): Case(303, _sample),
    ("POST", "/assessments/{assessment_id}/documents"): Case(303, _documents),
    ("POST", "/assessments/{assessment_id}/submit"): Case(303),
    ("POST", "/assessments/{assessment_id}/pilots"): Case(303, _pilot_form),
    ("GET", "/pilots/{pilot_id}"): Case(200),
    ("GET", "/pilots/{pilot_id}/progress"): Case(200, extra_headers={"HX-Request": "true"}),
    # The world's pilots have finished: the owner gets through to the service, which answers
    # that nothing is left to cancel (tests/app/pilots/test_cancel.py cancels live ones).
    ("POST", "/pilots/{pilot_id}/cancel"): Case(409),
    ("GET", "/assessments/{assessment_id}/report"): Case(200),
    ("GET", "/assessments/{assessment_id}/report.pdf"): Case(200),
    ("GET", "/assessments/{assessment_id}/report/compare"): Case(200, _compare),
    ("GET", "/assessments/{assessment_id}/report/what-if"): Case(
        200, _what_if, extra_headers={"HX-Request": "true"}
    ),
    ("GET", "/assessments/{assessment_id}/sharing"): Case(200),
    ("POST", "/assessments/{assessment_id}/sharing"): Case(201, _link_form),
    ("POST", "/assessments/{assessment_id}/sharing/{link_id}/revoke"): Case(303),
    ("GET", "/account"): Case(200, cross_user=False),
    ("POST", "/account/password"): Case(422, cross_user=False, notes="no new password given"),
    ("POST", "/account/logout-everywhere"): Case(303, cross_user=False),
    ("GET", "/account/tokens"): Case(200, cross_user=False),
    ("POST", "/account/tokens"): Case(201, _token_form, cross_user=False),
    ("POST", "/account/tokens/{token_id}/revoke"): Case(303),
    ("POST", "/api/v1/assessments"): Case(201, _intake, cross_user=False),
    ("GET", "/api/v1/assessments/{assessment_id}"): Case(200),
    ("POST", "/api/v1/assessments/{assessment_id}/pilots"): Case(202, _pilot_body),
    # Lists: only the caller's own rows, so another user's list is theirs, not a 404.
    ("GET", "/api/v1/assessments"): Case(200, cross_user=False),
    ("GET", "/api/v1/assessments/{assessment_id}/pilots"): Case(200),
    ("PUT", "/api/v1/assessments/{assessment_id}/sample"): Case(200, _sample),
    ("POST", "/api/v1/assessments/{assessment_id}/documents"): Case(201, _documents),
    ("GET", "/api/v1/assessments/{assessment_id}/documents"): Case(200),
    ("DELETE", "/api/v1/assessments/{assessment_id}/documents"): Case(204),
    ("GET", "/api/v1/pilots/{pilot_id}"): Case(200),
    ("GET", "/api/v1/assessments/{assessment_id}/report"): Case(200),
    ("GET", "/api/v1/assessments/{assessment_id}/report.pdf"): Case(200),
    # The world's pilots are synthetic: their recommended fine-tuning path has no adapter on
    # disk, so the owner reaches the export and is told what is missing (409). A full export
    # is tested in tests/app/exports.
    ("GET", "/pilots/{pilot_id}/export"): Case(409, notes="no adapter on disk"),
    ("GET", "/api/v1/pilots/{pilot_id}/export"): Case(409, notes="no adapter on disk"),
    ("POST", "/api/v1/pilots/{pilot_id}/cancel"): Case(409),
    ("GET", "/models"): Case(200, cross_user=False),
    ("POST", "/models"): Case(303, _model_form, cross_user=False),
    ("POST", "/models/{model_id}/check"): Case(303),
    ("POST", "/models/{model_id}/delete"): Case(303),
    ("GET", "/api/v1/models"): Case(200, cross_user=False),
    ("POST", "/api/v1/models"): Case(201, _model_body, cross_user=False),
    ("GET", "/api/v1/models/{model_id}"): Case(200),
    ("POST", "/api/v1/models/{model_id}/check"): Case(200),
    ("DELETE", "/api/v1/models/{model_id}"): Case(204),
}


def discovered_routes() -> set[tuple[str, str]]:
    """(method, path) of every route the app serves; mounts as ("MOUNT", path)."""
    app = create_app(Settings(secret_key="route discovery only", var_dir=Path("/nonexistent")))
    found: set[tuple[str, str]] = set()
    for context in iter_route_contexts(app.routes):
        path = context.path
        assert path is not None
        methods = context.methods
        if not methods:
            found.add(("MOUNT", path))
            continue
        found |= {(method, path) for method in methods if method != "HEAD"}
    return found


def test_every_route_is_classified() -> None:
    discovered = discovered_routes()
    protected = discovered - PUBLIC_ROUTES
    assert protected == set(CASES), (
        "Routes without an ownership case (add them to CASES, or to PUBLIC_ROUTES if anyone "
        f"may call them): {sorted(protected - set(CASES))}; "
        f"stale cases: {sorted(set(CASES) - protected)}"
    )
    assert discovered >= PUBLIC_ROUTES, f"stale allowlist: {PUBLIC_ROUTES - discovered}"


@pytest.fixture
def world(make_client, monkeypatch: pytest.MonkeyPatch) -> World:  # type: ignore[no-untyped-def]
    queued: list[object] = []
    # Starting a pilot enqueues it; the queue is not what these tests are about.
    monkeypatch.setattr("app.queue.send", queued.append)
    return build_world(make_client)


def call(client, method: str, url: str, case: Case, world: World, headers: dict[str, str]):  # type: ignore[no-untyped-def]
    kwargs = case.payload(world)
    headers = {**case.extra_headers, **headers}
    if method == "GET":
        return client.http.get(url, headers=headers, **kwargs)
    if url.startswith("/api/"):
        return client.http.request(method, url, headers=headers, **kwargs)
    # Pages: a form post with the session's CSRF token, as the browser sends it.
    data = kwargs.pop("data", {})
    return client.post(url, data, headers=headers, **kwargs)


@pytest.mark.parametrize(("method", "path"), sorted(CASES), ids=lambda v: str(v))
def test_route_ownership(world: World, method: str, path: str) -> None:
    case = CASES[(method, path)]
    url = path.format(**world.params())
    is_api = path.startswith("/api/")

    anonymous = call(world.anonymous, method, url, case, world, {})
    if is_api:
        assert anonymous.status_code == 401, anonymous.text
    else:
        assert anonymous.status_code == 303, anonymous.text
        assert anonymous.headers["location"].startswith("/login?next=")
    assert OWNER_MARKER not in anonymous.text

    other = call(world.other, method, url, case, world, world.other_auth() if is_api else {})
    if case.cross_user:
        assert other.status_code == 404, other.text
    else:
        assert other.status_code == case.owner_status, other.text
    assert OWNER_MARKER not in other.text

    owner = call(world.owner, method, url, case, world, world.owner_auth() if is_api else {})
    assert owner.status_code == case.owner_status, owner.text[:2000]


def test_api_cookie_callers_are_checked_too(world: World) -> None:
    """The same ownership rule when the API is called with the session cookie."""
    aid, pid = world.assessment_id, world.pilot_ids[0]
    for url in (f"/api/v1/assessments/{aid}", f"/api/v1/pilots/{pid}"):
        assert world.other.http.get(url).status_code == 404
        assert world.owner.http.get(url).status_code == 200
        assert world.anonymous.http.get(url).status_code == 401


def test_share_link_reads_the_report_and_pdf_only(world: World) -> None:
    visitor = world.anonymous
    page = visitor.get(world.share_path)
    assert page.status_code == 200 and OWNER_MARKER in page.text
    pdf = visitor.get(f"{world.share_path}/report.pdf")
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF-")
    # The owner did not include data and adapter with this link: no bundle.
    bundle = visitor.get(f"{world.share_path}/export.zip")
    assert bundle.status_code == 404 and OWNER_MARKER not in bundle.text
    # Having opened the link grants nothing else: every protected route still refuses.
    for method, path in sorted(CASES):
        url = path.format(**world.params())
        response = call(visitor, method, url, CASES[(method, path)], world, {})
        assert response.status_code in (303, 401), (method, url, response.status_code)
        assert OWNER_MARKER not in response.text
    # The token is not an API credential either.
    as_bearer = {"Authorization": "Bearer " + world.params()["token"]}
    response = visitor.http.get(f"/api/v1/assessments/{world.assessment_id}", headers=as_bearer)
    assert response.status_code == 401


def test_revoked_share_link_is_404(world: World) -> None:
    revoke = f"/assessments/{world.assessment_id}/sharing/{world.link_id}/revoke"
    assert world.owner.post(revoke).status_code == 303
    for url in (
        world.share_path,
        f"{world.share_path}/report.pdf",
        f"{world.share_path}/export.zip",
    ):
        response = world.anonymous.get(url)
        assert response.status_code == 404
        assert OWNER_MARKER not in response.text
