"""Issue 21's "done when": published EMO-SUPERB label sets run through the whole DVC pipeline.

IEMOCAP (Secondary, 9 classes, 5 folds), MSP-IMPROV (Primary, 4 classes, 6 folds) and NTHU-NNIME
(Secondary, 11 classes, 5 folds, an unnamed first column): a sample of their published rows
(tests/fixtures/emo_superb, SOURCES.md there) with a short synthetic clip named after each
FileName, each run by `dvc exp run` with the README's corpus settings only (corpus.name,
labels_dir, audio_dir, split.bias=none) and tiny training settings. The published IEMOCAP and
NNIME label sets have folds whose test (or train) set holds no strict-majority clip of a rare class
(IEMOCAP `disgust`, NNIME `relax`), full files and sample alike: their folds are the corpus's own,
so the split stage keeps them with one warning line (split.on_sparse_class auto), which every
table quotes beside the corpus line and its train/dev speaker overlap.
"""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from fairser.constants import SAMPLE_RATE
from helpers import dvc_repo, run_ok

pytestmark = pytest.mark.slow

FIXTURES = Path(__file__).parent / "fixtures" / "emo_superb"
TINY = {
    ("idi", "k"): 2,
    ("idi", "k_sweep"): [2],
    ("train", "epochs"): 1,
    ("train", "seeds"): 1,
    ("methods", "jtt", "identification_epochs"): 1,
    ("evaluate", "bootstrap"): 10,
}
# fixture folder -> (speakers, folds, (fold, split, class) cells below split.min_clips_per_class
# {train: 1, test: 1} of README's params.yaml, counted from the fixture's Split_Set columns)
CORPORA = {
    "iemocap": (10, 5, [(1, "test"), (2, "test"), (3, "test"), (4, "train"), (5, "train"),
                        (5, "test")]),
    "msp_improv_primary": (12, 6, []),
    "nthu_nnime": (43, 5, [(4, "test")]),
}
RARE = {"iemocap": "disgust", "nthu_nnime": "relax"}


def _audio(labels_dir: Path, dest: Path) -> Path:
    """A 0.6 s tone per FileName of the first fold file (the first column, named or not)."""
    names = pd.read_csv(labels_dir / "labels_consensus_1.csv", dtype=str).iloc[:, 0]
    dest.mkdir(parents=True)
    t = np.arange(int(0.6 * SAMPLE_RATE)) / SAMPLE_RATE
    rng = np.random.default_rng(0)
    for k, name in enumerate(names):
        f0 = 110 + 3 * (k % 60)
        wave = sum(np.sin(2 * np.pi * f0 * h * t) / h for h in range(1, 5)) + 0.02 * rng.standard_normal(len(t))
        sf.write(dest / name, (0.3 * wave / np.abs(wave).max()).astype(np.float32), SAMPLE_RATE,
                 subtype="PCM_16")
    return dest


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    return dvc_repo(tmp_path_factory.mktemp("emo_superb"), TINY, repro=False)[:2]


@pytest.mark.parametrize("name", sorted(CORPORA))
def test_published_label_set_runs_end_to_end(repo, tmp_path, name):
    path, env = repo
    n_speakers, n_folds, sparse = CORPORA[name]
    labels = FIXTURES / name
    audio = _audio(labels, tmp_path / "audio")
    run_ok(["git", "checkout", "--", "params.yaml"], path, env)
    settings = {"corpus.name": "emo-superb", "corpus.labels_dir": labels, "corpus.audio_dir": audio,
                "split.bias": "none"}
    args = ["dvc", "exp", "run"]
    for key, value in settings.items():
        args += ["-S", f"{key}={value}"]
    run_ok(args, path, env)

    classes = json.loads((labels / "config.json").read_text())["categorical"]["emo_type"]
    schema = json.loads((path / "data" / "corpus" / "schema.json").read_text())
    assert schema["classes"] == classes and schema["folds"] == n_folds
    assert schema["speaker_rule"]["speakers"] == n_speakers
    actors = pd.read_csv(path / "data" / "corpus" / "actors.csv")
    assert len(actors) == n_speakers
    table1 = (path / "reports" / "table1.md").read_text()
    assert schema["speaker_rule"]["description"] in table1  # the coverage line says who is a speaker
    overlap = ", ".join(["0"] * n_folds)  # the fixtures' dev sets are whole speakers (sessions)
    assert f"speakers in both train and dev per fold: {overlap}" in table1
    coverage = json.loads((path / "data" / "split" / "coverage.json").read_text())
    assert [(c["fold"], c["split"]) for c in coverage.get("sparse_classes", [])] == sparse
    assert {c["class"] for c in coverage.get("sparse_classes", [])} == ({RARE[name]} if sparse else set())
    if sparse:
        warning, = [w for w in coverage["warnings"] if w.startswith("split.on_sparse_class warn")]
        assert f"> **Warning:** {warning}" in table1.splitlines()
    predictions = sorted((path / "data" / "runs").glob("*/*/predictions.csv"))
    assert predictions
    for file in predictions:
        columns = list(pd.read_csv(file, nrows=1).columns)
        assert set(classes) <= set(columns), (file, columns)
    summary = json.loads((path / "metrics" / "summary.json").read_text())
    assert summary.get("table1")
