"""fairser.audit and `fairser audit` on tiny hand-made predictions, labels and speakers."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fairlearn.metrics import MetricFrame, selection_rate
from sklearn.metrics import f1_score, recall_score

from fairser import schema as fairser_schema
from fairser import audit, cli, evaluate, metrics
from fairser.errors import InputError
from fairser.constants import SURROGATE_NOTICE
from fairser.schema import CREMA_D_CLASSES as EMOTIONS

ROOT = Path(__file__).resolve().parents[1]
CLASSES = ["calm", "joy", "anger"]  # not the corpus's six: the class set comes from the columns
# 8 speakers: gender x age (two bands); s8 is 'Unknown' age, so it is in no age or gender+age group.
SPEAKERS = pd.DataFrame({
    "speaker": [f"s{i}" for i in range(1, 9)],
    "gender": ["Female", "Female", "Female", "Male", "Male", "Male", "Female", "Male"],
    "age": ["young", "old", "young", "old", "young", "old", "old", "Unknown"],
})
CLIPS_PER_SPEAKER = 5


def write_plain(root: Path, *, seed: int = 3) -> dict:
    """predictions.csv (file + one score per class), labels.csv, speakers.csv; returns their paths."""
    rng = np.random.default_rng(seed)
    rows = [(f"{s}_{j}.wav", s) for s in SPEAKERS["speaker"] for j in range(CLIPS_PER_SPEAKER)]
    files = [f for f, _ in rows]
    votes = rng.dirichlet(np.ones(len(CLASSES)) * 0.7, size=len(files))
    scores = rng.random((len(files), len(CLASSES)))
    root.mkdir(parents=True, exist_ok=True)
    paths = {k: root / f"{k}.csv" for k in ("predictions", "labels", "speakers")}
    pd.DataFrame(scores, columns=CLASSES).assign(file=files)[["file", *CLASSES]].to_csv(
        paths["predictions"], index=False)
    pd.DataFrame(votes, columns=CLASSES).assign(file=files)[["file", *CLASSES]].to_csv(
        paths["labels"], index=False)
    spk = pd.DataFrame(rows, columns=["file", "speaker"]).merge(SPEAKERS, on="speaker")
    spk.to_csv(paths["speakers"], index=False)
    return paths


def run_cli(args) -> tuple[int, str]:
    """cli.main in-process; (exit status, stderr text)."""
    import contextlib
    import io

    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        try:
            cli.main(list(map(str, args)))
            code = 0
        except SystemExit as e:
            code = e.code
    return code, err.getvalue()


# --- the pipeline's numbers ----------------------------------------------------------------------

ACTORS = pd.DataFrame({
    "actor": [1001, 1002, 1003, 1004, 1005, 1006, 1007, 1008, 1009, 1010],
    "sex": ["Male", "Female", "Male", "Female", "Male", "Female", "Male", "Female", "Female", "Male"],
    "age": [25, 30, 40, 60, 22, 45, 55, 33, 51, 38],
    "race": ["Caucasian", "African American", "Asian", "Unknown", "Caucasian", "Asian",
             "African American", "Caucasian", "Caucasian", "Asian"],
})


def write_pipeline_run(root: Path, *, seeds: int = 2) -> dict:
    """A fairser corpus folder, folds.csv and one run's predictions.csv (folds 1 and 3, `seeds`
    training seeds; each seed's rows in another order), as stages write."""
    rng = np.random.default_rng(11)
    corpus, split, run_dir = root / "corpus", root / "split", root / "runs" / "baselines" / "erm"
    for d in (corpus, split, run_dir):
        d.mkdir(parents=True)
    clips = pd.DataFrame([{"file": f"{a}_S{s}_X.wav", "actor": a,
                           **dict(zip(EMOTIONS, rng.dirichlet(np.ones(6) * 0.5)))}
                          for a in ACTORS["actor"] for s in range(3)])
    clips.to_csv(corpus / "clips.csv", index=False)
    ACTORS.to_csv(corpus / "actors.csv", index=False)
    (corpus / "corpus.json").write_text(json.dumps({"corpus": "surrogate", "notice": SURROGATE_NOTICE}))
    fairser_schema.save(fairser_schema.crema_d(), corpus)
    # Folds 1 and 3: the bootstrap streams are seeded by the fold number, so it must carry over.
    fold_of = {a: 1 if i % 2 == 0 else 3 for i, a in enumerate(ACTORS["actor"])}
    folds = pd.DataFrame([{"fold": f, "file": file, "split": "test" if fold_of[a] == f else "train"}
                          for f in (1, 3) for file, a in zip(clips["file"], clips["actor"])])
    folds.to_csv(split / "folds.csv", index=False)
    test = folds[folds["split"] == "test"]
    parts = []
    for seed in range(seeds):
        order = rng.permutation(len(test))
        z = np.exp(3 * rng.random((len(test), 6)))
        pred = pd.DataFrame(z / z.sum(axis=1, keepdims=True), columns=list(EMOTIONS))
        pred.insert(0, "file", test["file"].to_numpy()[order])
        pred.insert(0, "seed", seed)
        pred.insert(0, "fold", test["fold"].to_numpy()[order])
        parts.append(pred)
    pd.concat(parts).to_csv(run_dir / "predictions.csv", index=False)
    return {"corpus": corpus, "split": split, "runs": root / "runs",
            "predictions": run_dir / "predictions.csv"}


