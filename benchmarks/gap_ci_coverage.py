"""Coverage of the speaker-bootstrap intervals on a planted population (docs/STATISTICS.md).

A population of speakers whose per-class TPR and FPR depend on gender, race and age group (fixed
logit effects, below) plus a speaker effect (logit s.d. SPEAKER_SD per class) is drawn repeatedly
at CREMA-D test size: 5 folds of 18 speakers with about 83 clips each (~1490 clips per fold,
6 classes), 9 + 9 genders, race with 0, 1, 1, 1 and 4 Asian speakers in the five folds (as the
real folds hold) and 4 African American, age 9 / 5 / 4 in three bands. The true gap of each fold
is the gap of the population's group rates (large Monte Carlo sample) over the groups that fold
holds; the target is their mean over folds, as the estimate is a mean over folds. Each draw builds
the library's resamples (fairser.evaluate.resample_plan, replicate_group_counts,
jackknife_group_counts, metrics.gaps_from_counts) and each interval method of
fairser.evaluate.bootstrap_interval (and, "+no-gap test", with the permutation test of no gap
that sets the lower end to 0 when it does not reject, fairser.evaluate.no_gap_p); coverage is
the share of draws whose 95% interval holds the target. Two resampling schemes: "stratified"
(every group within itself, as before) and "pooled" (groups with < 3 speakers borrow the spread
of the larger groups; the library default).
Scenarios: "planted" (the effects below) and "null" (no group effect: every true gap is 0).
With --gains: the coverage of the gain intervals (1 - gap_method / gap_ERM, `gain_coverage`),
where ERM is the planted population and the method keeps a share of its group effects, and the
gain counts as shown only where ERM's gap interval excludes 0 (as `evaluate.summarize` does).

    python benchmarks/gap_ci_coverage.py               # 300 draws x 400 resamples, both scenarios
    python benchmarks/gap_ci_coverage.py --draws 100 --boot 200 --csv coverage.csv
    python benchmarks/gap_ci_coverage.py --gains       # 300 draws x 400 resamples per share
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd
from tqdm import tqdm

from fairser import metrics
from fairser.evaluate import (CI_METHODS, _jackknife_of_mean, bootstrap_interval, gain, group_totals,
                              jackknife_group_counts, membership, permuted_group_counts,
                              permuted_groups, replicate_group_counts, resample_plan)

N_CLASSES = 6
CLIPS = (70, 96)  # clips per speaker, uniform: ~83 on average, ~1490 per fold of 18
PREVALENCE = np.array([0.30, 0.25, 0.35, 0.20, 0.20, 0.15])  # share of clips with y_k = 1
BASE_TPR = np.array([0.9, 0.4, 0.6, 0.2, 0.0, -0.3])  # logits
BASE_FPR = np.array([-2.0, -2.2, -1.6, -2.5, -2.4, -2.8])
SPEAKER_SD = 0.5  # between-speaker logit s.d., per class, for TPR and FPR alike
GROUPS = {
    "gender": ("Male", "Female"),
    "race": ("Caucasian", "African American", "Asian"),
    "age": ("Young", "Middle", "Elderly"),
}
# Logit effects per group and class (TPR; FPR gets half of it), first group = reference.
EFFECTS = {
    "gender": {"Female": np.array([0.7, -0.5, 0.4, -0.4, 0.3, -0.6])},
    "race": {"African American": np.array([-0.3, 0.2, -0.2, 0.3, 0.0, 0.2]),
             "Asian": np.array([0.3, -0.3, 0.2, 0.0, -0.3, 0.2])},
    "age": {"Middle": np.array([0.1, -0.2, 0.2, 0.1, -0.1, 0.0]),
            "Elderly": np.array([-0.3, 0.2, -0.3, 0.2, 0.2, -0.2])},
}
# Per fold: the group of each of its 18 speakers (combinations shuffled per draw).
FOLD_LAYOUT = [
    {"gender": [0] * 9 + [1] * 9, "race": [0] * (14 - a) + [1] * 4 + [2] * a,
     "age": [0] * 9 + [1] * 5 + [2] * 4}
    for a in (0, 1, 1, 1, 4)
]
METRICS = ("tpr_gap", "dp_gap")


def logits(attrs: dict, planted: bool | float) -> tuple[np.ndarray, np.ndarray]:
    """(S, 6) TPR and FPR logits before the speaker effect, for speakers with group codes `attrs`.

    `planted`: the share of EFFECTS applied (True = 1, False = 0; 0.5 = a method that halves the
    group effects on the logit scale)."""
    n = len(attrs["gender"])
    tpr, fpr = np.tile(BASE_TPR, (n, 1)), np.tile(BASE_FPR, (n, 1))
    if planted:
        for attribute, effects in EFFECTS.items():
            for name, effect in effects.items():
                hit = np.asarray(attrs[attribute]) == GROUPS[attribute].index(name)
                tpr[hit] += float(planted) * effect
                fpr[hit] += float(planted) * effect / 2
    return tpr, fpr


def population_rates(planted: bool | float, rng: np.random.Generator, n: int = 400_000) -> dict:
    """attribute -> (TPR (G, 6), selection rate (G, 6)) of the population's groups (Monte Carlo).

    Other attributes are drawn with the folds' pooled shares, independently of the group.
    """
    pooled = {a: np.concatenate([f[a] for f in FOLD_LAYOUT]) for a in GROUPS}
    out = {}
    for attribute, names in GROUPS.items():
        tprs, sels = [], []
        for g in range(len(names)):
            attrs = {a: (np.full(n, g) if a == attribute else rng.choice(pooled[a], n)) for a in GROUPS}
            lt, lf = logits(attrs, planted)
            tpr = 1 / (1 + np.exp(-(lt + SPEAKER_SD * rng.standard_normal(lt.shape))))
            fpr = 1 / (1 + np.exp(-(lf + SPEAKER_SD * rng.standard_normal(lf.shape))))
            tprs.append(tpr.mean(axis=0))
            sels.append((PREVALENCE * tpr + (1 - PREVALENCE) * fpr).mean(axis=0))
        out[attribute] = (np.array(tprs), np.array(sels))
    return out


def true_gaps(rates: dict) -> dict:
    """(attribute, metric) -> the mean over folds of the population gap over each fold's groups."""
    out = {}
    for attribute in GROUPS:
        tpr, sel = rates[attribute]
        per_fold = {m: [] for m in METRICS}
        for layout in FOLD_LAYOUT:
            codes = np.asarray(layout[attribute])
            here = np.unique(codes)
            share = np.array([(codes == g).mean() for g in here])  # speakers (~clips) per group
            gap_k = tpr[here].max(axis=0) - tpr[here].min(axis=0)
            per_fold["tpr_gap"].append(np.sqrt(np.mean(gap_k ** 2)))
            overall = share @ sel[here]
            per_fold["dp_gap"].append(np.sqrt(np.mean(np.abs(sel[here] - overall).max(axis=0) ** 2)))
        for m in METRICS:
            out[(attribute, m)] = float(np.mean(per_fold[m]))
    return out


