"""The rubric is data; these tests keep that data internally consistent and auditable."""

from __future__ import annotations

from app.domain.intake import Intake
from app.domain.samples.schemas import SampleSummary
from app.domain.scoring.citations import CITATIONS
from app.domain.scoring.paths import PATH_LABELS, PATHS
from app.domain.scoring.rubric import BASE_SCORES, RUBRIC, budget_shortfall


def test_factor_ids_are_unique() -> None:
    ids = [factor.id for factor in RUBRIC]
    assert len(ids) == len(set(ids))


def test_factors_read_real_intake_or_sample_fields() -> None:
    for factor in RUBRIC:
        assert factor.reads, factor.id
        for name in factor.reads:
            if name.startswith("sample."):
                assert name.removeprefix("sample.") in SampleSummary.model_fields, factor.id
            else:
                assert name in Intake.model_fields, (factor.id, name)


def test_weights_and_effects_are_in_range() -> None:
    for factor in RUBRIC:
        assert factor.weight > 0, factor.id
        effects = factor.effect.as_dict()
        assert set(effects) == set(PATHS)
        assert all(-1.0 <= value <= 1.0 for value in effects.values()), factor.id
        assert any(value != 0 for value in effects.values()), factor.id


def test_every_factor_explains_itself_and_cites_known_sources() -> None:
    for factor in RUBRIC:
        assert factor.name and factor.rationale, factor.id
        for citation_id in factor.citations:
            assert citation_id in CITATIONS, (factor.id, citation_id)
        if not factor.citations:
            # Uncited factors must admit it, so no reader mistakes judgement for evidence.
            assert "no published number" in factor.rationale, factor.id


def test_base_scores_cover_every_path_and_favour_the_prompt_baseline() -> None:
    assert set(BASE_SCORES) == set(PATHS) == set(PATH_LABELS)
    assert BASE_SCORES["prompting"] == max(BASE_SCORES.values())


def test_citations_carry_what_design_md_states() -> None:
    arxiv = {
        "ovadia-2023": "2312.05934",
        "soudani-2024": "2403.01432",
        "balaguer-2024": "2401.08406",
        "dettmers-2023-qlora": "2305.14314",
        "hu-2021-lora": "2106.09685",
    }
    for citation_id, number in arxiv.items():
        citation = CITATIONS[citation_id]
        assert citation.url == f"https://arxiv.org/abs/{number}"
        assert number in citation.reference
    assert "0.875" in CITATIONS["ovadia-2023"].finding
    assert "6/12/24/48 GB" in CITATIONS["llama-factory-memory"].finding
    assert "500–5,000" in CITATIONS["data-size-guidance"].finding
    assert "$10–100" in CITATIONS["cost-guidance"].finding
    assert CITATIONS["openai-accuracy"].url is not None


def test_budget_shortfall_is_zero_within_budget_and_log_scaled_beyond() -> None:
    assert budget_shortfall(100.0, 100.0) == 0.0
    assert budget_shortfall(0.0, 0.0) == 0.0
    assert budget_shortfall(5.0, 0.0) == 1.0
    assert abs(budget_shortfall(1_000.0, 100.0) - 1.0) < 1e-12  # ten times over
    assert abs(budget_shortfall(316.227766, 100.0) - 0.5) < 1e-6  # √10 times over
