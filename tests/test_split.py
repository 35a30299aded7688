"""The split stage: labels, the 1:20 biasing rule (PROTOCOL section 2) and Tables A2 / A3."""

import subprocess
import sys
from pathlib import Path

import json

import numpy as np
import pandas as pd
import pytest
import yaml

from fairser.errors import InputError
from fairser.errors import ParamsError
from fairser import schema as corpus_schema
from fairser.schema import CREMA_D_CLASSES as EMOTIONS
from fairser.split import (
    bias_split,
    count_table,
    coverage_error,
    degenerate_cells,
    fold_table,
    majority_group_by_class,
    majority_label,
    multi_hot,
    read_corpus,
    run,
    sparse_class_mode,
    vote_share,
)
from helpers import shipped_params

N_FOLDS = 5
CREMA = corpus_schema.crema_d()
GENDERS = ("Male", "Female")


def majority_gender_by_emotion(*, labels, genders):
    return majority_group_by_class(labels=labels, groups=genders, classes=EMOTIONS, group_names=GENDERS)

ANGRY, SAD, NEUTRAL = EMOTIONS.index("angry"), EMOTIONS.index("sad"), EMOTIONS.index("neutral")
ROOT = Path(__file__).resolve().parents[1]
MALE_MAJORITY = {"angry": "Male", "disgust": "Male", "neutral": "Male",
                 "sad": "Female", "fear": "Female", "happy": "Female"}


def one_vote_row(k: int) -> list[float]:
    """p of a clip whose every vote went to class k (p = 0.01 + 0.94 c/N)."""
    return [0.95 if j == k else 0.01 for j in range(len(EMOTIONS))]


TIE_ROW = [0.48, 0.48, 0.01, 0.01, 0.01, 0.01]  # 1/2 angry, 1/2 sad: no strict majority


# --- labels -------------------------------------------------------------------------------------

def test_vote_share_inverts_the_smoothing():
    c_over_n = np.array([[0, 0.25, 0.75, 0, 0, 0]])
    assert np.allclose(vote_share(0.01 + 0.94 * c_over_n), c_over_n)


def test_multi_hot_is_strictly_above_one_sixth_and_0_166667_counts():
    p = np.array([[1 / 6, 0.166667, 0.166666, 0.5, 0.0, 0.0]])
    assert multi_hot(p, 1 / 6).tolist() == [[False, True, False, True, False, False]]


def test_majority_label_needs_more_than_half_of_the_votes():
    six_of_eleven = 0.01 + 0.94 * 6 / 11
    p = np.array([
        one_vote_row(NEUTRAL),
        TIE_ROW,  # exactly half is not a strict majority
        [six_of_eleven, 0.01 + 0.94 * 5 / 11, 0.01, 0.01, 0.01, 0.01],
        [0.3, 0.3, 0.1, 0.1, 0.1, 0.1],
    ])
    assert majority_label(p).tolist() == [NEUTRAL, -1, ANGRY, -1]


def test_majority_gender_is_the_gender_with_more_majority_clips():
    labels = [ANGRY, ANGRY, ANGRY, SAD, SAD, SAD, -1, -1]
    genders = ["Male", "Male", "Female", "Female", "Female", "Male", "Male", "Male"]
    out = majority_gender_by_emotion(labels=labels, genders=genders)
    assert out["angry"] == "Male" and out["sad"] == "Female"
    assert set(out) == set(EMOTIONS)


# --- biasing ------------------------------------------------------------------------------------

def cell(split: str, label: int, n_male: int, n_female: int, tag: str = ""):
    """files, split, labels, genders of one (split, emotion) cell."""
    n = n_male + n_female
    files = [f"{split}{tag}_{label}_{i:03d}" for i in range(n)]
    return files, [split] * n, [label] * n, ["Male"] * n_male + ["Female"] * n_female


def concat(*cells):
    return [sum((list(c[i]) for c in cells), []) for i in range(4)]


def biased(cells, *, ratio=20, seed=0, fold=1):
    files, split, labels, genders = concat(*cells)
    keep = bias_split(files=files, split=split, labels=labels, groups=genders, majority=MALE_MAJORITY,
                      classes=EMOTIONS, group_names=GENDERS, ratio=ratio, seed=seed, fold=fold)
    return pd.DataFrame({"file": files, "split": split, "label": labels, "gender": genders})[keep]


def test_bias_keeps_every_majority_clip_and_floor_n_over_ratio_minority_clips():
    kept = biased([cell("train", ANGRY, 41, 10), cell("dev", ANGRY, 19, 5),
                   cell("train", SAD, 3, 30)])
    n = kept.groupby(["split", "label", "gender"]).size().to_dict()
    assert n[("train", ANGRY, "Male")] == 41 and n[("train", ANGRY, "Female")] == 2  # floor(41/20)
    assert n[("dev", ANGRY, "Male")] == 19 and ("dev", ANGRY, "Female") not in n  # floor(19/20) = 0
    assert n[("train", SAD, "Female")] == 30 and n[("train", SAD, "Male")] == 1  # floor(30/20)


def test_bias_drops_clips_without_a_majority_from_train_and_dev_and_keeps_all_test_clips():
    kept = biased([cell("train", -1, 5, 5), cell("dev", -1, 5, 5), cell("test", -1, 3, 3),
                   cell("test", ANGRY, 2, 40)])
    assert set(kept["split"]) == {"test"} and len(kept) == 6 + 42


