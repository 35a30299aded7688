"""The corpus module: block folds, the written layout, clip decoding policy, the real metadata."""

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from fairser import config, corpus
from fairser.errors import InputError
from fairser.constants import SAMPLE_RATE, SURROGATE_NOTICE
from fairser.schema import CREMA_D_CLASSES as EMOTIONS
from helpers import shipped_params, tone


def test_block_folds_match_emo_superb_blocks_for_91_actors():
    folds = corpus.block_folds(range(1001, 1092))
    fold1 = pd.Series({a: s[0] for a, s in folds.items()})
    assert list(fold1[fold1 == "test"].index) == list(range(1001, 1019))  # block A
    assert list(fold1[fold1 == "dev"].index) == list(range(1019, 1037))  # block B
    fold5 = pd.Series({a: s[4] for a, s in folds.items()})
    assert list(fold5[fold5 == "test"].index) == list(range(1073, 1092))  # block E, 19 actors
    assert list(fold5[fold5 == "dev"].index) == list(range(1001, 1019))  # dev wraps to A


def test_block_folds_each_actor_tests_once_and_develops_once():
    folds = corpus.block_folds([7, 3, 9, 1, 5, 2, 8, 4, 6, 10, 11, 12])
    for splits in folds.values():
        assert splits.count("test") == 1 and splits.count("dev") == 1 and splits.count("train") == 3
    # 12 actors: blocks of 2, 2, 2, 3, 3 over the sorted ids.
    assert [a for a, s in folds.items() if s[3] == "test"] == [7, 8, 9]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return corpus.build_surrogate(tmp_path_factory.mktemp("s") / "corpus", n_actors=10,
                                  n_sentences=2, seconds=0.6, seed=0)


def test_surrogate_writes_the_design_layout(tiny):
    clips = pd.read_csv(tiny / "clips.csv")
    assert list(clips.columns) == ["file", "actor", "sentence", "emotion", "level", *EMOTIONS,
                                   *[f"split_{f}" for f in range(1, 6)]]
    assert len(clips) == 10 * (16 + 6)
    assert clips[list(EMOTIONS)].sum(axis=1).to_numpy() == pytest.approx(np.ones(len(clips)), abs=1e-5)
    assert sorted(p.name for p in (tiny / "wav").iterdir()) == sorted(clips["file"])
    assert list(pd.read_csv(tiny / "actors.csv").columns) == ["actor", "sex", "age", "race"]
    assert list(pd.read_csv(tiny / "skipped.csv").columns) == ["file", "reason"]
    assert json.loads((tiny / "corpus.json").read_text())["notice"] == SURROGATE_NOTICE


def test_surrogate_wavs_are_16k_mono_pcm16_of_about_the_asked_length(tiny):
    clips = pd.read_csv(tiny / "clips.csv")
    lengths = []
    for file in clips["file"][::20]:
        info = sf.info(tiny / "wav" / file)
        assert (info.samplerate, info.channels, info.subtype) == (SAMPLE_RATE, 1, "PCM_16")
        lengths.append(info.duration)
    assert 0.4 < np.mean(lengths) < 0.8


def test_surrogate_splits_are_speaker_independent(tiny):
    clips = pd.read_csv(tiny / "clips.csv")
    for f in range(1, 6):
        per_actor = clips.groupby("actor")[f"split_{f}"].nunique()
        assert (per_actor == 1).all()
        assert set(clips[f"split_{f}"]) == {"train", "dev", "test"}


def _wav_bytes(x, sr, subtype="PCM_16"):
    import io
    buf = io.BytesIO()
    sf.write(buf, x, sr, format="WAV", subtype=subtype)
    return buf.getvalue()


def test_load_clip_downmixes_and_resamples_24bit_stereo_44k(tmp_path):
    t = np.arange(44100) / 44100
    tone = 0.5 * np.sin(2 * np.pi * 440 * t)
    path = tmp_path / "a.wav"
    path.write_bytes(_wav_bytes(np.stack([tone, tone], 1), 44100, "PCM_24"))
    x = corpus.load_clip(path)
    assert len(x) == SAMPLE_RATE
    spectrum = np.abs(np.fft.rfft(x))
    assert np.argmax(spectrum) == 440  # 1 s at 16 kHz: bin k is k Hz
    assert np.abs(x).max() == pytest.approx(0.5, abs=0.01)


