"""The pilot's judge: chosen on the page or through the API, checked, stored and reported."""

from __future__ import annotations

import json

from app.db import get_sessionmaker
from app.domain.judging import JUDGE_PASS, JUDGE_SCORE, JUDGE_UNREADABLE
from app.domain.records import (
    ArmJudging,
    ArmModel,
    ArmOutcome,
    ArmResult,
    ArmStatus,
    JudgeResults,
    Manifest,
    MetricValue,
    PairTally,
    PilotData,
    PilotOutcome,
    Prediction,
)
from app.domain.samples.schemas import Example, PilotTask
from app.pilots.models import Pilot
from tests.app.accounts.helpers import bearer, create_token
from tests.app.reports.factory import record_as_worker
from tests.factories.assessments import intake, scored_assessment
from tests.factories.models import in_models_dir, register
from tests.factories.pilots import post_pilot

QA_JSONL = "".join(
    json.dumps({"question": f"Which city is number {i}?", "answer": f"City {i}"}) + "\n"
    for i in range(40)
)


def qa_assessment(client) -> str:  # type: ignore[no-untyped-def]
    aid = client.http.post("/api/v1/assessments", json=intake()).json()["id"]
    response = client.post(
        f"/assessments/{aid}/sample",
        files={"file": ("qa.jsonl", QA_JSONL, "application/jsonl")},
    )
    assert response.status_code == 303, response.text
    return aid


def test_a_judge_must_be_the_users_own_endpoint_model(make_client) -> None:  # type: ignore[no-untyped-def]
    owner, other = make_client(), make_client()
    owner.signup("owner@example.com")
    other.signup("other@example.com")
    aid = qa_assessment(owner)
    foreign = register(other).json()["id"]
    local = owner.http.post(
        "/api/v1/models",
        json={"name": "on disk", "kind": "local", "model": in_models_dir("smol")},
        headers=bearer(create_token(owner)),
    ).json()["id"]
    for model_id, message in (
        (foreign, "no such model among yours"),
        (local, "'on disk' is not an OpenAI-compatible endpoint"),
        ("no-such-id", "no such model among yours"),
    ):
        response = post_pilot(
            owner, aid, headers=bearer(create_token(owner)), judge_model_id=model_id
        )
        assert response.status_code == 422, response.text
        detail = response.json()["detail"]
        assert detail.startswith("judge_model_id:") and message in detail
    # The page's form answers the same way.
    page = owner.post(f"/assessments/{aid}/pilots", {"max_train": "60", "judge_model_id": foreign})
    assert page.status_code == 422 and "judge_model_id" in page.text
    with get_sessionmaker()() as session:
        assert session.query(Pilot).count() == 0


def test_a_judge_grades_open_ended_tasks_only(client) -> None:  # type: ignore[no-untyped-def]
    client.signup()
    aid = scored_assessment(client)  # a classification sample
    judge = register(client).json()["id"]
    response = post_pilot(client, aid, headers=bearer(create_token(client)), judge_model_id=judge)
    assert response.status_code == 422
    assert response.json()["detail"].startswith("judge_model_id: the judge grades open-ended")
    assert 'name="judge_model_id"' not in client.get(f"/assessments/{aid}").text


def test_the_judge_is_chosen_in_the_form_and_kept_on_the_pilot(client) -> None:  # type: ignore[no-untyped-def]
    client.signup()
    aid = qa_assessment(client)
    judge = register(client, name="Judge 70B").json()["id"]
    page = client.get(f"/assessments/{aid}").text
    assert 'name="judge_model_id"' in page and "Judge 70B" in page
    response = client.post(
        f"/assessments/{aid}/pilots",
        {"max_train": "8", "arms": ["fewshot", "rag"], "judge_model_id": judge},
    )
    assert response.status_code == 303, response.text
    pilot_id = response.headers["location"].rsplit("/", 1)[1]
    by_api = post_pilot(
        client, aid, headers=bearer(create_token(client)), max_train=8, judge_model_id=judge
    )
    assert by_api.status_code == 202, by_api.text
    without = post_pilot(client, aid, headers=bearer(create_token(client)), max_train=8)
    with get_sessionmaker()() as session:
        assert session.get(Pilot, pilot_id).judge_model_id == judge
        assert session.get(Pilot, by_api.json()["id"]).judge_model_id == judge
        assert session.get(Pilot, without.json()["id"]).judge_model_id is None


