"""False-positive rate and power of the paired tests against ERM (docs/STATISTICS.md).

Each draw is one Table 1 comparison: the difference row - ERM of a metric (e.g. the TPR gap) on
5 folds x 3 training seeds, built as

    d[f, s] = delta + u[f] + mean over the fold's test speakers j of v[j] + e[f, s]

u[f] ~ N(0, sd_fold^2): what a fold's training split and test block do to the difference, shared
by its seeds; v[j] ~ sd_speaker * t(3) / sqrt(3): a test speaker's share, heavy-tailed, shared by
every seed of the fold (clustered speakers); e[f, s] ~ N(0, sd_seed^2): training-seed noise. Test
speakers per fold: 18, 18, 18, 18, 19, as the EMO-SUPERB CREMA-D folds hold (labels_consensus_1-5
test splits; the surrogate corpus uses the same 91 actors and folds). The components are given as
the total s.d. of one (fold, seed) difference and the share of its variance that the fold carries
(u and the speakers, half each); delta = 0 is the null.

Tests: "wilcoxon-15" (the old column: scipy.stats.wilcoxon over the 15 (fold, seed) pairs as if
independent); "t-folds" (fairser.evaluate.paired_test, the new column: t-test over the 5 fold
means); "signflip-folds" (exact sign-flip permutation test of the mean over the 5 fold means,
all 2^5 sign patterns; its smallest two-sided p is 2/32 = 0.0625, so it never rejects at 0.05).

    python benchmarks/significance.py                  # 4000 null draws, 2000 per power cell
    python benchmarks/significance.py --draws 1000 --csv significance.csv
"""

from __future__ import annotations

import argparse
import itertools
import time

import numpy as np
import pandas as pd
from scipy import stats
from tqdm import tqdm

from fairser.evaluate import paired_test

FOLD_SPEAKERS = (18, 18, 18, 18, 19)  # EMO-SUPERB CREMA-D test speakers per fold
N_SEEDS = 3
ALPHA = 0.05
FOLD_SHARES = (0.0, 0.3, 0.6, 0.9)  # share of a (fold, seed) difference's variance the fold holds
TOTAL_SDS = (0.02, 0.05, 0.07)  # s.d. of one (fold, seed) difference of TPR gaps
# Table 1's TPR-gap differences from ERM (reports/table1.md, surrogate, 3 seeds), absolute.
EFFECTS = {"LfF": 0.001, "DisEnt": 0.002, "GEORGE": 0.027, "JTT": 0.064, "PGDRO": 0.070,
           "Overall k-means K=16": 0.127, "Overall pseudo": 0.147, "Overall ground truth": 0.234}
SIGNS = np.array(list(itertools.product((-1.0, 1.0), repeat=len(FOLD_SPEAKERS))))  # (32, 5)


def draw(delta: float, total_sd: float, fold_share: float, n: int, rng: np.random.Generator) -> np.ndarray:
    """(n, folds, seeds) differences row - ERM from the model in the module docstring."""
    fold_var = fold_share * total_sd ** 2
    sd_fold = np.sqrt(fold_var / 2)
    sd_seed = np.sqrt((1 - fold_share) * total_sd ** 2)
    folds = []
    for m in FOLD_SPEAKERS:
        sd_speaker = np.sqrt(fold_var / 2 * m)  # the mean of m speakers carries fold_var / 2
        v = sd_speaker * rng.standard_t(3, size=(n, m)) / np.sqrt(3)
        shared = delta + sd_fold * rng.standard_normal(n) + v.mean(axis=1)
        folds.append(shared[:, None] + sd_seed * rng.standard_normal((n, N_SEEDS)))
    return np.stack(folds, axis=1)


def signflip_p(fold_means: np.ndarray) -> np.ndarray:
    """Exact two-sided sign-flip p of the mean, per row of (n, folds) fold means."""
    observed = np.abs(fold_means.mean(axis=1))
    flipped = np.abs(fold_means @ SIGNS.T / fold_means.shape[1])  # (n, 32)
    return (flipped >= observed[:, None] - 1e-12).mean(axis=1)


def p_values(d: np.ndarray) -> dict:
    """test -> (n,) p-values for draws d (n, folds, seeds)."""
    n = len(d)
    keys = [(f, s) for f in range(d.shape[1]) for s in range(d.shape[2])]
    zero = dict.fromkeys(keys, 0.0)
    t = np.array([paired_test(dict(zip(keys, row.ravel())), zero)[0] for row in d])
    w = stats.wilcoxon(d.reshape(n, -1), axis=1).pvalue
    return {"wilcoxon-15": w, "t-folds": t, "signflip-folds": signflip_p(d.mean(axis=2))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--draws", type=int, default=4000, help="draws per null scenario")
    ap.add_argument("--power-draws", type=int, default=2000, help="draws per power cell")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--csv", help="write both tables here (one CSV, column `table`)")
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    start = time.perf_counter()
    rows = []
    for share in tqdm(FOLD_SHARES, desc="null", unit="scenario"):
        p = p_values(draw(0.0, 0.05, share, args.draws, rng))
        for test, v in p.items():
            rate = float(np.mean(v <= ALPHA))
            rows.append({"table": "null", "test": test, "fold_share": share, "total_sd": 0.05,
                         "effect": "none", "delta": 0.0, "reject_rate": round(rate, 4),
                         "mc_se": round(np.sqrt(max(rate, ALPHA) * (1 - ALPHA) / len(v)), 4),
                         "min_p": float(np.nanmin(v))})
    cells = [(sd, name, delta) for sd in TOTAL_SDS for name, delta in EFFECTS.items()]
    for sd, name, delta in tqdm(cells, desc="power", unit="cell"):
        p = p_values(draw(delta, sd, 0.6, args.power_draws, rng))
        for test, v in p.items():
            rows.append({"table": "power", "test": test, "fold_share": 0.6, "total_sd": sd,
                         "effect": name, "delta": delta, "reject_rate": round(float(np.mean(v <= ALPHA)), 4),
                         "mc_se": round(float(np.sqrt(0.25 / len(v))), 4), "min_p": float(np.nanmin(v))})
    table = pd.DataFrame(rows)
    with pd.option_context("display.width", 200, "display.max_rows", 500):
        print(table[table["table"] == "null"].to_string(index=False))
        power = table[table["table"] == "power"].pivot_table(
            index=["total_sd", "effect", "delta"], columns="test", values="reject_rate").sort_index(
            level=[0, 2])
        print(power.to_string())
    print(f"smallest p the sign-flip test can give with {len(FOLD_SPEAKERS)} folds: "
          f"{2 / 2 ** len(FOLD_SPEAKERS):.4f}; the t-test over folds has no floor "
          f"({time.perf_counter() - start:.0f} s)")
    if args.csv:
        table.to_csv(args.csv, index=False)


if __name__ == "__main__":
    main()
