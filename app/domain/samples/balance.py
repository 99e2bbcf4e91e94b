"""Class-balance warnings, shared by the upload summary and the pilot pipeline."""

from __future__ import annotations

from collections.abc import Mapping

from app.domain.samples.strict_json import quote

# A majority class ten times the smallest one makes accuracy flatter the model; macro-F1 is
# the figure to read then.
MAX_IMBALANCE_RATIO = 10
MAX_NAMED_LABELS = 5


def label_balance_warnings(counts: Mapping[str, int]) -> list[str]:
    """Warnings for a single label, labels with fewer than 2 examples, or a >10× imbalance."""
    if not counts:
        return []
    if len(counts) == 1:
        (label,) = counts
        return [f"every example has the same label {quote(label)}: there is nothing to classify"]
    warnings: list[str] = []
    singletons = sorted(label for label, count in counts.items() if count < 2)
    if singletons:
        named = ", ".join(quote(label) for label in singletons[:MAX_NAMED_LABELS])
        more = f" and {len(singletons) - MAX_NAMED_LABELS} more" if len(singletons) > 5 else ""
        warnings.append(
            f"{len(singletons)} label(s) have a single example ({named}{more}): they can be "
            "trained on or tested, not both"
        )
    largest = max(counts, key=lambda label: (counts[label], label))
    smallest = min(counts, key=lambda label: (counts[label], label))
    ratio = counts[largest] / counts[smallest]
    if ratio > MAX_IMBALANCE_RATIO:
        warnings.append(
            f"classes are imbalanced: {quote(largest)} has {counts[largest]:,} examples, "
            f"{quote(smallest)} only {counts[smallest]:,} ({ratio:.0f}×); read macro-F1 "
            "rather than accuracy"
        )
    return warnings
