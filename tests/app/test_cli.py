from __future__ import annotations

import json

import pytest

from tests.conftest import REPO
from tests.factories.cli import run_cli


def test_score_prints_the_same_result_as_the_engine() -> None:
    from app.domain.intake import Intake
    from app.domain.scoring.engine import score

    path = REPO / "examples" / "intake-policy-qa.json"
    done = run_cli("score", str(path))
    assert done.returncode == 0, done.stderr
    printed = json.loads(done.stdout)
    expected = score(Intake.model_validate_json(path.read_text())).model_dump(mode="json")
    assert printed == expected
    assert printed["ranking"][0] == "rag"


def test_score_reports_invalid_field(tmp_path) -> None:
    bad = tmp_path / "bad.json"
    data = json.loads((REPO / "examples" / "intake-policy-qa.json").read_text())
    data["latency_target_ms"] = "soon"
    bad.write_text(json.dumps(data))
    done = run_cli("score", str(bad))
    assert done.returncode == 2
    assert "latency_target_ms" in done.stderr


def test_score_uses_the_configured_price_table() -> None:
    path = REPO / "examples" / "intake-banking-intents.json"
    default = json.loads(run_cli("score", str(path)).stdout)
    table = {
        "hosted-base": [5.0, 15.0],
        "hosted-fine-tuned": [15.0, 45.0],
        "self-hosted-gpu": [2.0, 2.0],
    }
    done = run_cli("score", str(path), env={"PRICE_TABLE": json.dumps(table)})
    assert done.returncode == 0, done.stderr
    priced = json.loads(done.stdout)
    # Ten times the prices: ten times the per-query part of every path's monthly cost.
    assert priced["costs"]["rag"]["monthly_usd"] > 5 * default["costs"]["rag"]["monthly_usd"]


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("PRICE_TABLE", "not json", "configuration error: PRICE_TABLE: not valid JSON"),
        (
            "PRICE_TABLE",
            '{"hosted-base": [1]}',
            "configuration error: PRICE_TABLE (hosted-base.1): Field required",
        ),
        (
            "WEB_PAGE_THREADS",
            "0",
            "configuration error: WEB_PAGE_THREADS: Input should be greater than or equal to 1",
        ),
        (
            "WEB_PAGE_THREADS",
            "many",
            "configuration error: WEB_PAGE_THREADS: Input should be a valid integer",
        ),
    ],
)
def test_a_bad_setting_is_named_without_a_traceback(name: str, value: str, expected: str) -> None:
    path = REPO / "examples" / "intake-banking-intents.json"
    done = run_cli("score", str(path), env={name: value})
    assert done.returncode == 2
    assert expected in done.stderr
    assert "Traceback" not in done.stderr and done.stdout == ""
