"""What the upload step shows about a parsed sample, and what scoring reads from it."""

from __future__ import annotations

from collections import Counter

from app.domain.samples.balance import label_balance_warnings
from app.domain.samples.dedup import exact_duplicates
from app.domain.samples.formats import ParsedSample
from app.domain.samples.groups import group_note
from app.domain.samples.pii import pii_warning, scan_examples
from app.domain.samples.schemas import PilotTask, SampleSummary
from app.domain.samples.tokens import approx_tokens

# Below this many rows a 20% test split holds about 20 examples or fewer, so every metric
# interval is wide; the rubric's evidence (docs/rubric.md) puts fine-tuning at 500+ good examples.
FEW_ROWS = 100


def summarise(parsed: ParsedSample) -> SampleSummary:
    """Rows, label distribution, approximate token lengths, exact duplicates and warnings.

    Lengths count instruction + input + target per example (approximate tokens, see
    `app.domain.samples.tokens`); gold contexts are the retrieval corpus and are not counted.
    """
    examples = parsed.examples
    lengths = [
        approx_tokens(" ".join((example.instruction, example.input, example.target)))
        for example in examples
    ]
    distribution: dict[str, int] = {}
    if parsed.task is PilotTask.classification:
        counts = Counter(example.target for example in examples)
        distribution = dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))
    duplicates = len(exact_duplicates(examples))

    warnings = list(parsed.warnings)
    if len(examples) < FEW_ROWS:
        warnings.append(
            f"only {len(examples):,} rows: the test split will hold about "
            f"{max(round(len(examples) * 0.2), 1):,} examples, so metrics will be rough; "
            f"{FEW_ROWS}+ rows give usable intervals and fine-tuning usually needs 500+"
        )
    warnings += label_balance_warnings(distribution)
    if duplicates:
        warnings.append(
            f"{duplicates:,} exact duplicate row(s) (same input and target, ignoring case and "
            "spacing); the pilot drops them before splitting"
        )
    pii = pii_warning(scan_examples(examples))
    if pii:
        warnings.append(pii)
    return SampleSummary(
        format=parsed.format,
        task=parsed.task,
        rows=len(examples),
        label_distribution=distribution,
        mean_tokens=round(sum(lengths) / len(lengths), 1) if lengths else 0.0,
        max_tokens=max(lengths, default=0),
        exact_duplicates=duplicates,
        warnings=warnings,
        group_note=group_note(examples, parsed.task),
    )
