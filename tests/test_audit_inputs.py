"""`fairser audit` as a new user meets it (issues 25, 26): any folder, one normalisation of values,
coverage, numeric attributes, safe output folders, clear lines for unreadable input, the Python API."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fairser import audit
from fairser.errors import InputError
from test_audit import CLASSES, ROOT, run_cli, write_plain


def args_for(paths, out, *extra):
    return ["audit", "--predictions", paths["predictions"], "--labels", paths["labels"],
            "--speakers", paths["speakers"], "--out", out, "--n-boot", "20", *extra]


def edit_speakers(paths, fn):
    spk = pd.read_csv(paths["speakers"], dtype=str, keep_default_na=False)
    fn(spk)
    spk.to_csv(paths["speakers"], index=False)


# --- runs anywhere ---------------------------------------------------------------------------------

def test_the_command_writes_its_report_in_an_empty_folder_without_params_yaml(tmp_path):
    paths = write_plain(tmp_path / "inputs")
    work = tmp_path / "empty"
    work.mkdir()
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "fairser.cli", *map(str, args_for(paths, "report"))],
                          cwd=work, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "coverage: predictions for 40 of 40 labelled clips" in done.stdout
    assert json.loads((work / "report" / "metrics.json").read_text())["overall.n_clips"] == 40


def test_a_params_yaml_in_the_working_folder_is_not_read_but_one_named_by_params_is(tmp_path, monkeypatch):
    paths = write_plain(tmp_path / "inputs")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text("this: [is not a params file\n")
    assert run_cli(args_for(paths, "a")) == (0, "")
    code, err = run_cli(args_for(paths, "b", "--params", "params.yaml"))
    assert code == 1 and err.startswith("error: params.yaml") and len(err.strip().splitlines()) == 1


# --- one normalisation of speaker ids and attribute values ----------------------------------------

def test_mixed_gender_spellings_give_two_groups_and_the_report_lists_the_mapping(tmp_path):
    paths = write_plain(tmp_path / "inputs")
    spelling = {"s1": "Male", "s2": "male", "s3": "M", "s4": "Female", "s5": "female ", "s6": "F",
                "s7": "Woman", "s8": "man"}
    edit_speakers(paths, lambda d: d.__setitem__("gender", d["speaker"].map(spelling)))
    out = tmp_path / "report"
    assert run_cli(args_for(paths, out))[0] == 0
    groups = pd.read_csv(out / "per_group.csv")
    assert sorted(set(groups.loc[groups["attribute"] == "gender", "group"])) == ["Female", "Male"]
    got = json.loads((out / "metrics.json").read_text())
    assert got["gender.group.Male.n_speakers"] == 4 and got["gender.group.Female.n_speakers"] == 4
    text = (out / "report.md").read_text()
    assert "- gender: 'F' -> Female, 'M' -> Male, 'Woman' -> Female, 'female ' -> Female, " \
           "'male' -> Male, 'man' -> Male" in text
    values = pd.read_csv(out / "values.csv", keep_default_na=False)
    assert set(zip(values["as_written"], values["used"])) >= {("M", "Male"), ("female ", "Female")}


def test_a_gender_value_that_folds_to_nothing_is_one_line_naming_it_and_keep_values(tmp_path):
    paths = write_plain(tmp_path / "inputs")
    edit_speakers(paths, lambda d: d.loc.__setitem__((d["speaker"] == "s2", "gender"), "nonbinary"))
    out = tmp_path / "report"
    code, err = run_cli(args_for(paths, out))
    assert code == 1 and len(err.strip().splitlines()) == 1
    assert "speakers.csv, column gender: gender values 'nonbinary' are none of Male, Female" in err
    assert "--keep-values" in err and not out.exists()
    assert run_cli(args_for(paths, out, "--keep-values"))[0] == 0
    groups = json.loads((out / "metrics.json").read_text())
    assert groups["gender.group.nonbinary.n_speakers"] == 1
    assert groups["gender.group.Female.n_speakers"] == 3


def test_speaker_ids_differing_by_leading_zeros_are_one_speaker_and_the_report_says_so(tmp_path):
    paths = write_plain(tmp_path / "inputs")
    ids = {f"s{i}": str(i) for i in range(1, 9)}
    # Speaker 1's clips are written "1" and "01": one speaker, not two.
    edit_speakers(paths, lambda d: d.__setitem__("speaker", [("01" if j % 2 else "1") if s == "s1" else ids[s]
                                                             for j, s in enumerate(d["speaker"])]))
    report = audit.audit_predictions(paths["predictions"], paths["labels"], paths["speakers"], n_boot=0)
    assert report.metrics["overall.n_speakers"] == 8
    assert report.groups.set_index(["attribute", "group"]).loc[("gender", "Female"), "n_speakers"] == 4
    assert "- speaker: '01' -> 1" in report.markdown()


def test_other_attributes_fold_case_and_spaces(tmp_path):
    paths = write_plain(tmp_path / "inputs")
    edit_speakers(paths, lambda d: d.loc.__setitem__((d["speaker"] == "s3", "age"), "Young "))
    report = audit.audit_predictions(paths["predictions"], paths["labels"], paths["speakers"], n_boot=0)
    ages = report.groups[report.groups["attribute"] == "age"].set_index("group")["n_speakers"]
    assert ages.to_dict() == {"old": 4, "young": 3}  # s1, s3, s5; s8 is Unknown


# --- numeric attributes need bins -------------------------------------------------------------------

def test_a_numeric_attribute_needs_bins_and_is_grouped_by_them(tmp_path):
    paths = write_plain(tmp_path / "inputs")
    years = {"s1": "19", "s2": "64", "s3": "25", "s4": "71", "s5": "33", "s6": "55", "s7": "48",
             "s8": "Unknown"}
    edit_speakers(paths, lambda d: d.__setitem__("age", d["speaker"].map(years)))
    out = tmp_path / "report"
    code, err = run_cli(args_for(paths, out))
    assert code == 1 and len(err.strip().splitlines()) == 1 and not out.exists()
    assert "speakers.csv, column age: numeric values (19, 25, 33, 48, ...) need bins" in err
    assert "--bins age=" in err
    assert run_cli(args_for(paths, out, "--bins", "age=18,40,100"))[0] == 0
    got = json.loads((out / "metrics.json").read_text())
    assert got["age.group.18-40.n_speakers"] == 3 and got["age.group.40-100.n_speakers"] == 4
    assert "'19' -> 18-40" in (out / "report.md").read_text()


@pytest.mark.parametrize("bins", ["age", "age=30", "age=1,x,3", "height=1,2,3"])
def test_bad_bins_are_one_line(tmp_path, bins):
    paths = write_plain(tmp_path / "inputs")
    code, err = run_cli(args_for(paths, tmp_path / "report", "--bins", bins))
    assert code == 1 and err.startswith("error: --bins") and len(err.strip().splitlines()) == 1


# --- coverage ----------------------------------------------------------------------------------------

def test_predictions_covering_part_of_the_labelled_clips_stop_unless_min_coverage_allows(tmp_path):
    paths = write_plain(tmp_path / "inputs")
    pred = pd.read_csv(paths["predictions"])
    # s2 (5 clips) has none; s3 lacks 1 of 5: 34 of 40 labelled clips are predicted.
    keep = ~pred["file"].str.startswith("s2_") & (pred["file"] != "s3_0.wav")
    pred[keep].to_csv(paths["predictions"], index=False)
    out = tmp_path / "report"
    code, err = run_cli(args_for(paths, out))
    assert code == 1 and len(err.strip().splitlines()) == 1 and not out.exists()
    assert "predictions for 34 of 40 labelled clips (85.0%)" in err
    assert "speakers without any: s2 " in err and "--min-coverage" in err
    assert run_cli(args_for(paths, out, "--min-coverage", "0.85"))[0] == 0
    got = json.loads((out / "metrics.json").read_text())
    assert (got["coverage.labelled_clips"], got["coverage.predicted_clips"]) == (40, 34)
    assert got["coverage.share"] == 34 / 40 and got["coverage.missing_speakers"] == 1
    assert "- coverage: predictions for 34 of 40 labelled clips (85.0%); speakers without any " \
           "prediction: s2" in (out / "report.md").read_text()


def test_full_coverage_names_no_missing_speaker(tmp_path):
    paths = write_plain(tmp_path / "inputs")
    report = audit.audit_predictions(paths["predictions"], paths["labels"], paths["speakers"], n_boot=0)
    assert report.coverage == {"labelled_clips": 40, "predicted_clips": 40, "share": 1.0,
                               "missing_speakers": []}


# --- output folders are never destroyed blindly ------------------------------------------------------

def test_a_file_placed_in_the_out_folder_survives_every_audit_call_without_force(tmp_path):
    paths = write_plain(tmp_path / "inputs")
    out = tmp_path / "report"
    assert run_cli(args_for(paths, out))[0] == 0
    assert run_cli(args_for(paths, out))[0] == 0  # its own earlier report: replaced
    (out / "thesis.tex").write_text("years of work")
    for extra in ([], ["--n-boot", "0"], ["--keep-values"], ["--min-coverage", "0.5"]):
        code, err = run_cli(args_for(paths, out, *extra))
        assert code == 1 and err.strip() == (f"error: --out {out} holds files the audit did not write; "
                                             "choose another folder or pass --force")
        assert (out / "thesis.tex").read_text() == "years of work"
    other = tmp_path / "notes"
    other.mkdir()
    (other / "a.txt").write_text("mine")
    assert run_cli(args_for(paths, other))[0] == 1 and (other / "a.txt").read_text() == "mine"
    with pytest.raises(InputError, match="holds files the audit did not write"):
        audit.audit_predictions(paths["predictions"], paths["labels"], paths["speakers"],
                                n_boot=0).write(other)
    assert run_cli(args_for(paths, out, "--force"))[0] == 0  # asked for: replaced
    assert not (out / "thesis.tex").exists() and (out / "report.md").is_file()


@pytest.mark.parametrize("out, message", [
    (".", "--out .: the working folder or one above it would be replaced"),
    ("..", "--out ..: the working folder or one above it would be replaced"),
    ("", "--out: empty"),
    ("afile.txt", "--out afile.txt: a file, not a folder"),
    ("afile.txt/sub", "--out afile.txt/sub: afile.txt is a file, not a folder"),
])
def test_out_that_cannot_be_a_report_folder_is_one_line_and_touches_nothing(tmp_path, monkeypatch, out, message):
    paths = write_plain(tmp_path / "inputs")
    work = tmp_path / "work"
    work.mkdir()
    (work / "afile.txt").write_text("keep")
    monkeypatch.chdir(work)
    before = sorted(p.name for p in tmp_path.rglob("*"))
    code, err = run_cli(args_for(paths, out, "--force"))
    assert code == 1 and len(err.strip().splitlines()) == 1 and message in err, err
    assert sorted(p.name for p in tmp_path.rglob("*")) == before
    assert (work / "afile.txt").read_text() == "keep"


def test_an_empty_existing_folder_is_used(tmp_path):
    paths = write_plain(tmp_path / "inputs")
    (tmp_path / "report").mkdir()
    assert run_cli(args_for(paths, tmp_path / "report"))[0] == 0
    marker = json.loads((tmp_path / "report" / audit.MARKER).read_text())
    assert set(marker["files"]) | {audit.MARKER} == {p.name for p in (tmp_path / "report").iterdir()}


# --- unreadable input: one line naming the file and what was expected --------------------------------

def _write_bytes(path: Path, data: bytes) -> None:
    path.write_bytes(data)


@pytest.mark.parametrize("which", ["predictions", "labels", "speakers"])
@pytest.mark.parametrize("content, why", [
    (b"", "empty file"),
    (None, "a header and no rows"),  # None: the file's own header line only
    (b"file,calm\n\xff\xfe,1\n", "not UTF-8 text (line 2: byte 0xff)"),
])
def test_empty_header_only_and_non_utf8_csvs_name_the_file_and_expected_columns(tmp_path, which, content, why):
    paths = write_plain(tmp_path / "inputs")
    header = paths[which].read_text().splitlines()[0] + "\n"
    paths[which].write_bytes(header.encode() if content is None else content)
    code, err = run_cli(args_for(paths, tmp_path / "report"))
    assert code == 1 and len(err.strip().splitlines()) == 1, err
    assert err.startswith(f"error: {paths[which]}: {why}")
    expected = {"predictions": "file (or id), one score column per class",
                "labels": "file (or id) and one label column per class",
                "speakers": "file (or id), speaker (or actor)"}[which]
    assert expected in err and err.strip().endswith(("attribute", "seed", "predictions"))


def test_a_folder_given_as_predictions_says_it_is_a_folder(tmp_path):
    paths = write_plain(tmp_path / "inputs")
    paths["predictions"] = tmp_path
    code, err = run_cli(args_for(paths, tmp_path / "report"))
    assert code == 1 and len(err.strip().splitlines()) == 1, err
    assert f"{tmp_path}: is a folder, not a file; expected a CSV with columns file" in err


def test_a_missing_predictions_file_names_it_and_the_expected_columns(tmp_path):
    paths = write_plain(tmp_path / "inputs")
    paths["predictions"] = tmp_path / "absent.csv"
    code, err = run_cli(args_for(paths, tmp_path / "report"))
    assert code == 1 and len(err.strip().splitlines()) == 1, err
    assert f"{tmp_path / 'absent.csv'}: no such file; expected a CSV with columns file" in err


def test_a_utf8_csv_with_a_byte_order_mark_is_read_as_without_one(tmp_path):
    # Spreadsheet programs write UTF-8 CSVs with a byte-order mark; it is not part of the id column.
    paths = write_plain(tmp_path / "inputs")
    plain = audit.audit_predictions(paths["predictions"], paths["labels"], paths["speakers"], n_boot=0)
    paths["predictions"].write_bytes(b"\xef\xbb\xbf" + paths["predictions"].read_bytes())
    marked = audit.audit_predictions(paths["predictions"], paths["labels"], paths["speakers"], n_boot=0)
    pd.testing.assert_frame_equal(marked.overall, plain.overall)


def test_a_folder_without_clips_csv_as_labels_says_it_is_no_corpus(tmp_path):
    paths = write_plain(tmp_path / "inputs")
    (tmp_path / "nothing").mkdir()
    paths["labels"] = tmp_path / "nothing"
    code, err = run_cli(args_for(paths, tmp_path / "report"))
    assert code == 1 and "nothing: a folder without clips.csv, so not a fairser corpus" in err


def test_header_only_predictions_blame_the_predictions_file(tmp_path):
    paths = write_plain(tmp_path / "inputs")
    paths["predictions"].write_text("file," + ",".join(CLASSES) + "\n")
    code, err = run_cli(args_for(paths, tmp_path / "report"))
    assert code == 1 and err.startswith(f"error: {paths['predictions']}: a header and no rows")
    assert "speakers" not in err.split(":")[1]


# --- the Python API ------------------------------------------------------------------------------------

def test_dataframes_and_paths_give_the_same_numbers(tmp_path):
    paths = write_plain(tmp_path / "inputs")
    from_paths = audit.audit_predictions(paths["predictions"], paths["labels"], paths["speakers"],
                                         intersect=["gender,age"], n_boot=30, seed=4)
    frames = {k: pd.read_csv(v) for k, v in paths.items()}
    from_frames = audit.audit_predictions(frames["predictions"], frames["labels"], frames["speakers"],
                                          intersect=[["gender", "age"]], n_boot=30, seed=4)
    assert from_frames.metrics == from_paths.metrics
    pd.testing.assert_frame_equal(from_frames.per_group, from_paths.per_group)
    assert list(from_paths.gaps.columns) == ["attribute", "metric", "value", "ci_low", "ci_high", "ci_note"]
    assert set(from_paths.gaps["attribute"]) == {"gender", "age", "gender+age"}


def test_a_bad_dataframe_cell_is_named_by_column_and_line(tmp_path):
    paths = write_plain(tmp_path / "inputs")
    pred = pd.read_csv(paths["predictions"])
    pred.loc[2, "joy"] = np.nan
    with pytest.raises(InputError, match=r"predictions DataFrame, line 4, column joy: score '' is empty"):
        audit.audit_predictions(pred, paths["labels"], paths["speakers"], n_boot=0)


def test_the_readme_python_example_runs_as_written_and_equals_the_command(tmp_path, monkeypatch, capsys):
    block = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.S)
    assert len(block) == 1 and "audit_predictions" in block[0]
    paths = write_plain(tmp_path)
    for name, path in (("preds", paths["predictions"]), ("labels", paths["labels"]),
                       ("speakers", paths["speakers"])):
        path.rename(tmp_path / f"{name}.csv")
    monkeypatch.chdir(tmp_path)
    namespace = {}
    exec(compile(block[0], "README.md", "exec"), namespace)
    assert "tpr_gap" in capsys.readouterr().out
    report = namespace["report"]
    code, err = run_cli(["audit", "--predictions", "preds.csv", "--labels", "labels.csv", "--speakers",
                         "speakers.csv", "--intersect", "gender,age", "--out", "console"])
    assert code == 0, err
    console = json.loads((tmp_path / "console" / "metrics.json").read_text())
    assert report.metrics == console  # every number, intervals included (default 1000 resamples)
    assert json.loads((tmp_path / "audit_report" / "metrics.json").read_text()) == console
    gaps = report.gaps.set_index(["attribute", "metric"])
    assert gaps.loc[("gender", "tpr_gap"), "value"] == console["gender.tpr_gap"]
    assert gaps.loc[("gender", "tpr_gap"), "ci_high"] == console["gender.tpr_gap.ci_high"]


def test_the_package_exports_audit_predictions_and_the_module_stays_the_module():
    import fairser

    from fairser import audit_predictions

    assert audit_predictions is audit.audit_predictions
    assert fairser.audit is audit and "audit_predictions" in fairser.__all__
    with pytest.raises(AttributeError):
        fairser.no_such_name


def test_with_a_corpus_folder_the_clips_to_cover_are_the_usable_test_clips_of_the_predicted_folds(tmp_path):
    from test_audit import write_pipeline_run

    tree = write_pipeline_run(tmp_path)
    clips = pd.read_csv(tree["corpus"] / "clips.csv")
    test_fold = {f: fold for fold, f in pd.read_csv(tmp_path / "split" / "folds.csv")
                 .query("split == 'test'")[["fold", "file"]].itertuples(index=False)}
    for fold in (1, 3):
        clips[f"split_{fold}"] = np.where(clips["file"].map(test_fold) == fold, "test", "train")
    # A clip without audio: labelled, a test clip of fold 1, listed in skipped.csv, never predicted.
    lost = clips.iloc[[0]].assign(file="1001_S9_X.wav")
    pd.concat([clips, lost]).to_csv(tree["corpus"] / "clips.csv", index=False)
    pd.DataFrame({"file": ["1001_S9_X.wav"], "reason": ["no wav"]}).to_csv(tree["corpus"] / "skipped.csv",
                                                                            index=False)
    pred = pd.read_csv(tree["predictions"])
    only_fold_1 = tmp_path / "fold1.csv"
    pred[pred["fold"] == 1].to_csv(only_fold_1, index=False)
    n_test_1 = int((clips["split_1"] == "test").sum())
    inputs = audit.load(predictions=only_fold_1, labels=tree["corpus"], speakers=tree["corpus"],
                        attributes="gender")
    assert inputs.described["coverage"] == {"labelled_clips": n_test_1, "predicted_clips": n_test_1,
                                            "share": 1.0, "missing_speakers": []}
    dropped = pred[(pred["fold"] == 1)]["file"].iloc[0]
    pred[(pred["fold"] == 1) & (pred["file"] != dropped)].to_csv(only_fold_1, index=False)
    with pytest.raises(InputError, match=rf"predictions for {n_test_1 - 1} of {n_test_1} labelled clips"):
        audit.load(predictions=only_fold_1, labels=tree["corpus"], speakers=tree["corpus"], attributes="gender")


def test_a_sex_column_folds_gender_spellings_too(tmp_path):
    paths = write_plain(tmp_path / "inputs")
    spk = pd.read_csv(paths["speakers"], dtype=str)
    spk.assign(gender=spk["gender"].str[0]).rename(columns={"gender": "Sex"}).to_csv(  # F / M
        paths["speakers"], index=False)
    report = audit.audit_predictions(paths["predictions"], paths["labels"], paths["speakers"], n_boot=0)
    assert sorted(report.groups.loc[report.groups["attribute"] == "Sex", "group"]) == ["Female", "Male"]
