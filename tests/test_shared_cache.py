"""A DVC remote shared between machines: a second clone restores every stage instead of running it.

The DVC way (docs/SCALING.md): clone A reproduces and pushes its cache and run-cache to a remote
(a local folder here; S3, SSH or GCS for users); clone B, a separate git clone, pulls them and its
`dvc repro` runs no stage. Reuses tests/test_pipeline.py's tiny corpus.
"""

import os
import shutil
import sys
from pathlib import Path

import pytest
import yaml

from helpers import run_ok as _run
from helpers import shipped_params
from test_pipeline import TINY, _ran_stages

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def pushed(tmp_path_factory):
    """Clone A: the tiny pipeline reproduced, its cache and run-cache pushed to a folder remote."""
    tmp_path = tmp_path_factory.mktemp("shared")
    a, remote = tmp_path / "a", tmp_path / "remote"
    a.mkdir()
    for name in ("src", "stages"):
        shutil.copytree(ROOT / name, a / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "dvc.yaml", a / "dvc.yaml")
    params = shipped_params()
    for path, value in TINY.items():
        node = params
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
    (a / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    env = dict(os.environ, DVC_NO_ANALYTICS="1", FAIRSER_THREADS="1",
               GIT_AUTHOR_NAME="test", GIT_AUTHOR_EMAIL="test@localhost",
               GIT_COMMITTER_NAME="test", GIT_COMMITTER_EMAIL="test@localhost")
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"

    _run(["git", "init", "-q"], a, env)
    _run(["dvc", "init", "-q"], a, env)
    _run(["dvc", "remote", "add", "-d", "shared", str(remote)], a, env)
    first = _run(["dvc", "repro"], a, env)
    assert "speaker" in _ran_stages(first)
    _run(["dvc", "push", "--run-cache"], a, env)
    _run(["git", "add", "-A"], a, env)
    _run(["git", "commit", "-qm", "pipeline and its lock"], a, env)
    return tmp_path, a, env


OUTS = ("data/features/features.npy", "data/speaker/embeddings.npy", "data/groups/gender.csv",
        "data/runs/gender/gdro/predictions.csv")


def test_second_clone_pulls_the_cache_and_runs_no_stage(pushed):
    tmp_path, a, env = pushed
    b = tmp_path / "b"
    _run(["git", "clone", "-q", str(a), str(b)], tmp_path, env)
    assert not (b / "data" / "features").exists()  # only git's files so far
    _run(["dvc", "pull", "--run-cache"], b, env)
    again = _run(["dvc", "repro"], b, env)
    # `inputs` always runs (it fingerprints the external inputs); its unchanged output reruns nothing.
    assert _ran_stages(again) == {"inputs"}, again
    status = _run(["dvc", "status"], b, env)
    assert [line.strip() for line in status.splitlines() if line.strip()] == ["inputs:", "always changed"]
    for out in OUTS:
        assert (b / out).read_bytes() == (a / out).read_bytes(), out


def test_clone_without_the_lock_restores_every_cached_stage_from_the_run_cache(pushed):
    """As for a sweep run elsewhere: no dvc.lock of A's run, only its run-cache entries. DVC keeps
    no run-cache entry for a stage with git-tracked (`cache: false`) or persisted outputs, so
    params, groups, evaluate and report (seconds each) rerun, and inputs always runs; every
    extraction and training stage is restored."""
    tmp_path, a, env = pushed
    c = tmp_path / "c"
    _run(["git", "clone", "-q", str(a), str(c)], tmp_path, env)
    (c / "dvc.lock").unlink()
    _run(["dvc", "fetch", "--run-cache"], c, env)  # no lock, so nothing to check out yet
    again = _run(["dvc", "repro", "--pull"], c, env)
    # params (its output persists, so it is never run-cached) and inputs (always changed) run too.
    assert _ran_stages(again) == {"params", "inputs", "groups", "evaluate", "report"}, again
    for stage in ("features", "speaker", "pseudo", "train_gender", "train_kmeans@4"):
        assert f"Stage '{stage}' is cached - skipping run" in again, stage
    for out in OUTS:
        assert (c / out).read_bytes() == (a / out).read_bytes(), out
