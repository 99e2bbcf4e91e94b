"""The cost and memory model against values computed by hand from the figures in docs/rubric.md."""

from __future__ import annotations

import pytest

from app.domain.intake import GpuAccess
from app.domain.scoring.costs import (
    QloraFit,
    break_even_queries_per_month,
    estimate_costs,
    lora_run_cost_usd,
    memory_estimate,
    qlora_fit,
    qlora_memory_gb,
)
from tests.app.domain.scoring.intakes import make_intake, make_summary

# Default price table: hosted-base $0.50/$1.50, hosted-fine-tuned $1.50/$4.50, self-hosted
# $0.20/$0.20 per 1M tokens. No sample: 200 tokens per query, 100 in and 100 out.


@pytest.mark.parametrize(
    ("size_b", "examples", "usd"),
    [
        (7.0, 100, 10.0),  # the bottom of the $10–100 range
        (70.0, 5_000, 100.0),  # the top
        (7.0, 5_000, 31.62),  # 10 × √10: examples span half the range on a log scale
        (70.0, 100, 31.62),  # and so does model size
        (28.0, 100, 20.0),  # 10 × √(28/7)
        (0.5, 10, 10.0),  # floors below 7B and 100 examples
        (700.0, 1_000_000, 100.0),  # caps above 70B and 5,000 examples
    ],
)
def test_lora_run_cost(size_b: float, examples: int, usd: float) -> None:
    assert lora_run_cost_usd(size_b, examples) == usd


@pytest.mark.parametrize(
    ("size_b", "gb"),
    [(7, 6.0), (14, 12.0), (30, 24.0), (70, 48.0), (22, 18.0), (3.5, 3.0), (110, 72.0)],
)
def test_qlora_memory_interpolates_the_llama_factory_table(size_b: float, gb: float) -> None:
    assert qlora_memory_gb(size_b) == gb


def test_lora_and_full_fine_tuning_memory_scale_from_the_7b_figures() -> None:
    seven = memory_estimate(7.0)
    assert seven.lora_fp16_gb == (16.0, 20.0)
    assert seven.full_finetune_gb == (112.0, 120.0)
    fourteen = memory_estimate(14.0)
    assert fourteen.lora_fp16_gb == (32.0, 40.0)
    assert fourteen.full_finetune_gb == (224.0, 240.0)


@pytest.mark.parametrize(
    ("gpu", "size_b", "fit"),
    [
        (GpuAccess.gpu_24gb, 30.0, QloraFit.fits),  # exactly 24 GB
        (GpuAccess.gpu_24gb, 31.0, QloraFit.does_not_fit),
        (GpuAccess.gpu_40_80gb, 50.0, QloraFit.fits),  # 36 GB
        (GpuAccess.gpu_40_80gb, 70.0, QloraFit.may_fit),  # 48 GB
        (GpuAccess.gpu_40_80gb, 120.0, QloraFit.may_fit),  # 78 GB
        (GpuAccess.gpu_40_80gb, 140.0, QloraFit.does_not_fit),  # 90 GB
        (GpuAccess.none, 1.0, QloraFit.no_gpu),
        (GpuAccess.managed_api, 400.0, QloraFit.managed),
    ],
)
def test_qlora_fit(gpu: GpuAccess, size_b: float, fit: QloraFit) -> None:
    assert qlora_fit(gpu, size_b) is fit


def test_costs_per_path_at_the_default_prices() -> None:
    costs = estimate_costs(make_intake(queries_per_day=1_000, examples_available=100)).costs

    # Prompting: (800 + 100) × $0.50 + 100 × $1.50 per 1M → $0.0006 a query, × 30,000 a month.
    assert costs["prompting"].one_off_usd == 0.0
    assert costs["prompting"].usd_per_query == pytest.approx(0.0006)
    assert costs["prompting"].monthly_usd == 18.0
    # RAG: 2M corpus tokens × $0.50 once; 1,000 more context tokens per query.
    assert costs["rag"].one_off_usd == 1.0
    assert costs["rag"].usd_per_query == pytest.approx(0.0011)
    assert costs["rag"].monthly_usd == 33.0
    # Fine-tuning: one $10 run; (50 + 100) × $1.50 + 100 × $4.50 → $0.000675 a query.
    assert costs["fine_tuning"].one_off_usd == 10.0
    assert costs["fine_tuning"].usd_per_query == pytest.approx(0.000675)
    assert costs["fine_tuning"].monthly_usd == 20.25


def test_short_prompts_never_break_even() -> None:
    assert estimate_costs(make_intake(prompt_tokens_today=800)).break_even_queries_per_month is None


