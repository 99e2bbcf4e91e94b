"""Property-based API testing: schemathesis generates requests from the app's /openapi.json.

For every /api/v1 operation, up to MAX_EXAMPLES schema-valid and MAX_EXAMPLES schema-invalid
requests (bodies, path parameters), sent with a real bearer token. Half the strategies pin
the path parameters to an assessment or pilot that exists, so those examples get past the
404 into the real code. The one check: no response is a 5xx.

(schemathesis' own pytest plugin for fixture-built schemas, `from_fixture`, does not run on
pytest 9, so the operations' Hypothesis strategies are driven directly.)
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error

from tests.app.accounts.helpers import bearer, create_token
from tests.app.reports.factory import finished_pilot
from tests.factories.assessments import scored_assessment
from tests.factories.models import in_models_dir

MAX_EXAMPLES = 25  # per operation and generation mode


@pytest.fixture
def api_owner(client, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """A user with a token, a scored assessment with a sample, and a finished pilot."""
    monkeypatch.setattr("app.queue.send", lambda job: None)
    client.signup("api@example.com")
    aid = scored_assessment(client)
    token = create_token(client)
    # A local model: checking it looks at a directory, so no generated case reaches a network.
    model = client.http.post(
        "/api/v1/models",
        json={"name": "m", "kind": "local", "model": in_models_dir("model")},
        headers=bearer(token),
    )
    assert model.status_code == 201, model.text
    return {
        "token": token,
        "assessment_id": aid,
        "pilot_id": finished_pilot(aid),
        "model_id": model.json()["id"],
    }


def strategy(operation: Any, mode: GenerationMode, owned: dict[str, str]) -> Any:
    """Cases with generated path parameters, or (as often) ones naming the owner's objects."""
    generated = operation.as_strategy(mode)
    names = {p.name for p in operation.path_parameters}
    if not names:
        return generated
    pinned = operation.as_strategy(mode, path_parameters={n: owned[n] for n in names})
    return st.one_of(generated, pinned)


def test_api_never_answers_with_a_server_error(client, api_owner: dict[str, str]) -> None:  # type: ignore[no-untyped-def]
    schema = schemathesis.openapi.from_asgi("/openapi.json", client.http.app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {f"{op.method.upper()} {op.path}" for op in operations} == {
        "POST /api/v1/assessments",
        "GET /api/v1/assessments/{assessment_id}",
        "POST /api/v1/assessments/{assessment_id}/pilots",
        "GET /api/v1/assessments",
        "GET /api/v1/assessments/{assessment_id}/pilots",
        "PUT /api/v1/assessments/{assessment_id}/sample",
        "POST /api/v1/assessments/{assessment_id}/documents",
        "GET /api/v1/assessments/{assessment_id}/documents",
        "DELETE /api/v1/assessments/{assessment_id}/documents",
        "GET /api/v1/pilots/{pilot_id}",
        "GET /api/v1/assessments/{assessment_id}/report",
        "GET /api/v1/assessments/{assessment_id}/report.pdf",
        "GET /api/v1/pilots/{pilot_id}/export",
        "POST /api/v1/pilots/{pilot_id}/cancel",
        "GET /api/v1/models",
        "POST /api/v1/models",
        "GET /api/v1/models/{model_id}",
        "POST /api/v1/models/{model_id}/check",
        "DELETE /api/v1/models/{model_id}",
    }
    run: Counter[str] = Counter()
    statuses: Counter[int] = Counter()

    def explore(operation: Any, mode: GenerationMode) -> None:
        label = f"{operation.method.upper()} {operation.path} ({mode.value})"

        @settings(
            max_examples=MAX_EXAMPLES,
            deadline=None,
            database=None,
            suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
        )
        @given(case=strategy(operation, mode, api_owner))
        def check(case: Any) -> None:
            run[label] += 1
            response = case.call_and_validate(
                headers=bearer(api_owner["token"]), checks=[not_a_server_error]
            )
            statuses[response.status_code] += 1

        check()

    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            explore(operation, mode)
    total = sum(run.values())
    print(f"\nschemathesis: {total} examples, status codes {dict(sorted(statuses.items()))}")
    assert not [code for code in statuses if code >= 500]
    assert all(run[label] > 0 for label in run) and len(run) == 2 * len(operations)