def test_audit_command_on_a_pipeline_run_reproduces_its_table1_numbers(tmp_path):
    tree = write_pipeline_run(tmp_path)
    # The pipeline's way (stages/evaluate.py).
    truth = evaluate.load_truth(tree["corpus"], tree["split"])
    runs = evaluate.find_runs(tree["runs"])
    preds = {r: evaluate.read_predictions(r, truth) for r in runs}
    assert sorted(preds[runs[0]]) == [(1, 0), (1, 1), (3, 0), (3, 1)]  # two seeds of two folds
    per_fold, _, reps = evaluate.evaluate_runs(truth, preds, n_boot=60, seed=5)
    summary = evaluate.summarize(per_fold, reps).set_index(["attribute", "metric"])
    # The console command, as a user runs it.
    out = tmp_path / "audit"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "fairser.cli", "audit", "--predictions",
                           tree["predictions"], "--labels", tree["corpus"], "--speakers", tree["corpus"],
                           "--n-boot", "60", "--seed", "5", "--out", out],
                          env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    got = json.loads((out / "metrics.json").read_text())
    expected = {f"overall.{m}": summary.loc[("all", m), "mean"] for m in ("f1", "acc")}
    for attribute in ("gender", "race", "age"):
        for metric in ("tpr_gap", "dp_gap"):
            row = summary.loc[(attribute, metric)]
            expected |= {f"{attribute}.{metric}": row["mean"],
                         f"{attribute}.{metric}.ci_low": row["ci_low"],
                         f"{attribute}.{metric}.ci_high": row["ci_high"]}
    assert all(np.isfinite(v) for v in expected.values())
    assert {k: got[k] for k in expected} == expected  # exact: the same code on the same arrays
    assert SURROGATE_NOTICE in (out / "report.md").read_text()
    assert {"report.md", "per_class.csv", "per_group.csv", "tpr_gender.png", "selection_age.png"} <= {
        p.name for p in out.iterdir()}


# --- cross-checks against fairlearn ----------------------------------------------------------------

def test_per_class_rates_and_gaps_agree_with_fairlearn_metricframe(tmp_path):
    paths = write_plain(tmp_path)
    inputs = audit.load(**paths, intersect=["gender,age"])
    result = audit.audit(inputs, n_boot=0, seed=0)
    y, p = inputs.y_true[audit.PLAIN_FOLD], inputs.y_pred[(audit.PLAIN_FOLD, 0)]
    spk = pd.read_csv(paths["speakers"])
    spk = spk.set_index("file").loc[pd.read_csv(paths["predictions"])["file"]]
    known = (spk["age"] != "Unknown").to_numpy()
    checked = 0
    for attribute, columns in (("gender", ["gender"]), ("age", ["age"]), ("gender+age", ["gender", "age"])):
        keep = known if "age" in columns else np.ones(len(spk), bool)
        features = spk.loc[keep, columns].reset_index(drop=True)
        rates = result.per_group[result.per_group["attribute"] == attribute]
        per_class = result.per_class[result.per_class["attribute"] == attribute].set_index("class")
        for k, cls in enumerate(CLASSES):
            mf = MetricFrame(metrics={"tpr": lambda a, b: recall_score(a, b, zero_division=np.nan),
                                      "sel": selection_rate},
                             y_true=y[keep, k], y_pred=p[keep, k],
                             sensitive_features=features[columns[0]] if len(columns) == 1 else features)
            ours = rates[rates["class"] == cls].set_index("group")
            for key, groups_row in mf.by_group.iterrows():
                name = key if isinstance(key, str) else "+".join(key)
                assert ours.loc[name, "tpr"] == pytest.approx(groups_row["tpr"], abs=1e-12, nan_ok=True)
                assert ours.loc[name, "selection_rate"] == pytest.approx(groups_row["sel"], abs=1e-12)
                checked += 1
            assert per_class.loc[cls, "tpr_gap"] == pytest.approx(mf.difference()["tpr"], abs=1e-12)
            assert per_class.loc[cls, "dp"] == pytest.approx(mf.difference(method="to_overall")["sel"],
                                                             abs=1e-12)
    assert checked == 3 * (2 + 2 + 4)  # every group of every class, the 4 intersections included


