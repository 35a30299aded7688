"""The user-corpus importers on bad or oddly spelt input: declared or checked classes, speaker ids
and attribute values through fairser.values, and one line (never a traceback) for empty,
header-only and non-UTF-8 files."""

import importlib.util
import json
from pathlib import Path

import pandas as pd
import pytest
import soundfile as sf

from fairser import config, corpus, schema
from fairser.constants import SAMPLE_RATE
from fairser.errors import InputError, ParamsError
from helpers import shipped_params, tone

ROOT = Path(__file__).resolve().parents[1]
USER = {"speakers": None, "renormalise": False, "bins": {}}

# Speakers `01` and `1` are one; Woman/F and man/M are one gender each.
GOOD = ("path,speaker,label,split,gender\n"
        "a.wav,01,joy,test,Woman\n"
        "b.wav,1,calm,test,F\n"
        "c.wav,2,joy,train,man\n"
        "d.wav,2,calm,train,M\n")


def _manifest(tmp_path, text, suffix="csv", files=("a.wav", "b.wav", "c.wav", "d.wav"), **params):
    audio = tmp_path / "audio"
    audio.mkdir(parents=True, exist_ok=True)
    for n in files:
        sf.write(audio / n, tone(0.5, 150), SAMPLE_RATE, subtype="PCM_16")
    path = tmp_path / f"m.{suffix}"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return dict(USER, name="manifest", manifest=str(path), audio_dir=str(audio), **params)


def _jsonl(rows) -> str:
    return "".join(json.dumps(r) + "\n" for r in rows)


def _build(tmp_path, params, out="corpus"):
    return corpus.build(tmp_path / out, {"corpus": params, "seed": 0})


def _fails(tmp_path, params, pattern, out="corpus"):
    """The build stops with one line matching `pattern` and writes nothing."""
    with pytest.raises(InputError, match=pattern) as err:
        _build(tmp_path, params, out)
    assert "\n" not in str(err.value)
    assert not (tmp_path / out).exists()
    return str(err.value)


# --- classes: declared or checked ------------------------------------------------------------------

def test_a_class_spelt_with_another_case_is_an_error_naming_both_spellings_and_their_lines(tmp_path):
    text = GOOD + "e.wav,3,Joy,train,M\n"
    _fails(tmp_path, _manifest(tmp_path, text), r"m\.csv: label 'Joy' \(line 6\) and label 'joy' \(lines 2, 4\) "
                                                r"differ only by case or spacing; .*corpus\.classes")


def test_class_names_differing_only_by_inner_spacing_are_one_error_too(tmp_path):
    text = ("path,speaker,label_very sad,label_very  sad,split\n"
            "a.wav,1,0.5,0.5,test\nb.wav,1,0.5,0.5,test\nc.wav,2,0.5,0.5,train\n")
    _fails(tmp_path, _manifest(tmp_path, text, files=("a.wav", "b.wav", "c.wav")),
           r"column 'label_very  sad' \(lines 2, 3, 4\) and column 'label_very sad' .* differ only by case")


def test_a_typo_is_a_class_of_one_clip_and_stops_the_import_naming_value_and_line(tmp_path):
    text = GOOD + "e.wav,3,joyy,train,M\n"
    _fails(tmp_path, _manifest(tmp_path, text), r"m\.csv: label 'joyy' \(line 6\): fewer than "
                                                r"corpus\.min_clips_per_class = 2 clips each \(a typo\?\)")


def test_a_typo_in_a_jsonl_label_key_stops_the_import(tmp_path):
    rows = [{"path": "a.wav", "speaker": "1", "label": {"joy": 0.5, "calm": 0.5}, "split": "test"},
            {"path": "b.wav", "speaker": "1", "label": {"joy": 0.5, "calm": 0.5}, "split": "test"},
            {"path": "c.wav", "speaker": "2", "label": {"jooy": 0.5, "calm": 0.5}, "split": "train"},
            {"path": "d.wav", "speaker": "2", "label": {"joy": 1.0}, "split": "train"}]
    _fails(tmp_path, _manifest(tmp_path, _jsonl(rows), "jsonl"), r"m\.jsonl: label 'jooy' \(line 3\): fewer than")
    # A key whose share is 0 gives its class no clip at all: still named.
    rows[2]["label"] = {"jooy": 0, "calm": 1.0}
    _fails(tmp_path, _manifest(tmp_path, _jsonl(rows), "jsonl"), r"label 'jooy' \(no clip\)")


