"""Reading the pilot's typed manifest, and the shared number formatting."""

from __future__ import annotations

from app.domain.formatting import (
    format_bytes,
    format_duration,
    format_interval,
    format_points,
    format_quality,
    format_signed_interval,
    format_usd,
)


def test_the_stored_manifest_reads_back_as_the_typed_record() -> None:
    from app.domain.records import Manifest
    from app.reports.pilot_view import flatten_manifest

    stored = {"base_model_id": "m", "split_sizes": {"train": 80, "test": 120}, "seed": 13}
    manifest = Manifest.read(stored, seed=0)
    assert manifest is not None
    assert manifest.base_model_id == "m" and manifest.split_sizes.test == 120
    assert manifest.seed == 13  # the stored seed wins over the row's
    assert Manifest.read({}, seed=1) is None  # a pilot that has not finished
    # Keys a newer writer adds are kept, not dropped.
    assert Manifest.read({**stored, "judge": "x"}, seed=0).as_json()["judge"] == "x"  # type: ignore[union-attr]
    assert ("split_sizes.test", "120") in flatten_manifest(manifest.as_json())


def test_formatting_is_the_one_used_everywhere() -> None:
    assert format_quality(0.725) == "72.5%"
    assert format_usd(0.0345) == "$0.035" and format_usd(12.5) == "$12.50"
    assert format_usd(1920) == "$1,920"
    assert format_duration(335) == "5 min 35 s" and format_duration(42) == "42 s"
    assert format_bytes(7_372_800) == "7.0 MB"
    # A tiny negative bound rounds to zero without a minus sign: "-0.0" reads as an error.
    assert format_signed_interval(-0.00001, 0.25) == "[+0.0, +25.0]"
    assert format_interval(-0.00001, 0.25) == "[0.0, 25.0]"
    assert format_points(-0.0004) == "+0.0 pts"
    assert format_quality(-0.0) == "0.0%"


def test_arms_that_share_an_adapter_draw_one_loss_curve() -> None:
    from app.reports.charts import LossSeries
    from app.reports.pilot_view import merge_identical_curves

    def series(arm: str, label: str, last: float) -> LossSeries:
        return LossSeries(arm, label, [1, 2], [2.0, last], [None, 1.5])

    merged = merge_identical_curves(
        [
            series("qlora", "QLoRA fine-tune", 1.0),
            series("qlora_rag", "QLoRA + RAG", 1.0),
            series("qlora_7b", "Other adapter", 0.9),
        ]
    )
    assert [s.label for s in merged] == [
        "QLoRA fine-tune and QLoRA + RAG (one adapter)",
        "Other adapter",
    ]


def test_the_evidence_carries_each_arms_measured_cost_and_latency(client) -> None:
    from app.db import session_scope
    from app.pilots.models import Pilot
    from app.reports.pilot_evidence import COST_PER_1K, LATENCY_P50, pilot_evidence
    from app.reports.pilot_rows import load_pilot
    from tests.app.reports.factory import finished_pilot
    from tests.factories.assessments import scored_assessment

    client.signup()
    pilot_id = finished_pilot(scored_assessment(client))
    with session_scope() as session:
        pilot = session.get(Pilot, pilot_id)
        assert pilot is not None
        rows = load_pilot(session, pilot=pilot)
        evidence = pilot_evidence(rows)
    assert evidence is not None and len(evidence.arms) == 4  # one per arm the pilot ran
    for arm in evidence.arms:
        stored = rows.metrics[arm.arm]
        assert arm.cost_per_1k_usd == stored[COST_PER_1K].value
        assert arm.latency_p50_ms == stored[LATENCY_P50].value
    qlora = evidence.arm("qlora")
    assert qlora is not None and qlora.cost_per_1k_usd is not None
    assert qlora.cost_per_1k_usd < evidence.arm("rag").cost_per_1k_usd  # type: ignore[operator,union-attr]


def test_a_classification_arms_unmatched_rate_shows_beside_its_quality(client) -> None:
    import re

    from app.db import session_scope
    from app.pilots.models import MetricRow
    from tests.app.reports.factory import finished_pilot
    from tests.factories.assessments import scored_assessment

    client.signup()
    aid = scored_assessment(client)
    pilot_id = finished_pilot(aid)
    with session_scope() as session:
        # As the worker stores it: one in eight few-shot answers named no label.
        session.add(
            MetricRow(pilot_id=pilot_id, arm="fewshot", name="label_unmatched", value=0.125)
        )
    page = client.get(f"/assessments/{aid}/report").text
    rows = dict(re.findall(r'<tr data-arm="(\w+)"[^>]*>(.*?)</tr>', page, flags=re.S))
    assert "macro-F1 35.8%; unmatched predictions 12.5%" in rows["fewshot"]
    assert "unmatched" not in rows["rag"]  # an arm without the figure shows none
