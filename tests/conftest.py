"""Shared test fixtures: the real metadata folder (when present) and the repository root."""

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# FAIRSER_SHARED_DATA points a worktree elsewhere at the same folder.
SHARED_DATA = Path(os.environ.get("FAIRSER_SHARED_DATA", ROOT.parent / "shared" / "data"))


@pytest.fixture
def shared_data() -> Path:
    """../shared/data with the real CREMA-D metadata and EMO-SUPERB folds; skip only if absent."""
    if not (SHARED_DATA / "emo-superb" / "CREMA-D" / "Primary" / "labels_consensus_1.csv").is_file():
        pytest.skip("../shared/data (real CREMA-D metadata) is absent")
    return SHARED_DATA


@pytest.fixture
def hub_offline(monkeypatch):
    """No hub: loading code must work from local folders alone, as it does here."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