def test_bias_draw_is_seeded_and_independent_of_row_order():
    cells = [cell("train", NEUTRAL, 200, 100)]
    first = set(biased(cells, seed=3)["file"])
    assert first == set(biased(cells, seed=3)["file"])
    files, split, labels, genders = concat(*cells)
    rev = slice(None, None, -1)
    keep = bias_split(files=files[rev], split=split[rev], labels=labels[rev], groups=genders[rev],
                      majority=MALE_MAJORITY, classes=EMOTIONS, group_names=GENDERS, ratio=20,
                      seed=3, fold=1)
    assert set(np.asarray(files[rev])[keep]) == first
    # 10 of 100 minority clips: another seed or fold draws another subset (C(100, 10) choices).
    assert set(biased(cells, seed=4)["file"]) != first
    assert set(biased(cells, seed=3, fold=2)["file"]) != first


def test_ratio_one_keeps_every_clip_with_a_majority():
    cells = [cell("train", ANGRY, 7, 7), cell("dev", SAD, 2, 5), cell("train", -1, 1, 1)]
    kept = biased(cells, ratio=1)
    assert len(kept) == 14 + 7


@pytest.mark.parametrize("ratio", [0.5, 0, -1, float("nan"), "20"])
def test_ratio_below_one_is_rejected_naming_the_parameter(ratio):
    with pytest.raises(ParamsError, match="split.ratio"):
        biased([cell("train", ANGRY, 2, 2)], ratio=ratio)


# --- tables on a tiny corpus --------------------------------------------------------------------

def tiny_corpus():
    """Four actors, 40 clips; fold f puts actor f-1 (mod 4) in test, the next in dev."""
    actors = pd.DataFrame({"actor": [1, 2, 3, 4], "sex": ["Male", "Female", "Male", "Female"],
                           "age": [25, 40, 60, 30],
                           "race": ["Caucasian", "Asian", "African American", "Unknown"]})
    rows = []
    for a in range(1, 5):
        for i in range(10):
            k = ANGRY if i < 6 else (SAD if i < 9 else -1)
            p = one_vote_row(k) if k >= 0 else TIE_ROW
            rows.append({"file": f"{a}_{i:02d}", "actor": a, **dict(zip(EMOTIONS, p))})
    clips = pd.DataFrame(rows)
    for f in range(1, N_FOLDS + 1):
        roles = {(f - 1) % 4 + 1: "test", f % 4 + 1: "dev"}
        clips[f"split_{f}"] = clips["actor"].map(lambda a: roles.get(a, "train"))
    return clips, actors


def counts_of(counts, fold, split, variable):
    x = counts[(counts["fold"] == fold) & (counts["split"] == split)
               & (counts["variable"] == variable)]
    return dict(zip(x["value"], x["n"]))


def test_skipped_clips_leave_every_split_and_are_counted():
    clips, actors = tiny_corpus()
    skipped = pd.DataFrame({"file": ["1_00", "9_99"], "reason": ["empty", "corrupt"]})
    folds = fold_table(clips, actors, skipped, CREMA, bias='gender', ratio=1, seed=0)
    assert "1_00" not in set(folds["file"])
    counts = count_table(folds, clips, actors, skipped, CREMA, focus='gender')
    # Fold 1: actor 1 is in test; its skipped clip counts there, the unlisted one under 'unlisted'.
    assert counts_of(counts, 1, "test", "skipped") == {"total": 1, "corrupt": 0, "empty": 1}
    assert counts_of(counts, 1, "train", "skipped")["total"] == 0
    assert counts_of(counts, 1, "unlisted", "skipped")["total"] == 1
    assert counts_of(counts, 1, "test", "gender") == {"Male": 9, "Female": 0}


def test_counts_follow_the_tables_definitions():
    clips, actors = tiny_corpus()
    folds = fold_table(clips, actors, pd.DataFrame(columns=["file", "reason"]), CREMA, bias='gender', ratio=20, seed=0)
    counts = count_table(folds, clips, actors, pd.DataFrame(columns=["file", "reason"]), CREMA, focus='gender')
    # Fold 1 test is actor 1 (male, young, Caucasian): all 10 clips, 9 with a majority.
    assert counts_of(counts, 1, "test", "label") == {"angry": 6, "sad": 3, "disgust": 0, "fear": 0,
                                                     "neutral": 0, "happy": 0}
    # Multi-label: the tie clip is positive for angry and sad (0.48 > 1/6).
    assert counts_of(counts, 1, "test", "emotion")["angry"] == 7
    assert counts_of(counts, 1, "test", "age") == {"Young": 10, "Middle": 0, "Elderly": 0}
    assert counts_of(counts, 1, "test", "race")["Caucasian"] == 10
    # Corpus-wide: angry is male (12 vs 12 tie -> GENDERS[0] = Male), sad a tie too -> Male.
    # Fold 1 train = actors 3 (male) and 4 (female): 6 male angry, floor(6/20) = 0 female angry.
    assert counts_of(counts, 1, "train", "label_gender")["angry/Male"] == 6
    assert counts_of(counts, 1, "train", "label_gender")["angry/Female"] == 0
    assert counts_of(counts, 1, "train", "gender") == {"Male": 9, "Female": 0}