def judged_outcome(data: PilotData) -> PilotOutcome:
    """What the worker hands over after a judge graded two arms on 12 QA items."""
    arms = []
    for arm, passed in (("fewshot", 0.25), ("rag", 0.75)):
        predictions = [
            Prediction(
                index=i, prediction=e.target, latency_ms=5.0, prompt_tokens=9, output_tokens=2
            )
            for i, e in enumerate(data.test)
        ]
        metrics = [
            MetricValue("token_f1", passed - 0.1, passed - 0.2, passed),
            MetricValue(JUDGE_PASS, passed, passed - 0.15, passed + 0.15),
            MetricValue(JUDGE_SCORE, passed + 0.05, passed - 0.1, passed + 0.2),
            MetricValue(JUDGE_UNREADABLE, 3.0 if arm == "rag" else 0.0),
        ]
        arms.append(
            ArmOutcome(arm, ArmStatus.done, metrics=metrics, result=ArmResult(arm, predictions))
        )
    results = JudgeResults(
        model_id="judge-70b",
        reference_metric="token_f1",
        arms=[
            ArmJudging(arm="fewshot", verdicts=12, unreadable=0, agreement=0.61, cost_usd=0.012),
            ArmJudging(arm="rag", verdicts=12, unreadable=3, retried=5, agreement=None),
        ],
        pairs=[PairTally(arm_a="rag", arm_b="fewshot", wins=7, ties=3, losses=1, unreadable=1,
                         disagreements=2)],
        agreement=0.58,
        cost_usd=0.0345,
        prompt_tokens=12_000,
        completion_tokens=900,
        reused=4,
    )  # fmt: skip
    judge_model = ArmModel(model_id="judge-70b", via="endpoint")
    return PilotOutcome(
        task=PilotTask.qa,
        primary_metric=JUDGE_PASS,
        arms=arms,
        differences=[],
        warnings=[],
        caps=[],
        manifest=Manifest(seed=13, base_model_id="m", judge_model=judge_model),
        judge=results,
    )


def test_the_report_and_the_api_show_what_the_judge_found(client) -> None:  # type: ignore[no-untyped-def]
    client.signup()
    aid = qa_assessment(client)
    pilot_id = post_pilot(
        client, aid, headers=bearer(create_token(client)), max_train=8, arms=["fewshot", "rag"]
    ).json()["id"]
    data = PilotData(
        PilotTask.qa, [], [], [Example(input=f"q{i}", target=f"a{i}") for i in range(12)]
    )
    outcome = judged_outcome(data)
    record_as_worker(pilot_id, data, outcome)

    html = client.get(f"/assessments/{aid}/report?pilot={pilot_id}").text
    assert 'id="judge"' in html
    assert "3 of 24 verdicts unreadable" in html  # over both arms
    assert "0 of 12 verdicts unreadable" in html and "3 of 12 verdicts unreadable" in html
    assert "judge-70b (endpoint)" in html
    assert "+0.58" in html and "+0.61" in html  # agreement, overall and per arm
    assert "Spearman with token F1" in html
    assert "$0.035" in html  # the judge's cost
    assert "4 answers reused" in html
    pairs = html.split('id="judge-pairs"', 1)[1].split("</table>", 1)[0]
    # The pilot read no documents, so its retrieval arm retrieved training examples.
    assert "<td>Prompting with retrieved examples vs Few-shot prompting</td>" in pairs
    assert '<td class="num">7</td><td class="num">3</td><td class="num">1</td>' in pairs
    assert "the order decided" in pairs
    assert "Judge pass rate" in html  # the primary metric's label heads the arms table

    pdf = client.get(f"/assessments/{aid}/report.pdf?pilot={pilot_id}")
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF")

    body = client.http.get(f"/api/v1/pilots/{pilot_id}").json()
    assert body["primary_metric"] == JUDGE_PASS
    assert body["judge"]["pairs"][0]["wins"] == 7
    assert body["manifest"]["judge_model"]["model_id"] == "judge-70b"
    assert "api_key" not in json.dumps(body["manifest"])


def test_the_worker_asks_the_pilots_judge_and_keeps_its_answers(client) -> None:  # type: ignore[no-untyped-def]
    from app.settings import get_settings
    from worker.pilots.endpoint_answers import CachedAnswer
    from worker.runtime import endpoint_runtime
    from worker.step_reads import answers, read_step

    def _judge_endpoint(settings, pilot_id):  # type: ignore[no-untyped-def]
        """The judge runtime a worker step builds from its one read of the pilot."""
        given = read_step(settings, pilot_id, split=False)[1]
        return endpoint_runtime(given.judge, answers(pilot_id))

    client.signup()
    aid = qa_assessment(client)
    secret = "sk-judge-never-recorded-5c1e"
    prices = {"input_usd_per_million": 0.5, "output_usd_per_million": 1.5}
    judge = register(client, name="Judge", model="judge-70b", api_key=secret, **prices)
    judge = judge.json()["id"]
    judged = post_pilot(
        client, aid, headers=bearer(create_token(client)), max_train=8, judge_model_id=judge
    ).json()["id"]
    plain = post_pilot(client, aid, headers=bearer(create_token(client)), max_train=8).json()["id"]

    assert _judge_endpoint(get_settings(), plain) is None
    runtime = _judge_endpoint(get_settings(), judged)
    assert runtime is not None
    assert runtime.spec.model == "judge-70b" and runtime.spec.api_key == secret
    assert runtime.price is not None and runtime.price.output_per_million == 1.5
    assert runtime.model == ArmModel(model_id="judge-70b", via="endpoint")
    assert secret not in repr(runtime) and secret not in runtime.model.model_dump_json()
    # Kept in SQL per pilot, as the arms' endpoint answers are: a re-queued pilot reads them.
    runtime.cache.put("k" * 64, CachedAnswer('{"score": 4, "pass": true}', 80, 9, 120.0))
    again = _judge_endpoint(get_settings(), judged)
    assert again is not None and again.cache.get("k" * 64) == CachedAnswer(
        '{"score": 4, "pass": true}', 80, 9, 120.0
    )
