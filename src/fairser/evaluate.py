"""Score every training run: per-fold metrics, fold means, speaker-bootstrap CIs, headline numbers.

Protocol (../shared/SPEC.md section 5): every metric is computed per fold on that fold's whole test
split, then averaged over the folds; the spread is the sample standard deviation over folds
(ddof = 1). Gains vs ERM: accuracy-like (x - ERM) / ERM, gaps (ERM - x) / ERM. "Overall" is the
mean of DS, RW, GDRO and GADRO at one supervision level (only when all four runs exist).

Beyond the paper: 95% bootstrap intervals for each gap (and each Overall and gain), resampling
speakers, because clips of one speaker are not independent; basic (reverse-percentile)
intervals, since gaps are biased upward by noise (see `bootstrap_interval`). Per fold and attribute,
test speakers are drawn with replacement within their own group (so every group of the fold
stays present with its speaker count), each fold independently; a replicate's value is the mean
over folds of the per-fold gaps, exactly as the point estimate. The same resamples serve every
run (seeded by (seed, fold, attribute) only), so intervals of gains vs ERM are paired. The
intervals cover test-set sampling only, not training randomness.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from fairser import metrics
from fairser.cli import InputError
from fairser.config import GROUP_METHODS, METHODS
from fairser.constants import EMOTIONS, GENDERS, RACES, age_group
from fairser.io import ONLY_EMPTY_IS_NA, read_csv

ATTRIBUTES = ("gender", "race", "age")
SCORE_METRICS = ("f1", "acc")
GAP_METRICS = ("tpr_gap", "dp_gap")
ALL_ATTRIBUTE = "all"  # the `attribute` of F1 and ACC rows, which have none
TABLE2_KS = (16, 32)  # the paper's Table 2 columns
SET_PATTERN = re.compile(r"^(baselines|gender|pseudo|kmeans_k([1-9][0-9]*))$")
PROB_SUM_TOL = 1e-3  # predictions are softmax outputs written as text


@dataclass
class Truth:
    """What the test splits say: targets, speakers and speaker groups, per fold."""

    folds: list[int]
    test_files: dict[int, list[str]]  # fold -> test files, in a fixed order
    targets: dict[int, np.ndarray]  # fold -> (n, 6) 0/1
    speakers: dict[int, np.ndarray]  # fold -> (n,) speaker index into actors
    actors: pd.DataFrame  # index 0..S-1: actor, gender, race (None = Unknown), age


def kmeans_set(k: int) -> str:
    return f"kmeans_k{k}"


def set_k(run_set: str) -> int | None:
    """K of a `kmeans_k<K>` run set, None for the others."""
    m = SET_PATTERN.match(run_set)
    return int(m.group(2)) if m and m.group(2) else None


def load_truth(corpus_dir: str | Path, split_dir: str | Path) -> Truth:
    """Read clips.csv, actors.csv and folds.csv; targets are vote shares > 1/6 (SPEC section 1)."""
    corpus_dir, split_dir = Path(corpus_dir), Path(split_dir)
    clips_path, actors_path = corpus_dir / "clips.csv", corpus_dir / "actors.csv"
    folds_path = split_dir / "folds.csv"
    clips = read_csv(clips_path, ["file", "actor", *EMOTIONS], **ONLY_EMPTY_IS_NA)
    actors = read_csv(actors_path, ["actor", "sex", "age", "race"], **ONLY_EMPTY_IS_NA)
    folds = read_csv(folds_path, ["fold", "file", "split"], **ONLY_EMPTY_IS_NA)

    if clips["file"].duplicated().any():
        raise InputError(f"{clips_path}: file {clips['file'][clips['file'].duplicated()].iloc[0]} "
                         "appears twice")
    if actors["actor"].duplicated().any():
        raise InputError(f"{actors_path}: an actor appears twice")
    votes = clips[list(EMOTIONS)]
    if votes.isna().any().any() or not np.isfinite(votes.to_numpy(float)).all():
        raise InputError(f"{clips_path}: empty or non-numeric vote shares")

    actors = actors.reset_index(drop=True)
    bad_sex = ~actors["sex"].isin(GENDERS)
    if bad_sex.any():
        raise InputError(f"{actors_path}: sex {actors['sex'][bad_sex].iloc[0]!r} is not one of {GENDERS}")
    bad_race = ~actors["race"].isin(RACES + ("Unknown",))
    if bad_race.any():
        raise InputError(f"{actors_path}: race {actors['race'][bad_race].iloc[0]!r} is not one of "
                         f"{RACES + ('Unknown',)}")
    try:
        ages = [age_group(int(a)) for a in actors["age"]]
    except (ValueError, TypeError) as err:
        raise InputError(f"{actors_path}: {err}") from None
    groups = pd.DataFrame({
        "actor": actors["actor"],
        "gender": actors["sex"],
        # "Unknown" race is a missing group: left out of race metrics only (SPEC section 1).
        "race": [None if r == "Unknown" else r for r in actors["race"]],
        "age": ages,
    })
    actor_index = {a: i for i, a in enumerate(groups["actor"])}

    clips = clips.set_index("file")
    test = folds[folds["split"] == "test"]
    if test.empty:
        raise InputError(f"{folds_path}: no rows with split == test")
    if test.duplicated(["fold", "file"]).any():
        raise InputError(f"{folds_path}: a test clip appears twice in one fold")
    unknown = ~test["file"].isin(clips.index)
    if unknown.any():
        raise InputError(f"{folds_path}: test clip {test['file'][unknown].iloc[0]} is not in {clips_path}")
    truth = Truth(folds=sorted(int(f) for f in test["fold"].unique()), test_files={}, targets={},
                  speakers={}, actors=groups)
    for fold in truth.folds:
        files = sorted(test.loc[test["fold"] == fold, "file"])
        rows = clips.loc[files]
        lost = ~rows["actor"].isin(actor_index)
        if lost.any():
            raise InputError(f"{actors_path}: no row for actor {rows['actor'][lost].iloc[0]}")
        truth.test_files[fold] = files
        truth.targets[fold] = metrics.binarize(rows[list(EMOTIONS)].to_numpy(float))
        truth.speakers[fold] = rows["actor"].map(actor_index).to_numpy()
    return truth


@dataclass(frozen=True)
class Run:
    set: str
    method: str
    path: Path

    @property
    def name(self) -> str:
        return f"{self.set}/{self.method}"


def find_runs(runs_dir: str | Path) -> list[Run]:
    """Every `<runs_dir>/<set>/<method>/predictions.csv`, checked against the known sets and methods."""
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        raise InputError(f"{runs_dir}: no such runs folder")
    runs = []
    for set_dir in sorted(p for p in runs_dir.iterdir() if p.is_dir() and not p.name.startswith(".")):
        if not SET_PATTERN.match(set_dir.name):
            raise InputError(f"{set_dir}: unknown run set (expected baselines, gender, pseudo or "
                             "kmeans_k<K>)")
        for method_dir in sorted(p for p in set_dir.iterdir() if p.is_dir() and not p.name.startswith(".")):
            if method_dir.name not in METHODS:
                raise InputError(f"{method_dir}: unknown method (expected one of {list(METHODS)})")
            pred = method_dir / "predictions.csv"
            if not pred.is_file():
                raise InputError(f"{method_dir}: run {set_dir.name}/{method_dir.name} has no predictions.csv")
            runs.append(Run(set_dir.name, method_dir.name, pred))
    if not runs:
        raise InputError(f"{runs_dir}: no runs (<set>/<method>/predictions.csv)")
    return runs


def read_predictions(run: Run, truth: Truth) -> dict[int, np.ndarray]:
    """fold -> (n, 6) 0/1 predictions in `truth.test_files[fold]` order, after checking the file.

    The files of each fold must be exactly that fold's test split (folds.csv, split == test).
    """
    where = f"run {run.name} ({run.path})"
    df = read_csv(run.path, ["fold", "file", *EMOTIONS], **ONLY_EMPTY_IS_NA)
    probs = df[list(EMOTIONS)]
    if probs.isna().any().any():
        raise InputError(f"{where}: empty probabilities")
    p = probs.to_numpy(float)
    if not np.isfinite(p).all() or (p < 0).any() or (p > 1).any():
        raise InputError(f"{where}: probabilities outside [0, 1]")
    if (np.abs(p.sum(axis=1) - 1) > PROB_SUM_TOL).any():
        raise InputError(f"{where}: rows do not sum to 1 (softmax probabilities expected)")
    if df.duplicated(["fold", "file"]).any():
        raise InputError(f"{where}: a (fold, file) row appears twice")
    folds = sorted(df["fold"].unique().tolist())
    if folds != truth.folds:
        raise InputError(f"{where}: folds {folds} do not match the split's test folds {truth.folds}")
    out = {}
    for fold in truth.folds:
        part = df[df["fold"] == fold].set_index("file")
        want = truth.test_files[fold]
        extra = sorted(set(part.index) - set(want))
        lacking = sorted(set(want) - set(part.index))
        if extra or lacking:
            raise InputError(f"{where}: fold {fold} predictions do not match the fold's test split "
                             f"({len(lacking)} test clips missing, {len(extra)} clips not in it, "
                             f"e.g. {(lacking + extra)[0]})")
        out[fold] = metrics.binarize(part.loc[want, list(EMOTIONS)].to_numpy(float))
    return out


def _speaker_counts(y_true: np.ndarray, y_pred: np.ndarray, speakers: np.ndarray, n_speakers: int):
    """Per-speaker n (S,), pos, tp, sel (S, 6): the sufficient statistics of every gap."""
    onehot = np.zeros((n_speakers, len(speakers)))
    onehot[speakers, np.arange(len(speakers))] = 1.0
    yt, yp = y_true.astype(float), y_pred.astype(float)
    return {"n": onehot.sum(axis=1), "pos": onehot @ yt, "tp": onehot @ (yt * yp), "sel": onehot @ yp}


def _group_matrix(truth: Truth, attribute: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Actor group codes (S,) (-1 = missing), (S, G) 0/1 membership (all-zero if missing), names."""
    codes, names = metrics.encode_groups(truth.actors[attribute].to_numpy(object))
    member = np.zeros((len(codes), len(names)))
    member[codes >= 0, codes[codes >= 0]] = 1.0
    return codes, member, names


