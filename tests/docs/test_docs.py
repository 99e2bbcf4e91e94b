"""Keep docs/rubric.md and docs/pilots.md in step with the code they describe.

Fast: reads the rubric and settings as data, scores one example intake, loads no model.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from app.domain.intake import Intake
from app.domain.scoring.citations import CITATIONS
from app.domain.scoring.engine import score
from app.domain.scoring.rubric import RUBRIC
from app.settings import Settings

REPO = Path(__file__).resolve().parents[2]
RUBRIC_DOC = REPO / "docs" / "rubric.md"
PILOTS_DOC = REPO / "docs" / "pilots.md"
EXAMPLE_INTAKE = REPO / "examples" / "intake-banking-intents.json"

# The factor table's header, as written in docs/rubric.md.
FACTOR_COLUMNS = ("id", "name", "reads", "weight", "prompting", "RAG", "fine-tuning", "citations")
EFFECT_COLUMNS = {"prompting": "prompting", "rag": "RAG", "fine_tuning": "fine-tuning"}
NO_EFFECT = "—"
BACKTICKED = re.compile(r"`([^`]+)`")


def _cells(line: str) -> list[str]:
    """The cells of a Markdown table row (`\\|` inside a cell is not a separator)."""
    inner = line.strip().removeprefix("|").removesuffix("|")
    return [cell.strip() for cell in re.split(r"(?<!\\)\|", inner)]


def _table(text: str, header: tuple[str, ...]) -> list[dict[str, str]]:
    """Rows of the first Markdown table whose header row is exactly `header`."""
    lines = text.splitlines()
    for position, line in enumerate(lines):
        if line.lstrip().startswith("|") and tuple(_cells(line)) == header:
            rows = []
            for row in lines[position + 2 :]:
                if not row.lstrip().startswith("|"):
                    break
                rows.append(dict(zip(header, _cells(row), strict=True)))
            return rows
    raise AssertionError(f"no table with header {header} in the document")


def _number(cell: str) -> float:
    if cell in (NO_EFFECT, ""):
        return 0.0
    return float(cell.replace("−", "-").replace(",", ""))


@pytest.fixture(scope="module")
def rubric_doc() -> str:
    return RUBRIC_DOC.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def factor_rows(rubric_doc: str) -> dict[str, dict[str, str]]:
    rows = _table(rubric_doc, FACTOR_COLUMNS)
    by_id = {}
    for row in rows:
        (factor_id,) = BACKTICKED.findall(row["id"])
        assert factor_id not in by_id, f"factor {factor_id} appears twice in the table"
        by_id[factor_id] = row
    return by_id


def test_every_factor_is_in_the_table_with_its_weight(factor_rows: dict) -> None:
    for factor in RUBRIC:
        assert factor.id in factor_rows, f"factor {factor.id} is missing from docs/rubric.md"
        documented = _number(factor_rows[factor.id]["weight"])
        assert documented == factor.weight, (
            f"{factor.id}: docs/rubric.md says weight {documented:g}, the code {factor.weight:g}"
        )


def test_the_table_lists_no_factor_the_rubric_lacks(factor_rows: dict) -> None:
    stale = set(factor_rows) - {factor.id for factor in RUBRIC}
    assert not stale, f"docs/rubric.md lists factors the rubric no longer has: {sorted(stale)}"


def test_every_factor_row_has_the_current_effects_reads_and_citations(factor_rows: dict) -> None:
    for factor in RUBRIC:
        row = factor_rows[factor.id]
        for path, column in EFFECT_COLUMNS.items():
            assert _number(row[column]) == factor.effect.of(path), (factor.id, path)
        assert BACKTICKED.findall(row["reads"]) == list(factor.reads), factor.id
        assert BACKTICKED.findall(row["citations"]) == list(factor.citations), factor.id


def test_every_citation_is_documented(rubric_doc: str) -> None:
    used = {citation for factor in RUBRIC for citation in factor.citations}
    for citation_id in sorted(used | set(CITATIONS)):
        assert f"`{citation_id}`" in rubric_doc, f"citation {citation_id} is not in docs/rubric.md"


def test_citation_table_names_the_factors_that_cite_each_source(rubric_doc: str) -> None:
    rows = _table(rubric_doc, ("id", "source", "what it supports", "cited by"))
    documented = {BACKTICKED.findall(row["id"])[0]: row["cited by"] for row in rows}
    assert set(documented) == set(CITATIONS)
    factor_ids = {factor.id for factor in RUBRIC}
    for citation_id, cell in documented.items():
        citing = {factor.id for factor in RUBRIC if citation_id in factor.citations}
        named = set(BACKTICKED.findall(cell)) & factor_ids
        assert named == citing, (citation_id, sorted(named ^ citing))


def test_worked_example_matches_the_engine(rubric_doc: str) -> None:
    intake = Intake.model_validate(json.loads(EXAMPLE_INTAKE.read_text(encoding="utf-8")))
    result = score(intake)
    section = rubric_doc.split("## Worked example", 1)[1]
    rows = _table(section, ("path", "score", "uncapped sum"))
    labels = {"Prompting": "prompting", "RAG": "rag", "Fine-tuning": "fine_tuning"}
    documented = {labels[row["path"]]: row for row in rows}
    assert [labels[row["path"]] for row in rows] == result.ranking
    for path, row in documented.items():
        assert _number(row["score"]) == result.scores[path], path
    uncapped = {a.path: a.before for a in result.adjustments if "0–100" in a.reason}
    for path, row in documented.items():
        expected = uncapped.get(path, result.scores[path])
        assert _number(row["uncapped sum"]) == expected, path
    assert result.headline in section


def test_pilots_doc_names_every_pilot_setting_with_its_default() -> None:
    text = PILOTS_DOC.read_text(encoding="utf-8")
    fields = {name: f for name, f in Settings.model_fields.items() if name.startswith("pilot_")}
    assert fields, "Settings has no pilot_* fields"
    table = _table(text, ("setting", "default", "meaning"))
    rows = {BACKTICKED.findall(row["setting"])[0]: row for row in table}
    for name, field in fields.items():
        env = name.upper()
        assert env in text, f"{env} is not mentioned in docs/pilots.md"
        assert env in rows, f"{env} is missing from the settings table in docs/pilots.md"
        if isinstance(field.default, bool):
            assert rows[env]["default"] == ("on" if field.default else "off"), env
        else:
            assert _number(rows[env]["default"]) == field.default, env


def test_pilots_doc_quotes_the_recommendation_rule_as_the_code_states_it() -> None:
    from app.domain.reconcile import RULE_TEXT

    quoted = " ".join(
        line.removeprefix("> ").strip()
        for line in PILOTS_DOC.read_text().splitlines()
        if line.startswith("> ")
    )
    assert RULE_TEXT in quoted


# --- decision evidence: the minimum difference, the what-if and the 12-month total cost ------


def _flat(text: str) -> str:
    """Whitespace collapsed, so a phrase can be found across the document's line wraps."""
    return " ".join(text.split())


