"""The wizard end to end through the real app and a real SQLite database built by Alembic."""

from __future__ import annotations

from sqlalchemy import select

from app.assessments.models import Assessment, DataSample, PathScore
from app.db import get_sessionmaker
from tests.factories.assessments import GOOD_CSV, new_assessment

ANSWERS = {
    "use_case": {
        "title": "Ticket routing",
        "use_case": "Route tickets to 5 queues.",
        "task_type": "classification",
    },
    "problems": {"failure_modes": ["ignores_format", "wrong_tone"], "prompt_tokens_today": "1500"},
    "knowledge": {"volatility": "yearly", "needs_citations": "false", "has_documents": "false"},
    "data": {"examples_available": "2000", "examples_reviewed": "true"},
    "resources": {
        "budget_one_off_usd": "5000",
        "budget_monthly_usd": "2000",
        "gpu_access": "gpu_24gb",
        "timeline": "weeks",
        "team_skills": ["python"],
    },
    "traffic": {
        "queries_per_day": "20000",
        "latency_target_ms": "900",
        "data_residency": "none",
        "target_model_size_b": "8",
    },
}


def complete_wizard(client, aid: str) -> None:
    for step, data in ANSWERS.items():
        response = client.post(f"/assessments/{aid}/steps/{step}", {**data, "direction": "next"})
        assert response.status_code == 303, (step, response.text[:2000])


def test_wizard_to_scores(client) -> None:
    client.signup()
    aid = new_assessment(client)
    complete_wizard(client, aid)
    upload = client.post(
        f"/assessments/{aid}/sample", files={"file": ("tickets.csv", GOOD_CSV, "text/csv")}
    )
    assert upload.status_code == 303
    data_page = client.get(f"/assessments/{aid}/steps/data")
    assert "tickets.csv" in data_page.text
    assert "classification" in data_page.text
    review = client.get(f"/assessments/{aid}/steps/review")
    assert "Ticket routing" in review.text
    submitted = client.post(f"/assessments/{aid}/submit")
    assert submitted.status_code == 303
    page = client.get(f"/assessments/{aid}")
    assert page.status_code == 200
    assert "<svg" in page.text
    for label in ("Prompting", "RAG", "Fine-tuning"):
        assert label in page.text
    assert "How the scores were reached" in page.text
    with get_sessionmaker()() as session:
        rows = session.scalars(select(PathScore).where(PathScore.assessment_id == aid)).all()
        assessment = session.get(Assessment, aid)
    assert sorted(r.path for r in rows) == ["fine_tuning", "prompting", "rag"]
    assert sorted(r.rank for r in rows) == [1, 2, 3]
    assert assessment is not None and assessment.status == "scored"


def test_back_and_forward_keep_answers(client) -> None:
    client.signup()
    aid = new_assessment(client)
    client.post(f"/assessments/{aid}/steps/use_case", {**ANSWERS["use_case"], "direction": "next"})
    back = client.post(
        f"/assessments/{aid}/steps/problems", {**ANSWERS["problems"], "direction": "back"}
    )
    assert back.headers["location"].endswith("/steps/use_case")
    page = client.get(f"/assessments/{aid}/steps/use_case")
    assert 'value="Ticket routing"' in page.text
    page = client.get(f"/assessments/{aid}/steps/problems")
    assert 'value="ignores_format" checked' in page.text


def test_invalid_step_shows_inline_errors_and_keeps_valid_answers(client) -> None:
    client.signup()
    aid = new_assessment(client)
    response = client.post(
        f"/assessments/{aid}/steps/traffic",
        {
            "queries_per_day": "lots",
            "latency_target_ms": "900",
            "data_residency": "none",
            "target_model_size_b": "8",
            "direction": "next",
        },
    )
    assert response.status_code == 422
    assert "Enter a whole number" in response.text
    assert 'aria-invalid="true"' in response.text
    with get_sessionmaker()() as session:
        assessment = session.get(Assessment, aid)
    assert assessment is not None
    assert assessment.answers["latency_target_ms"] == 900
    assert "queries_per_day" not in assessment.answers


