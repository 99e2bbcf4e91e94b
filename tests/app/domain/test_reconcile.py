"""The recommendation rule, alone: no database, no web."""

from __future__ import annotations

import math

from app.domain.reconcile import reconcile
from app.domain.records import ArmModel
from app.domain.verdict_inputs import ArmEvidence, ArmGap, PilotEvidence, RubricPick, rubric_pick

# The rubric prefers prompting, then RAG, then fine-tuning, by a clear margin.
RUBRIC = RubricPick(
    order=("prompting", "rag", "fine_tuning", "fine_tuning+rag"),
    scores={"prompting": 72.0, "rag": 60.0, "fine_tuning": 48.0},
)


# The rule's first case: every arm ran on the model the team will deploy.
DEPLOYED = ArmModel(model_id="team-8b", parameters=8_000_000_000, deployment=True)
PROXY = ArmModel(model_id="SmolLM2-135M", parameters=134_515_008)


def arm(name: str, value: float, half: float = 0.08, model: ArmModel = DEPLOYED) -> ArmEvidence:
    return ArmEvidence(name, name, value, value - half, value + half, model=model)


def paired(
    arm_a: str,
    arm_b: str,
    delta: float,
    ci_low: float,
    ci_high: float,
    *,
    n: int = 100,
    discordant: int | None = 40,
    p_value: float | None = 1e-6,
) -> ArmGap:
    """A difference as a pilot stores it now: the interval with the sample behind it (by
    default 100 paired items of a right-or-wrong metric, 40 of them discordant, McNemar's p
    far under 5%: enough evidence for the interval alone to decide)."""
    return ArmGap(
        arm_a,
        arm_b,
        delta,
        ci_low,
        ci_high,
        n_items=n,
        n_groups=n,
        discordant=discordant,
        p_value=p_value,
    )


def test_significant_pilot_difference_outranks_the_rubric() -> None:
    evidence = PilotEvidence(
        metric_label="accuracy",
        arms=(arm("fewshot", 0.50), arm("rag", 0.80)),
        differences=(paired("rag", "fewshot", 0.30, 0.22, 0.38),),
        n_test=100,
    )
    rec = reconcile(RUBRIC, evidence)
    assert rec.option == "rag"
    assert rec.decided_by == "pilot"
    assert rec.confidence == "medium"  # the rubric disagreed
    assert rec.rubric_option == "prompting"
    assert "outranks the rubric on quality" in rec.why
    assert "80.0%" in rec.why and "[+22.0, +38.0]" in rec.why
    assert "on 100 paired items" in rec.why
    assert rec.more_data == ()


def test_pilot_and_rubric_agreeing_is_high_confidence() -> None:
    evidence = PilotEvidence(
        metric_label="accuracy",
        arms=(arm("fewshot", 0.85), arm("rag", 0.60)),
        # Stored the other way round: the rule must flip it.
        differences=(paired("rag", "fewshot", -0.25, -0.33, -0.17),),
    )
    rec = reconcile(RUBRIC, evidence)
    assert (rec.option, rec.confidence, rec.decided_by) == ("prompting", "high", "pilot")


def test_overlapping_intervals_let_the_rubric_decide_with_low_confidence() -> None:
    evidence = PilotEvidence(
        metric_label="accuracy",
        arms=(arm("fewshot", 0.30), arm("rag", 0.66), arm("qlora", 0.70)),
        differences=(
            paired("qlora", "rag", 0.04, -0.02, 0.10),
            paired("qlora", "fewshot", 0.40, 0.31, 0.49),
        ),
        n_test=100,
    )
    rec = reconcile(RUBRIC, evidence)  # the intake default: 2 points matter
    # QLoRA leads on the point estimate, but not clearly: the rubric ranks RAG above it.
    assert rec.pilot_leader == "qlora"
    assert rec.option == "rag"
    assert rec.decided_by == "rubric"
    assert rec.confidence == "low"
    assert rec.unresolved == ("qlora", "rag")
    assert not rec.inconclusive  # enough evidence, it just does not settle it
    [estimate] = rec.more_data
    # 80% power at 95% confidence: sd = half-width × √n ÷ z_0.975 = 0.06 × 10 ÷ 1.95996 =
    # 0.30613; n = ((z_0.975 + z_0.9) × sd ÷ minimum)² = ((1.95996 + 1.28155) × 0.30613 ÷
    # 0.02)² = 49.616² = 2461.8 → 2,462.
    assert estimate.n_needed == 2462
    assert "about 2,462 test items (now 100)" in estimate.text
    assert estimate.text in rec.why
    assert (
        "[-2.0, +10.0] pts, on 100 paired items, neither lies wholly beyond the 2-point minimum "
        "that matters nor wholly inside ±2 points"
    ) in rec.why
    # With a minimum of 0 the size is the one that shows the observed 4-point gap as real:
    # ((z_0.975 + z_0.8) × sd ÷ gap)² = ((1.95996 + 0.84162) × 0.30613 ÷ 0.04)² = 21.441² =
    # 459.7 → 460.
    [at_zero] = reconcile(RUBRIC, evidence, min_difference_points=0.0).more_data
    assert at_zero.n_needed == 460
    assert "includes zero" in reconcile(RUBRIC, evidence, min_difference_points=0.0).why