def _range(cell: str) -> tuple[float, float]:
    low, high = cell.replace("−", "-").split("–")
    return _number(low), _number(high)


def _bound(name: str, kind: str) -> float:
    from annotated_types import Ge, Le

    from app.domain.intake import Intake

    wanted = {"ge": Ge, "le": Le}[kind]
    for item in Intake.model_fields[name].metadata:
        if isinstance(item, wanted):
            return float(getattr(item, kind))
    raise AssertionError(f"{name} has no {kind} bound")


def test_pilots_doc_states_the_minimum_difference_as_the_intake_declares_it() -> None:
    from app.domain.intake import DEFAULT_MIN_DIFFERENCE_POINTS, Intake

    text = PILOTS_DOC.read_text(encoding="utf-8")
    rows = _table(text, ("intake field", "default", "range", "meaning"))
    row = {BACKTICKED.findall(r["intake field"])[0]: r for r in rows}["min_difference_points"]
    assert _number(row["default"]) == DEFAULT_MIN_DIFFERENCE_POINTS
    assert Intake.model_fields["min_difference_points"].default == DEFAULT_MIN_DIFFERENCE_POINTS
    name = "min_difference_points"
    assert _range(row["range"]) == (_bound(name, "ge"), _bound(name, "le"))
    # The boundary as the code decides it: the whole interval, and exactly the minimum counts.
    flat = _flat(text)
    assert "a lead *matters* when its whole 95% interval is at or beyond it" in flat
    assert "tied* only when the whole interval is inside ±minimum" in flat