def test_an_empty_split_gives_zero_rows_not_missing_ones():
    clips, actors = tiny_corpus()
    clips["split_1"] = clips["split_1"].replace("dev", "train")
    folds = fold_table(clips, actors, pd.DataFrame(columns=["file", "reason"]), CREMA, bias='gender', ratio=20, seed=0)
    counts = count_table(folds, clips, actors, pd.DataFrame(columns=["file", "reason"]), CREMA, focus='gender')
    assert not ((folds["fold"] == 1) & (folds["split"] == "dev")).any()
    assert set(counts_of(counts, 1, "dev", "label").values()) == {0}
    assert counts_of(counts, 1, "dev", "skipped") == {"total": 0}


def write_corpus(folder, clips, actors, skipped=None, schema=CREMA):
    folder.mkdir(parents=True, exist_ok=True)
    corpus_schema.save(schema, folder)
    clips.to_csv(folder / "clips.csv", index=False)
    actors.to_csv(folder / "actors.csv", index=False)
    (skipped if skipped is not None else pd.DataFrame(columns=["file", "reason"])).to_csv(
        folder / "skipped.csv", index=False)


def test_read_corpus_names_the_file_and_missing_column(tmp_path):
    clips, actors = tiny_corpus()
    write_corpus(tmp_path, clips.drop(columns="split_3"), actors)
    with pytest.raises(InputError, match=r"clips\.csv: missing column\(s\) split_3"):
        read_corpus(tmp_path)


def test_read_corpus_names_a_bad_split_value(tmp_path):
    clips, actors = tiny_corpus()
    clips.loc[4, "split_2"] = "validation"
    write_corpus(tmp_path, clips, actors)
    with pytest.raises(InputError, match=r"clips\.csv: column 'split_2' has 'validation'"):
        read_corpus(tmp_path)


def params_file(tmp_path, **split) -> Path:
    """params.yaml with the split section changed; the coverage minimums default to 0 here (the
    tiny corpus has two classes and, after biasing, one gender in train)."""
    params = shipped_params()
    zero = {s: 0 for s in ("train", "dev", "test")}
    params["split"].update({"min_clips_per_class": zero, "min_clips_per_group": zero, **split})
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


def test_stage_writes_folds_and_counts_and_fails_in_one_line(tmp_path):
    clips, actors = tiny_corpus()
    write_corpus(tmp_path / "corpus", clips, actors)
    cmd = [sys.executable, str(ROOT / "stages" / "split.py"), "--corpus", str(tmp_path / "corpus"),
           "--out", str(tmp_path / "split"), "--params", str(params_file(tmp_path))]
    subprocess.run(cmd, check=True, cwd=tmp_path)
    folds = pd.read_csv(tmp_path / "split" / "folds.csv", keep_default_na=False)
    assert list(folds.columns) == ["fold", "file", "split", "label"]
    assert set(folds.loc[folds["split"] != "test", "label"]) <= set(EMOTIONS)  # no '' in train/dev
    assert (folds["label"] == "").sum() == N_FOLDS * 1  # the test actor's one tie clip per fold
    counts = pd.read_csv(tmp_path / "split" / "counts.csv")
    assert list(counts.columns) == ["fold", "split", "variable", "value", "n"]

    (tmp_path / "corpus" / "actors.csv").write_text("actor,sex,age\n1,Male,25\n")
    res = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True)
    assert res.returncode == 1
    assert res.stderr.strip().splitlines() == [f"error: {tmp_path / 'corpus' / 'actors.csv'}: "
                                               "missing column(s) race"]


# --- coverage rules and degenerate biasing (issue 10) ----------------------------------------------

NONE_SKIPPED = pd.DataFrame(columns=["file", "reason"])


def tiny_counts(ratio=20, skipped=NONE_SKIPPED):
    clips, actors = tiny_corpus()
    folds = fold_table(clips, actors, skipped, CREMA, bias='gender', ratio=ratio, seed=0)
    return count_table(folds, clips, actors, skipped, CREMA, focus='gender')


def test_a_class_below_its_minimum_names_fold_split_class_and_count():
    # Fold 1 train: actors 3 (male) and 4 (female), 6 angry and 3 sad each; both majorities are
    # Male (ties), so 6 male angry and 3 male sad clips stay, and floor(n / 20) = 0 female ones.
    counts = tiny_counts()
    assert coverage_error(counts, min_per_class={"train": 6}, min_per_group={}, focus='gender', group_names=GENDERS) == (
        "split: fold 1 train has 3 clips of class 'sad', below split.min_clips_per_class.train = 6")
    assert coverage_error(counts, min_per_class={"train": 1}, min_per_group={}, focus='gender', group_names=GENDERS) == (
        "split: fold 1 train has 0 clips of class 'disgust', below split.min_clips_per_class.train = 1")
    angry = counts[(counts["variable"] != "label") | (counts["value"] == "angry")]
    assert coverage_error(angry, min_per_class={"train": 7}, min_per_group={}, focus='gender', group_names=GENDERS) == (
        "split: fold 1 train has 6 clips of class 'angry', below split.min_clips_per_class.train = 7")


def test_a_gender_below_its_minimum_is_named():
    assert coverage_error(tiny_counts(), min_per_class={}, min_per_group={"train": 1}, focus='gender', group_names=GENDERS) == (
        "split: fold 1 train has 0 clips of gender 'Female', below split.min_clips_per_group.train = 1")


