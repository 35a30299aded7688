"""fairser.evaluate and stages/evaluate.py on a tiny hand-made runs tree (2 folds, 8 actors)."""

import contextlib
import io
import json
import os
import runpy
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from fairser import evaluate, metrics
from fairser.constants import EMOTIONS, SURROGATE_NOTICE

ROOT = Path(__file__).resolve().parents[1]
# 8 actors; fold 1 tests actors 1-4, fold 2 tests 5-8; 3 clips each. Actor 1004 has Unknown race.
ACTORS = pd.DataFrame({
    "actor": [1001, 1002, 1003, 1004, 1005, 1006, 1007, 1008],
    "sex": ["Male", "Female", "Male", "Female", "Male", "Female", "Male", "Female"],
    "age": [25, 30, 40, 60, 22, 45, 55, 33],
    "race": ["Caucasian", "African American", "Asian", "Unknown", "Caucasian", "Asian",
             "African American", "Caucasian"],
})
SETS = {
    "baselines": ("erm", "random", "lff", "disent"),
    "gender": ("ds", "rw", "gdro", "gadro"),
    "pseudo": ("ds", "rw", "gdro", "gadro", "pgdro"),
    "kmeans_k2": ("ds", "rw", "gdro", "gadro"),
    "kmeans_k16": ("ds", "rw", "gdro", "gadro"),
    "kmeans_k32": ("ds", "rw", "gdro", "gadro"),
}


def make_tree(root: Path, *, n_boot: int = 50, k: int = 16) -> dict:
    """Write corpus, split, runs, speaker, groups and params.yaml for a tiny project under `root`."""
    rng = np.random.default_rng(7)
    corpus, split, runs = root / "data/corpus", root / "data/split", root / "data/runs"
    for d in (corpus, split, runs):
        d.mkdir(parents=True)
    clips = []
    for a in ACTORS["actor"]:
        for s, emo in enumerate(["ANG", "SAD", "NEU"]):
            votes = rng.dirichlet(np.ones(6) * 0.5)
            clips.append({"file": f"{a}_S{s}_{emo}_XX.wav", "actor": a,
                          **dict(zip(EMOTIONS, votes))})
    clips = pd.DataFrame(clips)
    clips.to_csv(corpus / "clips.csv", index=False)
    ACTORS.to_csv(corpus / "actors.csv", index=False)
    (corpus / "corpus.json").write_text(json.dumps({"corpus": "surrogate", "notice": SURROGATE_NOTICE}))
    rows = []
    for fold, test_actors in ((1, ACTORS["actor"][:4]), (2, ACTORS["actor"][4:])):
        for f, a in zip(clips["file"], clips["actor"]):
            rows.append({"fold": fold, "file": f, "split": "test" if a in set(test_actors) else "train",
                         "label": ""})
    folds = pd.DataFrame(rows)
    folds.to_csv(split / "folds.csv", index=False)
    test = folds[folds["split"] == "test"]
    for run_set, methods in SETS.items():
        for method in methods:
            z = np.exp(3 * rng.random((len(test), 6)))
            pred = pd.DataFrame(z / z.sum(axis=1, keepdims=True), columns=list(EMOTIONS))
            pred.insert(0, "file", test["file"].to_numpy())
            pred.insert(0, "fold", test["fold"].to_numpy())
            (runs / run_set / method).mkdir(parents=True)
            pred.to_csv(runs / run_set / method / "predictions.csv", index=False)
    # Speaker embeddings (two gender blobs) and K = 16 groups for the t-SNE figure.
    speaker, groups = root / "data/speaker", root / "data/groups"
    speaker.mkdir(parents=True)
    groups.mkdir(parents=True)
    female = clips["actor"].map(dict(zip(ACTORS["actor"], ACTORS["sex"] == "Female"))).to_numpy()
    emb = rng.normal(size=(len(clips), 8)) + 3 * female[:, None]
    np.save(speaker / "embeddings.npy", emb.astype(np.float32))
    clips[["file"]].to_csv(speaker / "index.csv", index=False)
    train = folds[folds["split"] == "train"].copy()
    train["group"] = rng.integers(0, 16, len(train))
    train[["fold", "file", "split", "group"]].to_csv(groups / "kmeans_k16.csv", index=False)
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["evaluate"]["bootstrap"] = n_boot
    params["idi"]["k"] = k
    params["idi"]["k_sweep"] = [2, 16, 32]
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    return {"clips": clips, "folds": folds, "test": test}