@pytest.mark.parametrize("content, reason", [
    (None, "missing"),
    (b"", "empty file"),
    (b"not a wav at all, just some bytes", "corrupt"),
    ("short", "too short"),
    ("truncated", "truncated"),
])
def test_load_clip_skips_unusable_clips_with_a_reason(tmp_path, content, reason):
    path = tmp_path / "c.wav"
    if content == "short":
        content = _wav_bytes(np.zeros(800), SAMPLE_RATE)  # 0.05 s
    elif content == "truncated":
        content = _wav_bytes(np.zeros(8000), SAMPLE_RATE)[:-3000]
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(corpus.ClipSkipped, match=reason):
        corpus.load_clip(path)


def test_build_rejects_an_unknown_corpus_name(tmp_path):
    params = {"corpus": {"name": "iemocap"}, "seed": 0}
    with pytest.raises(InputError, match="corpus.name"):
        corpus.build(tmp_path / "out", params)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("key, value", [("n_sentences", 13), ("n_sentences", 0), ("n_actors", 4)])
def test_surrogate_size_out_of_range_is_an_error_naming_the_param(tmp_path, key, value):
    kwargs = {"n_actors": 10, "n_sentences": 1, "seconds": 0.5, key: value}
    with pytest.raises(InputError, match=f"corpus.surrogate.{key}"):
        corpus.build_surrogate(tmp_path / "c", **kwargs)
    assert not (tmp_path / "c").exists()


def test_build_reads_the_surrogate_params(tmp_path):
    params = config.resolve(shipped_params())
    params["corpus"]["surrogate"] = {"n_actors": 10, "n_sentences": 1, "seconds": 0.5}
    out = corpus.build(tmp_path / "c", params)
    assert len(pd.read_csv(out / "clips.csv")) == 10 * 16  # sentence IEO: 5 emotions x 3 levels + neutral


def test_local_crema_d_matches_emo_superb_labels_and_folds(tmp_path, reference_data):
    # A few fake clips under real file names; every other clip is then missing by policy.
    audio = tmp_path / "AudioWAV"
    audio.mkdir()
    names = ["1001_DFA_ANG_XX.wav", "1037_IWL_HAP_XX.wav", "1091_WSI_SAD_XX.wav"]
    for name in names:
        (audio / name).write_bytes(_wav_bytes(tone(0.5, 200), SAMPLE_RATE))
    out = corpus.build_crema_d(tmp_path / "corpus", urls={}, audio_dir=audio,
                               metadata_dir=reference_data)
    clips = pd.read_csv(out / "clips.csv").set_index("file")
    assert len(clips) == 7442  # every labelled clip, usable or not
    assert sorted(p.name for p in (out / "wav").iterdir()) == sorted(names)
    for f in range(1, 6):
        ref = pd.read_csv(reference_data / f"emo-superb/CREMA-D/Primary/labels_consensus_{f}.csv")
        ref = ref.set_index("FileName").loc[names]
        assert np.allclose(clips.loc[names, list(EMOTIONS)], ref[list(EMOTIONS)])
        expected = ref["Split_Set"].map({"Train": "train", "Development": "dev", "Test": "test"})
        assert list(clips.loc[names, f"split_{f}"]) == list(expected)
    assert clips.loc["1037_IWL_HAP_XX.wav", "emotion"] == "happy"
    skipped = pd.read_csv(out / "skipped.csv")
    assert len(skipped) == 7442 - 3 and set(skipped["reason"]) == {"missing"}
    assert set(skipped["file"]) == set(clips.index) - set(names)
    actors = pd.read_csv(out / "actors.csv")
    assert len(actors) == 91 and actors["sex"].value_counts()["Male"] == 48


def test_block_folds_reproduce_emo_superb_splits_of_every_clip(reference_data):
    clips = corpus.read_labels([reference_data / corpus.LABELS.format(f) for f in range(1, 6)])
    folds = corpus.block_folds(clips["actor"])
    for f in range(5):
        assert (clips["actor"].map(lambda a: folds[a][f]) == clips[f"split_{f + 1}"]).all()


