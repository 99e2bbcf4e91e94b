"""A pilot's charts are drawn once and kept, and a change to what they show draws them anew."""

from __future__ import annotations

from app.reports.charts import CACHE, QualityBar, quality_chart_svg


def test_a_chart_is_drawn_once_and_redrawn_when_its_figures_change() -> None:
    CACHE.clear()
    bars = [
        QualityBar("fewshot", "Few-shot", 0.41, 0.33, 0.49),
        QualityBar("rag", "RAG", 0.675, 0.59, 0.76),
    ]
    first = quality_chart_svg(bars, "Accuracy")
    assert (CACHE.hits, CACHE.misses) == (0, 1)
    assert quality_chart_svg(list(bars), "Accuracy") == first
    assert CACHE.hits == 1

    changed = [bars[0], QualityBar("rag", "RAG", 0.7, 0.59, 0.76)]
    redrawn = quality_chart_svg(changed, "Accuracy")
    assert redrawn != first
    assert "70.0%" in redrawn and "70.0%" not in first
    assert quality_chart_svg(bars, "Macro-F1") != first  # the axis label is part of the key
    assert CACHE.misses == 3