def test_min_clips_per_class_is_a_param(tmp_path):
    text = GOOD + "e.wav,3,grief,train,M\n"
    _fails(tmp_path, _manifest(tmp_path, text, files=("a.wav", "b.wav", "c.wav", "d.wav", "e.wav")),
           r"label 'grief' \(line 6\)")
    out = _build(tmp_path, _manifest(tmp_path, text, files=("a.wav", "b.wav", "c.wav", "d.wav", "e.wav"),
                                     min_clips_per_class=1))
    assert json.loads((out / "schema.json").read_text())["classes"] == ["calm", "grief", "joy"]


def test_declared_classes_set_the_order_and_admit_a_class_of_one_clip(tmp_path):
    text = GOOD + "e.wav,3,grief,train,M\n"
    params = _manifest(tmp_path, text, files=("a.wav", "b.wav", "c.wav", "d.wav", "e.wav"),
                       classes=["joy", "grief", "calm"])
    out = _build(tmp_path, params)
    clips = pd.read_csv(out / "clips.csv")
    assert list(clips.columns[2:5]) == ["joy", "grief", "calm"]
    assert clips[["joy", "grief", "calm"]].to_numpy().tolist() == [[1, 0, 0], [0, 0, 1], [1, 0, 0], [0, 0, 1],
                                                                   [0, 1, 0]]


def test_with_declared_classes_any_other_label_is_one_line_naming_it_and_its_lines(tmp_path):
    text = GOOD + "e.wav,3,joyy,train,M\nf.wav,3,joyy,train,M\ng.wav,3,Joy,train,M\n"
    _fails(tmp_path, _manifest(tmp_path, text, classes=["calm", "joy"]),
           r"m\.csv: label 'joyy' \(lines 6, 7\), label 'Joy' \(line 8\) not in corpus\.classes \['calm', 'joy'\]")


def test_with_declared_classes_a_jsonl_key_or_label_column_outside_them_is_an_error(tmp_path):
    rows = [{"path": "a.wav", "speaker": "1", "label": {"joy": 0.5, "jooy": 0.5}, "split": "test"},
            {"path": "b.wav", "speaker": "2", "label": "calm", "split": "train"}]
    _fails(tmp_path, _manifest(tmp_path, _jsonl(rows), "jsonl", classes=["calm", "joy"]),
           r"m\.jsonl: label 'jooy' \(line 1\) not in corpus\.classes")
    text = "path,speaker,label_calm,label_jooy,split\na.wav,1,0.5,0.5,test\nb.wav,2,1,0,train\n"
    _fails(tmp_path, _manifest(tmp_path, text, classes=["calm", "joy"]),
           r"m\.csv: column 'label_jooy' \(line 2\) not in corpus\.classes")
    text = "path,speaker,label_calm,split\na.wav,1,1,test\nb.wav,2,1,train\n"
    _fails(tmp_path, _manifest(tmp_path, text, classes=["calm", "joy"]),
           r"m\.csv: missing column label_joy \(corpus\.classes")


def test_corpus_classes_and_excluded_are_validated_params():
    raw = shipped_params()
    assert raw["corpus"]["classes"] is None and raw["corpus"]["min_clips_per_class"] == 2
    for key, value, expected in [("classes", ["joy"], "at least two distinct class names"),
                                 ("classes", ["joy", "joy"], "at least two distinct"),
                                 ("min_clips_per_class", 0, "an integer >= 1"),
                                 ("excluded", {"gender": "Unknown"}, "a list of values that mean unknown")]:
        bad = json.loads(json.dumps(raw))
        bad["corpus"][key] = value
        with pytest.raises(ParamsError, match=expected):
            config.resolve(bad)


# --- speaker ids and attribute values: one normalisation (fairser.values) --------------------------

def test_leading_zeros_and_gender_spellings_fold_and_the_mapping_is_recorded(tmp_path):
    out = _build(tmp_path, _manifest(tmp_path, GOOD.replace("b.wav,1,", "b.wav, 1,")))
    actors = pd.read_csv(out / "actors.csv")
    assert actors.to_dict("list") == {"actor": [1, 2], "speaker": [1, 2], "gender": ["Female", "Male"]}
    assert list(pd.read_csv(out / "clips.csv")["actor"]) == [1, 1, 2, 2]
    info = json.loads((out / "corpus.json").read_text())
    assert info["normalised"] == {"speaker": {"01": "1", " 1": "1"},
                                  "gender": {"Woman": "Female", "F": "Female", "man": "Male", "M": "Male"}}
    assert json.loads((out / "schema.json").read_text())["attributes"] == [
        {"name": "gender", "column": "gender", "groups": ["Male", "Female"]}]


