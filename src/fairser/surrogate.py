"""A generated stand-in for CREMA-D: same shape, file names, label format and folds; not speech.

It exists so every later stage runs offline, and it carries the confound the paper studies
(docs/PROTOCOL.md section 8): emotion cues and gender cues overlap, above all in pitch, and rater
perception of an emotion differs by the actor's sex. Three parts, each a plain function:

- `actors`: demographics with CREMA-D's published marginals (docs/PROTOCOL.md section 1),
  scaled to the number of actors.
- `clip_table` and `simulate_votes`: CREMA-D's clip design (12 sentences x 6 emotions; sentence
  IEO also at LO/MD/HI) and simulated voice-only rater votes, turned into EMO-SUPERB's smoothed
  distribution p_k = 0.01 + 0.94 c_k / N.
- `synthesize`: a source-filter voice (glottal pulse train with spectral tilt and aspiration noise,
  four formant resonators switched per syllable). Speaker F0 and formants come from sex and age;
  prosody (F0 level and range, rate, gain, tilt, breathiness, tremor, formant shift) from the
  emotion cues mixed by `cue_weights` (half the acted emotion, half the clip's perceived-emotion
  distribution), so a weakly perceived clip sounds closer to neutral.

Calibration (benchmarks/surrogate_confound.py, default corpus, fold 1, linear probe on log-mel
mean and std): unbiased F1 0.61 / gender TPR gap 0.13; 1:20 biased ERM 0.55 / 0.37; biased + RW
with true gender 0.58 / 0.16; a 165 Hz median-F0 rule finds gender for 91% of clips.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import signal

from fairser.constants import EMOTION_CODES, SAMPLE_RATE
from fairser.schema import CREMA_D_CLASSES as EMOTIONS

# CREMA-D's 12 sentences in its own order, with their syllable counts (counted from the sentence
# texts in the CREMA-D README, e.g. IEO = "It's eleven o'clock").
SENTENCES = {
    "IEO": 5, "TIE": 8, "IOM": 8, "IWW": 8, "TAI": 7, "MTI": 9,
    "IWL": 8, "ITH": 11, "DFA": 6, "ITS": 7, "TSI": 5, "WSI": 9,
}
# Emotion codes in EMOTIONS order.
CODES = tuple({v: k for k, v in EMOTION_CODES.items()}[e] for e in EMOTIONS)
# CREMA-D: sentence IEO is acted at three intensities (LO, MD, HI) for every emotion but neutral;
# every other clip is XX (unspecified), e.g. 1001_IEO_HAP_LO.wav, 1001_IEO_NEU_XX.wav.
LEVEL_SENTENCE = "IEO"
LEVELS = ("LO", "MD", "HI")

# CREMA-D demographics (VideoDemographics.csv; PROTOCOL section 1).
SEX_COUNTS = {"Male": 48, "Female": 43}
RACE_COUNTS = {"Caucasian": 61, "African American": 22, "Asian": 7, "Unknown": 1}
AGE_COUNTS = {(20, 35): 51, (36, 49): 22, (50, 74): 18}
N_CREMA_ACTORS = 91

# Voice-only confusion of CREMA-D raters: share of votes for each perceived emotion (columns,
# EMOTIONS order) given the acted emotion (rows, EMOTIONS order), pooled by actor sex. Computed
# from the queryType-1 rows of CREMA-D's processedResults/tabulatedVotes.csv (PROTOCOL section 1) and
# rounded. Raters recognise female fear, happy and sad more often than male: this sex difference
# in perception is what makes the corpus-wide majority gender differ by emotion.
CONFUSION = {
    "Male": np.array([
        [.522, .012, .206, .054, .188, .018],
        [.022, .215, .080, .111, .560, .012],
        [.132, .082, .289, .085, .384, .027],
        [.076, .111, .070, .287, .427, .030],
        [.034, .070, .058, .049, .772, .018],
        [.078, .029, .079, .073, .510, .231],
    ]),
    "Female": np.array([
        [.543, .010, .217, .048, .163, .020],
        [.015, .291, .060, .121, .499, .014],
        [.109, .112, .283, .100, .369, .028],
        [.051, .170, .055, .360, .334, .030],
        [.044, .070, .060, .052, .752, .023],
        [.061, .038, .071, .091, .384, .355],
    ]),
}
# Raters per clip in the same rows (numResponses): counts for N = 6..12 (rarer N folded in).
RATERS = np.arange(6, 13)
RATER_WEIGHTS = np.array([68, 316, 1155, 2663, 2890, 346, 4], float)
# Logit shift of the acted emotion by intensity level, set so LO is recognised far less and HI far
# more than XX, as in the same rows (angry: LO 0.28, XX 0.52, HI 0.82 of votes).
LEVEL_SHIFT = {"LO": -1.0, "MD": 0.0, "HI": 1.2, "XX": 0.0}
ACTOR_EXPRESSIVENESS_SD = 0.35  # per-actor recognisability spread (actor means 0.23-0.57)
# Concentration of the per-clip perceived distribution around its mean: raters of one clip agree
# more than a multinomial over the pooled confusion would have them (CREMA-D: two thirds of clips
# have a strict-majority emotion), so each clip draws its own distribution from a Dirichlet.
CONCENTRATION = 8.0

# Acoustic cue of each emotion (rows, EMOTIONS order) relative to neutral. Columns:
# F0 shift (semitones), F0 accent range (semitones), speaking-rate factor, gain (dB), glottal
# low-pass corner (Hz; higher = flatter tilt, brighter), breathiness (noise-to-voice ratio),
# F0 tremor depth (semitones), formant scale shift (fraction). Directions follow the usual
# findings on vocal emotion (e.g. Scherer 2003, Banse and Scherer 1996): anger, fear and joy
# raise F0 level, anger and joy widen its range and brighten the voice, sadness lowers and
# flattens F0, slows and softens it, fear adds tremor and breath, smiling raises formants.
CUE_NAMES = ("f0_st", "range_st", "rate", "gain_db", "tilt_hz", "breath", "tremor_st", "formant")
CUES = np.array([
    # f0   range rate  gain  tilt   breath trem formant
    [3.0, 6.0, 1.10, 9.0, 1800., 0.03, 0.0, 0.05],    # angry
    [-2.0, 1.0, 0.75, -7.0, 300., 0.50, 0.4, -0.03],  # sad
    [-1.0, 2.0, 0.80, 1.0, 450., 0.20, 0.0, -0.02],   # disgust
    [3.5, 3.0, 1.20, -2.0, 800., 0.45, 1.2, 0.02],    # fear
    [0.0, 2.5, 1.00, 0.0, 600., 0.10, 0.0, 0.00],     # neutral
    [3.0, 6.0, 1.08, 4.0, 1200., 0.10, 0.0, 0.07],    # happy
])

NEUTRAL = EMOTIONS.index("neutral")
CUE_GAIN = 1.6  # scales every cue's distance from neutral (calibrated with benchmarks/surrogate_confound.py)

# Peterson and Barney (1952) adult-male average formants F1-F3 (Hz) of ten American English vowels.
VOWELS = np.array([
    [270, 2290, 3010], [390, 1990, 2550], [530, 1840, 2480], [660, 1720, 2410],
    [730, 1090, 2440], [570, 840, 2410], [440, 1020, 2240], [300, 870, 2240],
    [640, 1190, 2390], [490, 1350, 1690],
], float)
F4 = 3500.0
BANDWIDTHS = np.array([70.0, 100.0, 150.0, 250.0])


def _apportion(counts: dict, n: int) -> dict:
    """Scale integer `counts` to total `n` by largest remainders (each kept >= 0)."""
    total = sum(counts.values())
    exact = {k: v * n / total for k, v in counts.items()}
    out = {k: int(np.floor(x)) for k, x in exact.items()}
    for k in sorted(exact, key=lambda k: exact[k] - out[k], reverse=True)[: n - sum(out.values())]:
        out[k] += 1
    return out


def actors(n_actors: int, rng: np.random.Generator) -> pd.DataFrame:
    """Actor ids 1001.. with sex, age and race at CREMA-D's marginals scaled to `n_actors`.

    Sexes are spread evenly over the id range, so every fold block (consecutive ids) gets its
    share of each sex, as CREMA-D's blocks do.
    """
    sexes = _apportion(SEX_COUNTS, n_actors)
    # Even spread: the i-th male sits at rank floor((i + u) * n / n_male), one random offset u.
    n_male = sexes["Male"]
    male_slots = set(np.floor((np.arange(n_male) + rng.uniform(0.2, 0.8)) * n_actors / n_male).astype(int))
    sex = ["Male" if i in male_slots else "Female" for i in range(n_actors)]
    races = [r for r, c in _apportion(RACE_COUNTS, n_actors).items() for _ in range(c)]
    ages = [int(rng.integers(lo, hi + 1)) for (lo, hi), c in _apportion(AGE_COUNTS, n_actors).items()
            for _ in range(c)]
    return pd.DataFrame({
        "actor": np.arange(1001, 1001 + n_actors),
        "sex": sex,
        "age": rng.permutation(ages),
        "race": rng.permutation(races),
    })


def clip_table(actor_ids, n_sentences: int) -> pd.DataFrame:
    """CREMA-D's clip design for each actor over the first `n_sentences` sentences.

    Columns file, actor, sentence, emotion (EMOTIONS name), level.
    """
    rows = []
    for actor in actor_ids:
        for sentence in list(SENTENCES)[:n_sentences]:
            for code, emotion in zip(CODES, EMOTIONS):
                levels = LEVELS if sentence == LEVEL_SENTENCE and emotion != "neutral" else ("XX",)
                for level in levels:
                    rows.append((f"{actor}_{sentence}_{code}_{level}.wav", int(actor), sentence,
                                 emotion, level))
    return pd.DataFrame(rows, columns=["file", "actor", "sentence", "emotion", "level"])


def simulate_votes(clips: pd.DataFrame, sex_of: dict, rng: np.random.Generator):
    """Perceived-emotion distribution q (N, 6) and voice-only rater vote counts (N, 6) per clip.

    q ~ Dirichlet(CONCENTRATION * m), m = softmax(log CONFUSION[sex][acted] + s * onehot(acted)),
    where s is the actor's expressiveness plus the level shift; the votes are
    Multinomial(n_raters, q) with n_raters drawn from CREMA-D's rater-count distribution.
    """
    acted = clips["emotion"].map(EMOTIONS.index).to_numpy()
    sexes = clips["actor"].map(sex_of).to_numpy()
    base = np.where((sexes == "Male")[:, None], CONFUSION["Male"][acted], CONFUSION["Female"][acted])
    actor_ids = np.unique(clips["actor"])
    expr = dict(zip(actor_ids, rng.normal(0.0, ACTOR_EXPRESSIVENESS_SD, len(actor_ids))))
    shift = clips["actor"].map(expr).to_numpy() + clips["level"].map(LEVEL_SHIFT).to_numpy()
    logits = np.log(base)
    logits[np.arange(len(acted)), acted] += shift
    m = np.exp(logits - logits.max(1, keepdims=True))
    m /= m.sum(1, keepdims=True)
    # Dirichlet by normalised gammas, vectorised over clips.
    g = rng.gamma(CONCENTRATION * m)
    q = np.maximum(g, 1e-12) / np.maximum(g, 1e-12).sum(1, keepdims=True)
    n_raters = rng.choice(RATERS, size=len(q), p=RATER_WEIGHTS / RATER_WEIGHTS.sum())
    counts = np.stack([rng.multinomial(n, qi) for n, qi in zip(n_raters, q)])
    return q, counts


def vote_distribution(counts: np.ndarray) -> np.ndarray:
    """EMO-SUPERB's smoothed label p_k = 0.01 + 0.94 c_k / N, rounded to 6 decimals like its files."""
    counts = np.asarray(counts, float)
    return np.round(0.01 + 0.94 * counts / counts.sum(1, keepdims=True), 6)