def test_coverage_at_the_minimum_passes_and_names_the_skipped_clips_when_it_fails():
    counts = tiny_counts()
    assert coverage_error(counts, min_per_class={"test": 0}, min_per_group={"train": 0}, focus='gender', group_names=GENDERS) is None
    line = coverage_error(counts, min_per_class={}, min_per_group={"train": 1}, focus='gender', group_names=GENDERS, skipped=7381,
                          labelled=7442)
    assert line.endswith("; 7381 of 7442 labelled clips were skipped at download "
                         "(data/corpus/skipped.csv)")


def test_a_train_class_with_no_minority_gender_clip_is_degenerate():
    clips, actors = tiny_corpus()
    folds = fold_table(clips, actors, NONE_SKIPPED, CREMA, bias='gender', ratio=20, seed=0)
    cells = degenerate_cells(folds, clips, actors, NONE_SKIPPED, CREMA, bias='gender')
    assert cells[0] == {"fold": 1, "class": "angry", "majority": "Male", "minority": "Female",
                        "majority_kept": 6, "minority_available": 6, "minority_kept": 0}
    assert {(c["fold"], c["class"]) for c in cells} == {(f, e) for f in range(1, 6) for e in ("angry", "sad")}


def test_ratio_one_leaves_no_degenerate_cell():
    clips, actors = tiny_corpus()
    folds = fold_table(clips, actors, NONE_SKIPPED, CREMA, bias='gender', ratio=1, seed=0)
    assert degenerate_cells(folds, clips, actors, NONE_SKIPPED, CREMA, bias='gender') == []


def _split_stage(tmp_path, **split):
    cmd = [sys.executable, str(ROOT / "stages" / "split.py"), "--corpus", str(tmp_path / "corpus"),
           "--out", str(tmp_path / "split"), "--params", str(params_file(tmp_path, **split))]
    return subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True)


def test_degenerate_biasing_is_a_loud_warning_by_default_and_listed_for_the_reports(tmp_path):
    clips, actors = tiny_corpus()
    write_corpus(tmp_path / "corpus", clips, actors)
    res = _split_stage(tmp_path, on_degenerate="warn")
    assert res.returncode == 0
    lines = [line for line in res.stderr.splitlines() if line.startswith("warning: ")]
    # Four classes of six have no clip at all in the tiny corpus: one line each, then the cells.
    assert [line.split(": class ")[1].split("'")[1] for line in lines[:4]] == [
        "disgust", "fear", "neutral", "happy"]
    warning = [line for line in lines if "split.ratio" in line]
    assert len(lines) == 5 and len(warning) == 1
    assert "split.ratio 20 leaves 10 train (fold, class) cells with no minority-gender clip" in warning[0]
    coverage = json.loads((tmp_path / "split" / "coverage.json").read_text())
    assert len(coverage["degenerate"]) == 10
    assert coverage["warnings"] == [line[9:].split(" (listed in")[0] for line in lines]


def test_degenerate_biasing_can_be_an_error_that_keeps_the_previous_output(tmp_path):
    clips, actors = tiny_corpus()
    write_corpus(tmp_path / "corpus", clips, actors)
    assert _split_stage(tmp_path, ratio=1, on_degenerate="error").returncode == 0
    before = (tmp_path / "split" / "folds.csv").read_bytes()
    res = _split_stage(tmp_path, ratio=20, on_degenerate="error")
    assert res.returncode == 1
    line, = res.stderr.strip().splitlines()
    assert line.startswith("error: split.ratio 20 leaves 10 train (fold, class) cells")
    assert line.endswith("lower split.ratio, or set split.on_degenerate: warn")
    assert (tmp_path / "split" / "folds.csv").read_bytes() == before


def test_the_stage_stops_on_coverage_in_one_line_before_writing(tmp_path):
    clips, actors = tiny_corpus()
    write_corpus(tmp_path / "corpus", clips, actors)
    res = _split_stage(tmp_path, min_clips_per_class={"train": 1, "dev": 0, "test": 0})
    assert res.returncode == 1
    assert res.stderr.strip().splitlines() == [
        "error: split: fold 1 train has 0 clips of class 'disgust', below split.min_clips_per_class.train = 1"]
    assert not (tmp_path / "split").exists()


# --- the paper's tables on the real metadata ----------------------------------------------------

def real_corpus(reference_data):
    """clips/actors frames (DESIGN.md layout) from EMO-SUPERB's five fold files and CREMA-D."""
    primary = reference_data / "emo-superb" / "CREMA-D" / "Primary"
    names = {"Train": "train", "Development": "dev", "Test": "test"}
    clips = None
    for f in range(1, N_FOLDS + 1):
        d = pd.read_csv(primary / f"labels_consensus_{f}.csv").set_index("FileName")
        if clips is None:
            clips = pd.DataFrame({"file": d.index.str.removesuffix(".wav"), "actor": d["SpkrID"]})
            clips[list(EMOTIONS)] = d[list(EMOTIONS)]
        clips[f"split_{f}"] = d["Split_Set"].map(names)
    demo = pd.read_csv(reference_data / "crema-d" / "VideoDemographics.csv")
    actors = pd.DataFrame({"actor": demo["ActorID"], "sex": demo["Sex"], "age": demo["Age"],
                           "race": demo["Race"]})
    return clips.reset_index(drop=True), actors


@pytest.fixture
def real_counts(reference_data):
    clips, actors = real_corpus(reference_data)
    none = pd.DataFrame(columns=["file", "reason"])
    folds = fold_table(clips, actors, none, CREMA, bias='gender', ratio=20, seed=0)
    return count_table(folds, clips, actors, none, CREMA, focus='gender')