def test_too_few_paired_items_leave_the_pilot_inconclusive() -> None:
    # The same clear 30-point lead, on 20 paired items: too few for any reading.
    evidence = PilotEvidence(
        metric_label="accuracy",
        arms=(arm("fewshot", 0.50), arm("rag", 0.80)),
        differences=(paired("rag", "fewshot", 0.30, 0.10, 0.50, n=20, discordant=12),),
        n_test=20,
    )
    rec = reconcile(RUBRIC, evidence)
    assert (rec.option, rec.decided_by, rec.confidence) == ("prompting", "rubric", "low")
    assert rec.inconclusive
    assert "is inconclusive about" in rec.why
    assert "only 20 paired test items (30 are needed)" in rec.why


def test_too_few_discordant_items_cannot_make_a_difference_matter() -> None:
    # 100 paired items, but the arms disagree on 8 of them, all one way: McNemar's p is 0.008,
    # yet 8 items are too few for "matters" on a right-or-wrong metric.
    evidence = PilotEvidence(
        metric_label="accuracy",
        arms=(arm("fewshot", 0.50), arm("rag", 0.58)),
        differences=(paired("rag", "fewshot", 0.08, 0.03, 0.13, discordant=8, p_value=0.008),),
        n_test=100,
    )
    rec = reconcile(RUBRIC, evidence)
    assert (rec.option, rec.decided_by, rec.inconclusive) == ("prompting", "rubric", True)
    assert "the arms disagree on only 8 items (10 are needed)" in rec.why


def test_an_old_pilots_difference_is_read_on_its_test_set_size() -> None:
    # Stored before the sample was recorded: n_items falls back to the test-set size, and the
    # facts it did not store are not checked.
    old = ArmGap("rag", "fewshot", 0.30, 0.22, 0.38)
    arms = (arm("fewshot", 0.50), arm("rag", 0.80))
    decided = reconcile(RUBRIC, PilotEvidence("accuracy", arms, (old,), n_test=100))
    assert (decided.option, decided.decided_by) == ("rag", "pilot")
    thin = reconcile(RUBRIC, PilotEvidence("accuracy", arms, (old,), n_test=25))
    assert (thin.option, thin.decided_by, thin.inconclusive) == ("prompting", "rubric", True)


def test_more_data_without_a_known_test_size_asks_for_a_rerun() -> None:
    # An old pilot stored neither the difference's sample nor its test-set size: the spread
    # per item cannot be read back from the interval, so no size is promised.
    evidence = PilotEvidence(
        metric_label="accuracy",
        arms=(arm("fewshot", 0.30), arm("rag", 0.66), arm("qlora", 0.70)),
        differences=(ArmGap("qlora", "rag", 0.04, -0.02, 0.10),),
    )
    rec = reconcile(RUBRIC, evidence)
    assert rec.decided_by == "rubric" and rec.confidence == "low"
    [estimate] = rec.more_data
    assert estimate.n_now is None and estimate.n_needed is None
    assert "rerun the pilot with at least 30 test items" in estimate.text


def test_blocked_path_is_never_recommended_even_when_it_wins() -> None:
    rubric = RubricPick(
        order=RUBRIC.order,
        scores=RUBRIC.scores,
        blocked={"fine_tuning": "No GPU", "fine_tuning+rag": "No GPU"},
    )
    evidence = PilotEvidence(
        metric_label="accuracy",
        arms=(arm("fewshot", 0.40), arm("rag", 0.70), arm("qlora", 0.95)),
        differences=(
            paired("qlora", "rag", 0.25, 0.15, 0.35),
            paired("rag", "fewshot", 0.30, 0.20, 0.40),
        ),
    )
    rec = reconcile(rubric, evidence)
    assert rec.option == "rag" and rec.decided_by == "pilot"
    assert "qlora was left out: No GPU" in rec.why