def speaker_voice(sex: str, age: int, rng: np.random.Generator) -> dict:
    """One speaker's fixed voice: mean F0 (Hz), formant scale, breathiness, jitter, loudness.

    Adult means: male F0 about 115 Hz, female about 205 Hz, female formants about 17% higher
    (shorter vocal tract; Peterson and Barney 1952). With age, female F0 falls and male F0 rises a
    little after 60, and voices grow breathier and shakier.
    """
    old = max(age - 50, 0) / 25.0
    if sex == "Male":
        f0 = 115.0 * np.exp(rng.normal(0, 0.12)) * (1 + 0.08 * max(age - 60, 0) / 15)
        scale = 1.0 * np.exp(rng.normal(0, 0.04))
        breath = 0.05
    else:
        f0 = 210.0 * np.exp(rng.normal(0, 0.10)) * (1 - 0.12 * (age - 20) / 55)
        scale = 1.17 * np.exp(rng.normal(0, 0.04))
        breath = 0.12
    return {
        "f0": f0,
        "scale": scale * (1 - 0.02 * old),
        "breath": breath * np.exp(rng.normal(0, 0.3)) + 0.1 * old,
        "jitter_st": 0.15 + 0.25 * old,
        "loud_db": rng.normal(0, 1.5),
        "tilt": np.exp(rng.normal(0, 0.1)),
    }