def draw_fold(layout: dict, planted: bool, rng: np.random.Generator) -> tuple[dict, dict]:
    """One fold's speakers: group codes per attribute and per-speaker counts n, pos, tp, sel."""
    s = len(layout["gender"])
    attrs = {a: rng.permutation(layout[a]) for a in GROUPS}
    lt, lf = logits(attrs, planted)
    tpr = 1 / (1 + np.exp(-(lt + SPEAKER_SD * rng.standard_normal(lt.shape))))
    fpr = 1 / (1 + np.exp(-(lf + SPEAKER_SD * rng.standard_normal(lf.shape))))
    n = rng.integers(CLIPS[0], CLIPS[1] + 1, size=s)
    pos = rng.binomial(n[:, None], PREVALENCE)
    tp = rng.binomial(pos, tpr)
    fp = rng.binomial(n[:, None] - pos, fpr)
    return attrs, {"n": n.astype(float), "pos": pos.astype(float), "tp": tp.astype(float),
                   "sel": (tp + fp).astype(float)}


def one_draw(planted: bool, n_boot: int, rng: np.random.Generator) -> dict:
    """(attribute, metric, scheme) -> (point, boot (B,), jack (J,), null (B,)) of the fold-mean gap."""
    points, boots, loos, nulls = {}, {}, {}, {}
    for fold, layout in enumerate(FOLD_LAYOUT, start=1):
        attrs, counts = draw_fold(layout, planted, rng)
        present = np.ones(len(counts["n"]), bool)
        for attribute, names in GROUPS.items():
            codes = np.asarray(attrs[attribute])
            member = membership(codes, len(names))
            point = metrics.gaps_from_counts(**group_totals(counts, member))
            _, jk = jackknife_group_counts(counts, member, present)
            jack = metrics.gaps_from_counts(**jk)
            null = metrics.gaps_from_counts(**permuted_group_counts(
                permuted_groups(codes, present, n_boot, rng), counts, len(names)))
            seed = int(rng.integers(2 ** 32))
            for scheme, min_stratum in (("stratified", 0), ("pooled", None)):
                plan = resample_plan(codes, present, n_boot, np.random.default_rng(seed),
                                     min_stratum=min_stratum)
                boot = metrics.gaps_from_counts(**replicate_group_counts(plan, counts, member))
                for i, m in enumerate(METRICS):
                    key = (attribute, m, scheme)
                    points.setdefault(key, {})[(fold, 0)] = float(point[i])
                    boots.setdefault(key, []).append(boot[i])
                    nulls.setdefault(key, []).append(null[i])
                    loos.setdefault(key, {})[(fold, 0)] = jack[i]
    out = {}
    for key in points:
        point = float(np.nanmean(list(points[key].values())))
        out[key] = (point, np.nanmean(np.stack(boots[key]), axis=0),
                    _jackknife_of_mean(points[key], loos[key]), np.nanmean(np.stack(nulls[key]), axis=0))
    return out


