"""EMO-SUPERB label folders as published (fairser.corpus.read_emo_superb, speaker_units).

The fixtures in tests/fixtures/emo_superb/ are rows of the published files, byte for byte
(SOURCES.md there; the two podcast label files are constructed, as it says).
"""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from fairser import config, corpus, provenance
from fairser.constants import SAMPLE_RATE
from conftest import reference_data_or_skip
from fairser.errors import InputError
from helpers import tone

FIXTURES = Path(__file__).parent / "fixtures" / "emo_superb"
# folder -> (clips, folds, speakers, rule) of the fixture. CREMA-D has none: its published files are
# the reference data's (FAIRSER_REFERENCE_DATA), read whole by the FULL test below.
PUBLISHED = {
    "iemocap": (86, 5, 10, "spkrid_gender"),
    "msp_improv_primary": (55, 6, 12, "spkrid_gender"),
    "msp_improv_secondary": (55, 6, 12, "spkrid_gender"),
    "nthu_nnime": (141, 5, 43, "spkrid"),
    "msp_podcast_primary": (12, 1, 6, "spkrid"),
    "biic_podcast_primary": (12, 1, 6, "spkrid"),
}
# The full published files: EMO-SUPERB path -> (clips, speakers, rule)
FULL = {
    "IEMOCAP/Secondary": (10039, 10, "spkrid_gender"),
    "IMPROV/Primary": (8385, 12, "spkrid_gender"),
    "NNIME/Secondary": (5028, 43, "spkrid"),
    "CREMA-D/Primary": (7442, 91, "spkrid"),
}


def _folder(name: str) -> Path:
    return FIXTURES / name


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_every_fixture_imports_with_its_own_classes_and_speakers(name):
    n_clips, n_folds, n_speakers, rule = PUBLISHED[name]
    source = corpus.read_emo_superb(_folder(name))
    emo_type = json.loads((_folder(name) / "config.json").read_text())["categorical"]["emo_type"]
    assert source["classes"] == tuple(emo_type)
    assert len(source["sources"]) == n_clips and source["n_folds"] == n_folds
    assert source["speaker_rule"]["rule"] == rule
    known = {s for s in source["speakers"] if not s.startswith("unknown:")}
    assert len(known) == source["speaker_rule"]["speakers"] == n_speakers
    assert np.allclose(np.sum(source["labels"], axis=1), 1.0, atol=1e-3)
    # the published folds are speaker independent under the rule (build_user's check)
    corpus._check_folds(source["splits"], source["speakers"], source["where"], source["n_folds"])


def test_nnime_unnamed_first_column_holds_the_file_names():
    path = _folder("nthu_nnime") / "labels_consensus_1.csv"
    assert path.read_bytes().startswith(b",angry,")  # the published header: first cell empty
    source = corpus.read_emo_superb(_folder("nthu_nnime"))
    first_row = path.read_text().splitlines()[1].split(",")
    assert source["sources"][0] == first_row[0] and first_row[0].endswith(".wav")


def test_dimensional_columns_are_not_classes():
    source = corpus.read_emo_superb(_folder("iemocap"))
    assert not {"EmoAct", "EmoVal", "EmoDom"} & set(source["classes"])
    header = (_folder("iemocap") / "labels_consensus_1.csv").read_text().splitlines()[0]
    assert "EmoAct,EmoVal,EmoDom" in header


def test_iemocap_session_and_gender_agree_with_the_file_names():
    """Ses01F_impro04_M016.wav: session 01, male speaker. SpkrID x Gender must be exactly the
    partition the file names give, which the regex rule reads."""
    folder = _folder("iemocap")
    by_gender = corpus.read_emo_superb(folder)["speakers"]
    by_name = corpus.read_emo_superb(folder, speaker_rule=r"regex:^Ses(\d+)[FM]_.*_([FM])\d+\.wav$")
    assert by_name["speaker_rule"]["speakers"] == 10
    pairs = set(zip(by_gender, by_name["speakers"]))
    assert len(pairs) == 10  # one-to-one
    assert all(g.split("_")[1][0] == n.split("_")[1] for g, n in pairs)  # Male <-> M, Female <-> F