def test_group_scores_are_the_metric_functions_on_the_groups_clips(tmp_path):
    paths = write_plain(tmp_path)
    inputs = audit.load(**paths)
    result = audit.audit(inputs, n_boot=0, seed=0)
    y, p = inputs.y_true[audit.PLAIN_FOLD], inputs.y_pred[(audit.PLAIN_FOLD, 0)]
    is_f = pd.read_csv(paths["speakers"])["gender"].to_numpy() == "Female"  # same clip order as predictions
    row = result.groups.set_index(["attribute", "group"]).loc[("gender", "Female")]
    assert row["f1"] == pytest.approx(f1_score(y[is_f], p[is_f], average="macro", zero_division=0))
    assert row["acc"] == pytest.approx((y[is_f] == p[is_f]).mean())
    assert (row["n_speakers"], row["n_clips"]) == (4, 4 * CLIPS_PER_SPEAKER)


def test_group_rate_intervals_come_from_speaker_resamples(tmp_path):
    paths = write_plain(tmp_path)
    # Every F clip is predicted calm: F's calm TPR and selection rate are 1 in every resample.
    # M's calm predictions are 1 for s4's clips only, so resampling M's speakers moves its rate.
    spk = pd.read_csv(paths["speakers"])
    pred = pd.read_csv(paths["predictions"])
    pred["calm"] = np.where(spk["gender"] == "Female", 0.9, np.where(spk["speaker"] == "s4", 0.9, 0.0))
    pred.to_csv(paths["predictions"], index=False)
    result = audit.audit(audit.load(**paths), n_boot=200, seed=0)
    rates = result.per_group.set_index(["attribute", "group", "class"])
    female, male = rates.loc[("gender", "Female", "calm")], rates.loc[("gender", "Male", "calm")]
    keys = ["selection_rate_ci_low", "selection_rate", "selection_rate_ci_high"]
    assert female[keys].tolist() == [1.0, 1.0, 1.0]
    assert female["tpr_ci_low"] == female["tpr_ci_high"] == 1.0
    assert male["selection_rate"] == pytest.approx(0.25)
    assert male["selection_rate_ci_high"] - male["selection_rate_ci_low"] > 0.1


def test_a_corpus_folder_speaker_without_demographics_names_actors_csv(tmp_path):
    tree = write_pipeline_run(tmp_path)
    actors = pd.read_csv(tree["corpus"] / "actors.csv", dtype=str, keep_default_na=False)
    actors.loc[2, "sex"] = ""
    actors.to_csv(tree["corpus"] / "actors.csv", index=False)
    with pytest.raises(InputError, match=r"actors.csv, line 4, column sex: actor 1003 sex is empty"):
        audit.load(predictions=tree["predictions"], labels=tree["corpus"], speakers=tree["corpus"])


# --- reading the inputs ------------------------------------------------------------------------------

def test_default_threshold_is_one_over_the_number_of_classes():
    assert audit.parse_threshold("1/K", 3) == pytest.approx(1 / 3)
    assert audit.parse_threshold(None, 4) == 0.25
    assert audit.parse_threshold("1/2", 3) == 0.5
    assert audit.parse_threshold("0.3", 3) == 0.3


@pytest.mark.parametrize("text", ["0", "1", "1.5", "half", "1/0"])
def test_threshold_outside_zero_one_is_refused(text):
    with pytest.raises(InputError, match="--threshold"):
        audit.parse_threshold(text, 3)