def _sentence_vowels(sentence: str) -> np.ndarray:
    # Fixed pseudo-phonetic content per sentence: the same vowels for every speaker and emotion,
    # so the sentence carries no emotion or speaker information.
    seed = list(SENTENCES).index(sentence)
    return np.random.default_rng(1000 + seed).integers(0, len(VOWELS), SENTENCES[sentence])


def _resonator_sos(freqs: np.ndarray, bws: np.ndarray) -> np.ndarray:
    # Second-order resonators (one per formant) with unit gain at DC, as second-order sections.
    r = np.exp(-np.pi * bws / SAMPLE_RATE)
    c = 2 * r * np.cos(2 * np.pi * np.minimum(freqs, 0.45 * SAMPLE_RATE) / SAMPLE_RATE)
    sos = np.zeros((len(freqs), 6))
    sos[:, 0] = 1 - c + r**2
    sos[:, 3] = 1.0
    sos[:, 4] = -c
    sos[:, 5] = r**2
    return sos


def synthesize(voice: dict, sentence: str, weights: np.ndarray, seconds: float,
               rng: np.random.Generator) -> np.ndarray:
    """One clip as float32 samples at SAMPLE_RATE in [-1, 1].

    `weights` (6,) mixes the emotions' cues: the prosody is weights @ CUES plus per-clip
    variation (see `cue_weights`). `seconds` is the mean
    clip duration over sentences at neutral rate.
    """
    cue = dict(zip(CUE_NAMES, CUES[NEUTRAL] + CUE_GAIN * (weights @ (CUES - CUES[NEUTRAL]))))
    vowels = _sentence_vowels(sentence)
    n_syl = len(vowels)
    mean_syl = np.mean(list(SENTENCES.values()))
    # 15% of the mean duration is leading and trailing silence, the rest is speech.
    syl_dur = 0.85 * seconds / mean_syl / (cue["rate"] * np.exp(rng.normal(0, 0.08)))
    durs = syl_dur * np.exp(rng.normal(0, 0.15, n_syl))
    lead, tail = rng.uniform(0.04, 0.11, 2) * seconds
    edges = lead + np.concatenate([[0.0], np.cumsum(durs)])
    n = int(round((edges[-1] + tail) * SAMPLE_RATE))
    t = np.arange(n) / SAMPLE_RATE
    centres = (edges[:-1] + edges[1:]) / 2

    # F0 contour in semitones around the speaker mean: emotion level, declination over the
    # utterance, accents on random syllables within the emotion's range, jitter, tremor.
    f0_shift = cue["f0_st"] + rng.normal(0, 0.5)
    rng_st = cue["range_st"] * np.exp(rng.normal(0, 0.2))
    accents = rng_st * rng.uniform(0, 1, n_syl) * (rng.uniform(0, 1, n_syl) < 0.5)
    decl = -0.4 * rng_st * (centres - centres[0]) / max(centres[-1] - centres[0], 1e-3)
    knots = f0_shift + decl + accents + rng.normal(0, voice["jitter_st"], n_syl)
    st = np.interp(t, centres, knots)
    st += cue["tremor_st"] * np.sin(2 * np.pi * rng.uniform(5, 8) * t + rng.uniform(0, 2 * np.pi))
    f0 = voice["f0"] * 2.0 ** (st / 12)

    # Glottal source: one impulse per period, shaped by a two-pole low-pass (spectral tilt) and
    # differentiated (lip radiation).
    # Each impulse is split over the two samples around its true instant (linear interpolation):
    # whole-sample impulses would jitter by up to a sample and add sub-harmonic sidebands.
    phase = np.cumsum(f0) / SAMPLE_RATE + rng.uniform()
    cycle = np.floor(phase)
    idx = np.flatnonzero(np.diff(cycle, prepend=cycle[0]))
    late = (phase[idx] - cycle[idx]) / (f0[idx] / SAMPLE_RATE)  # samples since the true instant
    pulses = np.zeros(n)
    np.add.at(pulses, idx, 1 - late)
    np.add.at(pulses, np.maximum(idx - 1, 0), late)
    corner = cue["tilt_hz"] * voice["tilt"] * np.exp(rng.normal(0, 0.1))
    a = np.exp(-2 * np.pi * corner / SAMPLE_RATE)
    voiced = signal.lfilter([(1 - a) ** 2], [1, -2 * a, a * a], pulses)
    voiced = np.diff(voiced, prepend=0.0)
    voiced /= max(np.sqrt(np.mean(voiced**2)), 1e-12)  # unit RMS, so `breath` is a noise-to-voice ratio

    # Each syllable: a consonant-like noise onset (first quarter) then a voiced nucleus.
    pos = np.clip(np.searchsorted(edges, t, side="right") - 1, 0, n_syl - 1)
    within = (t - edges[pos]) / durs[pos]
    inside = (t >= edges[0]) & (t < edges[-1])
    nucleus = np.clip((within - 0.25) / 0.1, 0, 1) * np.clip((1.0 - within) / 0.15, 0, 1) * inside
    onset = np.clip(1 - np.abs(within - 0.12) / 0.12, 0, 1) * inside
    noise = rng.standard_normal(n)
    breath = (voice["breath"] + cue["breath"]) * np.exp(rng.normal(0, 0.2))
    excitation = nucleus * (voiced + breath * noise) + 0.3 * onset * np.diff(noise, prepend=0.0)

    # Vocal tract: four formants per syllable, scaled by the speaker's and the emotion's formant
    # scale; the filter state carries over at syllable boundaries so the output is continuous.
    scale = voice["scale"] * (1 + cue["formant"]) * np.exp(rng.normal(0, 0.01))
    out = np.empty(n)
    zi = np.zeros((4, 2))
    bounds = np.searchsorted(t, edges[1:-1])
    starts = np.concatenate([[0], bounds])
    stops = np.concatenate([bounds, [n]])
    for k, (s0, s1) in enumerate(zip(starts, stops)):
        freqs = np.append(VOWELS[vowels[k]], F4) * scale
        out[s0:s1], zi = signal.sosfilt(_resonator_sos(freqs, BANDWIDTHS), excitation[s0:s1], zi=zi)

    rms = np.sqrt(np.mean(out[inside] ** 2)) if inside.any() else 1.0
    gain_db = cue["gain_db"] + voice["loud_db"] + rng.normal(0, 1.0)
    out *= 0.05 * 10 ** (gain_db / 20) / max(rms, 1e-9)
    out += 1e-4 * rng.standard_normal(n)  # a recording floor, so log spectra stay finite
    return np.clip(out, -1, 1).astype(np.float32)