def _units(spkr, gender, rule="auto", files=None):
    files = files or [f"c{i}.wav" for i in range(len(spkr))]
    return corpus.speaker_units(pd.Series(files), pd.Series(spkr), pd.Series(gender), rule,
                                lambda i: f"labels.csv, line {i + 2}")


def test_spkrid_spellings_with_leading_zeros_or_spaces_are_one_speaker():
    speakers, rule = _units(["01", "1", " 1", "2"], ["Male", "Male", "Male", "Female"])
    assert speakers.tolist() == ["1", "1", "1", "2"] and rule["speakers"] == 2


def test_auto_rule_splits_sessions_holding_two_genders():
    speakers, rule = _units(["01", "01", "02", "02", "02"], ["Male", "Female", "Female", "Male", "Male"])
    assert speakers.tolist() == ["1_Male", "1_Female", "2_Female", "2_Male", "2_Male"]
    assert rule["rule"] == "spkrid_gender" and rule["speakers"] == 4
    assert rule["description"] == ("speakers = SpkrID x Gender (SpkrID is a session of more than one "
                                   "speaker) = 4")


def test_auto_rule_refuses_a_corpus_where_only_some_ids_hold_two_genders():
    with pytest.raises(InputError, match=r"^labels.csv, line 4: speaker 7 has gender 'Female' here and "
                                         r"'Male' at labels.csv, line 3; .*speaker_rule: spkrid_gender$"):
        _units(["5", "7", "7"], ["Male", "Male", "Female"])
    speakers, _ = _units(["5", "7", "7"], ["Male", "Male", "Female"], rule="spkrid_gender")
    assert speakers.tolist() == ["5_Male", "7_Male", "7_Female"]


def test_regex_rule_names_the_first_file_that_does_not_match():
    with pytest.raises(InputError, match=r"^labels.csv, line 3: FileName 'x.wav' does not match "
                                         r"corpus.speaker_rule 'regex:\^s\(\\d\+\)_' \(1 rows do not\)$"):
        _units(["1", "1"], ["Male", "Male"], rule=r"regex:^s(\d+)_", files=["s01_a.wav", "x.wav"])
    speakers, rule = _units(["9", "9"], ["Male", "Male"], rule=r"regex:^s(\d+)_", files=["s01_a.wav", "s1_b.wav"])
    assert speakers.tolist() == ["1", "1"] and rule["speakers"] == 1


def test_unknown_speakers_are_each_their_own_unit_and_counted():
    speakers, rule = _units(["Unknown", "unknown ", "3", "3", ""], ["Male", "Unknown", "Male", "Male", "Female"],
                            files=["a.wav", "b.wav", "c.wav", "d.wav", "e.wav"])
    assert speakers.tolist() == ["unknown:a.wav", "unknown:b.wav", "3", "3", "unknown:e.wav"]
    assert rule["speakers"] == 1 and rule["unknown_clips"] == 3
    assert "3 clips with SpkrID Unknown are each a speaker unit of their own (4 units)" in rule["description"]


def test_config_accepts_speaker_rules_and_rejects_a_bad_regex():
    check = config.SCHEMA["corpus.speaker_rule"].check
    assert all(check(r) for r in ("auto", "spkrid", "spkrid_gender", r"regex:^(\d+)_"))
    assert not any(check(r) for r in ("session", "regex:", "regex:(", None))


def _build(tmp_path: Path, name: str | Path, **settings) -> Path:
    """corpus.build on a fixture folder (its name, or a label folder's path), with a short tone
    for each of its clips."""
    folder = _folder(name) if isinstance(name, str) else name
    audio = tmp_path / "audio"
    audio.mkdir()
    for k, file in enumerate(corpus.read_emo_superb(folder)["sources"]):
        sf.write(audio / file, tone(0.3, 120 + 7 * k, seed=k), SAMPLE_RATE, subtype="PCM_16")
    return corpus.build(tmp_path / "corpus", {"seed": 0, "corpus": {
        "name": "emo-superb", "labels_dir": str(folder), "audio_dir": str(audio), **settings}})