def speaker_resample_weights(groups: np.ndarray, present: np.ndarray, n_boot: int,
                             rng: np.random.Generator) -> np.ndarray:
    """(n_boot, S) how often each speaker is drawn: within each group, as many draws as speakers.

    `groups`: (S,) group code per speaker (-1 = missing); `present`: (S,) speaker has test clips.
    Speakers not present, or without a group, get weight 0.
    """
    n_speakers = len(groups)
    weights = np.zeros((n_boot, n_speakers))
    offsets = (np.arange(n_boot) * n_speakers)[:, None]
    for g in np.unique(groups[(groups >= 0) & present]):
        members = np.flatnonzero((groups == g) & present)
        draws = members[rng.integers(0, len(members), size=(n_boot, len(members)))]
        weights += np.bincount((draws + offsets).ravel(), minlength=n_boot * n_speakers).reshape(
            n_boot, n_speakers)
    return weights


def evaluate_runs(truth: Truth, predictions: dict[Run, dict[int, np.ndarray]], *, n_boot: int,
                  seed: int) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """Per-fold metrics (long), per-group rates (long) and bootstrap replicates of fold-mean gaps.

    Returns (per_fold, per_group, replicates) where replicates maps (set, method, attribute,
    metric) to an (n_boot,) array.
    """
    n_speakers = len(truth.actors)
    members = {a: _group_matrix(truth, a) for a in ATTRIBUTES}
    fold_rows, group_rows = [], []
    fold_reps: dict[tuple, list[np.ndarray]] = {}
    for fold in truth.folds:
        y = truth.targets[fold]
        spk = truth.speakers[fold]
        present = np.bincount(spk, minlength=n_speakers) > 0
        weights = {}
        for i_attr, attribute in enumerate(ATTRIBUTES):
            codes = members[attribute][0]
            rng = np.random.default_rng([seed, fold, i_attr])
            weights[attribute] = speaker_resample_weights(codes, present, n_boot, rng)
        for run, preds in predictions.items():
            p = preds[fold]
            base = {"set": run.set, "method": run.method, "fold": fold}
            fold_rows.append({**base, "attribute": ALL_ATTRIBUTE, "metric": "f1",
                              "value": metrics.macro_f1(y_true=y, y_pred=p)})
            fold_rows.append({**base, "attribute": ALL_ATTRIBUTE, "metric": "acc",
                              "value": metrics.hamming_accuracy(y_true=y, y_pred=p)})
            spk_counts = _speaker_counts(y, p, spk, n_speakers)
            for attribute in ATTRIBUTES:
                _, member, names = members[attribute]
                grp = {"n": spk_counts["n"] @ member}
                for key in ("pos", "tp", "sel"):
                    grp[key] = member.T @ spk_counts[key]
                tpr, dp = metrics.gaps_from_counts(**grp)
                fold_rows.append({**base, "attribute": attribute, "metric": "tpr_gap", "value": float(tpr)})
                fold_rows.append({**base, "attribute": attribute, "metric": "dp_gap", "value": float(dp)})
                rates = metrics.tpr_by_group(tp=grp["tp"], pos=grp["pos"])
                for g, name in enumerate(names):
                    if grp["n"][g] == 0:
                        continue  # the group has no test clips in this fold
                    for k, emotion in enumerate(EMOTIONS):
                        group_rows.append({**base, "attribute": attribute, "group": name,
                                           "emotion": emotion, "n": int(grp["n"][g]),
                                           "n_pos": int(grp["pos"][g, k]), "tpr": rates[g, k],
                                           "selection_rate": grp["sel"][g, k] / grp["n"][g]})
                if n_boot:
                    wg = weights[attribute][:, :, None] * member[None]  # (B, S, G)
                    boot = {"n": np.einsum("bsg,s->bg", wg, spk_counts["n"])}
                    for key in ("pos", "tp", "sel"):
                        boot[key] = np.einsum("bsg,sk->bgk", wg, spk_counts[key])
                    b_tpr, b_dp = metrics.gaps_from_counts(**boot)
                    fold_reps.setdefault((run.set, run.method, attribute, "tpr_gap"), []).append(b_tpr)
                    fold_reps.setdefault((run.set, run.method, attribute, "dp_gap"), []).append(b_dp)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN replicates stay NaN
        replicates = {key: np.nanmean(np.stack(v), axis=0) for key, v in fold_reps.items()}
    return pd.DataFrame(fold_rows), pd.DataFrame(group_rows), replicates