def draw_pair(layout: dict, scale: float, rng: np.random.Generator) -> tuple[dict, dict, dict]:
    """One fold's speakers scored by ERM (the planted effects) and by a method that keeps `scale`
    of them: the same speakers, clips, targets and speaker effects, with the two methods'
    predictions drawn independently given their rates. Returns (attrs, ERM counts, method counts)."""
    s = len(layout["gender"])
    attrs = {a: rng.permutation(layout[a]) for a in GROUPS}
    z_tpr, z_fpr = SPEAKER_SD * rng.standard_normal((2, s, N_CLASSES))
    n = rng.integers(CLIPS[0], CLIPS[1] + 1, size=s)
    pos = rng.binomial(n[:, None], PREVALENCE)
    out = []
    for share in (1.0, scale):
        lt, lf = logits(attrs, share)
        tp = rng.binomial(pos, 1 / (1 + np.exp(-(lt + z_tpr))))
        fp = rng.binomial(n[:, None] - pos, 1 / (1 + np.exp(-(lf + z_fpr))))
        out.append({"n": n.astype(float), "pos": pos.astype(float), "tp": tp.astype(float),
                    "sel": (tp + fp).astype(float)})
    return attrs, out[0], out[1]


def gain_draw(scale: float, n_boot: int, rng: np.random.Generator) -> dict:
    """(attribute, metric) -> the gain's point, its interval (as `evaluate.summarize` builds it:
    paired replicates, "widened", no floor) and whether ERM's gap interval (widened + no-gap
    test) holds 0, i.e. the gain is reported as undefined."""
    point = {}, {}
    boot, null, loo = ({}, {}), {}, ({}, {})
    for fold, layout in enumerate(FOLD_LAYOUT, start=1):
        attrs, erm, method = draw_pair(layout, scale, rng)
        present = np.ones(len(erm["n"]), bool)
        for attribute, names in GROUPS.items():
            codes = np.asarray(attrs[attribute])
            member = membership(codes, len(names))
            plan = resample_plan(codes, present, n_boot, rng)
            z = metrics.gaps_from_counts(**permuted_group_counts(
                permuted_groups(codes, present, n_boot, rng), erm, len(names)))
            for run, counts in enumerate((erm, method)):
                x = metrics.gaps_from_counts(**group_totals(counts, member))
                b = metrics.gaps_from_counts(**replicate_group_counts(plan, counts, member))
                j = metrics.gaps_from_counts(**jackknife_group_counts(counts, member, present)[1])
                for i, m in enumerate(METRICS):
                    point[run].setdefault((attribute, m), {})[(fold, 0)] = float(x[i])
                    boot[run].setdefault((attribute, m), []).append(b[i])
                    loo[run].setdefault((attribute, m), {})[(fold, 0)] = j[i]
                    if run == 0:
                        null.setdefault((attribute, m), []).append(z[i])
    out = {}
    for key in point[0]:
        x = [float(np.mean(list(point[r][key].values()))) for r in (0, 1)]
        b = [np.mean(np.stack(boot[r][key]), axis=0) for r in (0, 1)]
        erm_ci = bootstrap_interval(x[0], b[0], method="widened", floor=0.0,
                                    null=np.mean(np.stack(null[key]), axis=0))
        value = gain(x[1], x[0], key[1])
        jk = gain(_jackknife_of_mean(point[1][key], loo[1][key]),
                  _jackknife_of_mean(point[0][key], loo[0][key]), key[1])
        ci = bootstrap_interval(value, gain(b[1], b[0], key[1]), method="widened", jack=jk)
        out[key] = (value, ci, erm_ci["ci_low"] <= 0.0)
    return out