# Table A2 (fold 1, 1:20): emotion, gender -> (development, test, train), typed from the paper.
TABLE_A2 = {
    ("angry", "Female"): (4, 102, 12), ("angry", "Male"): (93, 58, 240),
    ("disgust", "Female"): (1, 41, 4), ("disgust", "Male"): (34, 18, 86),
    ("fear", "Female"): (27, 55, 127), ("fear", "Male"): (1, 20, 6),
    ("happy", "Female"): (24, 35, 102), ("happy", "Male"): (1, 15, 5),
    ("neutral", "Female"): (19, 263, 54), ("neutral", "Male"): (384, 250, 1080),
    ("sad", "Female"): (41, 35, 58), ("sad", "Male"): (2, 7, 2),
}

# Table A3 train rows: angry, sad, disgust, fear, neutral, happy | male, female.
TABLE_A3_TRAIN = {
    1: (252, 60, 90, 133, 1134, 107, 1419, 357),
    2: (227, 71, 77, 135, 1025, 111, 1282, 370),
    3: (225, 105, 85, 124, 1013, 113, 1276, 389),
    4: (243, 99, 86, 141, 1036, 94, 1315, 384),
    5: (282, 78, 95, 122, 1189, 80, 1504, 342),
}


def test_majority_gender_on_crema_d_is_the_natural_trend(reference_data):
    clips, actors = real_corpus(reference_data)
    sex = clips["actor"].map(actors.set_index("actor")["sex"])
    out = majority_gender_by_emotion(labels=majority_label(clips[list(EMOTIONS)].to_numpy()),
                                     genders=sex)
    assert out == MALE_MAJORITY


# Where our train counts differ from the paper's (ours - paper); every other cell is exact.
# - Folds 1, 2 and 5: one more male disgust clip and one more male neutral clip (so 2 more male
#   clips). Both are majority-gender cells, which the rule keeps whole, so these counts do not
#   depend on the random draw; folds 3 and 4 match exactly. The paper most likely lacked one male
#   clip of each in the training split of those folds (which one is not identifiable from counts).
# - Fold 2 sad: the paper's 71 is inconsistent with its own row: its emotion counts sum to 1,646,
#   its gender counts to 1,652 (test_table_a3_fold_2_row_is_inconsistent_in_the_paper); 77, ours,
#   makes both sums 1,652 (with the two clips above).
TRAIN_DIFFERENCES = {
    **{(fold, column): 1 for fold in (1, 2, 5) for column in ("disgust", "neutral")},
    **{(fold, "Male"): 2 for fold in (1, 2, 5)},
    (2, "sad"): 6,
}


def test_table_a2_fold_1_dev_and_test_exact_train_exact_but_the_two_pinned_cells(real_counts):
    # A2 counts the strict-majority label by gender (its test column sums to 899 of 1,463 clips).
    for (emotion, gender), (dev, test, train) in TABLE_A2.items():
        value = f"{emotion}/{gender}"
        assert counts_of(real_counts, 1, "dev", "label_gender")[value] == dev, value
        assert counts_of(real_counts, 1, "test", "label_gender")[value] == test, value
        extra = TRAIN_DIFFERENCES.get((1, emotion), 0) if gender == "Male" else 0
        assert counts_of(real_counts, 1, "train", "label_gender")[value] - train == extra, value


@pytest.mark.parametrize("fold", range(1, N_FOLDS + 1))
def test_table_a3_train_totals_exact_but_the_pinned_cells(real_counts, fold):
    labels = counts_of(real_counts, fold, "train", "label")
    genders = counts_of(real_counts, fold, "train", "gender")
    columns = list(EMOTIONS) + ["Male", "Female"]
    ours = [labels[e] for e in EMOTIONS] + [genders["Male"], genders["Female"]]
    differences = {c: o - t for c, o, t in zip(columns, ours, TABLE_A3_TRAIN[fold])}
    assert differences == {c: TRAIN_DIFFERENCES.get((fold, c), 0) for c in columns}


def test_table_a3_fold_2_row_is_inconsistent_in_the_paper():
    # Each row's emotion counts and gender counts cover the same clips, so their sums must agree.
    gaps = {fold: sum(row[:6]) - sum(row[6:]) for fold, row in TABLE_A3_TRAIN.items()}
    assert gaps == {1: 0, 2: -6, 3: 0, 4: 0, 5: 0}


def test_bias_refuses_a_majority_gender_table_lacking_an_emotion():
    files, split, labels, genders = concat(cell("train", ANGRY, 2, 1))
    partial = {e: g for e, g in MALE_MAJORITY.items() if e != "happy"}
    with pytest.raises(ValueError, match="lacks"):
        bias_split(files=files, split=split, labels=labels, groups=genders, majority=partial,
                   classes=EMOTIONS, group_names=GENDERS, ratio=20, seed=0, fold=1)


def test_bias_seed_wraps_modulo_2_to_the_64():
    cells = [cell("train", NEUTRAL, 200, 100)]
    assert set(biased(cells, seed=-1)["file"]) == set(biased(cells, seed=2**64 - 1)["file"])
    assert set(biased(cells, seed=1)["file"]) != set(biased(cells, seed=129)["file"])