def run_stage(root: Path, script: str, *args: str, subprocess_: bool = False) -> subprocess.CompletedProcess:
    """Run a stage script in `root` as `python stages/<script> ...` would.

    In-process by default (imports are paid once, so the tests stay fast); `subprocess_=True`
    runs a real interpreter.
    """
    if subprocess_:
        return subprocess.run([sys.executable, str(ROOT / "stages" / script), *args], cwd=root,
                              capture_output=True, text=True)
    out, err, code = io.StringIO(), io.StringIO(), 0
    old_argv, old_cwd = sys.argv, os.getcwd()
    try:
        sys.argv = [script, *args]
        os.chdir(root)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            runpy.run_path(str(ROOT / "stages" / script), run_name="__main__")
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    finally:
        sys.argv = old_argv
        os.chdir(old_cwd)
    return subprocess.CompletedProcess([script, *args], code, out.getvalue(), err.getvalue())


EVAL_ARGS = ("--corpus", "data/corpus", "--split", "data/split", "--runs", "data/runs",
             "--out", "data/eval", "--metrics", "metrics/summary.json")


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    root = tmp_path_factory.mktemp("proj")
    tree = make_tree(root)
    res = run_stage(root, "evaluate.py", *EVAL_ARGS, subprocess_=True)
    assert res.returncode == 0, res.stderr
    return root, tree


