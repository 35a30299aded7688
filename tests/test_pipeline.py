"""The whole DVC pipeline on a tiny surrogate corpus, inside a temporary git repository.

This is the user's workflow: `dvc repro`, a second `dvc repro` that runs nothing but the always-run inputs fingerprint,
`dvc exp run -S idi.k=...` that retrains nothing already trained, then `dvc metrics diff`
and `dvc exp show`.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow

TINY = {
    ("corpus", "surrogate", "n_actors"): 10,
    ("corpus", "surrogate", "n_sentences"): 2,
    ("corpus", "surrogate", "seconds"): 0.8,
    ("idi", "k"): 4,
    ("idi", "k_sweep"): [2, 4],
    ("train", "epochs"): 3,
    ("evaluate", "bootstrap"): 20,
}


def _run(args, cwd, env):
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True)
    assert result.returncode == 0, f"{' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout + result.stderr


def _ran_stages(output: str) -> set[str]:
    return {line.split("'")[1] for line in output.splitlines() if line.startswith("Running stage '")}


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    """A git repository holding the project's pipeline with tiny parameters, reproduced once."""
    repo = tmp_path_factory.mktemp("pipeline")
    for name in ("src", "stages"):
        shutil.copytree(ROOT / name, repo / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "dvc.yaml", repo / "dvc.yaml")
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    for path, value in TINY.items():
        node = params
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))

    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    env.update(GIT_AUTHOR_NAME="test", GIT_AUTHOR_EMAIL="test@localhost",
               GIT_COMMITTER_NAME="test", GIT_COMMITTER_EMAIL="test@localhost",
               DVC_NO_ANALYTICS="1")
    _run(["git", "init", "-q"], repo, env)
    _run(["dvc", "init", "-q"], repo, env)
    _run(["dvc", "config", "core.analytics", "false"], repo, env)
    first = _run(["dvc", "repro"], repo, env)
    _run(["git", "add", "-A"], repo, env)
    _run(["git", "commit", "-qm", "baseline"], repo, env)
    return repo, env, first


def test_repro_runs_every_stage_and_writes_the_results(repo):
    path, _, first = repo
    ran = _ran_stages(first)
    assert {"inputs", "download", "split", "features", "speaker", "pseudo", "groups", "train_baselines",
            "train_gender", "train_pseudo", "train_kmeans@2", "train_kmeans@4", "evaluate",
            "report"} <= ran
    summary = json.loads((path / "metrics" / "summary.json").read_text())
    assert "table1" in summary
    assert (path / "metrics" / "idi.json").is_file()
    assert list((path / "reports").glob("table1*.md"))
    for figure in ("fig2_k_bars.png", "fig3_k_mean.png", "fig4_tsne.png"):
        assert (path / "plots" / figure).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_second_repro_runs_nothing_but_the_fingerprints(repo):
    path, env, _ = repo
    again = _run(["dvc", "repro"], path, env)
    # inputs always runs (dvc.yaml always_changed); its unchanged output reruns nothing.
    assert _ran_stages(again) == {"inputs"}


def test_a_forced_rerun_reproduces_every_output_bit_for_bit(repo):
    path, env, _ = repo
    before = {p: (path / p).read_bytes() for p in ("dvc.lock", "metrics/summary.json", "metrics/idi.json")}
    forced = _run(["dvc", "repro", "--force"], path, env)
    assert "report" in _ran_stages(forced)
    # dvc.lock holds the hash of every stage output, so this compares them all.
    for name, content in before.items():
        assert (path / name).read_bytes() == content, f"{name} changed on a forced rerun"


def test_exp_run_with_another_k_retrains_nothing_and_diffs(repo):
    path, env, _ = repo
    out = _run(["dvc", "exp", "run", "-S", "idi.k=2", "-n", "k2"], path, env)
    ran = _ran_stages(out)
    assert ran == {"inputs", "evaluate", "report"}, ran
    diff = _run(["dvc", "metrics", "diff", "--json"], path, env)
    shown = _run(["dvc", "exp", "show", "--no-pager", "--csv"], path, env)
    assert "k2" in shown
    # The k-means rows of Table 1 moved from k=4 to k=2 runs; the diff names them.
    assert "kmeans" in diff


def test_adding_a_k_to_the_sweep_trains_only_that_k(repo):
    path, env, _ = repo
    out = _run(["dvc", "exp", "run", "-S", "idi.k_sweep=[2,4,8]", "-n", "sweep8"], path, env)
    assert _ran_stages(out) == {"inputs", "groups", "train_kmeans@8", "evaluate", "report"}
    # The sweep is no DVC metric any more (issue 9: headline numbers only): its cluster purity
    # is, and its curve is a DVC plot.
    assert "k8" in json.loads((path / "metrics" / "idi.json").read_text())["kmeans"]
    assert 8 in pd.read_csv(path / "plots" / "k_sweep.csv")["k"].tolist()