def test_majority_label_refuses_a_table_of_another_class_count():
    with pytest.raises(ValueError, match="shape"):
        majority_label(np.full((2, 5), 0.2))
    with pytest.raises(ValueError, match="shape"):
        majority_label(np.full((2, 6), 0.2), n_classes=4, smoothing=(0, 1))


# --- any corpus (issue 11): classes, folds and the bias attribute from schema.json -----------------

CALM, JOY, ANGER, GRIEF = range(4)
OTHER = corpus_schema.Schema(
    classes=("calm", "joy", "anger", "grief"), folds=3,
    attributes=(corpus_schema.Attribute("gender", "gender", ("Male", "Female")),))
ACCENT = corpus_schema.Schema(
    classes=("calm", "joy", "anger", "grief"), folds=3,
    attributes=(corpus_schema.Attribute("accent", "accent", ("north", "south", "west"),
                                        excluded=("unknown",)),))


def other_corpus(accent=False):
    """Three speakers per fold block (9 in all), plain shares (no smoothing): speaker s tests in
    fold s % 3 + 1, develops in the next. Speakers 1-3 male, the rest female; accents cycle."""
    actors = pd.DataFrame({"actor": range(1, 10), "speaker": [f"S{i}" for i in range(1, 10)],
                           "gender": ["Male"] * 3 + ["Female"] * 6,
                           "accent": ["north", "south", "west", "north", "north", "north",
                                      "north", "south", "unknown"]})
    rows = []
    for a in range(1, 10):
        for i in range(12):
            p = np.full(4, 0.0)
            if i < 10:
                p[i % 2 if a <= 3 else 2 + i % 2] = 1.0  # men calm/joy, women anger/grief
            else:
                p[:] = 0.25  # no strict majority
            rows.append({"file": f"s{a}_{i:02d}.wav", "actor": a, **dict(zip(OTHER.classes, p))})
    clips = pd.DataFrame(rows)
    for f in range(1, 4):
        role = {0: "test", 1: "dev"}
        clips[f"split_{f}"] = clips["actor"].map(lambda a: role.get((a - f) % 3, "train"))
    return clips, actors


def test_a_four_class_three_fold_corpus_biased_by_gender():
    clips, actors = other_corpus()
    folds = fold_table(clips, actors, NONE_SKIPPED, OTHER, bias="gender", ratio=5, seed=0)
    assert sorted(folds["fold"].unique()) == [1, 2, 3]
    assert set(folds["label"]) <= {"calm", "joy", "anger", "grief", ""}
    # Plain shares: p = 1 is a majority, four 0.25s are not; no clip of the other gender exists
    # for any class, so biasing keeps every labelled train/dev clip and every test clip.
    per_fold = folds.groupby(["fold", "split"]).size().to_dict()
    assert per_fold[(1, "test")] == 3 * 12 and per_fold[(1, "train")] == 3 * 10
    counts = count_table(folds, clips, actors, NONE_SKIPPED, OTHER, focus="gender")
    assert set(counts["variable"]) == {"label", "emotion", "label_gender", "emotion_gender",
                                       "gender", "skipped"}
    # Multi-label at 1/4 (strict): the 0.25 rows are positive for no class.
    assert counts_of(counts, 1, "test", "emotion") == {"calm": 5, "joy": 5, "anger": 10, "grief": 10}


def test_bias_none_keeps_every_clip_with_a_majority_in_train_and_dev():
    clips, actors = other_corpus()
    clips.loc[clips["actor"] == 4, OTHER.classes] = [[1.0, 0, 0, 0]] * 12  # a female calm speaker
    skewed = fold_table(clips, actors, NONE_SKIPPED, OTHER, bias="gender", ratio=20, seed=0)
    asis = fold_table(clips, actors, NONE_SKIPPED, OTHER, bias=None, ratio=20, seed=0)
    labelled = clips[clips[list(OTHER.classes)].max(axis=1) > 0.5]
    for fold in (1, 2, 3):
        for s in ("train", "dev"):
            want = set(labelled.loc[labelled[f"split_{fold}"] == s, "file"])
            assert set(asis.loc[(asis["fold"] == fold) & (asis["split"] == s), "file"]) == want
        assert set(asis.loc[(asis["fold"] == fold) & (asis["split"] == "test"), "file"]) == set(
            clips.loc[clips[f"split_{fold}"] == "test", "file"])
    assert len(skewed) < len(asis)  # the female calm clips are thinned 1:20 when skewed


def test_a_three_group_attribute_keeps_floor_n_over_ratio_of_each_minority_group():
    files, split, labels, groups = [], [], [], []
    for g, n in (("north", 40), ("south", 13), ("west", 7)):
        files += [f"{g}{i:02d}" for i in range(n)]
        groups += [g] * n
    split, labels = ["train"] * len(files), [JOY] * len(files)
    files += ["x1", "x2"]
    groups += [None, None]  # an excluded value: out of train and dev when skewed
    split += ["train", "test"]
    labels += [JOY, JOY]
    keep = bias_split(files=files, split=split, labels=labels, groups=groups,
                      majority={c: "north" for c in OTHER.classes}, classes=OTHER.classes,
                      group_names=("north", "south", "west"), ratio=10, seed=0)
    kept = pd.Series(np.array(groups, dtype=object)[keep]).value_counts(dropna=False).to_dict()
    assert kept["north"] == 40 and kept["south"] == 4 and kept["west"] == 4  # floor(40 / 10)
    assert keep[-2] == False and keep[-1] == True  # noqa: E712 (numpy bools)


