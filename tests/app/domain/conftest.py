"""Fixtures for domain tests: the shared real datasets."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.app.domain.samples.helpers import DATASETS


@pytest.fixture(scope="session")
def datasets() -> Path:
    """The shared real datasets; tests that need them skip where they are absent."""
    if not DATASETS.is_dir():
        pytest.skip("shared datasets are not available")
    return DATASETS
