"""Does the surrogate corpus carry the gender confound? A quick linear probe (PROTOCOL section 8).

Features: 40-bin log-mel mean and std per clip. Model: multinomial logistic regression on the soft
vote distribution (each clip expanded to six rows weighted by p_k, which is exactly soft-target
cross-entropy), with PROTOCOL section 3's class-balanced weights. Fold 1 of the block folds.
Compared: training on the whole train split ("unbiased"), training on its 1:20 gender-biased
subset (fairser.split), and the biased subset reweighted with true gender (fairser.debias RW).
Reports macro F1 and the gender TPR gap (fairser.metrics) on fold 1's test clips, plus the
generation time and the accuracy of the pitch rule's median F0 (fairser.idi) at 165 Hz.

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

from fairser import metrics, surrogate
from fairser.constants import SAMPLE_RATE
from fairser.schema import CREMA_D_CLASSES
from fairser.corpus import block_folds
from fairser.debias.weights import rw_weights
from fairser.idi import median_f0
from fairser.schema import GENDER_GROUPS
from fairser.split import bias_split, majority_group_by_class, majority_label
from fairser.train import class_weights

torch.set_num_threads(1)
MEL = torchaudio.transforms.MelSpectrogram(SAMPLE_RATE, n_fft=400, hop_length=160, n_mels=40)


def features(x: np.ndarray) -> np.ndarray:
    logmel = torch.log(MEL(torch.from_numpy(x)) + 1e-6)
    return torch.cat([logmel.mean(1), logmel.std(1)]).numpy()


def probe(x, p, extra_weight=None):
    w_c = class_weights(p)  # PROTOCOL section 3, the trainer's own
    w_i = (p @ w_c) * (1.0 if extra_weight is None else extra_weight)
    k = p.shape[1]
    model = LogisticRegression(C=1.0, max_iter=2000)
    model.fit(np.repeat(x, k, 0), np.tile(np.arange(k), len(x)),
              sample_weight=(p * w_i[:, None]).ravel())
    return model


def scores(prob, p, male):
    y, yhat = metrics.binarize(p, 1 / p.shape[1]), metrics.binarize(prob, 1 / p.shape[1])
    return (metrics.macro_f1(y_true=y, y_pred=yhat),
            metrics.tpr_gap(y_true=y, y_pred=yhat, groups=np.where(male, "Male", "Female")))


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
          f"median F0 male {np.nanmedian(f0s[male]):.0f} Hz, female {np.nanmedian(f0s[~male]):.0f} Hz")

    p = clips[list(CREMA_D_CLASSES)].to_numpy()
    split = clips["actor"].map({a: s[0] for a, s in block_folds(people["actor"]).items()}).to_numpy()
    train, test = split == "train", split == "test"
    labels = majority_label(p)
    genders = np.where(male, "Male", "Female")
    biased = bias_split(files=clips["file"].to_numpy(), split=split, labels=labels, groups=genders,
                        majority=majority_group_by_class(labels=labels, groups=genders,
                                                         classes=CREMA_D_CLASSES,
                                                         group_names=GENDER_GROUPS),
                        classes=CREMA_D_CLASSES, group_names=GENDER_GROUPS,
                        ratio=args.ratio, seed=args.seed) & train
    rw = rw_weights(labels[biased], male[biased].astype(int))  # RW with true gender
    print(f"train clips {train.sum()}, biased subset {biased.sum()}")
    for name, rows, extra in [("unbiased ERM", train, None), (f"1:{args.ratio} biased ERM", biased, None),
                              ("biased + RW (true gender)", biased, rw)]:
        model = probe(x[rows], p[rows], extra)
        f1, gap = scores(model.predict_proba(x[test]), p[test], male[test])
        print(f"{name:28s} F1 {f1:.3f}  TPR gap {gap:.3f}")


if __name__ == "__main__":
    main()