def test_a_gender_value_that_folds_to_nothing_is_one_line_listing_the_values(tmp_path):
    text = GOOD + "e.wav,3,joy,train,other\nf.wav,4,calm,train,X\ng.wav,5,calm,train,unknown\n"
    files = ("a.wav", "b.wav", "c.wav", "d.wav", "e.wav", "f.wav", "g.wav")
    _fails(tmp_path, _manifest(tmp_path, text, files=files),
           r"m\.csv: gender values 'X', 'other', 'unknown' are none of Male, Female; "
           r"list any that mean unknown under corpus\.excluded\.gender")
    _fails(tmp_path, _manifest(tmp_path, text, files=files, excluded={"gender": ["Unknown"]}),
           r"gender values 'X', 'other' are none of")


def test_excluded_values_are_unknown_not_a_group(tmp_path):
    text = GOOD + "e.wav,3,joy,train,unknown\n"
    params = _manifest(tmp_path, text, files=("a.wav", "b.wav", "c.wav", "d.wav", "e.wav"),
                       excluded={"gender": ["Unknown"]})
    out = _build(tmp_path, params)
    assert list(pd.read_csv(out / "actors.csv")["gender"]) == ["Female", "Male", "Unknown"]
    assert json.loads((out / "schema.json").read_text())["attributes"] == [
        {"name": "gender", "column": "gender", "groups": ["Male", "Female"], "excluded": ["Unknown"]}]
    assert json.loads((out / "corpus.json").read_text())["normalised"]["gender"]["unknown"] == "Unknown"


def test_other_attributes_fold_case_and_spaces_to_their_most_frequent_spelling(tmp_path):
    text = ("path,speaker,label,split,dialect\na.wav,1,joy,test,North\nb.wav,1,calm,test,North\n"
            "c.wav,2,joy,train,north \nd.wav,3,calm,train,South\n")
    out = _build(tmp_path, _manifest(tmp_path, text))
    assert list(pd.read_csv(out / "actors.csv")["dialect"]) == ["North", "North", "South"]
    assert json.loads((out / "corpus.json").read_text())["normalised"] == {"dialect": {"north ": "North"}}


def test_one_speaker_spelt_two_ways_with_two_genders_is_still_an_error(tmp_path):
    text = GOOD.replace("b.wav,1,calm,test,F", "b.wav,1,calm,test,Male")
    _fails(tmp_path, _manifest(tmp_path, text), r"m\.csv, line 3: speaker 1 has gender 'Male' here and 'Female'")


def test_the_speakers_table_goes_through_the_same_normalisation(tmp_path):
    params = _manifest(tmp_path, GOOD.replace(",gender", "").replace(",Woman", "").replace(",F\n", "\n")
                       .replace(",man", "").replace(",M\n", "\n"))
    (tmp_path / "spk.csv").write_text("SpkrID,Gender,accent\n001,woman,Irish\n2,MALE,Scots\n")
    out = _build(tmp_path, dict(params, speakers=str(tmp_path / "spk.csv")))
    actors = pd.read_csv(out / "actors.csv")
    assert actors.to_dict("list") == {"actor": [1, 2], "speaker": [1, 2], "gender": ["Female", "Male"],
                                      "accent": ["Irish", "Scots"]}
    assert json.loads((out / "corpus.json").read_text())["normalised"] == {
        "speaker": {"01": "1", "001": "1"}, "gender": {"woman": "Female", "MALE": "Male"}}
    (tmp_path / "spk.csv").write_text("SpkrID,Gender\n1,F\n2,M\n01,F\n")
    _fails(tmp_path, dict(params, speakers=str(tmp_path / "spk.csv")),
           r"spk\.csv, line 4: speaker '01' is listed twice \(line 2, as speaker 1\)", out="again")