ACTED_WEIGHT = 0.5


def cue_weights(q: np.ndarray, acted: np.ndarray) -> np.ndarray:
    """How much of each emotion's cue a clip carries: (1 - a) q + a onehot(acted), a = ACTED_WEIGHT.

    The perceived distribution q alone would make most clips sound nearly neutral (raters hear
    neutral in most of them); real acted speech carries its acted emotion more clearly than voice-only
    raters report, so the acted emotion keeps a fixed share and q, which also holds the
    intensity level and the actor's expressiveness, sets the rest.
    """
    w = (1 - ACTED_WEIGHT) * np.asarray(q, float)
    w[np.arange(len(w)), acted] += ACTED_WEIGHT
    return w


def generate(*, n_actors: int = 91, n_sentences: int = 12, seconds: float = 1.6, seed: int = 0):
    """Return (actors, clips, audio) of the surrogate corpus, deterministic for `seed`.

    actors: DataFrame actor, sex, age, race. clips: DataFrame file, actor, sentence, emotion, level
    and the vote distribution p in EMOTIONS columns. audio: an iterator of float32 arrays in clips
    order. Each clip has its own random stream (seed, clip index), so a clip's audio does not
    depend on the order in which clips are made.
    """
    root = np.random.SeedSequence(seed)
    rng_actors, rng_votes, rng_voices = (np.random.default_rng(s) for s in root.spawn(3))
    people = actors(n_actors, rng_actors)
    clips = clip_table(people["actor"], n_sentences)
    sex_of = dict(zip(people["actor"], people["sex"]))
    q, counts = simulate_votes(clips, sex_of, rng_votes)
    clips[list(EMOTIONS)] = vote_distribution(counts)
    weights = cue_weights(q, clips["emotion"].map(EMOTIONS.index).to_numpy())
    voices = {a: speaker_voice(s, age, rng_voices)
              for a, s, age in zip(people["actor"], people["sex"], people["age"])}

    def audio():
        for i, (actor, sentence) in enumerate(zip(clips["actor"], clips["sentence"])):
            rng = np.random.default_rng([seed, 7, i])
            yield synthesize(voices[actor], sentence, weights[i], seconds, rng)

    return people, clips, audio()