def test_podcast_unknown_speakers_reach_actors_and_the_report_line(tmp_path):
    out = _build(tmp_path, "msp_podcast_primary")
    actors = pd.read_csv(out / "actors.csv", dtype=str, keep_default_na=False)
    assert len(actors) == 6 + 5  # six numbered speakers ("127" and "0127" are one), five unknown clips
    assert sorted(actors["speaker"][actors["speaker"].str.startswith("unknown:")]) == [
        "unknown:MSP-PODCAST_0002_0014.wav", "unknown:MSP-PODCAST_0002_0015.wav",
        "unknown:MSP-PODCAST_0003_0016.wav", "unknown:MSP-PODCAST_0003_0017.wav",
        "unknown:MSP-PODCAST_0003_0018.wav"]
    # Gender `Unknown` is no group: an excluded (empty) value
    schema = json.loads((out / "schema.json").read_text())
    assert schema["attributes"] == [{"name": "gender", "column": "gender", "groups": ["Male", "Female"],
                                     "excluded": [""]}]
    info = json.loads((out / "corpus.json").read_text())
    assert info["speaker_rule"] == schema["speaker_rule"]
    assert info["speaker_rule"]["unknown_clips"] == 5
    assert provenance.coverage(info) == (
        "emo-superb: all 11 actors, 12 clips (speakers = SpkrID = 6; 5 clips with SpkrID Unknown are "
        "each a speaker unit of their own (11 units))")


def test_iemocap_fixture_builds_ten_speakers_with_the_rule_recorded(tmp_path):
    out = _build(tmp_path, "iemocap")
    actors = pd.read_csv(out / "actors.csv", dtype=str)
    assert len(actors) == 10
    assert sorted(actors["gender"].value_counts().items()) == [("Female", 5), ("Male", 5)]
    schema = json.loads((out / "schema.json").read_text())
    assert schema["classes"] == json.loads((_folder("iemocap") / "config.json").read_text())[
        "categorical"]["emo_type"]
    assert schema["speaker_rule"]["rule"] == "spkrid_gender" and schema["speaker_rule"]["speakers"] == 10
    assert "SpkrID x Gender" in provenance.coverage(json.loads((out / "corpus.json").read_text()))


def test_explicit_spkrid_rule_on_sessions_is_the_old_one_line_error(tmp_path):
    with pytest.raises(InputError, match=r"labels_consensus_1\.csv, line \d+: speaker 1 has gender"):
        _build(tmp_path, "iemocap", speaker_rule="spkrid")


@pytest.mark.parametrize("path", sorted(FULL))
def test_full_published_label_sets_give_the_known_speaker_counts(path):
    folder = reference_data_or_skip([f"emo-superb/{path}/labels_consensus_1.csv"]) / "emo-superb" / path
    n_clips, n_speakers, rule = FULL[path]
    source = corpus.read_emo_superb(folder)
    assert source["classes"] == tuple(json.loads((folder / "config.json").read_text())["categorical"]["emo_type"])
    assert len(source["sources"]) == n_clips
    assert source["speaker_rule"]["rule"] == rule and source["speaker_rule"]["speakers"] == n_speakers
    assert len(set(source["speakers"])) == n_speakers
    corpus._check_folds(source["splits"], source["speakers"], source["where"], source["n_folds"])


def test_schema_json_keeps_the_speaker_rule_through_load(tmp_path):
    from fairser import schema as corpus_schema

    rule = {"rule": "spkrid_gender", "speakers": 10, "unknown_clips": 0,
            "description": "speakers = SpkrID x Gender (SpkrID is a session of more than one speaker) = 10"}
    s = corpus_schema.Schema(classes=("a", "b"), folds=5, speaker_rule=rule)
    corpus_schema.save(s, tmp_path)
    assert corpus_schema.load(tmp_path).speaker_rule == rule
    assert "speaker_rule" not in corpus_schema.Schema(classes=("a", "b"), folds=5).to_dict()