def test_predictions_are_positive_above_the_threshold_and_targets_above_one_over_k(tmp_path):
    paths = write_plain(tmp_path)
    pred = pd.read_csv(paths["predictions"])
    pred.loc[0, CLASSES] = [0.34, 1 / 3, 0.2]
    pred.to_csv(paths["predictions"], index=False)
    labels = pd.read_csv(paths["labels"])
    labels.loc[0, CLASSES] = [0.5, 0.3, 0.2]
    labels.to_csv(paths["labels"], index=False)
    default = audit.load(**paths)
    assert default.y_pred[(audit.PLAIN_FOLD, 0)][0].tolist() == [1, 0, 0]
    assert default.y_true[audit.PLAIN_FOLD][0].tolist() == [1, 0, 0]
    low = audit.load(**paths, threshold="0.1")
    assert low.y_pred[(audit.PLAIN_FOLD, 0)][0].tolist() == [1, 1, 1]
    assert low.y_true[audit.PLAIN_FOLD][0].tolist() == [1, 0, 0]  # targets keep the corpus rule


def test_intersection_leaves_out_speakers_with_a_missing_part(tmp_path):
    inputs = audit.load(**write_plain(tmp_path), intersect=["gender,age"])
    combined = inputs.groups.set_index("speaker")["gender+age"]
    assert combined["s1"] == "Female+young" and combined["s4"] == "Male+old"
    assert pd.isna(combined["s8"])  # age Unknown
    assert inputs.groups.set_index("speaker")["gender"]["s8"] == "Male"  # still in the gender groups


def test_an_intersection_may_use_attributes_not_audited_alone(tmp_path):
    inputs = audit.load(**write_plain(tmp_path), attributes="gender", intersect=["gender,age"])
    assert inputs.attributes == ["gender", "gender+age"]


def test_only_the_columns_asked_for_are_checked(tmp_path):
    paths = write_plain(tmp_path)
    _edit(paths["speakers"], lambda d: d.loc.__setitem__((0, "age"), ""))
    assert audit.load(**paths, attributes="gender").attributes == ["gender"]
    with pytest.raises(InputError, match="column age: speaker 's1' has no age"):
        audit.load(**paths, attributes="gender", intersect=["gender,age"])


def test_an_unknown_intersection_part_is_named(tmp_path):
    with pytest.raises(InputError, match="--intersect: 'race' is not an attribute of"):
        audit.load(**write_plain(tmp_path), intersect=["gender,race"])


def test_several_training_seeds_are_cells_of_one_mean(tmp_path):
    paths = write_plain(tmp_path)
    pred = pd.read_csv(paths["predictions"])
    rng = np.random.default_rng(0)
    parts = []
    for seed in (0, 1):
        part = pred.copy()
        part[CLASSES] = rng.random((len(part), len(CLASSES)))
        parts.append(part.assign(fold=1, seed=seed))
    pd.concat(parts)[["fold", "seed", "file", *CLASSES]].to_csv(paths["predictions"], index=False)
    inputs = audit.load(**paths)
    assert inputs.cells == [(1, 0), (1, 1)]
    result = audit.audit(inputs, n_boot=0, seed=0)
    f1 = [metrics.macro_f1(y_true=inputs.y_true[f], y_pred=inputs.y_pred[(f, s)]) for f, s in inputs.cells]
    assert f1[0] != f1[1]
    got = result.summary.set_index(["attribute", "metric"]).loc[("all", "f1"), "mean"]
    assert got == pytest.approx(np.mean(f1))


def test_seeds_of_one_fold_must_score_the_same_clips(tmp_path):
    tree = write_pipeline_run(tmp_path)
    pred = pd.read_csv(tree["predictions"])
    drop = int(np.flatnonzero((pred["fold"] == 3) & (pred["seed"] == 1))[0])
    pred.drop(index=drop).to_csv(tree["predictions"], index=False)
    with pytest.raises(InputError, match=rf"predictions.csv: fold 3 seed 1 lacks clip "
                                             rf"'{pred['file'][drop]}', unlike seed 0"):
        audit.load(predictions=tree["predictions"], labels=tree["corpus"], speakers=tree["corpus"])


def test_few_speakers_in_a_group_are_warned_about(tmp_path):
    paths = write_plain(tmp_path)
    result = audit.audit(inputs := audit.load(**paths, intersect=["gender,age"]), n_boot=10, seed=0)
    text = audit.report_markdown(result, inputs)
    warnings = [line for line in text.splitlines() if line.startswith("> **Warning:**")]
    # gender: F has 4 speakers, M 4 -> no warning; age young 3, old 4 -> none; gender+age: 1-2 each.
    assert len(warnings) == 1 and "gender × age" in warnings[0] and "Female+young (2)" in warnings[0]


