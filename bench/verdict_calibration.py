"""Calibration of the verdict: simulated pilots where the truth is known.

Each scenario draws pilots of k arms answering n test items right or wrong (the common case:
accuracy, exact match, a judge's pass rate), with a known true accuracy per arm, items of
shared difficulty (what makes a comparison paired) and, optionally, items in groups that
share a passage (intra-group correlation on the latent scale). Every simulated pilot goes
through the product's own code: `app.domain.comparison.compare_paired` for each pair, then
`app.domain.reconcile.reconcile` with a rubric that has no preference, exactly as a report
would. The rule from before (1,000 item-level bootstrap resamples, "interval excludes zero",
the minimum read on the point estimate) is simulated beside it, from
`app.domain.bootstrap`, for the before/after figures.

Printed per scenario (and as RESULT lines):
- false winner: the share of pilots whose verdict names a winner on measured quality that
  does not truly beat every other arm by the minimum that matters (goal <= 5%);
- coverage: the share of 95% intervals of one fixed pair's difference that contain the true
  difference (goal 93-97%);
- power: the share of pilots that name the truly best arm as the winner on quality.

    python -m bench.verdict_calibration            # every scenario, 2,000 pilots each
    python -m bench.verdict_calibration --reps 500 --scenario clustered-null
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import stats

from app.domain.bootstrap import bootstrap_difference, resample_indices
from app.domain.comparison import as_difference, compare_paired
from app.domain.evidence import GapFacts, Reading, read_gap
from app.domain.formatting import points_value
from app.domain.metrics import mean_statistic
from app.domain.reconcile import reconcile
from app.domain.records import ArmModel
from app.domain.verdict_inputs import ArmEvidence, ArmGap, PilotEvidence, RubricPick

ARMS: tuple[str, ...] = ("fewshot", "rag", "qlora", "qlora_rag")
# Every arm on the deployment model: the proxy rule has nothing to say, only the statistics.
DEPLOYED = ArmModel(model_id="team-8b", parameters=8_000_000_000, deployment=True)
# A rubric with no preference between the paths: the pilot alone can name a winner.
NEUTRAL = RubricPick(
    order=("prompting", "rag", "fine_tuning", "fine_tuning+rag"),
    scores={"prompting": 50.0, "rag": 50.0, "fine_tuning": 50.0},
)


@dataclass(frozen=True)
class Scenario:
    name: str
    accuracies: tuple[float, ...]  # true accuracy per arm, in ARMS order
    n_items: int
    minimum_points: float = 2.0
    group_size: int = 1  # items per group (1: independent items)
    group_correlation: float = 0.0  # share of an arm's latent variance shared within a group
    item_correlation: float = 0.5  # share of latent variance shared across arms (pairing)
    readable: tuple[float, ...] = field(default_factory=tuple)  # judge: readable share per arm

    @property
    def k(self) -> int:
        return len(self.accuracies)

    def true_winner(self) -> int | None:
        """The arm that truly beats every other by at least the minimum, if one does."""
        best = int(np.argmax(self.accuracies))
        gaps = [self.accuracies[best] - a for i, a in enumerate(self.accuracies) if i != best]
        if min(gaps) <= 0:  # equal arms: no arm truly wins, whatever the minimum
            return None
        return best if min(gaps) * 100 >= self.minimum_points else None


SCENARIOS: tuple[Scenario, ...] = (
    Scenario("null-4-arms", (0.6, 0.6, 0.6, 0.6), 120),
    Scenario("null-2-arms-min-0", (0.6, 0.6), 120, minimum_points=0.0),
    Scenario("null-4-arms-min-0", (0.6, 0.6, 0.6, 0.6), 120, minimum_points=0.0),
    Scenario(
        "clustered-null",
        (0.6, 0.6),
        160,
        minimum_points=0.0,
        group_size=8,
        group_correlation=0.3,
        item_correlation=0.3,
    ),
    Scenario("at-minimum", (0.62, 0.60), 400),
    Scenario("just-under-minimum", (0.615, 0.60), 400),
    Scenario("twice-minimum", (0.64, 0.60), 400),
    Scenario("clear-gap", (0.80, 0.60, 0.55, 0.50), 300),
    Scenario("tiny-split", (0.6, 0.6), 8, minimum_points=0.0),
    Scenario("one-readable-verdict", (0.6, 0.5), 120, minimum_points=0.0, readable=(1 / 120, 1.0)),
)


def draw(scenario: Scenario, rng: np.random.Generator) -> tuple[list[np.ndarray], np.ndarray]:
    """One pilot: per-arm 0/1 scores (NaN where a judge verdict is unreadable), and groups."""
    n, size = scenario.n_items, scenario.group_size
    groups = np.arange(n) // size
    shared_item = rng.standard_normal(n)
    rho_g, rho_i = scenario.group_correlation, scenario.item_correlation
    scores = []
    for arm, accuracy in enumerate(scenario.accuracies):
        # Each arm's own effect per group (a passage one arm reads well and another does
        # not): it does not cancel in the paired difference, which is what makes clustered
        # evidence thinner than its item count.
        arm_group = rng.standard_normal(groups.max() + 1)[groups]
        latent = (
            np.sqrt(rho_g) * arm_group
            + np.sqrt(rho_i) * shared_item
            + np.sqrt(1 - rho_g - rho_i) * rng.standard_normal(n)
        )
        right = (latent < stats.norm.ppf(accuracy)).astype(float)
        if scenario.readable:
            unreadable = rng.permutation(n)[: n - max(1, round(scenario.readable[arm] * n))]
            right[unreadable] = np.nan
        scores.append(right)
    return scores, groups


def evidence_after(
    scenario: Scenario, scores: Sequence[np.ndarray], groups: np.ndarray
) -> PilotEvidence:
    """What the conclusion stores and the report reads, built by the product's functions."""
    grouped = groups if scenario.group_size > 1 else None
    arms = tuple(
        ArmEvidence(ARMS[i], ARMS[i], float(np.nanmean(s)), model=DEPLOYED)
        for i, s in enumerate(scores)
    )
    gaps = []
    for i in range(scenario.k):
        for j in range(i + 1, scenario.k):
            c = compare_paired(scores[j], scores[i], grouped)
            gaps.append(ArmGap.stored(as_difference("accuracy", ARMS[j], ARMS[i], c)))
    return PilotEvidence(
        metric_label="accuracy", arms=arms, differences=tuple(gaps), n_test=scenario.n_items
    )