def test_fold_files_may_spell_a_speaker_id_differently(tmp_path):
    """'01' in one fold file and '1' in another are one speaker, not a mismatch."""
    for f in (FIXTURES / "iemocap").iterdir():
        (tmp_path / f.name).write_bytes(f.read_bytes())
    second = tmp_path / "labels_consensus_2.csv"
    second.write_text(second.read_text().replace(",01,", ",1,"))
    assert ",1,Male" in second.read_text()
    source = corpus.read_emo_superb(tmp_path)
    assert source["speaker_rule"]["speakers"] == 10
    second.write_text(second.read_text().replace(",1,Male,", ",2,Male,", 1))
    with pytest.raises(InputError, match=r"labels_consensus_2\.csv, line \d+: .* differs from "
                                         r"labels_consensus_1\.csv, line \d+ \(labels, SpkrID or Gender\)"):
        corpus.read_emo_superb(tmp_path)


# --- train/dev overlap (issue 21 item 5) ---------------------------------------------------------

def test_train_dev_overlap_counts_speakers_per_fold():
    # fold 1: a in train and dev, b train only, c dev only -> 1; fold 2: a and b both -> 2
    splits = [["train", "dev"], ["dev", "train"], ["train", "dev"], ["train", "train"],
              ["dev", "dev"], ["test", "test"]]
    speakers = ["a", "a", "b", "b", "c", "d"]
    assert corpus.train_dev_overlap(splits, speakers, 2) == [1, 1 + 1]
    assert corpus.train_dev_overlap([["train"], ["train"]], ["a", "a"], 1) == [0]


def _podcast_copy(tmp_path: Path, *edits: tuple[str, str]) -> Path:
    """The MSP-Podcast fixture with each (old, new) text edit applied once to its label file."""
    folder = tmp_path / "labels"
    folder.mkdir()
    for f in _folder("msp_podcast_primary").iterdir():
        (folder / f.name).write_bytes(f.read_bytes())
    labels = folder / "labels_consensus_1.csv"
    text = labels.read_text()
    for old, new in edits:
        assert text.count(old) == 1
        text = text.replace(old, new)
    labels.write_text(text)
    return folder


def test_speakers_in_train_and_dev_are_counted_in_corpus_json_and_its_coverage_line(tmp_path):
    # Speaker 77's Development clip becomes speaker 127's (whose two Train clips are spelled 127
    # and 0127: one speaker); speaker 512's Development clip becomes 1048's (one Train clip).
    # Unknown speakers in Train (0014) and Development (0016) are units of one clip: not counted.
    folder = _podcast_copy(tmp_path, (",77,Female,Development", ",127,Female,Development"),
                           (",512,Female,Development", ",1048,Male,Development"))
    info = json.loads((_build(tmp_path, folder) / "corpus.json").read_text())
    assert info["train_dev_overlap"] == [2]
    assert info["coverage"] == ("12 of 12 labelled clips usable, 0 skipped; "
                                "speakers in both train and dev per fold: 2")


def test_the_published_fixtures_record_no_overlap_and_test_leakage_stays_an_error(tmp_path):
    info = json.loads((_build(tmp_path, "msp_podcast_primary") / "corpus.json").read_text())
    assert info["train_dev_overlap"] == [0]
    assert info["coverage"].endswith("; speakers in both train and dev per fold: 0")
    folder = _podcast_copy(tmp_path, (",30,Male,Test", ",1048,Male,Test"))
    with pytest.raises(InputError, match=r"labels_consensus_1\.csv, line \d+: speaker 1048 is in fold 1's "
                                         r"test set and in its train set"):
        corpus.build(tmp_path / "corpus2", {"seed": 0, "corpus": {
            "name": "emo-superb", "labels_dir": str(folder), "audio_dir": str(tmp_path / "audio")}})
