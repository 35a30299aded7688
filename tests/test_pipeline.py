"""The whole DVC pipeline on a tiny surrogate corpus, inside a temporary git repository.

This is the user's workflow: `dvc repro`, a second `dvc repro` that runs nothing but the always-run inputs fingerprint,
`dvc exp run -S idi.k=...` that retrains nothing already trained, then `dvc metrics diff`
and `dvc exp show`.
"""

import json
from pathlib import Path

import pandas as pd
import pytest

from helpers import dvc_repo, run_ok

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow

TINY = {
    ("corpus", "surrogate", "n_actors"): 10,
    ("corpus", "surrogate", "n_sentences"): 2,
    ("corpus", "surrogate", "seconds"): 0.8,
    ("idi", "k"): 4,
    ("idi", "k_sweep"): [2, 4],
    ("train", "epochs"): 3,
    ("train", "extensions"): ["adv", "eopp", "mmd", "mixup", "dfr", "afr"],
    ("methods", "jtt", "identification_epochs"): 1,  # at most train.epochs
    ("evaluate", "bootstrap"): 20,
}


def _ran_stages(output: str) -> set[str]:
    return {line.split("'")[1] for line in output.splitlines() if line.startswith("Running stage '")}


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    """A git repository holding the project's pipeline with tiny parameters, reproduced once."""
    return dvc_repo(tmp_path_factory.mktemp("pipeline"), TINY)


def test_repro_runs_every_stage_and_writes_the_results(repo):
    path, _, first = repo
    ran = _ran_stages(first)
    assert {"params", "inputs", "download", "split", "features", "speaker", "pseudo", "groups", "train_baselines",
            "train_gender", "train_pseudo", "train_kmeans@2", "train_kmeans@4",
            "train_kmeans_extensions", "evaluate", "report"} <= ran
    summary = json.loads((path / "metrics" / "summary.json").read_text())
    assert "table1" in summary
    assert (path / "metrics" / "idi.json").is_file()
    assert list((path / "reports").glob("table1*.md"))
    for figure in ("fig2_k_bars.png", "fig3_k_mean.png", "fig4_tsne.png"):
        assert (path / "plots" / figure).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_second_repro_runs_nothing_but_the_fingerprints(repo):
    path, env, _ = repo
    again = run_ok(["dvc", "repro"], path, env)
    # inputs always runs (dvc.yaml always_changed); its unchanged output reruns nothing.
    assert _ran_stages(again) == {"inputs"}


def test_a_forced_rerun_reproduces_every_output_bit_for_bit(repo):
    path, env, _ = repo
    before = {p: (path / p).read_bytes() for p in ("dvc.lock", "metrics/summary.json", "metrics/idi.json")}
    forced = run_ok(["dvc", "repro", "--force"], path, env)
    assert "report" in _ran_stages(forced)
    # dvc.lock holds the hash of every stage output, so this compares them all.
    for name, content in before.items():
        assert (path / name).read_bytes() == content, f"{name} changed on a forced rerun"


def test_exp_run_with_another_k_retrains_only_issue_24s_kmeans_runs_and_diffs(repo):
    path, env, _ = repo
    out = run_ok(["dvc", "exp", "run", "-S", "idi.k=2", "-n", "k2"], path, env)
    ran = _ran_stages(out)
    # The paper methods' k-means runs are the sweep's; issue 24's train at idi.k alone.
    assert ran == {"params", "inputs", "train_kmeans_extensions", "evaluate", "report"}, ran
    assert json.loads((path / "data/runs/kmeans_extensions/set.json").read_text()) == {"set": "kmeans_k2"}
    diff = run_ok(["dvc", "metrics", "diff", "--json"], path, env)
    shown = run_ok(["dvc", "exp", "show", "--no-pager", "--csv"], path, env)
    assert "k2" in shown
    # The k-means rows of Table 1 moved from k=4 to k=2 runs; the diff names them.
    assert "kmeans" in diff


def test_adding_a_k_to_the_sweep_trains_only_that_k(repo):
    path, env, _ = repo
    out = run_ok(["dvc", "exp", "run", "-S", "idi.k_sweep=[2,4,8]", "-n", "sweep8"], path, env)
    assert _ran_stages(out) == {"params", "inputs", "groups", "train_kmeans@8", "evaluate", "report"}
    # The sweep is no DVC metric any more (issue 9: headline numbers only): its cluster purity
    # is, and its curve is a DVC plot.
    assert "k8" in json.loads((path / "metrics" / "idi.json").read_text())["kmeans"]
    assert 8 in pd.read_csv(path / "plots" / "k_sweep.csv")["k"].tolist()