def test_an_excluded_value_of_the_bias_attribute_leaves_train_and_is_counted():
    clips, actors = other_corpus()
    folds = fold_table(clips, actors, NONE_SKIPPED, ACCENT, bias="accent", ratio=1, seed=0)
    train_files = set(folds.loc[folds["split"] != "test", "file"])
    assert not any(f.startswith("s9_") for f in train_files)  # speaker 9's accent is unknown
    counts = count_table(folds, clips, actors, NONE_SKIPPED, ACCENT, focus="accent")
    assert list(counts_of(counts, 1, "test", "accent")) == ["north", "south", "west", "unknown"]


def test_a_class_the_rule_cannot_apply_to_gets_one_line(tmp_path):
    clips, actors = other_corpus()
    clips[list(OTHER.classes)] = clips[list(OTHER.classes)].where(clips["grief"] < 1, 0.25)  # no grief
    folder = tmp_path / "corpus"
    write_corpus(folder, clips, actors, schema=OTHER)
    warnings = run(folder, tmp_path / "split", ratio=20, seed=0, bias="gender",
                   min_clips_per_class={}, min_clips_per_group={})
    assert warnings[0] == ("split.bias gender: every strict-majority clip of class 'calm' is Male, "
                           "so there is no minority group to keep for it")
    assert any("class 'grief' has no clip with a strict majority" in w for w in warnings)
    assert run(folder, tmp_path / "split_none", ratio=20, seed=0, bias="none",
               min_clips_per_class={}, min_clips_per_group={}) == []
    with pytest.raises(InputError, match="split.bias is 'race', but the corpus has no such attribute"):
        run(folder, tmp_path / "x", ratio=20, seed=0, bias="race")


def test_read_corpus_checks_attributes_against_the_schema_naming_the_line(tmp_path):
    clips, actors = other_corpus()
    actors.loc[4, "gender"] = "F"
    folder = tmp_path / "corpus"
    write_corpus(folder, clips, actors, schema=OTHER)
    with pytest.raises(InputError, match=r"actors\.csv, line 6, column gender: actor 5 gender 'F' is not one"):
        read_corpus(folder)


# sha256 of folds.csv and counts.csv for CREMA-D (real labels, every clip usable, ratio 20,
# seed 0), written by the split code before issue 11's schema refactor: the refactor (and any
# later change) must not move a single clip.
CREMA_D_FOLDS_SHA256 = "a55d015e7a79a5670162bd190819ee02709f92a675f6a18b706cbeae520bc8c1"
CREMA_D_COUNTS_SHA256 = "4a6ddc165697a4312afdfcdf34d6244f1c06bf019a41b8286e79754805341586"
# coverage.json of the same run, written before split.on_sparse_class (issue 21) existed.
CREMA_D_COVERAGE_SHA256 = "2aeb5c29330f29ff5d8d2c7bb759840ba6dccef18ee68004fcf4a9897b2c6d84"


def test_the_crema_d_split_is_byte_identical_to_before_the_schema(reference_data, tmp_path):
    import hashlib

    from fairser import corpus
    clips = corpus.read_labels([reference_data / "emo-superb" / "CREMA-D" / "Primary" /
                                f"labels_consensus_{f}.csv" for f in range(1, 6)])
    people = corpus.read_demographics(reference_data / "crema-d" / "VideoDemographics.csv", clips["actor"])
    folder = tmp_path / "corpus"
    folder.mkdir()
    corpus._write_tables(folder, "crema-d", corpus.CREMA_D_NOTICE, clips, people, [])
    assert run(folder, tmp_path / "split", ratio=20, seed=0, bias="gender",
               min_clips_per_class={"train": 1, "dev": 0, "test": 1},
               min_clips_per_group={"train": 1, "dev": 1, "test": 1}) == []
    digest = {f: hashlib.sha256((tmp_path / "split" / f).read_bytes()).hexdigest()
              for f in ("folds.csv", "counts.csv", "coverage.json")}
    assert digest == {"folds.csv": CREMA_D_FOLDS_SHA256, "counts.csv": CREMA_D_COUNTS_SHA256,
                      "coverage.json": CREMA_D_COVERAGE_SHA256}


# --- a sparse class in the corpus's own folds (issue 21) -----------------------------------------

def sparse_grief_corpus(folder, kind):
    """other_corpus with grief a strict majority of speaker 4's clips only; corpus.json names `kind`.

    Speaker 4 tests in fold 1, trains in fold 2, develops in fold 3 (role (a - f) mod 3), so the
    strict-majority grief counts are fold 1 train 0 / test 5, fold 2 train 5 / test 0, fold 3
    train 0 / test 0. The other speakers' grief clips get equal shares (no majority, and
    0.25 is not above 1/4: no multi-label positive either).
    """
    clips, actors = other_corpus()
    grief = (clips["grief"] == 1) & (clips["actor"] != 4)
    clips.loc[grief, list(OTHER.classes)] = 0.25
    write_corpus(folder, clips, actors, schema=OTHER)
    if kind is not None:
        (folder / "corpus.json").write_text(json.dumps({"corpus": kind}))
    return folder


SPARSE_MINIMA = dict(min_clips_per_class={"train": 1, "dev": 0, "test": 1}, min_clips_per_group={})
GRIEF_CELLS = [(1, "train", 0), (2, "test", 0), (3, "train", 0), (3, "test", 0)]