def test_without_stored_differences_the_arms_own_intervals_are_combined() -> None:
    # No paired interval stored: half-widths add in quadrature (independent samples), which is
    # wider than the paired interval would be, so the rule errs towards "cannot tell apart".
    close = PilotEvidence(metric_label="accuracy", arms=(arm("fewshot", 0.60), arm("rag", 0.70)))
    rec = reconcile(RUBRIC, close)
    assert rec.option == "prompting" and rec.confidence == "low"
    gap = close.gap("rag", "fewshot")
    assert gap is not None and not gap.paired
    assert math.isclose(gap.half_width, math.hypot(0.08, 0.08))
    far = PilotEvidence(metric_label="accuracy", arms=(arm("fewshot", 0.50), arm("rag", 0.80)))
    assert reconcile(RUBRIC, far).option == "rag"


def test_no_pilot_means_rubric_only_and_never_high() -> None:
    rec = reconcile(RUBRIC, None)
    assert rec.option == "prompting"
    assert rec.decided_by == "rubric"
    assert rec.confidence == "medium"  # 72 vs 60: a clear rubric lead
    assert "pilot" in rec.why and "would add" in rec.why
    close = RubricPick(order=RUBRIC.order, scores={"prompting": 61, "rag": 58, "fine_tuning": 40})
    assert reconcile(close, None).confidence == "low"


def test_a_single_arm_cannot_rank_paths() -> None:
    evidence = PilotEvidence(metric_label="accuracy", arms=(arm("rag", 0.9),))
    rec = reconcile(RUBRIC, evidence)
    assert rec.option == "prompting" and rec.decided_by == "rubric"
    assert "nothing to compare" in rec.why


def test_rubric_choice_not_piloted_is_not_overruled() -> None:
    rubric = RubricPick(
        order=("fine_tuning", "rag", "prompting", "fine_tuning+rag"),
        scores={"fine_tuning": 80, "rag": 50, "prompting": 40},
    )
    evidence = PilotEvidence(
        metric_label="accuracy",
        arms=(arm("fewshot", 0.3), arm("rag", 0.8)),
        differences=(paired("rag", "fewshot", 0.5, 0.4, 0.6),),
    )
    rec = reconcile(rubric, evidence)
    assert rec.option == "fine_tuning"
    assert "did not run an arm for Fine-tuning" in rec.why


def test_rubric_pick_puts_a_recommended_hybrid_first_and_blocks_its_parts() -> None:
    from app.domain.scoring.schemas import ScoreResult

    base = {
        "scores": {"prompting": 50.0, "rag": 70.0, "fine_tuning": 65.0},
        "ranking": ["rag", "fine_tuning", "prompting"],
        "hybrid": {
            "id": "fine_tuning+rag",
            "label": "Fine-tuning + RAG",
            "paths": ["fine_tuning", "rag"],
            "reason": "gains stack",
        },
        "flags": [{"id": "gpu", "severity": "blocker", "message": "No GPU", "path": "fine_tuning"}],
        "costs": {},
        "break_even_queries_per_month": None,
        "memory": {
            "target_model_size_b": 8,
            "qlora_gb": 7,
            "lora_fp16_gb": [18, 22],
            "full_finetune_gb": [128, 137],
        },
        "base_scores": {"prompting": 50.0, "rag": 50.0, "fine_tuning": 50.0},
        "factors": [],
        "sources": [],
        "headline": "",
    }
    pick = rubric_pick(ScoreResult.model_validate(base))
    assert pick.order == ("fine_tuning+rag", "rag", "fine_tuning", "prompting")
    assert set(pick.blocked) == {"fine_tuning", "fine_tuning+rag"}
    assert pick.choice == "rag"


# --- the proxy rule ----------------------------------------------------------------------


def test_a_proxy_gap_cannot_turn_prompting_into_fine_tuning() -> None:
    """The held-out sentiment case: rubric says prompting, the 135M proxy says fine-tuning."""
    evidence = PilotEvidence(
        metric_label="accuracy",
        arms=(
            arm("fewshot", 0.525, model=PROXY),
            arm("rag", 0.708, model=PROXY),
            arm("qlora", 0.867, model=PROXY),
        ),
        differences=(
            paired("qlora", "fewshot", 0.342, 0.25, 0.43, n=120, discordant=49),
            paired("qlora", "rag", 0.159, 0.07, 0.25, n=120, discordant=27),
        ),
        n_test=120,
        target_size_b=8,
    )
    rec = reconcile(RUBRIC, evidence)
    assert (rec.option, rec.decided_by) == ("prompting", "rubric")
    assert rec.confidence == "medium"  # the rubric's clear lead, and never above medium
    assert "SmolLM2-135M (135M parameters) is not known to be capable of in-context" in rec.why
    assert "register the model you will deploy and re-run" in rec.why
    assert rec.proxy_note is not None and "not the 8B model you plan to deploy" in rec.proxy_note
    assert set(rec.unresolved) == {"qlora", "fewshot", "rag"}