# --- issue 10: clips with no signal, deterministic reasons, a visible skip count ----------------

@pytest.mark.parametrize("wave, subtype, reason", [
    (np.zeros(16000), "PCM_16", "silent (every sample is zero)"),
    (1e-5 * np.sin(np.arange(16000) / 5), "FLOAT", "silent (peak -100 dBFS < -80 dBFS)"),
    (np.full(16000, 0.25), "PCM_16", "constant (every sample is equal)"),
    (0.25 + 1e-6 * np.sin(np.arange(16000) / 5), "FLOAT", "constant (RMS about the mean -123 dBFS < -100 dBFS)"),
    (np.r_[np.nan, np.zeros(15999) + 0.1], "FLOAT", "non-finite samples (NaN or inf)"),
    (np.r_[np.inf, np.zeros(15999) + 0.1], "FLOAT", "non-finite samples (NaN or inf)"),
])
def test_load_clip_skips_silent_constant_and_non_finite_clips(tmp_path, wave, subtype, reason):
    path = tmp_path / "c.wav"
    path.write_bytes(_wav_bytes(wave, SAMPLE_RATE, subtype))
    with pytest.raises(corpus.ClipSkipped) as why:
        corpus.load_clip(path)
    assert str(why.value) == reason


def test_a_quiet_but_real_clip_is_kept(tmp_path):
    path = tmp_path / "c.wav"
    path.write_bytes(_wav_bytes(0.001 * tone(0.5, 200) / 0.3, SAMPLE_RATE))  # peak -60 dBFS
    assert np.abs(corpus.load_clip(path)).max() == pytest.approx(1e-3, rel=0.01)


def test_a_corrupt_clip_reason_holds_the_decoder_message_and_no_address(tmp_path):
    path = tmp_path / "c.wav"
    path.write_bytes(np.random.default_rng(0).bytes(4000))
    with pytest.raises(corpus.ClipSkipped) as why:
        corpus.load_clip(path)
    assert str(why.value) == "corrupt (Format not recognised)"


