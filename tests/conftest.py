"""Shared test fixtures: where the real labelled clips are, and small helpers."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


def shared(relative: str) -> Path:
    """A path under ``../shared/data``; the test is skipped when that folder is absent."""
    path = SHARED_DATA / relative
    if not path.exists():
        pytest.skip(f"{path} not found: the real test clips live in ../shared/data")
    return path
