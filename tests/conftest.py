"""Shared test fixtures: the published reference data (when given) and the repository root."""

import os
from pathlib import Path

import pytest

from fairser.corpus import METADATA

ROOT = Path(__file__).resolve().parents[1]

# Tests that need CREMA-D's published metadata or EMO-SUPERB's CREMA-D labels read them from the
# folder this variable names, laid out as corpus.METADATA's keys (crema-d/..., emo-superb/...);
# unset, or a file missing, they skip saying what is missing and where it is published.
REFERENCE_ENV = "FAIRSER_REFERENCE_DATA"
# Where each file is published: the repositories and commits params.yaml's corpus.urls pin
# (docs/PROTOCOL.md section 1).
PUBLISHED = {
    "crema_d_raw": ("CREMA-D's GitHub repository",
                    "https://raw.githubusercontent.com/CheyneyComputerScience/CREMA-D/"
                    "1658cd342dff90010aa843eaeebd53610a08b1dc"),
    "emo_superb_raw": ("EMO-SUPERB's repository",
                       "https://raw.githubusercontent.com/ag027592/EMO-SUPERB/"
                       "9ff7fa2f0330a2bb950dd0d4e09d250d4e7a1cfd"),
}


def reference_folder() -> Path | None:
    """The folder FAIRSER_REFERENCE_DATA names (absolute), or None when it is unset or empty."""
    value = os.environ.get(REFERENCE_ENV, "").strip()
    return Path(value).expanduser().resolve() if value else None


def upstream(file: str) -> tuple[str, str]:
    """(PUBLISHED key, path upstream) of a reference file: corpus.METADATA's entry, or for another
    EMO-SUPERB label file `emo-superb/<corpus>/...` its place under the repository's data/."""
    if file in METADATA:
        return METADATA[file][:2]
    top, _, rest = file.partition("/")
    if top != "emo-superb" or not rest:
        raise ValueError(f"{file}: not a reference file (crema-d/... or emo-superb/...)")
    return "emo_superb_raw", f"data/{rest}"


def missing_reference_message(folder: Path | None, files) -> str | None:
    """None when `folder` holds every one of `files` (paths in it, e.g. corpus.METADATA's keys);
    else one line naming the variable, the files missing and where each source publishes them."""
    missing = [f for f in files if folder is None or not (folder / f).is_file()]
    if not missing:
        return None
    parts = []
    for source, (name, base) in PUBLISHED.items():
        mine = [f for f in missing if upstream(f)[0] == source]
        if len(mine) == 1:
            parts.append(f"{mine[0]} (published in {name}: {base}/{upstream(mine[0])[1]})")
        elif mine:
            local = os.path.commonpath(mine)
            upstream_dir = os.path.commonpath([upstream(f)[1] for f in mine])
            names = ", ".join(Path(f).name for f in mine)
            parts.append(f"{local}/ {names} (published in {name}: {base}/{upstream_dir}/)")
    state = (f"{REFERENCE_ENV} is not set" if folder is None
             else f"{REFERENCE_ENV}={folder} lacks files")
    return (f"{state}; this test needs {' and '.join(parts)}; set {REFERENCE_ENV} to a folder "
            "laid out like that (README, \"Tests on the published metadata\")")


def reference_data_or_skip(files=tuple(METADATA)) -> Path:
    """The reference folder when it holds `files` (default: every metadata file the crema-d
    corpus reads); otherwise skip the test with `missing_reference_message`."""
    folder = reference_folder()
    message = missing_reference_message(folder, files)
    if message:
        pytest.skip(message)
    return folder


@pytest.fixture
def reference_data() -> Path:
    """The published CREMA-D metadata and EMO-SUPERB CREMA-D labels (FAIRSER_REFERENCE_DATA)."""
    return reference_data_or_skip()


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
