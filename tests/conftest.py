"""Shared test fixtures: the real metadata folder (when present) and the repository root."""

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# FAIRSER_SHARED_DATA points elsewhere (a worktree whose parent has no shared/ folder).
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


@pytest.fixture(scope="session")
def ray_local():
    """One local Ray instance (2 CPUs) for the whole test session, shut down at its end."""
    ray = pytest.importorskip("ray")
    import os

    os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")
    src = str(ROOT / "src")  # actors import fairser from this checkout, as the driver does
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": src, "OMP_NUM_THREADS": "1"}})
    yield ray
    ray.shutdown()