def _leaves(d, prefix=""):
    for key, value in d.items():
        if isinstance(value, dict):
            yield from _leaves(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def test_metrics_json_is_nested_numbers_without_lists(evaluated):
    root, _ = evaluated
    leaves = dict(_leaves(json.loads((root / "metrics/summary.json").read_text())))
    assert all(v is None or isinstance(v, (int, float)) for v in leaves.values())
    for key in ("table1.erm.f1", "table1.random.dp_gap", "table1.pgdro.tpr_gap",
                "table1.rw.kmeans.tpr_gap", "table1.rw.gender.dp_gap", "table1.ds.pseudo.acc",
                "table1.overall.kmeans.tpr_gap_gain", "table1.overall.gender.f1_gain",
                "table2.race.rw.k16.tpr_gap", "table2.age.gdro.k32.dp_gap", "table2.race.erm.tpr_gap",
                "table2.ser.overall.k16.f1_gain", "sweep.k32.mean.tpr_gap", "sweep.k2.mean.acc"):
        assert key in leaves, key
    assert leaves["table1.k"] == 16


def test_per_fold_values_are_the_metric_functions_on_that_folds_test_clips(evaluated):
    root, tree = evaluated
    per_fold = pd.read_csv(root / "data/eval/per_fold.csv")
    assert len(per_fold) == sum(map(len, SETS.values())) * 2 * (2 + 2 * 3)
    test = tree["test"][tree["test"]["fold"] == 2]
    clips = tree["clips"].set_index("file").loc[test["file"]]
    pred = pd.read_csv(root / "data/runs/gender/rw/predictions.csv").query("fold == 2").set_index("file")
    y = metrics.binarize(clips[list(EMOTIONS)].to_numpy())
    p = metrics.binarize(pred.loc[test["file"], list(EMOTIONS)].to_numpy())
    race = clips["actor"].map(dict(zip(ACTORS["actor"], ACTORS["race"]))).replace("Unknown", None)
    got = per_fold.query("set == 'gender' and method == 'rw' and fold == 2").set_index(
        ["attribute", "metric"])["value"]
    assert got[("all", "f1")] == pytest.approx(metrics.macro_f1(y_true=y, y_pred=p))
    assert got[("all", "acc")] == pytest.approx(metrics.hamming_accuracy(y_true=y, y_pred=p))
    assert got[("race", "tpr_gap")] == pytest.approx(
        metrics.tpr_gap(y_true=y, y_pred=p, groups=race.to_numpy(object)), nan_ok=True)
    assert got[("race", "dp_gap")] == pytest.approx(
        metrics.dp_gap(y_true=y, y_pred=p, groups=race.to_numpy(object)))


def test_summary_means_overall_and_gains_follow_the_spec(evaluated):
    root, _ = evaluated
    per_fold = pd.read_csv(root / "data/eval/per_fold.csv")
    look = evaluate.Lookup(pd.read_csv(root / "data/eval/summary.csv"))
    folds = per_fold.query("set == 'pseudo' and method == 'ds' and attribute == 'gender' "
                           "and metric == 'tpr_gap'")["value"]
    row = look.row("pseudo", "ds", "gender", "tpr_gap")
    assert row["mean"] == pytest.approx(folds.mean())
    assert row["std"] == pytest.approx(folds.std(ddof=1))
    assert row["ci_low"] <= row["ci_high"]
    four = [look.mean("kmeans_k16", m, "all", "f1") for m in ("ds", "rw", "gdro", "gadro")]
    overall = look.mean("kmeans_k16", "overall", "all", "f1")
    assert overall == pytest.approx(np.mean(four))
    erm_f1 = look.mean("baselines", "erm", "all", "f1")
    assert look.mean("kmeans_k16", "overall", "all", "f1_gain") == pytest.approx((overall - erm_f1) / erm_f1)
    erm_gap = look.mean("baselines", "erm", "gender", "dp_gap")
    gap = look.mean("gender", "overall", "gender", "dp_gap")
    assert look.mean("gender", "overall", "gender", "dp_gap_gain") == pytest.approx((erm_gap - gap) / erm_gap)
    assert look.row("baselines", "overall", "gender", "tpr_gap") is None  # baselines has no Overall


def test_predictions_not_matching_the_test_split_fail_naming_the_run(tmp_path):
    make_tree(tmp_path, n_boot=0)
    path = tmp_path / "data/runs/kmeans_k2/gdro/predictions.csv"
    pred = pd.read_csv(path)
    pred.iloc[:-1].to_csv(path, index=False)
    res = run_stage(tmp_path, "evaluate.py", *EVAL_ARGS)
    assert res.returncode == 1
    assert len(res.stderr.strip().splitlines()) == 1
    assert "kmeans_k2/gdro" in res.stderr and "fold 2" in res.stderr
    assert not (tmp_path / "data/eval").exists() and not (tmp_path / "metrics/summary.json").exists()


def test_logits_instead_of_probabilities_are_refused(tmp_path):
    make_tree(tmp_path, n_boot=0)
    path = tmp_path / "data/runs/baselines/erm/predictions.csv"
    pred = pd.read_csv(path)
    pred[list(EMOTIONS)] *= 0.5
    pred.to_csv(path, index=False)
    res = run_stage(tmp_path, "evaluate.py", *EVAL_ARGS)
    assert res.returncode == 1 and "baselines/erm" in res.stderr and "sum to 1" in res.stderr


def test_unknown_method_folder_is_refused(tmp_path):
    make_tree(tmp_path, n_boot=0)
    (tmp_path / "data/runs/gender/jtt").mkdir()
    res = run_stage(tmp_path, "evaluate.py", *EVAL_ARGS)
    assert res.returncode == 1 and "gender/jtt" in res.stderr


def test_resample_weights_keep_group_sizes_and_skip_absent_speakers():
    groups = np.array([0, 0, 1, 1, 1, -1, 0])
    present = np.array([True, True, True, True, True, True, False])
    w = evaluate.speaker_resample_weights(groups, present, 200, np.random.default_rng(0))
    assert w.shape == (200, 7)
    assert (w[:, [0, 1]].sum(axis=1) == 2).all() and (w[:, [2, 3, 4]].sum(axis=1) == 3).all()
    assert (w[:, 5] == 0).all() and (w[:, 6] == 0).all()
    assert w[:, 2].std() > 0


def test_bootstrap_replicate_equals_gap_on_the_resampled_clips():
    # One replicate, checked by materialising the resample: each speaker's clips repeated w times.
    rng = np.random.default_rng(3)
    truth = evaluate.Truth(folds=[1], test_files={1: [str(i) for i in range(30)]},
                           targets={1: (rng.random((30, 6)) < 0.4).astype(np.int8)},
                           speakers={1: np.repeat(np.arange(6), 5)},
                           actors=pd.DataFrame({"actor": range(6), "gender": ["Male", "Female"] * 3,
                                                "race": [None] * 6, "age": ["Young"] * 6}))
    preds = {1: (rng.random((30, 6)) < 0.5).astype(np.int8)}
    run = evaluate.Run("baselines", "erm", Path("x"))
    _, _, reps = evaluate.evaluate_runs(truth, {run: preds}, n_boot=5, seed=11)
    codes = np.array([0, 1] * 3)  # encode_groups sorts names: Female 0, Male 1
    w = evaluate.speaker_resample_weights(1 - codes, np.ones(6, bool), 5,
                                          np.random.default_rng([11, 1, 0]))
    take = np.concatenate([np.repeat(np.flatnonzero(truth.speakers[1] == s), int(w[0, s]))
                           for s in range(6)])
    g = truth.actors["gender"].to_numpy()[truth.speakers[1][take]]
    want = metrics.tpr_gap(y_true=truth.targets[1][take], y_pred=preds[1][take], groups=g)
    assert reps[("baselines", "erm", "gender", "tpr_gap")][0] == pytest.approx(want)


def test_bootstrap_is_deterministic_for_a_seed(tmp_path):
    make_tree(tmp_path, n_boot=30)
    outs = []
    for _ in range(2):
        assert run_stage(tmp_path, "evaluate.py", *EVAL_ARGS).returncode == 0
        outs.append((tmp_path / "data/eval/summary.csv").read_text())
    assert outs[0] == outs[1]


def test_basic_interval_reflects_the_replicates_about_the_estimate():
    reps = np.linspace(0.30, 0.50, 1001)  # replicates shifted up from the estimate 0.35
    got = evaluate.bootstrap_interval(0.35, reps)
    lo, hi = np.percentile(reps, [2.5, 97.5])
    assert got["ci_low"] == pytest.approx(0.70 - hi) and got["ci_high"] == pytest.approx(0.70 - lo)
    assert got["bias"] == pytest.approx(0.40 - 0.35)
    clipped = evaluate.bootstrap_interval(0.05, reps, floor=0.0)
    assert clipped["ci_low"] == 0.0 and clipped["ci_high"] == 0.0
    assert np.isnan(evaluate.bootstrap_interval(0.35, np.full(5, np.nan))["ci_low"])
    assert np.isnan(evaluate.bootstrap_interval(0.35, None)["bias"])


def test_table1_kmeans_rows_follow_idi_k(evaluated):
    root, _ = evaluated
    summary = pd.read_csv(root / "data/eval/summary.csv")
    look = evaluate.Lookup(summary)
    for k in (16, 32):
        rw = evaluate.headline(summary, k=k)["table1"]["rw"]["kmeans"]
        assert rw["tpr_gap"] == pytest.approx(look.mean(f"kmeans_k{k}", "rw", "gender", "tpr_gap"), abs=1e-4)


def test_overall_needs_all_four_group_methods():
    rows = [{"set": "gender", "method": m, "fold": f, "attribute": "all", "metric": "f1", "value": v}
            for m, v in (("rw", 0.5), ("ds", 0.6), ("gdro", 0.7)) for f in (1, 2)]
    summary = evaluate.summarize(pd.DataFrame(rows), {})
    assert "overall" not in set(summary["method"])
    rows += [{"set": "gender", "method": "gadro", "fold": f, "attribute": "all", "metric": "f1",
              "value": 0.8} for f in (1, 2)]
    summary = evaluate.summarize(pd.DataFrame(rows), {})
    assert evaluate.Lookup(summary).mean("gender", "overall", "all", "f1") == pytest.approx(0.65)


def test_per_group_rows_count_clips_and_positives_once():
    # Speakers 0, 1 (Male) have 2 and 1 clips, speaker 2 (Female) 3; class 0 positive on 4 clips.
    y = np.zeros((6, 6), dtype=np.int8)
    y[[0, 2, 3, 5], 0] = 1
    pred = np.zeros((6, 6), dtype=np.int8)
    pred[[0, 3], 0] = 1
    truth = evaluate.Truth(folds=[1], test_files={1: [str(i) for i in range(6)]}, targets={1: y},
                           speakers={1: np.array([0, 0, 1, 2, 2, 2])},
                           actors=pd.DataFrame({"actor": range(3), "gender": ["Male", "Male", "Female"],
                                                "race": [None] * 3, "age": ["Young"] * 3}))
    run = evaluate.Run("baselines", "erm", Path("x"))
    _, per_group, _ = evaluate.evaluate_runs(truth, {run: {1: pred}}, n_boot=0, seed=0)
    rows = per_group[(per_group["attribute"] == "gender") & (per_group["emotion"] == EMOTIONS[0])]
    got = rows.set_index("group")[["n", "n_pos", "tpr", "selection_rate"]]
    assert got.loc["Male"].tolist() == [3, 2, 0.5, 1 / 3]
    assert got.loc["Female"].tolist() == [3, 2, 0.5, 1 / 3]


def test_interval_of_all_nan_replicates_is_undefined_without_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = evaluate.bootstrap_interval(0.35, np.full(5, np.nan), floor=0.0)
    assert np.isnan([got["ci_low"], got["ci_high"], got["bias"]]).all()


def test_gain_is_relative_to_erm_and_positive_when_better():
    # Scores: (x - ERM) / ERM; gaps: (ERM - x) / ERM, so a smaller gap is a positive gain.
    assert evaluate.gain(0.6, 0.5, "f1") == pytest.approx(0.2)
    assert evaluate.gain(0.4, 0.5, "acc") == pytest.approx(-0.2)
    assert evaluate.gain(0.1, 0.4, "tpr_gap") == pytest.approx(0.75)
    assert evaluate.gain(0.6, 0.4, "dp_gap") == pytest.approx(-0.5)