def bootstrap_interval(point: float, reps: np.ndarray | None, *, floor: float | None = None) -> dict:
    """95% basic (reverse-percentile) bootstrap interval [2x - q97.5, 2x - q2.5] and the bias.

    Why not the plain percentile interval: a gap is a max-min (or max |.|) of noisy rates, so
    sampling noise inflates it; the estimate is biased upward and the replicates, resampled from
    the estimate, are shifted up by about the same amount (`bias` = mean(replicates) - x). The
    percentile interval then sits above the estimate (often excluding it); the basic interval
    shifts back by that bias. `floor` clips the lower end (0 for gaps). Undefined (NaN)
    replicates are left out.
    """
    if reps is None or not np.isfinite(point) or not np.isfinite(reps).any():
        return {"ci_low": np.nan, "ci_high": np.nan, "bias": np.nan}
    q_lo, q_hi = np.nanpercentile(reps, [2.5, 97.5])
    lo, hi = 2 * point - q_hi, 2 * point - q_lo
    if floor is not None:
        lo, hi = max(lo, floor), max(hi, floor)
    return {"ci_low": float(lo), "ci_high": float(hi), "bias": float(np.nanmean(reps) - point)}


def gain(x, erm, metric: str):
    """Relative improvement over ERM: (x - ERM)/ERM for F1 and ACC, (ERM - x)/ERM for gaps."""
    return (x - erm) / erm if metric in SCORE_METRICS else (erm - x) / erm