def winner_after(scenario: Scenario, evidence: PilotEvidence) -> int | None:
    """The arm the rule names as the winner on measured quality, if any."""
    rec = reconcile(NEUTRAL, evidence, min_difference_points=scenario.minimum_points)
    if rec.decided_by != "pilot" or rec.decided_on or rec.pilot_leader is None:
        return None
    return ARMS.index(rec.pilot_leader)


def winner_before(
    scenario: Scenario, scores: Sequence[np.ndarray], seed: int
) -> tuple[int | None, tuple[float, float]]:
    """The rule before this calibration: 1,000 item-level bootstrap resamples, a winner when
    every interval against it excludes zero and the point gap reaches the minimum. Also
    returns its interval for arm 1 - arm 0."""
    n = scenario.n_items
    # Before, an unreadable verdict was left out of each arm's own mean, not of the pair.
    filled = [np.where(np.isnan(s), np.nanmean(s), s) for s in scores]
    indices = resample_indices(n, seed=seed)
    stat = [mean_statistic(f) for f in filled]
    means = [float(np.nanmean(s)) for s in scores]
    leader = int(np.argmax(means))
    wins = True
    for other in range(scenario.k):
        if other == leader:
            continue
        interval = bootstrap_difference(stat[leader], stat[other], n, indices=indices)
        clear = interval.low > 0 or interval.high < 0
        matters = points_value(abs(means[leader] - means[other])) >= scenario.minimum_points
        wins = wins and clear and matters
    pair = bootstrap_difference(stat[1], stat[0], n, indices=indices)
    return (leader if wins else None), (pair.low, pair.high)


@dataclass
class Figures:
    false_winner: float
    coverage: float
    power: float | None
    reps: int


def run(scenario: Scenario, reps: int, seed: int = 0, *, before: bool = False) -> Figures:
    """`reps` simulated pilots of `scenario` through the rule (or the rule from before)."""
    rng = np.random.default_rng(seed)
    truth = scenario.true_winner()
    true_gap = scenario.accuracies[1] - scenario.accuracies[0]
    false_winners = covered = found = 0
    for rep in range(reps):
        scores, groups = draw(scenario, rng)
        if before:
            winner, (low, high) = winner_before(scenario, scores, seed + rep)
        else:
            evidence = evidence_after(scenario, scores, groups)
            winner = winner_after(scenario, evidence)
            pair = evidence.gap(ARMS[1], ARMS[0])
            assert pair is not None
            low, high = pair.ci_low, pair.ci_high
        covered += low <= true_gap <= high
        if winner is not None and winner != truth:
            false_winners += 1
        found += winner is not None and winner == truth
    return Figures(
        false_winner=false_winners / reps,
        coverage=covered / reps,
        power=found / reps if truth is not None else None,
        reps=reps,
    )


def reading_of(scenario: Scenario, scores: Sequence[np.ndarray], groups: np.ndarray) -> Reading:
    """The reading of arm 1 - arm 0 (for tests of a single pair)."""
    grouped = groups if scenario.group_size > 1 else None
    c = compare_paired(scores[1], scores[0], grouped)
    facts = GapFacts(c.delta, c.ci_low, c.ci_high, c.n_items, c.n_groups, c.discordant, c.p_value)
    return read_gap(facts, scenario.minimum_points)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=2000, help="Simulated pilots a scenario.")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--scenario", action="append", help="Only these (repeatable).")
    args = parser.parse_args()
    chosen = [s for s in SCENARIOS if not args.scenario or s.name in args.scenario]
    header = (
        f"{'scenario':<24} {'rule':<7} {'false winner':>12} {'coverage':>9} {'power':>7} {'s':>6}"
    )
    print(header)
    for scenario in chosen:
        for label, before in (("before", True), ("after", False)):
            start = time.perf_counter()
            figures = run(scenario, args.reps, args.seed, before=before)
            elapsed = time.perf_counter() - start
            power = f"{figures.power:.1%}" if figures.power is not None else "-"
            print(
                f"{scenario.name:<24} {label:<7} {figures.false_winner:>12.1%} "
                f"{figures.coverage:>9.1%} {power:>7} {elapsed:>6.1f}"
            )
            print(
                f"RESULT verdict_calibration scenario={scenario.name} rule={label} "
                f"reps={figures.reps} false_winner={figures.false_winner:.4f} "
                f"coverage={figures.coverage:.4f} "
                f"power={figures.power if figures.power is not None else 'na'}"
            )


if __name__ == "__main__":
    main()