def test_a_proxy_gap_between_arms_it_can_run_still_decides_but_confidence_is_capped() -> None:
    """Fine-tuning vs a fine-tuning-only hybrid would need reading; two fine-tuned arms that
    need only fine-tuning are within the proxy's reach (here: two QLoRA variants)."""
    rubric = RubricPick(
        order=("fine_tuning", "prompting", "rag", "fine_tuning+rag"),
        scores={"prompting": 50.0, "rag": 40.0, "fine_tuning": 75.0},
    )
    evidence = PilotEvidence(
        metric_label="accuracy",
        arms=(arm("qlora", 0.90, model=PROXY), arm("majority_like", 0.30, model=PROXY)),
        differences=(paired("qlora", "majority_like", 0.60, 0.5, 0.7, discordant=64),),
        target_size_b=8,
    )
    rec = reconcile(rubric, evidence)
    assert rec.decided_by == "pilot" and rec.option == "fine_tuning"
    assert rec.confidence == "medium"  # would be high on the deployment model
    assert rec.proxy_note is not None


def test_on_the_deployment_model_there_is_no_proxy_note() -> None:
    evidence = PilotEvidence(
        metric_label="accuracy",
        arms=(arm("fewshot", 0.85), arm("rag", 0.60)),
        differences=(paired("rag", "fewshot", -0.25, -0.33, -0.17),),
        target_size_b=8,
    )
    rec = reconcile(RUBRIC, evidence)
    assert rec.proxy_note is None and rec.confidence == "high"


def test_an_old_pilot_without_models_lets_the_rubric_decide() -> None:
    evidence = PilotEvidence(
        metric_label="accuracy",
        arms=(
            ArmEvidence("fewshot", "fewshot", 0.5, 0.42, 0.58),
            ArmEvidence("rag", "rag", 0.8, 0.72, 0.88),
        ),
        differences=(paired("rag", "fewshot", 0.30, 0.22, 0.38),),
    )
    rec = reconcile(RUBRIC, evidence)
    assert (rec.option, rec.decided_by) == ("prompting", "rubric")
    assert "did not record which model answered" in rec.why


# --- the minimum difference that matters --------------------------------------------------

# The rubric prefers fine-tuning; the pilot's QLoRA arm leads RAG clearly but narrowly.
FT_FIRST = RubricPick(
    order=("fine_tuning", "rag", "prompting", "fine_tuning+rag"),
    scores={"fine_tuning": 70.0, "rag": 55.0, "prompting": 40.0},
)


def narrow_lead(delta: float, *, rag_cost: float = 0.31, qlora_cost: float = 0.88) -> PilotEvidence:
    """QLoRA ahead of RAG by `delta` with a tight paired interval, delta ± 0.5 points, on 1,000
    paired items of a continuous score (no discordant count): enough evidence that only where
    the interval lies against the minimum decides."""
    return PilotEvidence(
        metric_label="mean ROUGE-L",
        arms=(
            ArmEvidence(
                "qlora",
                "QLoRA",
                0.70 + delta,
                model=DEPLOYED,
                cost_per_1k_usd=qlora_cost,
                latency_p50_ms=90.0,
            ),
            ArmEvidence(
                "rag", "RAG", 0.70, model=DEPLOYED, cost_per_1k_usd=rag_cost, latency_p50_ms=300.0
            ),
        ),
        differences=(
            paired("qlora", "rag", delta, delta - 0.005, delta + 0.005, n=1000, discordant=None),
        ),
        n_test=1000,
    )


def test_a_clear_gap_under_the_minimum_is_a_tie_and_cost_decides() -> None:
    # [+0.7, +1.7]: the whole interval lies inside ±2 points.
    rec = reconcile(FT_FIRST, narrow_lead(0.012), min_difference_points=2.0)
    assert rec.option == "rag"  # cheaper, although QLoRA measured better and the rubric agrees
    assert rec.decided_by == "pilot" and rec.decided_on == ("cost",)
    assert rec.confidence == "medium"  # the rubric ranked fine-tuning first
    assert (
        "RAG and QLoRA differ by 1.2 points, under the 2-point minimum that matters to you, so "
        "cost decided: RAG costs $0.310 vs $0.880 per 1,000 queries."
    ) in rec.why
    assert "The rubric ranked Fine-tuning first" in rec.why