def summarize(per_fold: pd.DataFrame, replicates: dict) -> pd.DataFrame:
    """Fold means, spreads and CIs per run; Overall rows; `<metric>_gain` rows vs ERM.

    Columns: set, method, attribute, metric, mean, std, n_folds, ci_low, ci_high, bias
    (`bootstrap_interval`; NaN for F1 and ACC, which are not bootstrapped). A fold whose gap is
    undefined (NaN) is left out of that mean and counted out of n_folds.
    """
    rows = []
    replicates = dict(replicates)  # Overall replicates are added below; the caller's stay as given
    # Only the (run, attribute, metric) rows that exist; NaN (undefined) values stay NaN.
    fold_table = per_fold.set_index(["set", "method", "attribute", "metric", "fold"])["value"].unstack("fold")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for key, values in fold_table.iterrows():
            v = values.to_numpy(float)
            mean = float(np.nanmean(v))
            rows.append(dict(zip(("set", "method", "attribute", "metric"), key), mean=mean,
                             std=np.nanstd(v, ddof=1) if np.isfinite(v).sum() > 1 else np.nan,
                             n_folds=int(np.isfinite(v).sum()),
                             **bootstrap_interval(mean, replicates.get(key), floor=0.0)))
        # Overall: the mean of the four group methods at one supervision level.
        for run_set in sorted(set(fold_table.index.get_level_values("set")) - {"baselines"}):
            for attribute, metric in sorted({k[2:] for k in fold_table.index if k[0] == run_set}):
                keys = [(run_set, m, attribute, metric) for m in GROUP_METHODS]
                if not all(k in fold_table.index for k in keys):
                    continue
                per_method = np.stack([fold_table.loc[k].to_numpy(float) for k in keys])
                fold_mean = np.nanmean(per_method, axis=0)
                reps = (np.mean([replicates[k] for k in keys], axis=0)
                        if all(k in replicates for k in keys) else None)
                mean = float(np.mean(np.nanmean(per_method, axis=1)))
                rows.append({"set": run_set, "method": "overall", "attribute": attribute,
                             "metric": metric, "mean": mean,
                             "std": np.nanstd(fold_mean, ddof=1) if np.isfinite(fold_mean).sum() > 1
                             else np.nan, "n_folds": int(np.isfinite(fold_mean).sum()),
                             **bootstrap_interval(mean, reps, floor=0.0)})
                if reps is not None:
                    replicates[(run_set, "overall", attribute, metric)] = reps
        summary = pd.DataFrame(rows)
        erm = summary[(summary["set"] == "baselines") & (summary["method"] == "erm")]
        erm = erm.set_index(["attribute", "metric"])["mean"]
        gains = []
        for row in summary.itertuples(index=False):
            if (row.set, row.method) == ("baselines", "erm") or (row.attribute, row.metric) not in erm.index:
                continue
            ref = erm[(row.attribute, row.metric)]
            reps = replicates.get((row.set, row.method, row.attribute, row.metric))
            ref_reps = replicates.get(("baselines", "erm", row.attribute, row.metric))
            value = gain(row.mean, ref, row.metric)
            both = reps is not None and ref_reps is not None
            gains.append({"set": row.set, "method": row.method, "attribute": row.attribute,
                          "metric": f"{row.metric}_gain", "mean": value, "std": np.nan,
                          "n_folds": row.n_folds,
                          **bootstrap_interval(value, gain(reps, ref_reps, row.metric) if both else None)})
    return pd.concat([summary, pd.DataFrame(gains)], ignore_index=True)