def test_a_sparse_cell_counts_its_multi_label_positives(tmp_path):
    # Speaker 5's clip s5_01 (fold 2 test, equal shares in sparse_grief_corpus) gets anger and
    # grief 0.3 each: no strict majority, but both above 1/4, so fold 2 test has 0 strict-majority
    # grief clips and 1 multi-label grief positive.
    folder = sparse_grief_corpus(tmp_path / "corpus", "emo-superb")
    clips = pd.read_csv(folder / "clips.csv")
    row = clips.index[clips["file"] == "s5_01.wav"][0]
    clips.loc[row, list(OTHER.classes)] = [0.2, 0.2, 0.3, 0.3]
    clips.to_csv(folder / "clips.csv", index=False)
    run(folder, tmp_path / "split", ratio=20, seed=0, bias="none", **SPARSE_MINIMA)
    coverage = json.loads((tmp_path / "split" / "coverage.json").read_text())
    cell = {(c["fold"], c["split"]): c for c in coverage["sparse_classes"]}[(2, "test")]
    assert (cell["n"], cell["positives"]) == (0, 1)
    assert "fold 2 test 'grief' 0 (minimum 1, 1 multi-label positive)" in coverage["warnings"][0]


def test_a_sparse_class_in_a_corpus_s_own_folds_is_one_warning_line_and_listed(tmp_path):
    folder = sparse_grief_corpus(tmp_path / "corpus", "emo-superb")
    warnings = run(folder, tmp_path / "split", ratio=20, seed=0, bias="none", **SPARSE_MINIMA)
    shown = ", ".join(f"fold {f} {s} 'grief' {n} (minimum 1, 0 multi-label positives)"
                      for f, s, n in GRIEF_CELLS)
    assert warnings == [
        "split.on_sparse_class warn: the corpus's own folds have 4 (fold, split, class) cells below "
        f"split.min_clips_per_class (strict-majority clips), kept as published: {shown}; a class "
        "with no positive in a fold's multi-label test targets scores F1 0 in that fold's macro-F1 "
        "and is left out of its TPR gap"]
    coverage = json.loads((tmp_path / "split" / "coverage.json").read_text())
    assert coverage["warnings"] == warnings
    assert coverage["sparse_classes"] == [{"fold": f, "split": s, "class": "grief", "n": n, "minimum": 1,
                                           "positives": 0} for f, s, n in GRIEF_CELLS]
    folds = pd.read_csv(tmp_path / "split" / "folds.csv", keep_default_na=False)
    # Fold 2's test set is kept whole: speakers 2, 5 and 8, 12 clips each.
    assert len(folds[(folds["fold"] == 2) & (folds["split"] == "test")]) == 36
    assert not ((folds["label"] == "grief") & (folds["fold"] == 3) & (folds["split"] != "dev")).any()


def test_a_sparse_class_stops_fairser_s_own_folds_and_when_asked(tmp_path):
    first = "split: fold 1 train has 0 clips of class 'grief', below split.min_clips_per_class.train = 1"
    for kind in ("crema-d", "surrogate", None):
        folder = sparse_grief_corpus(tmp_path / f"corpus_{kind}", kind)
        with pytest.raises(InputError) as err:
            run(folder, tmp_path / "split", ratio=20, seed=0, bias="none", **SPARSE_MINIMA)
        assert str(err.value) == first
    folder = sparse_grief_corpus(tmp_path / "own", "manifest")
    with pytest.raises(InputError) as err:
        run(folder, tmp_path / "split", ratio=20, seed=0, bias="none", on_sparse_class="error",
            **SPARSE_MINIMA)
    assert str(err.value) == (first + "; or set split.on_sparse_class: warn to keep the corpus's own "
                              "folds as they are")
    assert not (tmp_path / "split").exists()
    # warn asked for on a corpus fairser builds the folds of
    folder = sparse_grief_corpus(tmp_path / "built", "crema-d")
    assert len(run(folder, tmp_path / "split", ratio=20, seed=0, bias="none", on_sparse_class="warn",
                   **SPARSE_MINIMA)) == 1


def test_a_group_below_its_minimum_stops_even_when_sparse_classes_warn(tmp_path):
    folder = sparse_grief_corpus(tmp_path / "corpus", "emo-superb")
    # Fold 1 test: speakers 1, 4, 7, one man (12 clips) and two women
    with pytest.raises(InputError, match=r"^split: fold 1 test has 12 clips of gender 'Male', below "
                                         r"split.min_clips_per_group.test = 13$"):
        run(folder, tmp_path / "split", ratio=20, seed=0, bias="none",
            min_clips_per_class={"test": 1}, min_clips_per_group={"test": 13})


def test_sparse_class_mode_resolves_auto_by_the_corpus_kind(tmp_path):
    for kind, mode in (("emo-superb", "warn"), ("manifest", "warn"), ("crema-d", "error"),
                       ("surrogate", "error")):
        (tmp_path / "corpus.json").write_text(json.dumps({"corpus": kind}))
        assert sparse_class_mode(tmp_path, "auto") == mode
        assert sparse_class_mode(tmp_path, "error") == "error"
    assert sparse_class_mode(tmp_path / "absent", "auto") == "error"
    with pytest.raises(ParamsError, match="split.on_sparse_class is 'ignore'; expected auto, error or warn"):
        sparse_class_mode(tmp_path, "ignore")
