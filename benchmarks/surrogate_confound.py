"""Does the surrogate corpus carry the gender confound? A quick linear probe (SPEC section 8).

Features: 40-bin log-mel mean and std per clip. Model: multinomial logistic regression on the soft
vote distribution (each clip expanded to six rows weighted by p_k, which is exactly soft-target
cross-entropy), with SPEC section 3's class-balanced weights. Fold 1 of the block folds.
Compared: training on the whole train split ("unbiased"), training on its 1:20 gender-biased
subset (SPEC section 2, done ad hoc here; the pipeline's own version is fairser.split), and the
biased subset reweighted with true gender (SPEC section 4, RW). Reports macro F1 and the gender
TPR gap (SPEC section 5) on fold 1's test clips, plus the generation time and the accuracy of a
165 Hz median-F0 gender rule.

    python benchmarks/surrogate_confound.py                # generate the default corpus in memory
    python benchmarks/surrogate_confound.py --corpus data/corpus   # or read a written corpus
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf
import torch
import torchaudio
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from fairser import surrogate
from fairser.constants import EMOTIONS, POSITIVE_THRESHOLD, SAMPLE_RATE
from fairser.corpus import block_folds

torch.set_num_threads(1)
MEL = torchaudio.transforms.MelSpectrogram(SAMPLE_RATE, n_fft=400, hop_length=160, n_mels=40)


def features(x: np.ndarray) -> np.ndarray:
    logmel = torch.log(MEL(torch.from_numpy(x)) + 1e-6)
    return torch.cat([logmel.mean(1), logmel.std(1)]).numpy()


def median_f0(x: np.ndarray) -> float:
    # Autocorrelation pitch over voiced-looking frames, 60-400 Hz; enough for a sanity check.
    frames = torch.from_numpy(x).unfold(0, 640, 320).numpy()
    frames = frames[np.sqrt((frames**2).mean(1)) > 0.3 * np.sqrt((x**2).mean())]
    spec = np.fft.rfft(frames * np.hanning(640), 2048)
    ac = np.fft.irfft(np.abs(spec) ** 2)
    ac = ac / np.maximum(ac[:, :1], 1e-12)
    # The first lag after the zero-lag lobe has decayed, within 60-400 Hz.
    lags = np.arange(40, 267)
    ac = np.where(np.cumsum(ac[:, lags] < 0.3, 1) > 0, ac[:, lags], -1)
    return float(np.median(SAMPLE_RATE / lags[ac.argmax(1)]))


def class_weights(p: np.ndarray) -> np.ndarray:
    n = len(p)
    n_c = np.maximum((p > POSITIVE_THRESHOLD).sum(0), 1)
    beta = (n - 1) / n
    w = (1 - beta) / (1 - beta**n_c)
    return w * len(w) / w.sum()


def probe(x, p, extra_weight=None):
    w_c = class_weights(p)
    w_i = (p @ w_c) * (1.0 if extra_weight is None else extra_weight)
    k = p.shape[1]
    model = LogisticRegression(C=1.0, max_iter=2000)
    model.fit(np.repeat(x, k, 0), np.tile(np.arange(k), len(x)),
              sample_weight=(p * w_i[:, None]).ravel())
    return model


def scores(prob, p, male):
    y, yhat = p > POSITIVE_THRESHOLD, prob > POSITIVE_THRESHOLD
    f1 = []
    gaps = []
    for k in range(y.shape[1]):
        tp = (y[:, k] & yhat[:, k]).sum()
        f1.append(2 * tp / max(y[:, k].sum() + yhat[:, k].sum(), 1))
        tpr = [yhat[y[:, k] & (male == g), k].mean() for g in (True, False)]
        gaps.append(abs(tpr[0] - tpr[1]))
    return np.mean(f1), np.sqrt(np.mean(np.square(gaps))), np.round(f1, 2), np.round(gaps, 2)


def biased_subset(clips, share, male, train, ratio, rng):
    """SPEC section 2: strict-majority clips, majority gender kept, floor(n_maj / ratio) of the rest."""
    label = np.where(share.max(1) > 0.5, share.argmax(1), -1)
    keep = np.zeros(len(clips), bool)
    for k in range(len(EMOTIONS)):
        major_male = (label == k)[male].sum() >= (label == k)[~male].sum()
        maj = np.flatnonzero(train & (label == k) & (male == major_male))
        mino = np.flatnonzero(train & (label == k) & (male != major_male))
        keep[maj] = True
        keep[rng.choice(mino, min(len(maj) // ratio, len(mino)), replace=False)] = True
    return keep


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", type=Path, help="a written corpus folder (default: generate)")
    ap.add_argument("--n-actors", type=int, default=91)
    ap.add_argument("--n-sentences", type=int, default=12)
    ap.add_argument("--seconds", type=float, default=1.6)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--ratio", type=int, default=20)
    args = ap.parse_args()

    t0 = time.time()
    if args.corpus:
        clips = pd.read_csv(args.corpus / "clips.csv")
        people = pd.read_csv(args.corpus / "actors.csv")
        audio = (sf.read(args.corpus / "wav" / f, dtype="float32")[0] for f in clips["file"])
    else:
        people, clips, audio = surrogate.generate(n_actors=args.n_actors, n_sentences=args.n_sentences,
                                                  seconds=args.seconds, seed=args.seed)
    feats, f0s, gen = [], [], 0.0
    for x in audio:
        t1 = time.time()
        feats.append(features(x))
        f0s.append(median_f0(x))
        gen -= time.time() - t1
    gen += time.time() - t0
    x = StandardScaler().fit_transform(np.stack(feats))
    male = clips["actor"].map(dict(zip(people["actor"], people["sex"]))).to_numpy() == "Male"
    print(f"clips {len(clips)}, generation (or reading) {gen:.1f} s, features {time.time() - t0 - gen:.1f} s")
    f0s = np.array(f0s)
    print(f"165 Hz median-F0 rule: gender accuracy {np.mean((f0s < 165) == male):.3f}; "
          f"median F0 male {np.median(f0s[male]):.0f} Hz, female {np.median(f0s[~male]):.0f} Hz")

    p = clips[list(EMOTIONS)].to_numpy()
    share = (p - 0.01) / 0.94
    split = clips["actor"].map({a: s[0] for a, s in block_folds(people["actor"]).items()}).to_numpy()
    train, test = split == "train", split == "test"
    rng = np.random.default_rng(args.seed)
    biased = biased_subset(clips, share, male, train, args.ratio, rng)
    # RW with true gender: each (class, gender) cell of the biased set weighs the same in its class.
    label = share.argmax(1)
    rw = np.zeros(len(clips))
    for k in range(len(EMOTIONS)):
        cells = [biased & (label == k) & (male == g) for g in (True, False)]
        sizes = [c.sum() for c in cells if c.sum()]
        for c in cells:
            if c.sum():
                rw[c] = (biased & (label == k)).sum() / (len(sizes) * c.sum())
    print(f"train clips {train.sum()}, biased subset {biased.sum()}")
    for name, rows, extra in [("unbiased ERM", train, None), (f"1:{args.ratio} biased ERM", biased, None),
                              ("biased + RW (true gender)", biased, rw[biased])]:
        model = probe(x[rows], p[rows], extra)
        f1, gap, f1s, gaps = scores(model.predict_proba(x[test]), p[test], male[test])
        print(f"{name:28s} F1 {f1:.3f}  TPR gap {gap:.3f}   per class F1 {f1s} gaps {gaps}")


if __name__ == "__main__":
    main()