class Lookup:
    """summary.csv indexed by (set, method, attribute, metric) -> its row (or None)."""

    def __init__(self, summary: pd.DataFrame):
        self.table = summary.set_index(["set", "method", "attribute", "metric"]).sort_index()

    def row(self, run_set: str, method: str, attribute: str, metric: str):
        key = (run_set, method, attribute, metric)
        return self.table.loc[key] if key in self.table.index else None

    def mean(self, run_set: str, method: str, attribute: str, metric: str) -> float | None:
        row = self.row(run_set, method, attribute, metric)
        return None if row is None else float(row["mean"])

    def sets(self) -> set[str]:
        return set(self.table.index.get_level_values("set"))


def sweep_ks(summary: pd.DataFrame) -> list[int]:
    return sorted({set_k(s) for s in summary["set"].unique() if set_k(s) is not None})


def _attr(metric: str) -> str:
    return ALL_ATTRIBUTE if metric.split("_gain")[0] in SCORE_METRICS else "gender"


def _block(look: Lookup, run_set: str, method: str, names, attribute=None) -> dict:
    out = {}
    for metric in names:
        value = look.mean(run_set, method, attribute or _attr(metric), metric)
        if value is not None:
            out[metric] = None if np.isnan(value) else round(value, 4) + 0.0  # + 0.0: no "-0.0"
    return out


