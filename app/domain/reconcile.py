"""The recommendation rule: reconcile the rubric's ranking with the pilot's measurements.

The rule, stated once here and printed on every report (``RULE_TEXT``; docs/pilots.md gives
each step with the literature it follows):

1. **Enough evidence first** (`app.domain.evidence`). A difference decides nothing unless it
   rests on at least 30 paired test items (and 10 independent groups where items share a
   passage), and, for a paired binary metric, on at least 10 items where the arms disagree.
   A zero-width interval never decides. Otherwise the pilot is *inconclusive* and the rubric
   decides.
2. **The interval against the minimum that matters.** The leader (best point estimate) wins on
   quality against another arm only when the whole 95% interval of their difference lies at
   or beyond the intake's minimum; they are *tied* when the whole interval lies inside
   ±minimum; anything else is *unresolved*: the rubric decides, confidence is low, and the
   report gives the test size that would resolve it with 80% power.
3. **One primary comparison per arm.** The leader is compared with each other arm and must
   win or tie against every one (an intersection-union test: no adjustment is needed for the
   verdict; the exploratory table of all pairs is Holm-adjusted).
4. **The floor competes.** An arm that does not clearly beat the majority-label floor is not
   recommended on pilot evidence.
5. **Proxies** (`app.domain.proxy`): a difference counts only between arms run on the model
   you will deploy, or on one model known to be capable of what both arms need.
6. **Feasibility** comes from the rubric: an arm whose path it blocks is never recommended.
7. **Ties** under the minimum: cost, then latency, then simplicity decide (`app.domain.tiebreak`).
8. **Failures are named**: an arm that did not run is said in the headline, with its reason.

Where each part lives: this module holds the rule's decision (`reconcile`) and its wording for
the report (`RULE_TEXT`); its inputs (`RubricPick`, `PilotEvidence` and the records inside)
are in `app.domain.verdict_inputs`, the verdicts it can reach with their reasons in
`app.domain.verdicts`, and the test size that would settle an open comparison in
`app.domain.more_data`.

Pure functions over small dataclasses: no database, no web, so the rule is unit-tested alone
and the calibration harness (`bench/verdict_calibration.py`) simulates it.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Final

from app.domain.evidence import MIN_DISCORDANT, MIN_GROUPS, MIN_TEST_ITEMS, Reading
from app.domain.formatting import format_quality
from app.domain.intake import DEFAULT_MIN_DIFFERENCE_POINTS
from app.domain.verdict_inputs import PilotEvidence, RubricPick, and_list, option_label
from app.domain.verdicts import (
    Confidence,
    Recommendation,
    pilot_decides,
    practical_tie,
    proxy_cannot_decide,
    rubric_only,
    unresolved,
)

RULE_TEXT: Final = (
    "The pilot decides only on enough evidence: a difference needs at least "
    f"{MIN_TEST_ITEMS} paired test items (and {MIN_GROUPS} independent groups where items "
    f"share a passage or document), {MIN_DISCORDANT} items on which the arms disagree for a "
    "right-or-wrong metric, and an interval of non-zero width; otherwise the pilot is "
    "inconclusive and the rubric decides. The best-measured arm wins on quality against "
    "another only when the whole 95% interval of their difference lies at or beyond the "
    "minimum gain you said matters; the two are tied when the whole interval lies inside "
    "plus or minus that minimum, and then the lower cost per 1,000 queries, then the lower "
    "median latency, then the simpler path decides; anything else is unresolved: the rubric "
    "decides with low confidence, and the report gives the test size that would resolve it "
    "with 80% power. The winner must win or tie against every other arm and clearly beat "
    "the majority-label floor. A difference counts only between arms run on the model you "
    "will deploy, or on one model known to be capable of what both arms need (a model under "
    "1B parameters is not known to learn from shots or to read retrieved passages); a pilot "
    "on another model than the one you will deploy caps confidence at medium. Feasibility, "
    "cost and volatility come from the rubric and the measured token counts, so an arm the "
    "rubric marks as blocked is never recommended."
)


def reconcile(
    rubric: RubricPick,
    evidence: PilotEvidence | None,
    *,
    min_difference_points: float = DEFAULT_MIN_DIFFERENCE_POINTS,
) -> Recommendation:
    """Apply the rule (module docstring) to the rubric's order and the pilot's evidence.

    `min_difference_points` is the intake's smallest quality gain that matters.
    """
    decided = _reconcile(rubric, evidence, min_difference_points)
    if evidence is None:
        return decided
    decided = replace(decided, failures=evidence.failure_lines())
    return _with_proxy_cap(decided, evidence)


def _reconcile(
    rubric: RubricPick, evidence: PilotEvidence | None, minimum: float
) -> Recommendation:
    if evidence is None or (
        not evidence.arms and not evidence.failed and evidence.pilot_error is None
    ):
        return rubric_only(
            rubric,
            "No pilot has finished yet; a pilot on your own sample would add measured "
            "evidence on quality, latency and tokens per query.",
        )
    if evidence.pilot_error is not None:
        return rubric_only(
            rubric,
            f"The pilot failed before it could compare its arms ({evidence.pilot_error}), "
            "so it measured nothing the verdict can use; run it again.",
            evidence=evidence,
        )
    if not evidence.arms:
        return rubric_only(
            rubric,
            "Every arm of the pilot failed, so it measured nothing: "
            + "; ".join(evidence.failure_lines())
            + ".",
            evidence=evidence,
        )
    notes = [
        f"{a.label} was left out: {rubric.blocked[a.option]}"
        for a in evidence.arms
        if a.option in rubric.blocked
    ]
    feasible = [a for a in evidence.arms if a.option not in rubric.blocked]
    choice = rubric.choice
    if len(feasible) < 2:
        measured = and_list([f"{a.label} at {format_quality(a.value)}" for a in feasible])
        notes.append(
            f"The pilot measured {measured or 'no feasible arm'}; with nothing to compare "
            "against it cannot rank the paths."
        )
        return rubric_only(rubric, " ".join(notes), evidence=evidence)
    if choice not in {a.option for a in feasible}:
        notes.append(
            f"The pilot did not run an arm for {option_label(choice)}, so it cannot overrule "
            "the rubric's choice; add that arm to a pilot to test it."
        )
        return rubric_only(rubric, " ".join(notes), evidence=evidence)

    # Best point estimate first; on equal values, the rubric's order breaks the tie.
    leader = max(feasible, key=lambda a: (a.value, -rubric.rank(a.option)))
    others = [o for o in feasible if o is not leader]
    readings = {o.arm: evidence.reading(leader, o, minimum) for o in others}
    decisive = (Reading.matters, Reading.tie)
    proxied = [
        o
        for o in others
        if readings[o.arm] in decisive and not evidence.comparability(leader, o).counts
    ]
    counted = [o for o in others if o not in proxied]
    ties = [o for o in counted if readings[o.arm] is Reading.tie]
    open_ = [o for o in counted if readings[o.arm] not in decisive]
    if proxied:
        return proxy_cannot_decide(rubric, evidence, leader, [*open_, *ties], proxied, notes)
    if open_:
        return unresolved(rubric, evidence, leader, open_, ties, notes, minimum)
    if ties:
        return practical_tie(rubric, evidence, [leader, *ties], notes, minimum)
    return pilot_decides(rubric, evidence, leader, others, notes)


def _with_proxy_cap(recommendation: Recommendation, evidence: PilotEvidence) -> Recommendation:
    """A pilot on a stand-in model caps confidence at medium, and the headline says so."""
    note = evidence.proxy_note()
    if note is None:
        return recommendation
    capped: Confidence = (
        "medium" if recommendation.confidence == "high" else (recommendation.confidence)
    )
    return replace(recommendation, confidence=capped, proxy_note=note)
