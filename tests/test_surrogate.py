"""The surrogate generator: CREMA-D's shape, EMO-SUPERB's label form, and the cues it plants."""

import numpy as np
import pandas as pd
import pytest

from fairser import surrogate
from fairser.constants import SAMPLE_RATE
from fairser.schema import CREMA_D_CLASSES as EMOTIONS


def test_actors_have_crema_d_marginals_at_91():
    people = surrogate.actors(91, np.random.default_rng(0))
    assert list(people["actor"]) == list(range(1001, 1092))
    assert people["sex"].value_counts().to_dict() == {"Male": 48, "Female": 43}
    assert people["race"].value_counts().to_dict() == {
        "Caucasian": 61, "African American": 22, "Asian": 7, "Unknown": 1}
    ages = people["age"]
    assert ages.between(20, 74).all()
    groups = [ages.between(20, 35).sum(), ages.between(36, 49).sum(), ages.between(50, 74).sum()]
    assert groups == [51, 22, 18]


def test_actor_marginals_scale_and_every_block_of_ten_has_both_sexes():
    people = surrogate.actors(10, np.random.default_rng(1))
    assert people["sex"].value_counts().to_dict() == {"Male": 5, "Female": 5}  # 48/91 * 10 = 5.3
    for block in np.array_split(people["sex"].to_numpy(), 5):
        assert set(block) == {"Male", "Female"}


def test_clip_table_follows_crema_d_design():
    clips = surrogate.clip_table([1001], 12)
    assert len(clips) == 82  # 11 sentences x 6 emotions + IEO: 5 emotions x 3 levels + neutral
    ieo = clips[clips["sentence"] == "IEO"]
    assert set(ieo["file"]) >= {"1001_IEO_HAP_LO.wav", "1001_IEO_HAP_HI.wav", "1001_IEO_NEU_XX.wav"}
    assert (clips.loc[clips["sentence"] != "IEO", "level"] == "XX").all()
    assert set(clips["emotion"]) == set(EMOTIONS)


def test_vote_distribution_is_emo_superb_smoothing():
    counts = np.array([[9, 0, 0, 0, 0, 0], [3, 0, 0, 0, 6, 0]])
    p = surrogate.vote_distribution(counts)
    assert p[0] == pytest.approx([0.95, 0.01, 0.01, 0.01, 0.01, 0.01])
    assert p[1] == pytest.approx([0.01 + 0.94 / 3, 0.01, 0.01, 0.01, 0.01 + 0.94 * 2 / 3, 0.01], abs=1e-6)
    assert p.sum(1) == pytest.approx([1, 1])


def test_votes_skew_to_neutral_and_favour_female_fear_happy_sad():
    people = surrogate.actors(91, np.random.default_rng(0))
    clips = surrogate.clip_table(people["actor"], 12)
    q, counts = surrogate.simulate_votes(clips, dict(zip(people["actor"], people["sex"])),
                                         np.random.default_rng(0))
    assert counts.sum(1).min() >= 6 and counts.sum(1).max() <= 12
    share = counts / counts.sum(1, keepdims=True)
    df = clips.assign(sex=clips["actor"].map(dict(zip(people["actor"], people["sex"]))),
                      own=share[np.arange(len(clips)), clips["emotion"].map(EMOTIONS.index)])
    own = df.groupby(["emotion", "sex"])["own"].mean().unstack()
    assert own.loc["neutral"].min() > 0.6  # neutral is recognised best
    for emotion in ("fear", "happy", "sad"):
        assert own.loc[emotion, "Female"] > own.loc[emotion, "Male"]
    # About a third of clips lack a strict-majority emotion (CREMA-D: 2,430 of 7,442).
    assert 0.25 < np.mean(share.max(1) <= 0.5) < 0.42


def _median_f0(x):
    frames = np.lib.stride_tricks.sliding_window_view(x, 640)[::320]
    frames = frames[(frames**2).mean(1) > 0.3 * (x**2).mean()]
    ac = np.fft.irfft(np.abs(np.fft.rfft(frames * np.hanning(640), 2048)) ** 2)
    ac /= ac[:, :1]
    lags = np.arange(40, 267)
    ac = np.where(np.cumsum(ac[:, lags] < 0.3, 1) > 0, ac[:, lags], -1)
    return np.median(SAMPLE_RATE / lags[ac.argmax(1)])


@pytest.mark.parametrize("sex", ["Male", "Female"])
def test_synthesized_pitch_follows_the_speaker(sex):
    voice = surrogate.speaker_voice(sex, 30, np.random.default_rng(3))
    neutral = np.eye(6)[EMOTIONS.index("neutral")]
    x = surrogate.synthesize(voice, "TIE", neutral, 1.6, np.random.default_rng(4))
    assert x.dtype == np.float32 and np.abs(x).max() <= 1
    # Within three semitones: accents, declination and per-clip variation move the median.
    assert _median_f0(x) == pytest.approx(voice["f0"], rel=0.19)
    assert (_median_f0(x) < 165) == (sex == "Male")


def test_anger_is_louder_and_higher_than_neutral_sadness_quieter():
    voice = surrogate.speaker_voice("Male", 30, np.random.default_rng(5))
    rms, f0 = {}, {}
    for emotion in ("angry", "neutral", "sad"):
        xs = [surrogate.synthesize(voice, "IEO", np.eye(6)[EMOTIONS.index(emotion)], 1.0,
                                   np.random.default_rng(i)) for i in range(4)]
        rms[emotion] = np.mean([np.sqrt(np.mean(x**2)) for x in xs])
        f0[emotion] = np.mean([_median_f0(x) for x in xs])
    assert rms["angry"] > 1.5 * rms["neutral"] > 1.5 * rms["sad"]
    assert f0["angry"] > 1.1 * f0["neutral"]


def test_generate_is_deterministic_for_a_seed():
    def run(seed):
        people, clips, audio = surrogate.generate(n_actors=10, n_sentences=1, seconds=0.5, seed=seed)
        return people, clips, [next(audio) for _ in range(3)]

    a, b, c = run(0), run(0), run(1)
    pd.testing.assert_frame_equal(a[1], b[1])
    assert all(np.array_equal(x, y) for x, y in zip(a[2], b[2]))
    assert not np.array_equal(a[2][0], c[2][0])


def test_cue_weights_keep_the_acted_share():
    q = np.full((1, 6), 1 / 6)
    w = surrogate.cue_weights(q, np.array([2]))
    assert w.sum() == pytest.approx(1)
    assert w[0, 2] == pytest.approx(surrogate.ACTED_WEIGHT + (1 - surrogate.ACTED_WEIGHT) / 6)