def test_bad_sample_gets_line_errors_and_keeps_previous_sample(client) -> None:
    client.signup()
    aid = new_assessment(client)
    good = client.post(
        f"/assessments/{aid}/sample", files={"file": ("tickets.csv", GOOD_CSV, "text/csv")}
    )
    assert good.status_code == 303
    bad_jsonl = (
        '{"instruction": "Summarise", "input": "a", "output": "b"}\n'
        '{"instruction": "Summarise", "input": "c"}\n'
    )
    response = client.post(
        f"/assessments/{aid}/sample", files={"file": ("bad.jsonl", bad_jsonl, "application/json")}
    )
    assert response.status_code == 422
    assert "line 2" in response.text
    assert "output" in response.text
    assert "previous sample is kept" in response.text
    with get_sessionmaker()() as session:
        samples = session.scalars(select(DataSample).where(DataSample.assessment_id == aid)).all()
    assert [s.original_name for s in samples] == ["tickets.csv"]


def test_submit_incomplete_lists_missing_answers(client) -> None:
    client.signup()
    aid = new_assessment(client)
    response = client.post(f"/assessments/{aid}/submit")
    assert response.status_code == 422
    assert "This is required." in response.text


def test_unknown_format_override_is_rejected(client) -> None:
    client.signup()
    aid = new_assessment(client)
    response = client.post(
        f"/assessments/{aid}/sample",
        {"format": "xlsx"},
        files={"file": ("tickets.csv", GOOD_CSV, "text/csv")},
    )
    assert response.status_code == 422
    assert "Unknown format" in response.text


def test_other_user_cannot_see_assessment(make_client) -> None:
    owner, other = make_client(), make_client()
    owner.signup("owner@example.com")
    aid = new_assessment(owner)
    complete_wizard(owner, aid)
    owner.post(f"/assessments/{aid}/submit")
    other.signup("other@example.com")
    for url in (f"/assessments/{aid}", f"/assessments/{aid}/steps/use_case"):
        assert other.get(url).status_code == 404
    hijack = other.post(f"/assessments/{aid}/steps/use_case", ANSWERS["use_case"])
    assert hijack.status_code == 404
    assert owner.get(f"/assessments/{aid}").status_code == 200


def test_the_minimum_difference_is_asked_explained_and_stored(client) -> None:
    client.signup()
    aid = new_assessment(client)
    page = client.get(f"/assessments/{aid}/steps/traffic")
    assert 'name="min_difference_points"' in page.text
    assert (
        "A measured gain smaller than this is treated as a tie: cost, latency and simplicity "
        "decide instead."
    ) in page.text
    bad = client.post(
        f"/assessments/{aid}/steps/traffic",
        {**ANSWERS["traffic"], "min_difference_points": "60", "direction": "next"},
    )
    assert bad.status_code == 422
    assert 'id="min_difference_points-error"' in bad.text and "Must be at most 50." in bad.text
    complete_wizard(client, aid)  # no answer: the default applies
    with get_sessionmaker()() as session:
        assessment = session.get(Assessment, aid)
        assert assessment is not None and "min_difference_points" not in assessment.answers
    good = client.post(
        f"/assessments/{aid}/steps/traffic",
        {**ANSWERS["traffic"], "min_difference_points": "3.5", "direction": "next"},
    )
    assert good.status_code == 303
    client.post(f"/assessments/{aid}/sample", files={"file": ("t.csv", GOOD_CSV, "text/csv")})
    assert client.post(f"/assessments/{aid}/submit").status_code == 303
    with get_sessionmaker()() as session:
        assessment = session.get(Assessment, aid)
        assert assessment is not None
        assert assessment.intake["min_difference_points"] == 3.5


def test_the_data_step_says_how_a_grouped_sample_is_split(client) -> None:
    client.signup()
    aid = new_assessment(client)
    grouped = "text,label,group\n" + "".join(
        f"message {i} about {lab},{lab},thread {i}\n" for i in range(30) for lab in ("a", "b")
    )
    upload = client.post(
        f"/assessments/{aid}/sample", files={"file": ("t.csv", grouped, "text/csv")}
    )
    assert upload.status_code == 303
    page = client.get(f"/assessments/{aid}/steps/data")
    assert "60 examples in 30 groups: the split keeps each group on one side" in page.text


def test_a_bad_group_is_refused_naming_the_line_and_field(client) -> None:
    client.signup()
    aid = new_assessment(client)
    bad = '{"question": "q?", "answer": "a"}\n{"question": "r?", "answer": "b", "group": [1]}\n'
    response = client.post(
        f"/assessments/{aid}/sample", files={"file": ("bad.jsonl", bad, "application/json")}
    )
    assert response.status_code == 422
    assert "line 2: &#39;group&#39; must be a string or a number, got array" in response.text