def test_long_prompts_break_even_at_the_hand_computed_volume() -> None:
    breakdown = estimate_costs(make_intake(prompt_tokens_today=4_000, examples_available=100))

    # Saving a query: (4,100 × 0.50 + 150) − 675 = 1,525 per 1M; $10 / (12 × $0.001525).
    assert breakdown.break_even_queries_per_month == 546.4
    assert breakdown.costs["prompting"].usd_per_query == pytest.approx(0.0022)


def test_on_premises_prices_every_path_as_self_hosted() -> None:
    breakdown = estimate_costs(
        make_intake(data_residency="on_premises", examples_available=100, queries_per_day=1_000)
    )

    costs = breakdown.costs
    assert costs["prompting"].usd_per_query == pytest.approx(1_000 * 0.2 / 1e6)
    assert costs["fine_tuning"].usd_per_query == pytest.approx(250 * 0.2 / 1e6)
    assert costs["fine_tuning"].monthly_usd == 1.5
    assert costs["rag"].one_off_usd == 0.4
    # Self-hosted, the fine-tune has no price premium, so even 800-token prompts pay back.
    assert breakdown.break_even_queries_per_month == 5555.6


def test_sample_mean_tokens_replace_the_default_query_size() -> None:
    costs = estimate_costs(make_intake(), make_summary(mean_tokens=400.0)).costs

    # 200 in, 200 out: (800 + 200) × 0.50 + 200 × 1.50 = 800 per 1M.
    assert costs["prompting"].usd_per_query == pytest.approx(0.0008)
    assert any("mean of the sample" in note for note in costs["prompting"].notes)


def test_fine_tuned_inference_premium_comes_from_the_price_table() -> None:
    intake = make_intake()
    flat = {"hosted-base": (0.5, 1.5), "hosted-fine-tuned": (0.5, 1.5)}
    tripled = {"hosted-base": (0.5, 1.5), "hosted-fine-tuned": (1.5, 4.5)}

    flat_cost = estimate_costs(intake, price_table=flat).costs["fine_tuning"].usd_per_query
    tripled_cost = estimate_costs(intake, price_table=tripled).costs["fine_tuning"].usd_per_query
    assert tripled_cost == pytest.approx(3 * flat_cost)


def test_missing_price_rows_fall_back_with_a_note_or_fail_clearly() -> None:
    only_base = {"hosted-base": (1.0, 2.0)}
    costs = estimate_costs(make_intake(), price_table=only_base).costs
    assert costs["fine_tuning"].usd_per_query == pytest.approx((150 * 1.0 + 100 * 2.0) / 1e6)
    assert any("3–4×" in note for note in costs["fine_tuning"].notes)

    with pytest.raises(ValueError, match="hosted-base"):
        estimate_costs(make_intake(), price_table={"self-hosted-gpu": (0.2, 0.2)})


def test_break_even_function_edges() -> None:
    assert break_even_queries_per_month(12.0, 0.001) == 1_000.0
    assert break_even_queries_per_month(0.0, 0.001) == 0.0
    assert break_even_queries_per_month(12.0, 0.0) is None
    assert break_even_queries_per_month(12.0, -0.001) is None


def test_one_memory_estimator_for_the_table_and_the_gpu_preflight() -> None:
    from app.domain.scoring.costs import (
        QLORA_MEMORY_GB,
        REFERENCE_BATCH_TOKENS,
        qlora_memory_need,
        qlora_preflight,
    )

    for size_b, table_gb in QLORA_MEMORY_GB[1:]:
        need = qlora_memory_need(size_b)
        assert round(need.total_gb, 1) == table_gb == qlora_memory_gb(size_b)
        assert need.weights_gb == size_b * 0.55 and need.activations_gb > 0
    # Activations scale with the batch; weights and optimiser state do not.
    small, large = qlora_memory_need(7.0), qlora_memory_need(7.0, batch_tokens=8 * 1024)
    assert large.weights_gb == small.weights_gb
    assert large.activations_gb == small.activations_gb * 8 * 1024 / REFERENCE_BATCH_TOKENS

    assert qlora_preflight(small, free_gb=80.0, batch_size=1, max_seq_len=512) is None
    refusal = qlora_preflight(large, free_gb=20.0, batch_size=8, max_seq_len=1024)
    assert refusal is not None
    assert f"needs about {large.total_gb:.1f} GB" in refusal
    assert "20.0 GB free" in refusal and "batch 8 x 1024 tokens" in refusal
    assert "Lower the batch size or the sequence length" in refusal
