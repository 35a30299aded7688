"""Coverage of `fairser audit`'s per-group rate intervals, by simulation (not a test).

    OMP_NUM_THREADS=1 PYTHONPATH=src .venv/bin/python benchmarks/audit_coverage.py   # ~4 min, 2 cores

A planted population: in group g, each speaker's per-clip detection probability (their TPR for
one class) is drawn from Beta(a_g, b_g), so the true group TPR is a_g / (a_g + b_g); every clip
is a positive of that class. One replicate draws `n` speakers per group and `m` clips per speaker,
runs `fairser.audit.audit` (the same speaker bootstrap and `evaluate.bootstrap_interval` as the
pipeline), and checks whether each group's 95% TPR interval holds the true TPR. Prints the share
of replicates that did, per speaker count: docs/AUDIT.md records it.
"""

from __future__ import annotations

import argparse

import numpy as np
import pandas as pd
from tqdm import tqdm

from fairser import audit

GROUPS = {"A": (6.0, 2.0), "B": (3.0, 3.0)}  # Beta(a, b): true TPR 0.75 and 0.5, speakers differ
CLASSES = ["target", "other"]


def replicate(rng: np.random.Generator, n_speakers: int, clips: int, n_boot: int, seed: int) -> dict:
    rows, speaker = [], 0
    for g, (a, b) in GROUPS.items():
        for _ in range(n_speakers):
            p = rng.beta(a, b)
            hits = rng.random(clips) < p
            rows += [(speaker, g, h) for h in hits]
            speaker += 1
    df = pd.DataFrame(rows, columns=["speaker", "group", "hit"])
    y_true = np.column_stack([np.ones(len(df)), rng.integers(0, 2, len(df))]).astype(np.int8)
    y_pred = np.column_stack([df["hit"], rng.integers(0, 2, len(df))]).astype(np.int8)
    groups = pd.DataFrame({"speaker": np.arange(speaker),
                           "group": [g for g in GROUPS for _ in range(n_speakers)]})
    inputs = audit.Inputs(classes=CLASSES, attributes=["group"], cells=[(1, 0)], y_true={1: y_true},
                          y_pred={(1, 0): y_pred}, speakers={1: df["speaker"].to_numpy()}, groups=groups,
                          threshold=0.5, notice=None, described={})
    rates = audit.audit(inputs, n_boot=n_boot, seed=seed).per_group
    rates = rates[rates["class"] == "target"].set_index("group")
    out = {}
    for g, (a, b) in GROUPS.items():
        truth = a / (a + b)
        out[g] = rates.loc[g, "tpr_ci_low"] <= truth <= rates.loc[g, "tpr_ci_high"]
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--reps", type=int, default=300)
    p.add_argument("--n-boot", type=int, default=500)
    p.add_argument("--clips", type=int, default=8, help="clips per speaker")
    p.add_argument("--speakers", default="3,6,12,24", help="speakers per group, comma-separated")
    args = p.parse_args()
    rng = np.random.default_rng(2026)
    print(f"per-group TPR, 95% interval ({audit._interval_method()}); {args.reps} replicates, "
          f"{args.n_boot} resamples, {args.clips} clips per speaker; true TPR "
          + ", ".join(f"{g} {a / (a + b):.2f}" for g, (a, b) in GROUPS.items()))
    print("speakers/group  " + "  ".join(f"coverage {g}" for g in GROUPS))
    for n in (int(x) for x in args.speakers.split(",")):
        hits = {g: 0 for g in GROUPS}
        for r in tqdm(range(args.reps), desc=f"{n} speakers", leave=False):
            for g, ok in replicate(rng, n, args.clips, args.n_boot, seed=r).items():
                hits[g] += bool(ok)
        se = np.sqrt(0.95 * 0.05 / args.reps)
        print(f"{n:>14}  " + "  ".join(f"{hits[g] / args.reps:>10.3f}" for g in GROUPS)
              + f"   (Monte Carlo s.e. {se:.3f})")


if __name__ == "__main__":
    main()