def test_emo_superb_speaker_ids_and_genders_use_the_same_normalisation(tmp_path):
    labels, audio = tmp_path / "labels", tmp_path / "audio"
    labels.mkdir()
    audio.mkdir()
    rows = [("a.wav", "01", "Woman", "Test"), ("b.wav", "1", "female", "Test"),
            ("c.wav", "2", "M", "Train"), ("d.wav", "2", "man", "Train")]
    (labels / "labels_consensus_1.csv").write_text(
        "FileName,calm,joy,SpkrID,Gender,Split_Set\n"
        + "".join(f"{n},0.5,0.5,{s},{g},{sp}\n" for n, s, g, sp in rows))
    (labels / "config.json").write_text(json.dumps({"categorical": {"emo_type": ["calm", "joy"]}}))
    for n, *_ in rows:
        sf.write(audio / n, tone(0.5, 150), SAMPLE_RATE, subtype="PCM_16")
    params = dict(USER, name="emo-superb", labels_dir=str(labels), audio_dir=str(audio))
    out = _build(tmp_path, params)
    assert pd.read_csv(out / "actors.csv").to_dict("list") == {"actor": [1, 2], "speaker": [1, 2],
                                                               "gender": ["Female", "Male"]}
    assert json.loads((out / "corpus.json").read_text())["normalised"] == {
        "speaker": {"01": "1"}, "gender": {"Woman": "Female", "female": "Female", "M": "Male", "man": "Male"}}


def test_the_reports_and_the_download_stage_print_the_mapping():
    spec = importlib.util.spec_from_file_location("report_stage", ROOT / "stages" / "report.py")
    stage = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(stage)
    info = {"coverage": "4 of 4 labelled clips usable, 0 skipped",
            "normalised": {"speaker": {"01": "1"}, "gender": {"M": "Male", "Woman": "Female"}}}
    assert stage.data_notes(info, None) == [
        "Corpus: 4 of 4 labelled clips usable, 0 skipped",
        "Values normalised: speaker: '01' -> 1; gender: 'M' -> Male, 'Woman' -> Female"]
    assert stage.data_notes(dict(info, normalised={}), None) == [f"Corpus: {info['coverage']}"]
    assert stage.data_notes({"coverage": "x"}, None) == ["Corpus: x"]  # surrogate, CREMA-D


# --- no tracebacks: empty, header-only and non-UTF-8 files ---------------------------------------

LATIN1 = "path,speaker,label,split\na.wav,J\u00e9r\u00f4me,joy,test\n".encode("latin-1")


@pytest.mark.parametrize("suffix, content, message", [
    ("csv", b"", r"m\.csv: empty file \(no header line\); expected columns path, speaker, label"),
    ("csv", b"\n\n", r"m\.csv: empty file \(no header line\); expected columns path, speaker"),
    ("csv", b"path,speaker,label,split\n", r"m\.csv: no rows; expected one row per clip with columns path, speaker"),
    ("csv", LATIN1, r"m\.csv: not UTF-8 text \(line 2: byte 0xe9\); save it as UTF-8; expected columns path, speaker"),
    ("jsonl", b"", r"m\.jsonl: empty file; expected one JSON object per line with path, speaker"),
    ("jsonl", b'{"path": "a.wav", "speaker": "J\xe9r\xf4me"}\n', r"m\.jsonl: not UTF-8 text \(line 1: byte 0xe9\)"),
])
def test_an_empty_header_only_or_non_utf8_manifest_is_one_line(tmp_path, suffix, content, message):
    _fails(tmp_path, _manifest(tmp_path, content, suffix), message)


def test_a_folder_given_as_the_manifest_says_so(tmp_path):
    params = _manifest(tmp_path, GOOD)
    (tmp_path / "dir.csv").mkdir()
    _fails(tmp_path, dict(params, manifest=str(tmp_path / "dir.csv")), r"dir\.csv: is a folder, not a file")


def test_a_manifest_with_a_byte_order_mark_reads_like_one_without(tmp_path):
    plain = _build(tmp_path / "a", _manifest(tmp_path / "a", GOOD))
    bom = _build(tmp_path / "b", _manifest(tmp_path / "b", b"\xef\xbb\xbf" + GOOD.encode()))
    for name in ("clips.csv", "actors.csv", "schema.json"):
        assert (plain / name).read_bytes() == (bom / name).read_bytes()


@pytest.mark.parametrize("content, message", [
    (b"", r"spk\.csv: empty file \(no header line\); expected columns SpkrID \(or speaker\)"),
    (b"SpkrID,accent\n", r"spk\.csv: a header and no rows; expected one row per speaker"),
    ("SpkrID,accent\n1,Fran\u00e7ais\n".encode("latin-1"), r"spk\.csv: not UTF-8 text \(line 2: byte 0xe7\)"),
])
def test_an_empty_header_only_or_non_utf8_speakers_table_is_one_line(tmp_path, content, message):
    params = _manifest(tmp_path, GOOD)
    (tmp_path / "spk.csv").write_bytes(content)
    _fails(tmp_path, dict(params, speakers=str(tmp_path / "spk.csv")), message)