def test_pilots_doc_states_the_evidence_minimums_the_code_applies() -> None:
    from app.domain.evidence import MIN_DISCORDANT, MIN_GROUPS, MIN_TEST_ITEMS

    flat = _flat(PILOTS_DOC.read_text(encoding="utf-8"))
    assert f"fewer than {MIN_TEST_ITEMS} paired items" in flat
    assert f"fewer than {MIN_GROUPS} groups" in flat
    assert f"fewer than {MIN_DISCORDANT} discordant items" in flat


def test_pilots_doc_lists_the_tie_break_in_the_rules_order() -> None:
    from typing import get_args

    from app.domain.tiebreak import SIMPLICITY, Criterion
    from app.domain.verdict_inputs import option_label

    text = PILOTS_DOC.read_text(encoding="utf-8")
    rows = _table(text, ("order", "criterion", "lower wins", "from"))
    assert [r["criterion"] for r in rows] == list(get_args(Criterion))
    assert [int(r["order"]) for r in rows] == list(range(1, len(rows) + 1))
    simplicity = rows[-1]["lower wins"].lower()
    positions = [simplicity.index(option_label(o).lower()) for o in SIMPLICITY]
    assert positions == sorted(positions), "docs/pilots.md lists the paths out of order"


def test_pilots_doc_states_the_learning_curve_as_the_code_runs_it() -> None:
    from app.domain.learning_curve import FRACTIONS, MAX_EXTRAPOLATION, MIN_SUBSET

    text = _flat(PILOTS_DOC.read_text(encoding="utf-8"))
    section = text[text.index("## The learning curve") : text.index("## Arms on an endpoint")]
    assert FRACTIONS == (0.25, 0.5, 1.0) and "¼ and ½ of it" in section
    assert f"never past **{MAX_EXTRAPOLATION:g}×** the largest size trained" in section
    assert f"A subset under {MIN_SUBSET} examples is dropped" in section
    assert "The curve is flat: more data of this kind will not help." in section
    assert "Every size scored 0%: the curve cannot tell whether more data helps." in section
    assert "test-item noise only, not training-seed variance" in section
    assert "if the trend holds (an extrapolation beyond the" in section
    # The default the document argues for is the one the settings ship.
    default = Settings.model_fields["pilot_learning_curve"].default
    assert f"**{'on' if default else 'off'} by default**" in section


def test_rubric_doc_lists_every_editable_assumption_with_its_default() -> None:
    from app.domain.scoring.total_cost import Assumptions

    rows = _table(RUBRIC_DOC.read_text(encoding="utf-8"), ("assumption", "default", "meaning"))
    documented = {BACKTICKED.findall(r["assumption"])[0]: r["default"] for r in rows}
    assert set(documented) == set(Assumptions.model_fields)
    for name, field in Assumptions.model_fields.items():
        if field.default is None:
            assert "pilot" in documented[name], name  # the pilot's own device
        else:
            assert _number(documented[name]) == field.default, name


def test_rubric_doc_lists_every_what_if_field_and_the_flip_search() -> None:
    from app.domain import what_if
    from app.domain.scoring.costs import LORA_COST_EXAMPLES_RANGE
    from app.domain.scoring.total_cost import HORIZON_MONTHS

    text = RUBRIC_DOC.read_text(encoding="utf-8")
    rows = _table(text, ("what-if field", "changes"))
    assert [BACKTICKED.findall(r["what-if field"])[0] for r in rows] == list(what_if.INTAKE_FIELDS)
    flat = _flat(text)
    for phrase in (
        f"from {what_if.SCAN_LOW:,} to {what_if.SCAN_HIGH:,}",
        f"{what_if.SCAN_POINTS_PER_DECADE} per decade",
        f"narrows the change to {what_if.BISECT_PRECISION:.0%}",
        f"longer than {what_if.MAX_VALUE_CHARS} characters",
        f"n = min(examples_available, {LORA_COST_EXAMPLES_RANGE[1]:,})",
        f"every break-even within the {HORIZON_MONTHS} months",
    ):
        assert phrase in flat, f"docs/rubric.md no longer says {phrase!r}"