def fake_crema_d(root, n_actors=10):
    """A CREMA-D-shaped metadata folder and AudioWAV for `n_actors` actors, 6 clips each, and
    the sha256 of each metadata file (build_crema_d's `checksums`)."""
    from fairser.constants import EMOTION_CODES
    from fairser.download import sha256_file

    meta, audio = root / "meta", root / "AudioWAV"
    audio.mkdir(parents=True)
    actors = list(range(1001, 1001 + n_actors))
    demo = pd.DataFrame({"ActorID": actors, "Age": 30, "Sex": ["Male", "Female"] * (n_actors // 2),
                         "Race": "Caucasian", "Ethnicity": "Not Hispanic"})
    (meta / "crema-d").mkdir(parents=True)
    demo.to_csv(meta / corpus.DEMOGRAPHICS, index=False)
    folds = corpus.block_folds(actors)
    names = {"train": "Train", "dev": "Development", "test": "Test"}
    rows = []
    for a in actors:
        for k, code in enumerate(EMOTION_CODES):
            file = f"{a}_DFA_{code}_XX.wav"
            rows.append({"FileName": file, **{e: 0.95 if j == k else 0.01 for j, e in enumerate(EMOTIONS)},
                         "SpkrID": a})
            (audio / file).write_bytes(_wav_bytes(tone(0.4, 120 + 10 * k, seed=a), SAMPLE_RATE))
    for f in range(1, 6):
        df = pd.DataFrame(rows)
        df["Split_Set"] = df["SpkrID"].map(lambda a: names[folds[a][f - 1]])
        path = meta / corpus.LABELS.format(f)
        path.parent.mkdir(parents=True, exist_ok=True)
        df.to_csv(path, index=False)
    checksums = {key: sha256_file(meta / key) for key in corpus.METADATA}
    return meta, audio, checksums


def _build_in_a_fresh_process(out, meta, audio, checksums):
    code = ("import sys, json; from fairser import corpus; "
            "corpus.build_crema_d(sys.argv[1], urls={}, audio_dir=sys.argv[2], metadata_dir=sys.argv[3], "
            "checksums=json.loads(sys.argv[4]))")
    subprocess.run([sys.executable, "-c", code, str(out), str(audio), str(meta), json.dumps(checksums)],
                   check=True, capture_output=True)


def _tree(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_two_builds_over_a_corrupt_clip_are_byte_identical(tmp_path):
    meta, audio, checksums = fake_crema_d(tmp_path)
    (audio / "1002_DFA_SAD_XX.wav").write_bytes(np.random.default_rng(1).bytes(3000))
    (audio / "1003_DFA_ANG_XX.wav").write_bytes(_wav_bytes(np.zeros(8000), SAMPLE_RATE))
    # Separate processes, as two `dvc repro -f -s download` runs: an object's address differs.
    _build_in_a_fresh_process(tmp_path / "a", meta, audio, checksums)
    _build_in_a_fresh_process(tmp_path / "b", meta, audio, checksums)
    first, second = _tree(tmp_path / "a"), _tree(tmp_path / "b")
    assert first == second
    skipped = pd.read_csv(tmp_path / "a" / "skipped.csv")
    reasons = dict(zip(skipped["file"], skipped["reason"]))
    assert set(reasons) == {"1002_DFA_SAD_XX.wav", "1003_DFA_ANG_XX.wav"}
    assert reasons["1002_DFA_SAD_XX.wav"].startswith("corrupt (") and "0x" not in reasons["1002_DFA_SAD_XX.wav"]
    assert reasons["1003_DFA_ANG_XX.wav"] == "silent (every sample is zero)"


def test_corpus_json_says_how_many_clips_were_skipped_and_why(tmp_path):
    meta, audio, checksums = fake_crema_d(tmp_path)
    for name in ("1002_DFA_SAD_XX.wav", "1004_DFA_SAD_XX.wav"):
        (audio / name).unlink()
    (audio / "1003_DFA_ANG_XX.wav").write_bytes(_wav_bytes(np.zeros(8000), SAMPLE_RATE))
    out = corpus.build_crema_d(tmp_path / "c", urls={}, audio_dir=audio, metadata_dir=meta,
                               checksums=checksums)
    info = json.loads((out / "corpus.json").read_text())
    assert info["skipped_by_reason"] == {"missing": 2, "silent": 1}
    assert info["coverage"] == ("57 of 60 labelled clips usable, 3 skipped "
                                "(missing: 2; silent: 1; see skipped.csv)")


def test_an_empty_audio_dir_fails_before_any_work_naming_the_param(tmp_path):
    meta, audio, checksums = fake_crema_d(tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match=r"^corpus\.audio_dir: .*empty holds no \.wav file"):
        corpus.build_crema_d(tmp_path / "c", urls={}, audio_dir=empty, metadata_dir=meta,
                             checksums=checksums)
    assert not (tmp_path / "c").exists()


def test_an_audio_dir_holding_none_of_the_clips_names_the_param(tmp_path):
    meta, audio, checksums = fake_crema_d(tmp_path)
    other = tmp_path / "other"
    other.mkdir()
    (other / "song.wav").write_bytes(_wav_bytes(tone(0.4, 200), SAMPLE_RATE))
    with pytest.raises(InputError, match=r"^corpus\.audio_dir: .* holds none of the 60 labelled clips"):
        corpus.build_crema_d(tmp_path / "c", urls={}, audio_dir=other, metadata_dir=meta,
                             checksums=checksums)


def test_a_corpus_with_no_usable_clip_is_an_error_not_an_empty_output(tmp_path):
    meta, audio, checksums = fake_crema_d(tmp_path)
    for path in audio.iterdir():
        path.write_bytes(_wav_bytes(np.zeros(8000), SAMPLE_RATE))
    with pytest.raises(InputError, match=r"corpus\.audio_dir: no usable clip among 60 \(silent: 60\)"):
        corpus.build_crema_d(tmp_path / "c", urls={}, audio_dir=audio, metadata_dir=meta,
                             checksums=checksums)
    assert not (tmp_path / "c").exists()


# --- user corpora: EMO-SUPERB label folders and manifests ------------------------------------------

import corpora  # noqa: E402 (tests/corpora.py)

USER = {"speakers": None, "renormalise": False, "bins": {}}


def _emo(tmp_path, rows, classes=("calm", "joy"), folds=2, config=None):
    """A hand-written EMO-SUPERB folder: rows = (FileName, shares, SpkrID, Gender, [Split_Set per fold])."""
    labels, audio = tmp_path / "labels", tmp_path / "audio"
    labels.mkdir(parents=True)
    audio.mkdir()
    for f in range(folds):
        lines = [",".join(["FileName", *classes, "SpkrID", "Gender", "Split_Set"])]
        lines += [",".join([n, *map(str, p), s, g, sp[f]]) for n, p, s, g, sp in rows]
        (labels / f"labels_consensus_{f + 1}.csv").write_text("\n".join(lines) + "\n")
    (labels / "config.json").write_text(json.dumps(config or {"categorical": {"emo_type": list(classes)}}))
    for n, *_ in rows:
        (audio / n).parent.mkdir(parents=True, exist_ok=True)
        sf.write(audio / n, tone(0.5, 150), SAMPLE_RATE, subtype="PCM_16")
    return dict(USER, name="emo-superb", labels_dir=str(labels), audio_dir=str(audio))


TINY = [("s1/a.wav", (0.75, 0.25), "7", "m", ["Test", "Train"]),
        ("b.wav", (0.5, 0.5), "7", "M", ["Test", "Train"]),
        ("c.wav", (0.0, 1.0), "10", "female", ["Train", "Test"])]


def test_emo_superb_tiny_corpus_hand_computed(tmp_path):
    params = _emo(tmp_path, TINY)
    out = corpus.build(tmp_path / "corpus", {"corpus": params, "seed": 0})
    clips = pd.read_csv(out / "clips.csv")
    assert list(clips.columns) == ["file", "actor", "calm", "joy", "split_1", "split_2"]
    assert list(clips["file"]) == ["s1__a.wav", "b.wav", "c.wav"]  # subfolders flattened
    assert list(clips["actor"]) == [1, 1, 2]  # speakers 7 < 10 numerically
    assert clips[["calm", "joy"]].to_numpy().tolist() == [[0.75, 0.25], [0.5, 0.5], [0.0, 1.0]]
    assert list(clips["split_1"]) == ["test", "test", "train"]
    assert list(clips["split_2"]) == ["train", "train", "test"]
    actors = pd.read_csv(out / "actors.csv")
    assert actors.to_dict("list") == {"actor": [1, 2], "speaker": [7, 10], "gender": ["Male", "Female"]}
    assert json.loads((out / "schema.json").read_text()) == {
        "classes": ["calm", "joy"], "folds": 2, "speaker": "actor", "smoothing": [0.0, 1.0],
        "attributes": [{"name": "gender", "column": "gender", "groups": ["Male", "Female"]}],
        "speaker_rule": {"rule": "spkrid", "speakers": 2, "unknown_clips": 0,
                         "description": "speakers = SpkrID = 2"}}
    info = json.loads((out / "corpus.json").read_text())
    assert info["corpus"] == "emo-superb" and "EMO-SUPERB format" in info["notice"]
    assert sorted(p.name for p in (out / "wav").iterdir()) == ["b.wav", "c.wav", "s1__a.wav"]
    assert sf.info(out / "wav" / "b.wav").samplerate == SAMPLE_RATE


def _manifest(tmp_path, text, suffix="csv", files=("a.wav", "b.wav", "c.wav")):
    audio = tmp_path / "audio"
    audio.mkdir(parents=True, exist_ok=True)
    for n in files:
        sf.write(audio / n, tone(0.5, 150), SAMPLE_RATE, subtype="PCM_16")
    path = tmp_path / f"m.{suffix}"
    path.write_text(text)
    return dict(USER, name="manifest", manifest=str(path), audio_dir=str(audio))


def test_manifest_csv_with_single_labels_and_fold_ids_hand_computed(tmp_path):
    params = _manifest(tmp_path, "path,speaker,label,fold,gender,dialect\n"
                                 "a.wav,bob,sad,s1,m,north\nb.wav,amy,happy,s2,F,south\n"
                                 "c.wav,cat,sad,s3,f,\n")
    params["classes"] = ["happy", "sad"]  # declared: `happy` has one clip
    out = corpus.build(tmp_path / "corpus", {"corpus": params, "seed": 0})
    clips = pd.read_csv(out / "clips.csv")
    assert list(clips.columns) == ["file", "actor", "happy", "sad", "split_1", "split_2", "split_3"]
    assert list(clips["actor"]) == [2, 1, 3]  # amy=1, bob=2, cat=3
    assert clips[["happy", "sad"]].to_numpy().tolist() == [[0, 1], [1, 0], [0, 1]]
    # fold f tests on fold id f, develops on the next (wrapping), trains on the rest
    assert clips[["split_1", "split_2", "split_3"]].to_numpy().tolist() == [
        ["test", "train", "dev"], ["dev", "test", "train"], ["train", "dev", "test"]]
    actors = pd.read_csv(out / "actors.csv", keep_default_na=False)
    assert actors.to_dict("list") == {"actor": [1, 2, 3], "speaker": ["amy", "bob", "cat"],
                                      "gender": ["Female", "Male", "Female"],
                                      "dialect": ["south", "north", ""]}
    s = json.loads((out / "schema.json").read_text())
    assert s["classes"] == ["happy", "sad"] and s["folds"] == 3
    assert s["attributes"] == [{"name": "gender", "column": "gender", "groups": ["Male", "Female"]},
                               {"name": "dialect", "column": "dialect", "groups": ["north", "south"],
                                "excluded": [""]}]


def test_manifest_jsonl_soft_object_labels_and_split_columns(tmp_path):
    rows = [{"path": "a.wav", "speaker": "x", "label": {"joy": 0.5, "calm": 0.5}, "split_1": "test", "split_2": "train"},
            {"path": "b.wav", "speaker": "y", "label": {"joy": 2, "calm": 2}, "split_1": "train", "split_2": "test"},
            {"path": "c.wav", "speaker": "y", "label": "calm", "split_1": "dev", "split_2": "test"}]
    params = _manifest(tmp_path, "".join(json.dumps(r) + "\n" for r in rows), "jsonl")
    with pytest.raises(InputError, match=r"m\.jsonl, line 2: .*outside \[0, 1\]"):
        corpus.build(tmp_path / "corpus", {"corpus": params, "seed": 0})
    rows[1]["label"] = {"joy": 0.2, "calm": 0.2}
    params = _manifest(tmp_path, "".join(json.dumps(r) + "\n" for r in rows), "jsonl")
    with pytest.raises(InputError, match=r"m\.jsonl, line 2: the class shares sum to 0.4"):
        corpus.build(tmp_path / "corpus", {"corpus": params, "seed": 0})
    out = corpus.build(tmp_path / "corpus", {"corpus": dict(params, renormalise=True), "seed": 0})
    clips = pd.read_csv(out / "clips.csv")
    assert list(clips.columns) == ["file", "actor", "calm", "joy", "split_1", "split_2"]
    assert clips[["calm", "joy"]].to_numpy().tolist() == [[0.5, 0.5], [0.5, 0.5], [1.0, 0.0]]
    assert json.loads((out / "schema.json").read_text())["attributes"] == []


@pytest.mark.parametrize("edit, message", [
    (lambda r: [(n, p, s, g, sp) for n, p, s, g, sp in r if n != "c.wav"] + [("c.wav", (0.0, 1.0), "10", "F", ["Train", "Train"])],
     r"labels_consensus_2\.csv: fold 2 has no test clips"),
    (lambda r: r + [("d.wav", (0.5, 0.5), "10", "F", ["Test", "Test"])],
     r"labels_consensus_1\.csv, line 5: speaker 10 is in fold 1's test set and in its train set"),
    (lambda r: r + [("b.wav", (0.5, 0.5), "7", "M", ["Test", "Train"])],
     r"labels_consensus_1\.csv, line 5: duplicate file b\.wav \(also line 3\)"),
    (lambda r: r + [("d.wav", (1.5, -0.5), "10", "F", ["Train", "Test"])],
     r"labels_consensus_1\.csv, line 5: class calm is '1\.5', outside \[0, 1\]"),
    (lambda r: r + [("d.wav", ("x", 0.5), "10", "F", ["Train", "Test"])],
     r"labels_consensus_1\.csv, line 5: class calm is 'x', not a number"),
    (lambda r: r + [("d.wav", (0.6, 0.6), "10", "F", ["Train", "Test"])],
     r"labels_consensus_1\.csv, line 5: the class shares sum to 1\.2, not 1"),
    (lambda r: r + [("d.wav", (0.5, 0.5), "10", "M", ["Train", "Test"])],
     r"labels_consensus_1\.csv, line 5: speaker 10 has gender 'Male' here and 'Female'"),
    (lambda r: r + [("d.wav", (0.5, 0.5), "11", "M", ["Test", "Test"])],
     r"labels_consensus_2\.csv, line 5: speaker 11 is in the test sets of folds 1 and 2"),
])
def test_emo_superb_bad_input_is_one_line_naming_file_and_row(tmp_path, edit, message):
    params = _emo(tmp_path, edit(list(TINY)))
    with pytest.raises(InputError, match=message) as err:
        corpus.build(tmp_path / "corpus", {"corpus": params, "seed": 0})
    assert "\n" not in str(err.value)
    assert not (tmp_path / "corpus").exists()


def test_emo_superb_bad_folders(tmp_path):
    params = _emo(tmp_path, TINY)
    sf.write(tmp_path / "audio" / "extra.wav", tone(0.5, 150), SAMPLE_RATE)
    with pytest.raises(InputError, match=r"labels: 1 audio files in corpus.audio_dir are not in the labels \(e\.g\. extra\.wav\)"):
        corpus.build(tmp_path / "corpus", {"corpus": params, "seed": 0})
    (tmp_path / "audio" / "extra.wav").unlink()
    (tmp_path / "audio" / "b.wav").unlink()  # missing audio: skipped, not an error
    out = corpus.build(tmp_path / "corpus", {"corpus": params, "seed": 0})
    assert pd.read_csv(out / "skipped.csv").to_dict("list") == {"file": ["b.wav"], "reason": ["missing"]}
    f2 = tmp_path / "labels" / "labels_consensus_2.csv"
    f2.write_text(f2.read_text().replace("0.75,0.25", "0.7,0.3"))
    with pytest.raises(InputError, match=r"labels_consensus_2\.csv, line 2: s1/a\.wav differs from labels_consensus_1\.csv"):
        corpus.build(tmp_path / "c2", {"corpus": params, "seed": 0})
    f2.write_text(f2.read_text().replace("FileName,", "Name,"))
    with pytest.raises(InputError, match=r"labels_consensus_2\.csv: missing column FileName"):
        corpus.build(tmp_path / "c2", {"corpus": params, "seed": 0})


def test_emo_superb_speakers_table_adds_categorical_and_binned_attributes(tmp_path):
    params = _emo(tmp_path, TINY)
    (tmp_path / "spk.csv").write_text("SpkrID,age,accent\n7,30,\n10,61,irish\n")
    params["speakers"] = str(tmp_path / "spk.csv")
    with pytest.raises(InputError, match=r"corpus\.bins\.age"):
        corpus.build(tmp_path / "corpus", {"corpus": params, "seed": 0})
    params["bins"] = {"age": {"edges": [0, 50, 100], "names": ["young", "old"]}}
    (tmp_path / "spk.csv").write_text("SpkrID,age,accent\n7,30,scots\n10,61,irish\n")
    out = corpus.build(tmp_path / "corpus", {"corpus": params, "seed": 0})
    s = json.loads((out / "schema.json").read_text())
    assert [a["name"] for a in s["attributes"]] == ["gender", "age", "accent"]
    assert s["attributes"][1]["edges"] == [0, 50, 100] and s["attributes"][2]["groups"] == ["irish", "scots"]
    assert list(pd.read_csv(out / "actors.csv")["accent"]) == ["scots", "irish"]


@pytest.mark.parametrize("text, message", [
    ("speaker,label,split\nx,a,test\n", r"m\.csv: missing column path"),
    ("path,speaker,split\na.wav,x,test\n", r"m\.csv: missing column label"),
    ("path,speaker,label\na.wav,x,a\n", r"m\.csv: missing column split_1"),
    ("path,speaker,label_a,label_b,split\na.wav,x,0.5,0.5,test\na.wav,y,0.5,0.5,test\n",
     r"m\.csv, line 3: duplicate file a\.wav \(also line 2\)"),
    ("path,speaker,label_a,label_b,split\na.wav,x,0.5,0.5,test\nb.wav,y,0.5,0.5,exam\n",
     r"m\.csv, line 3: split is 'exam'"),
    ("path,speaker,label_a,label_b,split_1,split_2\na.wav,x,1,0,test,train\nb.wav,y,0,1,train,test\n"
     "c.wav,x,0.5,0.5,train,train\n", r"m\.csv, line 4: speaker x is in fold 1's test set and in its train set"),
])
def test_manifest_bad_input_is_one_line_naming_file_and_row(tmp_path, text, message):
    params = _manifest(tmp_path, text)
    with pytest.raises(InputError, match=message):
        corpus.build(tmp_path / "corpus", {"corpus": params, "seed": 0})


def test_generated_corpora_import_alike_in_both_formats(tmp_path):
    kw = dict(n_speakers=5, n_folds=5, clips_per_speaker=2, seconds=(1.0, 1.5))
    e = corpora.emo_superb(tmp_path / "e", **kw)
    m = corpora.manifest(tmp_path / "m", fmt="jsonl", **kw)
    a = corpus.build(tmp_path / "a", {"corpus": dict(USER, name="emo-superb", labels_dir=str(e["labels_dir"]),
                                                     audio_dir=str(e["audio_dir"])), "seed": 0})
    b = corpus.build(tmp_path / "b", {"corpus": dict(USER, name="manifest", manifest=str(m["manifest"]),
                                                     audio_dir=str(m["audio_dir"])), "seed": 0})
    for name in ("clips.csv", "actors.csv", "skipped.csv"):
        assert (a / name).read_text() == (b / name).read_text(), name
    # EMO-SUPERB labels also record how SpkrID became speakers (here: as given)
    schema_a = json.loads((a / "schema.json").read_text())
    assert schema_a.pop("speaker_rule")["description"] == "speakers = SpkrID = 5"
    assert schema_a == json.loads((b / "schema.json").read_text())
    clips = pd.read_csv(a / "clips.csv")
    assert clips[list(corpora.CLASSES)].sum(axis=1).to_numpy() == pytest.approx(np.ones(len(clips)))
    for f in range(1, 6):
        assert (clips[f"split_{f}"] == "test").sum() == 2


def test_generic_importer_reads_real_emo_superb_crema_d_like_read_labels(reference_data):
    labels_dir = reference_data / "emo-superb/CREMA-D/Primary"
    source = corpus.read_emo_superb(labels_dir)
    ref = corpus.read_labels([reference_data / corpus.LABELS.format(f) for f in range(1, 6)])
    assert source["classes"] == tuple(EMOTIONS) and source["n_folds"] == 5
    got = pd.DataFrame(source["labels"], columns=list(EMOTIONS), index=source["sources"])
    got[[f"split_{f}" for f in range(1, 6)]] = source["splits"]
    got["actor"] = [int(s) for s in source["speakers"]]
    got = got.loc[list(ref["file"])]
    assert np.allclose(got[list(EMOTIONS)], ref[list(EMOTIONS)])
    for f in range(1, 6):
        assert list(got[f"split_{f}"]) == list(ref[f"split_{f}"])
    assert list(got["actor"]) == list(ref["actor"])
    assert set(source["attributes"]["gender"]) == {"Male", "Female"}
    corpus._check_folds(source["splits"], source["speakers"], source["where"], 5)


def test_user_corpus_flat_name_clash_and_no_audio_at_all(tmp_path):
    params = _manifest(tmp_path, "path,speaker,label,split\na/b.wav,x,joy,test\na__b.wav,y,calm,train\n",
                       files=())
    params["classes"] = ["calm", "joy"]
    with pytest.raises(InputError, match=r"m\.csv, line 3: file name a__b\.wav clashes with .*m\.csv, line 2"):
        corpus.build(tmp_path / "corpus", {"corpus": params, "seed": 0})
    params = dict(_manifest(tmp_path, "path,speaker,label,split\nb.wav,x,joy,test\nc.wav,y,calm,train\n",
                            files=()), classes=["calm", "joy"])
    with pytest.raises(InputError, match=r"corpus\.audio_dir: no usable clip among 2 \(missing: 2\)"):
        corpus.build(tmp_path / "corpus", {"corpus": params, "seed": 0})
    assert not (tmp_path / "corpus").exists()
