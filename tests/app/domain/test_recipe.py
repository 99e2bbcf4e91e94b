"""The QLoRA recipe: scaled to model, data size and time cap (docs/pilots.md "Calibration")."""

from __future__ import annotations

import dataclasses
import itertools
import math

import pytest

from app.domain.recipe import (
    ATTENTION_MODULES,
    TIME_CAP_PLANNING_SHARE,
    QLoRARecipe,
    choose_recipe,
    learning_rate_for,
    protocol_7b_recipe,
)

SMOL = 134_515_008  # SmolLM2-135M-Instruct


def test_small_model_gets_the_recipe_that_trained_the_proxy() -> None:
    # Calibration: 135M on Banking77, lr 1e-3 + all linear + 3 epochs -> 65.5% (2e-4 q/k/v/o: 8%).
    recipe = choose_recipe(SMOL, 800, 77, 60.0, 4.4)
    assert recipe.learning_rate == pytest.approx(1e-3)
    assert recipe.target_modules == "all-linear"
    assert recipe.epochs == 3
    assert (recipe.rank, recipe.alpha) == (16, 32)


def test_large_model_gets_the_7b_recipe_values() -> None:
    recipe = choose_recipe(8_000_000_000, 800, 77, 60.0, None)
    assert recipe.learning_rate == pytest.approx(2e-4)
    assert recipe.target_modules == ATTENTION_MODULES
    assert (recipe.rank, recipe.alpha) == (16, 32)


def test_learning_rate_interpolates_on_a_log_scale() -> None:
    rates = [learning_rate_for(p) for p in (5e8, 1e9, 2e9, 3e9, 5e9, 7e9, 7e10)]
    assert rates[0] == rates[1] == pytest.approx(1e-3)
    assert rates[-1] == rates[-2] == pytest.approx(2e-4)
    assert all(a > b for a, b in itertools.pairwise(rates[1:-1]))
    # geometric midpoint of 1B..7B (~2.65B) sits at the geometric mean of the rates
    middle = learning_rate_for(int(math.sqrt(1e9 * 7e9)))
    assert middle == pytest.approx(math.sqrt(1e-3 * 2e-4), rel=0.02)


@pytest.mark.parametrize(("n_train", "epochs"), [(24, 3), (800, 3), (5_000, 2), (50_000, 1)])
def test_epochs_fall_with_data_size(n_train: int, epochs: int) -> None:
    assert choose_recipe(SMOL, n_train, None, 10_000.0, None).epochs == epochs


def test_time_cap_trains_on_fewer_examples_rather_than_fewer_epochs() -> None:
    # 800 examples x 3 epochs at batch 16 = 150 steps x 3.3 s = 8.3 min > 6 min cap.
    recipe = choose_recipe(SMOL, 800, 77, 6.0, 3.3)
    assert recipe.epochs == 3
    assert recipe.max_train_examples is not None and recipe.max_train_examples < 800
    assert recipe.max_train_examples >= 4 * 77
    assert recipe.estimated_seconds is not None
    assert recipe.estimated_seconds <= 6.0 * 60 * TIME_CAP_PLANNING_SHARE
    assert any("fewer examples" in line for line in recipe.rationale)


def test_a_very_tight_cap_cuts_epochs_before_dropping_below_the_example_floor() -> None:
    recipe = choose_recipe(SMOL, 800, 77, 1.0, 3.3)  # ~14 steps fit
    assert recipe.epochs < 3
    assert recipe.estimated_seconds is not None and recipe.estimated_seconds <= 60.0
    assert recipe.max_train_examples is not None


def test_a_run_that_fits_is_left_alone() -> None:
    recipe = choose_recipe(SMOL, 240, 10, 6.0, 0.8)  # 90 steps x 0.8 s = 72 s
    assert recipe.max_train_examples is None
    assert recipe.epochs == 3
    assert recipe.estimated_steps == 3 * math.ceil(240 / recipe.effective_batch_size)


def test_without_a_step_estimate_nothing_is_cut_and_the_rationale_says_so() -> None:
    recipe = choose_recipe(SMOL, 5_000, 77, 1.0, None)
    assert recipe.max_train_examples is None
    assert recipe.estimated_seconds is None
    assert any("no step-time estimate" in line for line in recipe.rationale)


def test_rationale_explains_every_choice() -> None:
    text = " ".join(choose_recipe(SMOL, 800, 77, 6.0, 3.3).rationale)
    for topic in ("learning_rate", "target_modules", "rank 16", "epochs", "batch", "validation"):
        assert topic in text


def test_validation_schedule_gives_early_stopping_several_points() -> None:
    recipe = choose_recipe(SMOL, 240, 10, 6.0, None)
    per_epoch = math.ceil(240 / recipe.effective_batch_size)
    assert 5 <= recipe.eval_every_steps <= per_epoch
    assert recipe.early_stopping_patience >= 2
    assert 0 < recipe.warmup_ratio < 0.5


def test_every_field_has_help_text() -> None:
    for item in dataclasses.fields(QLoRARecipe):
        assert item.metadata.get("help"), item.name


def test_protocol_7b_recipe_is_the_seed_recipe() -> None:
    recipe = protocol_7b_recipe()
    assert recipe.learning_rate == pytest.approx(2e-4)
    assert recipe.target_modules == ATTENTION_MODULES
    assert (recipe.rank, recipe.alpha, recipe.epochs, recipe.effective_batch_size) == (
        16,
        32,
        2,
        16,
    )


@pytest.mark.parametrize(("params", "n_train"), [(0, 10), (SMOL, 0)])
def test_invalid_inputs_are_rejected(params: int, n_train: int) -> None:
    with pytest.raises(ValueError):
        choose_recipe(params, n_train, None, 6.0, None)