# --- bad input: one line naming file, line and column; nothing written -------------------------------

def _edit(path: Path, fn) -> None:
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    edited = fn(df)  # edits in place (None) or returns the edited table
    (df if edited is None else edited).to_csv(path, index=False)


BAD = {
    "unknown clip": ("predictions", lambda d: d.__setitem__("file", ["nobody.wav"] + list(d["file"][1:])),
                     "predictions.csv, line 2, column file: clip 'nobody.wav' is not in the labels"),
    "missing class": ("labels", lambda d: d.drop(columns="joy"),
                      "labels.csv, line 1, column joy: class missing from the labels"),
    "extra class": ("labels", lambda d: d.__setitem__("fear", "0"),
                    "labels.csv, line 1, column fear: not a class of the predictions"),
    "score above 1": ("predictions", lambda d: d.loc.__setitem__((3, "joy"), "1.2"),
                      "predictions.csv, line 5, column joy: score '1.2' is outside [0, 1]"),
    "negative label": ("labels", lambda d: d.loc.__setitem__((0, "calm"), "-0.1"),
                       "labels.csv, line 2, column calm: label '-0.1' is outside [0, 1]"),
    "NaN score": ("predictions", lambda d: d.loc.__setitem__((2, "anger"), "nan"),
                  "predictions.csv, line 4, column anger: score 'nan' is not a number"),
    "empty score": ("predictions", lambda d: d.loc.__setitem__((2, "calm"), ""),
                    "predictions.csv, line 4, column calm: score '' is empty"),
    "duplicate row": ("predictions", lambda d: d.loc.__setitem__((6, "file"), d.loc[1, "file"]),
                      "predictions.csv, line 8, column file: 's1_1.wav' appears twice (first on line 3)"),
    "speaker without demographics": ("speakers", lambda d: d.loc.__setitem__((7, "gender"), ""),
                                     "speakers.csv, line 9, column gender: speaker 's2' has no gender"),
    "speaker with two genders": ("speakers", lambda d: d.loc.__setitem__((6, "gender"), "M"),
                                 "speakers.csv, line 8, column gender: speaker 's2' is 'M' here but 'Female' on line 7"),
    "group with no clips": ("speakers", lambda d: d.loc.__setitem__((len(d), slice(None)),
                                                                    ["ghost.wav", "s9", "Female", "middle"]),
                            "speakers.csv, line 42, column age: group 'middle' has no clips in"),
    "clip without speaker": ("speakers", lambda d: d.drop(index=0),
                             "predictions.csv, line 2, column file: clip 's1_0.wav' is not in the speakers"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_is_one_line_naming_file_line_and_column_and_writes_nothing(tmp_path, case):
    paths = write_plain(tmp_path / "in")
    which, edit, message = BAD[case]
    _edit(paths[which], edit)
    out = tmp_path / "report"
    code, err = run_cli(["audit", "--predictions", paths["predictions"], "--labels", paths["labels"],
                         "--speakers", paths["speakers"], "--out", out, "--n-boot", "5"])
    assert code == 1
    assert len(err.strip().splitlines()) == 1 and message in err, err
    assert not out.exists() and not list(tmp_path.glob(".report*"))


def test_an_unknown_attribute_is_named(tmp_path):
    paths = write_plain(tmp_path)
    with pytest.raises(InputError, match="--attributes: 'race' is not an attribute of"):
        audit.load(**paths, attributes="gender,race")


def test_a_failed_audit_leaves_the_previous_report_as_it_was(tmp_path):
    paths = write_plain(tmp_path / "in")
    out = tmp_path / "report"
    args = ["audit", "--predictions", paths["predictions"], "--labels", paths["labels"], "--speakers",
            paths["speakers"], "--out", out, "--n-boot", "5"]
    assert run_cli(args)[0] == 0
    before = (out / "metrics.json").read_text()
    _edit(paths["predictions"], lambda d: d.loc.__setitem__((0, "joy"), "2"))
    assert run_cli(args)[0] == 1
    assert (out / "metrics.json").read_text() == before


def test_help_explains_every_argument(capsys):
    import argparse

    parser = cli.audit_parser(argparse.ArgumentParser())
    flags = [a for a in parser._actions if a.dest != "help"]
    assert {a.option_strings[0] for a in flags} == {
        "--predictions", "--labels", "--speakers", "--attributes", "--intersect", "--threshold",
        "--n-boot", "--seed", "--out", "--bins", "--keep-values", "--min-coverage", "--params", "--force"}
    assert all(a.help and len(a.help.split()) >= 5 for a in flags)
    with pytest.raises(SystemExit) as done:
        cli.main(["audit", "--help"])
    assert done.value.code == 0
    text = capsys.readouterr().out
    assert all(a.option_strings[0] in text for a in flags) and "input formats:" in text


def test_the_installed_fairser_command_is_cli_main():
    import importlib
    import tomllib

    target = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]["fairser"]
    module, func = target.split(":")
    assert getattr(importlib.import_module(module), func) is cli.main


# --- any corpus (issue 11): attributes from a schema --------------------------------------------------

def test_audit_of_a_four_class_gender_only_corpus_reproduces_the_pipelines_cells(tmp_path):
    from test_evaluate import make_generic_tree

    make_generic_tree(tmp_path, n_boot=0)
    corpus, split = tmp_path / "data/corpus", tmp_path / "data/split"
    truth = evaluate.load_truth(corpus, split)
    run = next(r for r in evaluate.find_runs(tmp_path / "data/runs") if r.name == "baselines/erm")
    per_fold, _, reps = evaluate.evaluate_runs(truth, {run: evaluate.read_predictions(run, truth)},
                                               n_boot=30, seed=2)
    summary = evaluate.summarize(per_fold, reps).set_index(["attribute", "metric"])
    inputs = audit.load(predictions=run.path, labels=corpus, speakers=corpus)
    assert inputs.attributes == ["gender"] and inputs.threshold == 0.25
    got = audit.audit(inputs, n_boot=30, seed=2).summary.set_index(["attribute", "metric"])
    for key in (("all", "f1"), ("all", "acc"), ("gender", "tpr_gap"), ("gender", "dp_gap")):
        assert got.loc[key, "mean"] == summary.loc[key, "mean"], key
    assert got.loc[("gender", "tpr_gap"), "ci_low"] == summary.loc[("gender", "tpr_gap"), "ci_low"]


def test_a_speakers_table_with_a_schema_bins_and_excludes_as_the_pipeline(tmp_path):
    paths = write_plain(tmp_path)
    spk = pd.read_csv(paths["speakers"], dtype=str, keep_default_na=False)
    years = {"young": "25", "old": "60", "Unknown": "40"}
    spk["years"] = spk["age"].map(years)
    spk["region"] = np.where(spk["gender"] == "Female", "north", "?")
    spk.to_csv(paths["speakers"], index=False)
    schema = fairser_schema.Schema(classes=tuple(CLASSES), folds=1, attributes=(
        fairser_schema.Attribute("age", "years", ("Young", "Middle", "Elderly"), edges=(20, 36, 50, 76)),
        fairser_schema.Attribute("region", "region", ("north", "south"), excluded=("?",))))
    got = audit.load_speakers(paths["speakers"], None, schema=schema)
    assert got.attributes == ["age", "region"]
    by_speaker = got.groups.set_index("speaker")
    for s, age in zip(SPEAKERS["speaker"], SPEAKERS["age"]):
        assert by_speaker.loc[s, "age"] == {"young": "Young", "old": "Elderly", "Unknown": "Middle"}[age]
    assert by_speaker["region"].isna().sum() == (SPEAKERS["gender"] == "Male").sum()
    # The schema's file may be given by path, too; a value outside every bin names its line.
    fairser_schema.save(schema, tmp_path)
    spk.loc[spk["speaker"] == spk["speaker"][7], "years"] = "90"  # every clip of one speaker
    spk.to_csv(paths["speakers"], index=False)
    with pytest.raises(InputError, match=r"speakers.csv, line \d+, column years: '90' is outside every group"):
        audit.load_speakers(paths["speakers"], None, schema=tmp_path / "schema.json")


def test_a_corpus_folder_without_schema_json_is_named(tmp_path):
    tree = write_pipeline_run(tmp_path)
    (tree["corpus"] / "schema.json").unlink()
    with pytest.raises(InputError, match=r"schema.json: not found"):
        audit.load(predictions=tree["predictions"], labels=tree["corpus"], speakers=tree["corpus"])