def headline(summary: pd.DataFrame, *, k: int) -> dict:
    """The DVC metrics: nested dicts of plain numbers, no lists (DVC drops lists).

    table1.<method>.<metric> for ERM, Random, LfF, DisEnt, PGDRO; table1.<ds|rw|gdro|gadro>.
    <gender|pseudo|kmeans>.<metric> (kmeans = the kmeans_k<k> runs); table1.overall.<level>.
    <metric and metric_gain>; table2.<race|age>.<method>.k<K>.<gap>, table2.ser.<method>.k<K>.
    <f1|acc>, with erm and overall; sweep.k<K>.mean.<metric>. Gender gaps in table1 and sweep.
    Undefined values are null; runs that do not exist have no keys.
    """
    look = Lookup(summary)
    t1_metrics = SCORE_METRICS + GAP_METRICS
    levels = {"gender": "gender", "pseudo": "pseudo", "kmeans": kmeans_set(k)}
    table1: dict = {"k": k}
    for method, run_set in (("erm", "baselines"), ("random", "baselines"), ("lff", "baselines"),
                            ("disent", "baselines"), ("jtt", "baselines"), ("george", "baselines"),
                            ("pgdro", "pseudo")):
        block = _block(look, run_set, method, t1_metrics)
        if block:
            table1[method] = block
    for method in GROUP_METHODS + ("overall",):
        names = t1_metrics + tuple(f"{m}_gain" for m in t1_metrics) if method == "overall" else t1_metrics
        per_level = {lvl: _block(look, s, method, names) for lvl, s in levels.items()}
        per_level = {lvl: b for lvl, b in per_level.items() if b}
        if per_level:
            table1[method] = per_level

    ks = [kk for kk in TABLE2_KS if kmeans_set(kk) in look.sets()]
    table2: dict = {}
    for attribute in ("race", "age", "ser"):
        names = SCORE_METRICS if attribute == "ser" else GAP_METRICS
        attr = None if attribute == "ser" else attribute
        section = {"erm": _block(look, "baselines", "erm", names, attr)}
        for method in GROUP_METHODS + ("overall",):
            these = names + tuple(f"{m}_gain" for m in names) if method == "overall" else names
            per_k = {f"k{kk}": _block(look, kmeans_set(kk), method, these, attr) for kk in ks}
            per_k = {key: b for key, b in per_k.items() if b}
            if per_k:
                section[method] = per_k
        section = {key: b for key, b in section.items() if b}
        if section:
            table2[attribute] = section

    sweep = {}
    for kk in sweep_ks(summary):
        block = _block(look, kmeans_set(kk), "overall", t1_metrics)
        if block:
            sweep[f"k{kk}"] = {"mean": block}
    return {"table1": table1, "table2": table2, "sweep": sweep}
