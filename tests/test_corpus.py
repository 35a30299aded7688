"""The corpus module: block folds, the written layout, clip decoding policy, the real metadata."""

import json

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from fairser import config, corpus
from fairser.cli import InputError
from fairser.constants import EMOTIONS, SAMPLE_RATE, SURROGATE_NOTICE


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
    params = config.load(config.Path(__file__).resolve().parents[1] / "params.yaml")
    params["corpus"]["surrogate"] = {"n_actors": 10, "n_sentences": 1, "seconds": 0.5}
    out = corpus.build(tmp_path / "c", params)
    assert len(pd.read_csv(out / "clips.csv")) == 10 * 16  # sentence IEO: 5 emotions x 3 levels + neutral


def test_local_crema_d_matches_emo_superb_labels_and_folds(tmp_path, shared_data):
    # A few fake clips under real file names; every other clip is then missing by policy.
    audio = tmp_path / "AudioWAV"
    audio.mkdir()
    names = ["1001_DFA_ANG_XX.wav", "1037_IWL_HAP_XX.wav", "1091_WSI_SAD_XX.wav"]
    for name in names:
        (audio / name).write_bytes(_wav_bytes(0.1 * np.ones(8000), SAMPLE_RATE))
    out = corpus.build_crema_d(tmp_path / "corpus", urls={}, audio_dir=audio,
                               metadata_dir=shared_data)
    clips = pd.read_csv(out / "clips.csv").set_index("file")
    assert len(clips) == 7442  # every labelled clip, usable or not
    assert sorted(p.name for p in (out / "wav").iterdir()) == sorted(names)
    for f in range(1, 6):
        ref = pd.read_csv(shared_data / f"emo-superb/CREMA-D/Primary/labels_consensus_{f}.csv")
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


def test_block_folds_reproduce_emo_superb_splits_of_every_clip(shared_data):
    clips = corpus.read_labels([shared_data / corpus.LABELS.format(f) for f in range(1, 6)])
    folds = corpus.block_folds(clips["actor"])
    for f in range(5):
        assert (clips["actor"].map(lambda a: folds[a][f]) == clips[f"split_{f + 1}"]).all()