def test_an_interval_from_exactly_the_minimum_matters_and_the_pilot_decides_on_quality() -> None:
    # [+2.0, +3.0]: the whole interval at or beyond the 2-point minimum.
    rec = reconcile(FT_FIRST, narrow_lead(0.025), min_difference_points=2.0)
    assert rec.option == "fine_tuning" and rec.decided_on == ()
    assert rec.decided_by == "pilot" and rec.confidence == "high"
    # [+1.9, +2.9]: the low end just under the minimum, and not inside ±2 either: unresolved,
    # so the rubric decides with low confidence and says what would settle it.
    just_under = reconcile(FT_FIRST, narrow_lead(0.024), min_difference_points=2.0)
    assert (just_under.decided_by, just_under.confidence) == ("rubric", "low")
    assert just_under.decided_on == () and len(just_under.more_data) == 1
    # [+1.0, +2.0]: the high end at the minimum is not strictly inside it, so no tie either.
    edge_of_tie = reconcile(FT_FIRST, narrow_lead(0.015), min_difference_points=2.0)
    assert (edge_of_tie.decided_by, edge_of_tie.decided_on) == ("rubric", ())


def test_a_minimum_of_zero_is_the_rule_without_a_minimum() -> None:
    # [+0.3, +1.3] excludes zero: with no minimum that matters, it decides on quality, where a
    # 2-point minimum would make it a tie for cost to break.
    rec = reconcile(FT_FIRST, narrow_lead(0.008), min_difference_points=0.0)
    assert rec.option == "fine_tuning" and rec.decided_on == ()
    assert rec.decided_by == "pilot"
    assert reconcile(FT_FIRST, narrow_lead(0.008), min_difference_points=2.0).decided_on == (
        "cost",
    )


def test_the_intake_default_applies_when_no_minimum_is_given() -> None:
    # The default minimum is 2 points: [+0.9, +1.9] is a tie, [+2.0, +3.0] matters.
    assert reconcile(FT_FIRST, narrow_lead(0.014)).option == "rag"
    assert reconcile(FT_FIRST, narrow_lead(0.025)).option == "fine_tuning"


def test_the_tie_winner_agreeing_with_the_rubric_is_high_confidence() -> None:
    # QLoRA is the cheaper arm here, and the rubric ranks fine-tuning first.
    rec = reconcile(FT_FIRST, narrow_lead(0.012, rag_cost=0.9, qlora_cost=0.2))
    assert (rec.option, rec.confidence, rec.decided_on) == ("fine_tuning", "high", ("cost",))
    assert "The rubric ranks Fine-tuning first as well" in rec.why


def test_equal_printed_costs_leave_it_to_latency() -> None:
    rec = reconcile(FT_FIRST, narrow_lead(0.01, rag_cost=0.3104, qlora_cost=0.3096))
    assert rec.option == "fine_tuning" and rec.decided_on == ("latency",)
    assert "QLoRA answers in 90 ms vs 300 ms (median)" in rec.why


def test_arms_tied_under_the_minimum_join_an_overlap_for_the_rubric() -> None:
    # QLoRA leads RAG by 1 point, the whole interval inside ±2 (a tie), and few-shot by an
    # unresolved 4: the pilot cannot settle it, so the rubric picks among all three, and only
    # few-shot needs more data.
    rubric = RubricPick(
        order=("rag", "fine_tuning", "prompting", "fine_tuning+rag"),
        scores={"rag": 70.0, "fine_tuning": 60.0, "prompting": 50.0},
    )
    evidence = PilotEvidence(
        metric_label="accuracy",
        arms=(arm("fewshot", 0.66), arm("rag", 0.69), arm("qlora", 0.70)),
        differences=(
            paired("qlora", "rag", 0.01, 0.005, 0.015, discordant=None, p_value=0.001),
            paired("qlora", "fewshot", 0.04, -0.02, 0.10, discordant=24, p_value=0.31),
        ),
        n_test=100,
    )
    rec = reconcile(rubric, evidence, min_difference_points=2.0)
    assert rec.option == "rag" and rec.decided_by == "rubric" and rec.confidence == "low"
    assert "rag is tied with qlora (the whole interval inside ±2 points)" in rec.why
    assert [m.arm_b for m in rec.more_data] == ["fewshot"]
    # Without the minimum, RAG is clearly beaten and the rubric picks between QLoRA and few-shot.
    assert reconcile(rubric, evidence, min_difference_points=0.0).option == "fine_tuning"