def _emo_folder(tmp_path):
    labels, audio = tmp_path / "labels", tmp_path / "audio"
    labels.mkdir()
    audio.mkdir()
    (labels / "labels_consensus_1.csv").write_text(
        "FileName,calm,joy,SpkrID,Gender,Split_Set\na.wav,1,0,1,M,Test\nb.wav,0,1,2,F,Train\n")
    (labels / "config.json").write_text(json.dumps({"categorical": {"emo_type": ["calm", "joy"]}}))
    return dict(USER, name="emo-superb", labels_dir=str(labels), audio_dir=str(audio))


@pytest.mark.parametrize("file, content, message", [
    ("labels_consensus_1.csv", b"", r"labels_consensus_1\.csv: empty file \(no header line\); expected "
                                    r"columns FileName, calm, joy, SpkrID, Gender, Split_Set"),
    ("labels_consensus_1.csv", b"FileName,calm,joy,SpkrID,Gender,Split_Set\n",
     r"labels_consensus_1\.csv: a header and no rows; expected one row per clip"),
    ("labels_consensus_1.csv", "FileName,calm,joy,SpkrID,Gender,Split_Set\n\u00e9.wav,1,0,1,M,Test\n".encode("latin-1"),
     r"labels_consensus_1\.csv: not UTF-8 text \(line 2: byte 0xe9\)"),
    ("config.json", b"", r"config\.json: empty file; expected a JSON object with categorical\.emo_type"),
    ("config.json", '{"categorical": {"emo_type": ["c\u00e9"]}}'.encode("latin-1"),
     r"config\.json: not UTF-8 text \(line 1: byte 0xe9\)"),
])
def test_an_empty_header_only_or_non_utf8_emo_superb_file_is_one_line(tmp_path, file, content, message):
    params = _emo_folder(tmp_path)
    (Path(params["labels_dir"]) / file).write_bytes(content)
    _fails(tmp_path, params, message)


def test_an_excluded_value_of_a_numeric_attribute_is_unknown_not_an_error(tmp_path):
    text = ("path,speaker,label,split,age\na.wav,1,joy,test,30\nb.wav,1,calm,test,30\n"
            "c.wav,2,joy,train,61\nd.wav,3,calm,train,N/A\n")
    params = _manifest(tmp_path, text, bins={"age": {"edges": [0, 50, 100], "names": ["young", "old"]}})
    out = _build(tmp_path, dict(params, excluded={"age": ["n/a"]}))
    s = schema.load(out)
    assert s.attribute("age").excluded == ("n/a",) and s.attribute("age").edges == (0, 50, 100)
    actors = pd.read_csv(out / "actors.csv", keep_default_na=False, dtype=str)
    assert list(actors["age"]) == ["30", "61", "n/a"]
    assert schema.speaker_groups(actors, s)["age"].tolist()[:2] == ["young", "old"]
    assert pd.isna(schema.speaker_groups(actors, s)["age"].tolist()[2])


def test_an_emo_superb_gender_that_folds_to_nothing_is_one_line_unless_excluded(tmp_path):
    params = _emo_folder(tmp_path)
    labels = Path(params["labels_dir"]) / "labels_consensus_1.csv"
    labels.write_text("FileName,calm,joy,SpkrID,Gender,Split_Set\na.wav,1,0,1,M,Test\nb.wav,0,1,2,F,Train\n"
                      "c.wav,0,1,3,Other,Train\n")
    for n in ("a.wav", "b.wav", "c.wav"):
        sf.write(Path(params["audio_dir"]) / n, tone(0.5, 150), SAMPLE_RATE, subtype="PCM_16")
    _fails(tmp_path, params, r"labels_consensus_1\.csv: gender values 'Other' are none of Male, Female; "
                             r"list any that mean unknown under corpus\.excluded\.gender")
    out = _build(tmp_path, dict(params, excluded={"gender": ["other"]}))
    assert list(pd.read_csv(out / "actors.csv")["gender"]) == ["Male", "Female", "other"]
    assert json.loads((out / "schema.json").read_text())["attributes"][0]["excluded"] == ["other"]