def gain_coverage(args, rng: np.random.Generator) -> pd.DataFrame:
    """Coverage of the gain intervals, ERM = the planted population, method = `scale` of it."""
    rows = []
    truth_erm = true_gaps(population_rates(True, rng))
    for scale in args.gain_scales:
        truth_m = true_gaps(population_rates(scale, rng))
        hits: dict = {}
        for _ in tqdm(range(args.draws), desc=f"gain coverage (scale {scale})", unit="draw"):
            for key, (value, ci, undefined) in gain_draw(scale, args.boot, rng).items():
                target = gain(truth_m[key], truth_erm[key], key[1])
                hits.setdefault(key, []).append((undefined, ci["ci_low"] <= target <= ci["ci_high"],
                                                 ci["ci_high"] - ci["ci_low"], value - target))
        for (attribute, metric), h in hits.items():
            h = np.array(h, float)
            defined = h[h[:, 0] == 0]
            target = gain(truth_m[(attribute, metric)], truth_erm[(attribute, metric)], metric)
            rows.append({"method_share_of_effects": scale, "attribute": attribute, "metric": metric,
                         "true_gain": round(target, 3), "share_defined": round(1 - h[:, 0].mean(), 3),
                         "coverage_all": round(h[:, 1].mean(), 3),
                         "coverage_defined": round(defined[:, 1].mean(), 3) if len(defined) else np.nan,
                         "mean_width_defined": round(defined[:, 2].mean(), 3) if len(defined) else np.nan,
                         "mean_bias_defined": round(defined[:, 3].mean(), 3) if len(defined) else np.nan})
    return pd.DataFrame(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--draws", type=int, default=300, help="simulated test sets per scenario")
    ap.add_argument("--boot", type=int, default=400, help="bootstrap resamples per draw")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--scenarios", nargs="+", default=["planted", "null"])
    ap.add_argument("--csv", help="write the coverage table here as CSV")
    ap.add_argument("--gains", action="store_true",
                    help="instead: coverage of the gain intervals (1 - gap_method / gap_ERM)")
    ap.add_argument("--gain-scales", nargs="+", type=float, default=[0.5, 1.0],
                    help="the method's share of the planted group effects (1.0: true gain 0)")
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    if args.gains:
        start = time.perf_counter()
        table = gain_coverage(args, rng)
        with pd.option_context("display.width", 200):
            print(table.to_string(index=False))
        print(f"{args.draws} draws x {args.boot} resamples per scale, {time.perf_counter() - start:.0f} s")
        if args.csv:
            table.to_csv(args.csv, index=False)
        return
    rows = []
    start = time.perf_counter()
    for scenario in args.scenarios:
        planted = scenario == "planted"
        truth = true_gaps(population_rates(planted, rng))
        hits: dict = {}
        for _ in tqdm(range(args.draws), desc=f"coverage ({scenario})", unit="draw"):
            for (attribute, metric, scheme), (point, boot, jack, null) in one_draw(
                    planted, args.boot, rng).items():
                target = truth[(attribute, metric)]
                for method, test in [(m, False) for m in CI_METHODS] + [("basic", True), ("widened", True)]:
                    ci = bootstrap_interval(point, boot, method=method, jack=jack, floor=0.0,
                                            null=null if test else None)
                    name = f"{method}+no-gap test" if test else method
                    hits.setdefault((attribute, metric, scheme, name), []).append((
                        ci["ci_low"] <= target <= ci["ci_high"], ci["ci_high"] - ci["ci_low"],
                        ci["ci_low"] <= point <= ci["ci_high"], point - target))
        for (attribute, metric, scheme, method), h in hits.items():
            h = np.array(h, float)
            rows.append({"scenario": scenario, "attribute": attribute, "metric": metric,
                         "scheme": scheme, "method": method, "true_gap": round(truth[(attribute, metric)], 4),
                         "mean_estimate_bias": round(h[:, 3].mean(), 4), "coverage": round(h[:, 0].mean(), 3),
                         "mean_width": round(h[:, 1].mean(), 4), "holds_estimate": round(h[:, 2].mean(), 3)})
    table = pd.DataFrame(rows)
    with pd.option_context("display.width", 200, "display.max_rows", 500):
        print(table.to_string(index=False))
    print(f"{args.draws} draws x {args.boot} resamples per scenario, {time.perf_counter() - start:.0f} s")
    if args.csv:
        table.to_csv(args.csv, index=False)


if __name__ == "__main__":
    main()
