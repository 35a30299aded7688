"""Score every training run: per-(fold, seed) metrics, means, speaker-bootstrap CIs, paired tests.

Protocol (docs/PROTOCOL.md section 5): every metric is computed per fold on that fold's whole test
split; with several training seeds (predictions.csv column `seed`, train.seeds), per (fold, seed).
A table cell is the mean over the (fold, seed) values that are defined, its spread the sample
standard deviation over them (ddof = 1); summary.csv counts the folds, seeds and values behind
each. Gains vs ERM: accuracy-like (x - ERM) / ERM, gaps (ERM - x) / ERM. "Overall" is the mean of
DS, RW, GDRO and GADRO at one supervision level (only when all four runs exist).

Beyond the paper (docs/STATISTICS.md):
- 95% bootstrap intervals for each gap (and each Overall and gain), resampling test speakers,
  because clips of one speaker are not independent. Per fold and attribute, speakers are drawn
  with replacement within their own group (every group keeps its speaker count); a group with
  fewer than MIN_STRATUM test speakers borrows the spread of the larger groups (pooled
  residuals, `replicate_group_counts`). A replicate's value is the mean over (fold, seed) of the
  per-(fold, seed) gaps, exactly as the point estimate. The same resamples serve every run and
  seed (seeded by (seed, fold, attribute) only), so intervals of gains vs ERM are paired. The
  interval method (`CI_METHOD`, "widened") and the no-gap rule (a gap that a permutation test
  cannot tell from noise gets an interval from 0, `no_gap_p`) were chosen by a coverage
  simulation (benchmarks/gap_ci_coverage.py; figures in docs/STATISTICS.md). Intervals cover
  test-speaker sampling only; training randomness shows in the s.d. over seeds. A gap's gain
  is undefined (NaN) where ERM's gap interval holds 0.
- A paired test of each run against ERM whose unit is the fold, seeds averaged within it
  (`paired_test`; a t-test over 5 fold means), with its false-positive rate simulated.
"""

from __future__ import annotations

import json
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats
from tqdm import tqdm

from fairser import metrics
from fairser import schema as corpus_schema
from fairser.errors import InputError
from fairser.config import GROUP_METHODS, METHODS
from fairser.method_sets import SET_FILE
from fairser.io import ONLY_EMPTY_IS_NA, read_csv, read_text

SCORE_METRICS = ("f1", "acc")
GAP_METRICS = ("tpr_gap", "dp_gap")
ALL_ATTRIBUTE = "all"  # the `attribute` of F1 and ACC rows, which have none
TABLE2_KS = (16, 32)  # the paper's Table 2 columns
SET_PATTERN = re.compile(r"^(baselines|gender|pseudo|kmeans_k([1-9][0-9]*))$")
EXTENSIONS_DIR = "kmeans_extensions"  # a runs folder whose set.json names its kmeans_k<K> set
PROB_SUM_TOL = 1e-3  # predictions are softmax outputs written as text
CI_LEVEL = 0.95
CI_METHODS = ("percentile", "basic", "shifted", "bca", "widened")
CI_METHOD = "widened"  # chosen by benchmarks/gap_ci_coverage.py (docs/STATISTICS.md)
# A group with fewer test speakers than this in a fold is resampled by pooled residuals
# (`replicate_group_counts`): one speaker redrawn as itself shows no spread at all.
MIN_STRATUM = 3
ZERO_WIDTH = 1e-9  # an interval narrower than this is reported as zero-width
# ci_note of a gap's gain row when ERM's gap interval holds 0 (the gain is then left undefined).
GAIN_UNDEFINED = "erm gap interval holds 0"
MAX_HEADLINE_KEYS = 149  # metrics/summary.json stays under 150 numbers whatever the corpus


@dataclass
class Truth:
    """What the test splits say: targets, speakers and speaker groups, per fold.

    `classes` and `attributes` come from the corpus schema (`load_truth`); a Truth built by hand
    (the audit, tests) may leave them empty and pass them to `evaluate_runs`.
    """

    folds: list[int]
    test_files: dict[int, list[str]]  # fold -> test files, in a fixed order
    targets: dict[int, np.ndarray]  # fold -> (n, K) 0/1, K = len(classes)
    speakers: dict[int, np.ndarray]  # fold -> (n,) speaker index into actors
    actors: pd.DataFrame  # index 0..S-1: actor, then one column per attribute (group; None = excluded)
    classes: tuple[str, ...] = ()  # the K class columns, in schema order
    attributes: tuple[str, ...] = ()  # the attribute columns of `actors`, in schema order
    threshold: float | None = None  # 1/K: a class is present iff its share exceeds it


def kmeans_set(k: int) -> str:
    return f"kmeans_k{k}"


def set_k(run_set: str) -> int | None:
    """K of a `kmeans_k<K>` run set, None for the others."""
    m = SET_PATTERN.match(run_set)
    return int(m.group(2)) if m and m.group(2) else None


def actor_columns(schema: corpus_schema.Schema) -> list[str]:
    """The columns of actors.csv the schema reads: actor and each attribute's column."""
    return ["actor", *dict.fromkeys(a.column for a in schema.attributes)]


def actor_groups(actors: pd.DataFrame, schema: corpus_schema.Schema, actors_path: str | Path) -> pd.DataFrame:
    """actors.csv -> index 0..S-1: actor and one column per schema attribute holding its group
    (None where the value is one of the attribute's `excluded`, e.g. CREMA-D's race "Unknown":
    a missing group, left out of that attribute's metrics only; PROTOCOL section 1).

    A bad cell is one InputError naming the file, its line (header = line 1) and column
    (`schema.speaker_groups`).
    """
    actors = actors.reset_index(drop=True)
    if actors["actor"].duplicated().any():
        line = int(np.flatnonzero(actors["actor"].duplicated())[0]) + 2
        raise InputError(f"{actors_path}, line {line}, column actor: actor "
                         f"{actors['actor'][line - 2]} appears twice")
    return corpus_schema.speaker_groups(actors, schema, actors_path)


def load_truth(corpus_dir: str | Path, split_dir: str | Path,
               schema: corpus_schema.Schema | None = None) -> Truth:
    """Read clips.csv, actors.csv and folds.csv; targets are vote shares > 1/K (PROTOCOL section 1).

    `schema`: the corpus's (default: `schema.load(corpus_dir)`, data/corpus/schema.json).
    """
    corpus_dir, split_dir = Path(corpus_dir), Path(split_dir)
    schema = corpus_schema.load(corpus_dir) if schema is None else schema
    classes = list(schema.classes)
    clips_path, actors_path = corpus_dir / "clips.csv", corpus_dir / "actors.csv"
    folds_path = split_dir / "folds.csv"
    clips = read_csv(clips_path, ["file", "actor", *classes], **ONLY_EMPTY_IS_NA)
    actors = read_csv(actors_path, actor_columns(schema), **ONLY_EMPTY_IS_NA)
    folds = read_csv(folds_path, ["fold", "file", "split"], **ONLY_EMPTY_IS_NA)

    if clips["file"].duplicated().any():
        raise InputError(f"{clips_path}: file {clips['file'][clips['file'].duplicated()].iloc[0]} "
                         "appears twice")
    votes = clips[classes]
    if votes.isna().any().any() or not np.isfinite(votes.to_numpy(float)).all():
        raise InputError(f"{clips_path}: empty or non-numeric vote shares")
    groups = actor_groups(actors, schema, actors_path)
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
                  speakers={}, actors=groups, classes=tuple(classes),
                  attributes=schema.attribute_names, threshold=schema.threshold)
    for fold in truth.folds:
        files = sorted(test.loc[test["fold"] == fold, "file"])
        rows = clips.loc[files]
        lost = ~rows["actor"].isin(actor_index)
        if lost.any():
            raise InputError(f"{actors_path}: no row for actor {rows['actor'][lost].iloc[0]}")
        truth.test_files[fold] = files
        truth.targets[fold] = metrics.binarize(rows[classes].to_numpy(float), truth.threshold)
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


def _set_name(set_dir: Path) -> str:
    """The run set of a runs folder: its name, or for kmeans_extensions (issue 24's group methods
    on one k's clusters, trained apart from the k sweep) the kmeans_k<K> its set.json names."""
    if set_dir.name == EXTENSIONS_DIR:
        info, expected = set_dir / SET_FILE, '{"set": "kmeans_k<K>"}'
        text = read_text(info, expected)  # a missing, empty or non-UTF-8 file: io's one line
        try:
            name = json.loads(text).get("set")
        except (ValueError, AttributeError) as e:
            raise InputError(f"{info}: not that JSON ({e}); expected {expected}") from None
        if not isinstance(name, str) or set_k(name) is None:
            raise InputError(f"{info}: set {name!r}; expected kmeans_k<K>")
        return name
    if not SET_PATTERN.match(set_dir.name):
        raise InputError(f"{set_dir}: unknown run set (expected baselines, gender, pseudo, "
                         f"kmeans_k<K> or {EXTENSIONS_DIR})")
    return set_dir.name


def find_runs(runs_dir: str | Path) -> list[Run]:
    """Every `<runs_dir>/<set>/<method>/predictions.csv`, checked against the known sets and methods."""
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        raise InputError(f"{runs_dir}: no such runs folder")
    runs = []
    for set_dir in sorted(p for p in runs_dir.iterdir() if p.is_dir() and not p.name.startswith(".")):
        run_set = _set_name(set_dir)
        for method_dir in sorted(p for p in set_dir.iterdir() if p.is_dir() and not p.name.startswith(".")):
            if method_dir.name not in METHODS:
                raise InputError(f"{method_dir}: unknown method (expected one of {list(METHODS)})")
            pred = method_dir / "predictions.csv"
            if not pred.is_file():
                raise InputError(f"{method_dir}: run {run_set}/{method_dir.name} has no predictions.csv")
            twin = next((r for r in runs if (r.set, r.method) == (run_set, method_dir.name)), None)
            if twin is not None:
                raise InputError(f"{pred}: run {run_set}/{method_dir.name} is also {twin.path}; "
                                 "keep one")
            runs.append(Run(run_set, method_dir.name, pred))
    if not runs:
        raise InputError(f"{runs_dir}: no runs (<set>/<method>/predictions.csv)")
    return runs


def read_predictions(run: Run, truth: Truth) -> dict[tuple[int, int], np.ndarray]:
    """(fold, seed) -> (n, K) 0/1 predictions in `truth.test_files[fold]` order, after checking the file.

    Columns fold, seed, file, <truth.classes>; a probability is positive above truth.threshold (1/K); a file without `seed` holds seed 0 only. Every seed must
    cover every test fold, and the files of each (fold, seed) must be exactly that fold's test
    split (folds.csv, split == test).
    """
    where = f"run {run.name} ({run.path})"
    classes = list(truth.classes)
    df = read_csv(run.path, ["fold", "file", *classes], **ONLY_EMPTY_IS_NA)
    if "seed" not in df.columns:
        df["seed"] = 0
    elif df["seed"].isna().any() or not pd.api.types.is_integer_dtype(df["seed"]) or (df["seed"] < 0).any():
        raise InputError(f"{where}: column seed must hold integers >= 0")
    probs = df[classes]
    if probs.isna().any().any():
        raise InputError(f"{where}: empty probabilities")
    p = probs.to_numpy(float)
    if not np.isfinite(p).all() or (p < 0).any() or (p > 1).any():
        raise InputError(f"{where}: probabilities outside [0, 1]")
    if (np.abs(p.sum(axis=1) - 1) > PROB_SUM_TOL).any():
        raise InputError(f"{where}: rows do not sum to 1 (softmax probabilities expected)")
    if df.duplicated(["fold", "seed", "file"]).any():
        raise InputError(f"{where}: a (fold, seed, file) row appears twice")
    out = {}
    for seed in sorted(int(s) for s in df["seed"].unique()):
        of_seed = df[df["seed"] == seed]
        folds = sorted(of_seed["fold"].unique().tolist())
        if folds != truth.folds:
            raise InputError(f"{where}: seed {seed} has folds {folds}, not the split's test folds "
                             f"{truth.folds}")
        for fold in truth.folds:
            part = of_seed[of_seed["fold"] == fold].set_index("file")
            want = truth.test_files[fold]
            extra = sorted(set(part.index) - set(want))
            lacking = sorted(set(want) - set(part.index))
            if extra or lacking:
                raise InputError(f"{where}: fold {fold} seed {seed} predictions do not match the "
                                 f"fold's test split ({len(lacking)} test clips missing, {len(extra)} "
                                 f"clips not in it, e.g. {(lacking + extra)[0]})")
            out[(fold, seed)] = metrics.binarize(part.loc[want, classes].to_numpy(float), truth.threshold)
    return out


def speaker_counts(*, y_true, y_pred, speakers, n_speakers: int) -> dict:
    """Per-speaker counts of one test set: n (S,) clips, pos, tp, sel (S, K) (see metrics.group_counts),
    the sufficient statistics of every gap.

    `speakers`: (N,) speaker index 0..S-1 of each clip. Speakers without clips get zeros.
    """
    speakers = np.asarray(speakers)
    onehot = np.zeros((n_speakers, len(speakers)))
    onehot[speakers, np.arange(len(speakers))] = 1.0
    yt, yp = np.asarray(y_true, float), np.asarray(y_pred, float)
    return {"n": onehot.sum(axis=1), "pos": onehot @ yt, "tp": onehot @ (yt * yp), "sel": onehot @ yp}


def membership(groups: np.ndarray, n_groups: int) -> np.ndarray:
    """(S, G) 0/1 matrix from group codes (S,); a speaker with code -1 (missing) has an all-zero row."""
    groups = np.asarray(groups)
    member = np.zeros((len(groups), n_groups))
    member[groups >= 0, groups[groups >= 0]] = 1.0
    return member


def group_matrix(values) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Speaker group codes (S,) (-1 = missing), (S, G) 0/1 membership (`membership`), group names.

    `values`: (S,) each speaker's group (None or NaN = missing), e.g. a column of `Truth.actors`.
    """
    codes, names = metrics.encode_groups(np.asarray(values, dtype=object))
    return codes, membership(codes, len(names)), names


def group_totals(counts: dict, member: np.ndarray) -> dict:
    """Per-group n (G,), pos, tp, sel (G, K) from per-speaker counts (`speaker_counts`) and an
    (S, G) membership."""
    out = {"n": counts["n"] @ member}
    for key in ("pos", "tp", "sel"):
        out[key] = member.T @ counts[key]
    return out


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


@dataclass
class ResamplePlan:
    """One fold's speaker resamples for one attribute, shared by every run and seed (paired).

    `weights` (B, S): stratified draws (`speaker_resample_weights`). `small` maps each group with
    fewer than MIN_STRATUM test speakers to (its speakers (m,), donor draws (B, m)): such a
    group's replicate keeps its own rates and adds the deviations of m donor speakers drawn from
    the larger groups (`replicate_group_counts`). `groups`, `present`: as given.
    """

    weights: np.ndarray
    small: dict
    groups: np.ndarray
    present: np.ndarray
    cache: dict = field(default_factory=dict)  # group membership -> flattened weights


def resample_plan(groups: np.ndarray, present: np.ndarray, n_boot: int, rng: np.random.Generator,
                  *, min_stratum: int = None) -> ResamplePlan:
    """Stratified speaker draws, plus donor draws for groups with < `min_stratum` test speakers.

    Donors: the present speakers of groups with >= min_stratum speakers; if there are none, of
    groups with >= 2 (a deviation needs a group mean); if none either, the small group is left as
    drawn (no spread: its interval is then flagged as zero-width where nothing else varies).
    """
    min_stratum = MIN_STRATUM if min_stratum is None else min_stratum
    groups, present = np.asarray(groups), np.asarray(present, bool)
    weights = speaker_resample_weights(groups, present, n_boot, rng)
    valid = (groups >= 0) & present
    sizes = {int(g): int(((groups == g) & present).sum()) for g in np.unique(groups[valid])}
    small_groups = [g for g, m in sizes.items() if m < min_stratum]
    small = {}
    if small_groups:
        for need in (min_stratum, 2):
            donors = np.flatnonzero(valid & np.isin(groups, [g for g, m in sizes.items() if m >= need]))
            if len(donors):
                break
        for g in small_groups:
            own = np.flatnonzero((groups == g) & present)
            if len(donors):
                small[g] = (own, donors[rng.integers(0, len(donors), size=(n_boot, len(own)))])
    return ResamplePlan(weights, small, groups, present)


def _flatten(w: np.ndarray) -> tuple[np.ndarray, int, int]:
    """(B, S, G) speaker weights per group -> ((B*G, S), B, G), for one BLAS product per count."""
    b, s, g = w.shape
    return np.ascontiguousarray(w.transpose(0, 2, 1).reshape(b * g, s)), b, g


def _flat_counts(flat: np.ndarray, b: int, g: int, counts: dict) -> dict:
    """Group counts n (B, G), pos, tp, sel (B, G, K) from flattened weights (`_flatten`)."""
    k = counts["pos"].shape[1]
    both = flat @ np.column_stack([counts["n"], counts["pos"], counts["tp"], counts["sel"]])
    out = {"n": both[:, 0].reshape(b, g)}
    for i, key in enumerate(("pos", "tp", "sel")):
        out[key] = both[:, 1 + i * k:1 + (i + 1) * k].reshape(b, g, k)
    return out


def replicate_group_counts(plan: ResamplePlan, counts: dict, member: np.ndarray) -> dict:
    """Per-replicate group counts n (B, G), pos, tp, sel (B, G, K) for one test set.

    Groups with >= MIN_STRATUM speakers: the resampled speakers' counts (weights x counts). A
    smaller group g, whose own speakers cannot show the spread between speakers (one speaker is
    always redrawn as itself), gets a "pooled-residual" replicate: for each of its m slots a donor
    speaker d of group h is drawn; the slot holds d's counts recentred on g's own rates,
    pos = pos_d, tp = TPR_g pos_d + c_h (tp_d - TPR_h pos_d), n = n_d,
    sel = SR_g n_d + c_h (sel_d - SR_h n_d), with c_h = sqrt(m_h / (m_h - 1)) undoing the shrinkage
    of residuals about a group mean of m_h speakers (the usual residual-bootstrap correction).
    This assumes that speakers of the small group scatter about their group's rate as much as
    speakers of the others do (hand-written: no library resamples strata this way).
    """
    key = member.tobytes()  # the weights depend on the plan and the groups only: built once per fold
    if key not in plan.cache:
        plan.cache[key] = _flatten(plan.weights[:, :, None] * member[None])
    out = _flat_counts(*plan.cache[key], counts)
    if not plan.small:
        return out
    real = group_totals(counts, member)
    with np.errstate(invalid="ignore", divide="ignore"):
        tpr = real["tp"] / real["pos"]  # (G, K); NaN where a group has no positives
        sel_rate = real["sel"] / real["n"][:, None]
    n_speakers = np.array([((plan.groups == g) & plan.present).sum() for g in range(member.shape[1])])
    shrink = np.sqrt(n_speakers / np.maximum(n_speakers - 1, 1))
    for g, (_, donors) in plan.small.items():
        h = plan.groups[donors]  # (B, m)
        pos_d, tp_d = counts["pos"][donors], counts["tp"][donors]  # (B, m, K)
        n_d, sel_d = counts["n"][donors], counts["sel"][donors]
        c = shrink[h][..., None]
        pos = pos_d.sum(axis=1)
        # A donor without positives of a class (pos_d = 0) adds none and no residual; its group's
        # TPR may then be undefined (0/0), so the residual is set to 0 rather than computed.
        residual = np.where(pos_d > 0, tp_d - np.where(pos_d > 0, tpr[h], 0.0) * pos_d, 0.0)
        undefined = real["pos"][g] == 0  # TPR_g undefined in the data (K,): stays undefined
        own = np.where(undefined, 0.0, tpr[g])  # only read where defined (masked below)
        tp = (own * pos_d + c * residual).sum(axis=1)
        n = n_d.sum(axis=1)
        sel = (sel_rate[g] * n_d[..., None] + c * (sel_d - sel_rate[h] * n_d[..., None])).sum(axis=1)
        out["pos"][:, g] = np.where(undefined, 0.0, pos)
        out["tp"][:, g] = np.where(undefined, 0.0, np.clip(tp, 0.0, pos))
        out["n"][:, g] = n
        out["sel"][:, g] = np.clip(sel, 0.0, n[:, None])
    return out


def jackknife_group_counts(counts: dict, member: np.ndarray, present: np.ndarray) -> tuple[np.ndarray, dict]:
    """Leave-one-speaker-out group counts: (J,) speakers left out (present, with a group) and
    n (J, G), pos, tp, sel (J, G, K), each the test set's group counts without that speaker."""
    real = group_totals(counts, member)
    left_out = np.flatnonzero(np.asarray(present, bool) & (member.sum(axis=1) > 0))
    drop = member[left_out]  # (J, G)
    out = {"n": real["n"][None] - drop * counts["n"][left_out][:, None]}
    for key in ("pos", "tp", "sel"):
        out[key] = real[key][None] - drop[:, :, None] * counts[key][left_out][:, None, :]
    return left_out, out


def permuted_groups(groups: np.ndarray, present: np.ndarray, n_perm: int,
                    rng: np.random.Generator) -> np.ndarray:
    """(n_perm, S) group codes with the labels of the present, grouped speakers shuffled among
    them (group sizes kept); the others keep their code. Under "no gap" (every group has the
    same rates) speakers are exchangeable across groups, so gaps of these relabellings show
    the gap that noise alone produces."""
    groups, present = np.asarray(groups), np.asarray(present, bool)
    idx = np.flatnonzero(present & (groups >= 0))
    out = np.tile(groups, (n_perm, 1))
    if len(idx):
        out[:, idx] = groups[idx][rng.permuted(np.tile(np.arange(len(idx)), (n_perm, 1)), axis=1)]
    return out


def permuted_group_counts(perm: np.ndarray, counts: dict, n_groups: int) -> dict:
    """Group counts n (P, G), pos, tp, sel (P, G, K) under each relabelling of `permuted_groups`."""
    return _flat_counts(*permutation_weights(perm, n_groups), counts)


def permutation_weights(perm: np.ndarray, n_groups: int) -> tuple[np.ndarray, int, int]:
    """The flattened one-hot weights of `permuted_groups` codes, to reuse across runs."""
    return _flatten((perm[:, :, None] == np.arange(n_groups)[None, None]).astype(float))


def no_gap_p(point: float, null: np.ndarray | None) -> float:
    """Permutation p-value of "no gap": (1 + #{null >= point}) / (1 + P) over the defined null
    gaps (Phipson & Smyth 2010); NaN without them."""
    if null is None or not np.isfinite(point):
        return np.nan
    null = np.asarray(null, float)
    null = null[np.isfinite(null)]
    return float((1 + np.sum(null >= point - 1e-12)) / (1 + len(null))) if len(null) else np.nan


@dataclass
class Replicates:
    """Resampled values of each fold-and-seed mean, keyed by (set, method, attribute, metric).

    `boot`: (B,) speaker-bootstrap replicates. `jack`: (J,) leave-one-speaker-out values, one per
    (fold, test speaker with a group) in a fixed order, so runs can be combined element-wise.
    `null`: (B,) values under group relabellings, for the no-gap test (`no_gap_p`).
    `groups` (only with `evaluate_runs(..., group_replicates=True)`): (set, method, attribute,
    "tpr_by_group" | "selection_rate_by_group") -> (B, G, K) the fold-and-seed mean of each group's
    rates in the same resamples as `boot` (groups in `group_matrix` order), for the audit's
    per-group intervals.
    """

    boot: dict
    jack: dict
    null: dict = None  # (P,) the same mean under group relabellings (`permuted_groups`)
    groups: dict = field(default_factory=dict)


def _fold_seed_mean(values: dict) -> float:
    v = np.array(list(values.values()), float)
    return float(np.nanmean(v)) if np.isfinite(v).any() else np.nan


def _jackknife_of_mean(points: dict, loo: dict) -> np.ndarray:
    """Leave-one-speaker-out values of the mean over (fold, seed) of `points`.

    points: (fold, seed) -> value; loo: (fold, seed) -> (J_fold,) the value without each speaker
    of that fold. Leaving a speaker out changes only its own fold's values (all seeds).
    """
    keys = list(points)
    v = np.array([points[k] for k in keys], float)
    finite = np.isfinite(v)
    total, count = np.nansum(v), finite.sum()
    out = []
    for fold in sorted({f for f, _ in keys}):
        mine = [i for i, k in enumerate(keys) if k[0] == fold]
        L = np.stack([loo[keys[i]] for i in mine])  # (n_seeds, J_f)
        s = total - np.nansum(v[mine]) + np.nansum(L, axis=0)
        c = count - finite[mine].sum() + np.isfinite(L).sum(axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            out.append(np.where(c > 0, s / np.maximum(c, 1), np.nan))
    return np.concatenate(out) if out else np.empty(0)


def evaluate_runs(truth: Truth, predictions: dict, *, n_boot: int, seed: int,
                  attributes=None, classes=None,
                  group_replicates: bool = False) -> tuple[pd.DataFrame, pd.DataFrame, Replicates]:
    """Per-(fold, seed) metrics (long), per-group rates (long) and resampled fold-and-seed means.

    `predictions`: Run -> {(fold, seed): (n, K) 0/1} (or {fold: ...} for seed 0). Returns
    (per_fold, per_group, replicates):
    per_fold has columns set, method, fold, seed, attribute, metric, value. Each fold's resamples
    (`resample_plan`, seeded by (seed, fold, attribute) only) serve every run and every training
    seed, so differences between runs are paired. `attributes`: columns of `truth.actors`
    (their order numbers the resample streams; default truth.attributes, schema order);
    `classes`: the names of the K target columns (default truth.classes).
    With `group_replicates`, `replicates.groups` also holds each group's resampled TPR and
    selection rate (`Replicates`), from the same `replicate_group_counts` as the gaps.
    """
    # A run given as {fold: predictions} (one seed) is read as seed 0.
    predictions = {run: {(k if isinstance(k, tuple) else (k, 0)): p for k, p in preds.items()}
                   for run, preds in predictions.items()}
    attributes = tuple(truth.attributes if attributes is None else attributes)
    classes = tuple(truth.classes if classes is None else classes)
    if not attributes or not classes:
        raise ValueError("evaluate_runs: no attributes or classes (give them, or a Truth from load_truth)")
    n_speakers = len(truth.actors)
    members = {a: group_matrix(truth.actors[a].to_numpy(object)) for a in attributes}
    fold_rows, group_rows = [], []
    points: dict = {}  # key -> {(fold, seed): value}
    boots: dict = {}   # key -> {(fold, seed): (B,)}
    loos: dict = {}    # key -> {(fold, seed): (J_f,)}
    nulls: dict = {}   # key -> {(fold, seed): (B,)} gaps under group relabellings
    group_boots: dict = {}  # (set, method, attribute, rate) -> {(fold, seed): (B, G, K)}
    for fold in tqdm(truth.folds, desc="evaluate (folds)", unit="fold", disable=len(truth.folds) < 2):
        y = truth.targets[fold]
        spk = truth.speakers[fold]
        present = np.bincount(spk, minlength=n_speakers) > 0
        plans, perms = {}, {}
        for i_attr, attribute in enumerate(attributes):
            codes = members[attribute][0]
            rng = np.random.default_rng([seed, fold, i_attr])
            plans[attribute] = resample_plan(codes, present, n_boot, rng) if n_boot else None
            perms[attribute] = (permutation_weights(permuted_groups(
                codes, present, n_boot, np.random.default_rng([seed, fold, i_attr, 1])),
                members[attribute][1].shape[1]) if n_boot else None)
        for run, preds in predictions.items():
            for (p_fold, t_seed), p in preds.items():
                if p_fold != fold:
                    continue
                base = {"set": run.set, "method": run.method, "fold": fold, "seed": t_seed}
                fold_rows.append({**base, "attribute": ALL_ATTRIBUTE, "metric": "f1",
                                  "value": metrics.macro_f1(y_true=y, y_pred=p)})
                fold_rows.append({**base, "attribute": ALL_ATTRIBUTE, "metric": "acc",
                                  "value": metrics.hamming_accuracy(y_true=y, y_pred=p)})
                spk_counts = speaker_counts(y_true=y, y_pred=p, speakers=spk, n_speakers=n_speakers)
                for attribute in attributes:
                    _, member, names = members[attribute]
                    grp = group_totals(spk_counts, member)
                    tpr, dp = metrics.gaps_from_counts(**grp)
                    for metric, value in (("tpr_gap", tpr), ("dp_gap", dp)):
                        fold_rows.append({**base, "attribute": attribute, "metric": metric,
                                          "value": float(value)})
                        points.setdefault((run.set, run.method, attribute, metric), {})[
                            (fold, t_seed)] = float(value)
                    rates = metrics.tpr_by_group(tp=grp["tp"], pos=grp["pos"])
                    for g, name in enumerate(names):
                        if grp["n"][g] == 0:
                            continue  # the group has no test clips in this fold
                        for k, emotion in enumerate(classes):
                            group_rows.append({**base, "attribute": attribute, "group": name,
                                               "emotion": emotion, "n": int(grp["n"][g]),
                                               "n_pos": int(grp["pos"][g, k]), "tpr": rates[g, k],
                                               "selection_rate": grp["sel"][g, k] / grp["n"][g]})
                    if not n_boot:
                        continue
                    b_counts = replicate_group_counts(plans[attribute], spk_counts, member)
                    b_tpr, b_dp = metrics.gaps_from_counts(**b_counts)
                    if group_replicates:
                        rates_b = {"tpr_by_group": metrics.tpr_by_group(tp=b_counts["tp"],
                                                                        pos=b_counts["pos"]),
                                   "selection_rate_by_group": metrics.selection_rate_by_group(
                                       sel=b_counts["sel"], n=b_counts["n"])}
                        for rate, value in rates_b.items():
                            group_boots.setdefault((run.set, run.method, attribute, rate), {})[
                                (fold, t_seed)] = value
                    _, jk = jackknife_group_counts(spk_counts, member, present)
                    j_tpr, j_dp = metrics.gaps_from_counts(**jk)
                    n_tpr, n_dp = metrics.gaps_from_counts(
                        **_flat_counts(*perms[attribute], spk_counts))
                    for metric, b, j, z in (("tpr_gap", b_tpr, j_tpr, n_tpr), ("dp_gap", b_dp, j_dp, n_dp)):
                        key = (run.set, run.method, attribute, metric)
                        boots.setdefault(key, {})[(fold, t_seed)] = b
                        loos.setdefault(key, {})[(fold, t_seed)] = j
                        nulls.setdefault(key, {})[(fold, t_seed)] = z
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN replicates stay NaN
        boot = {key: np.nanmean(np.stack(list(v.values())), axis=0) for key, v in boots.items()}
        jack = {key: _jackknife_of_mean(points[key], v) for key, v in loos.items()}
        null = {key: np.nanmean(np.stack(list(v.values())), axis=0) for key, v in nulls.items()}
        groups = {key: np.nanmean(np.stack(list(v.values())), axis=0) for key, v in group_boots.items()}
    per_fold = pd.DataFrame(fold_rows, columns=["set", "method", "fold", "seed", "attribute",
                                                "metric", "value"])
    return per_fold, pd.DataFrame(group_rows), Replicates(boot, jack, null, groups)


def speakers_per_group(truth: Truth) -> pd.DataFrame:
    """Test speakers per fold, attribute and group: columns fold, attribute, group, n_speakers.

    Groups with fewer than MIN_STRATUM speakers are resampled by pooled residuals
    (`replicate_group_counts`); the tables name them.
    """
    rows = []
    for fold in truth.folds:
        present = np.unique(truth.speakers[fold])
        for attribute in truth.attributes:
            values = truth.actors[attribute].to_numpy(object)[present]
            _, names = metrics.encode_groups(truth.actors[attribute].to_numpy(object))
            for name in names:
                rows.append({"fold": fold, "attribute": attribute, "group": name,
                             "n_speakers": int(sum(v == name for v in values))})
    return pd.DataFrame(rows, columns=["fold", "attribute", "group", "n_speakers"])


def bootstrap_interval(point: float, reps: np.ndarray | None, *, method: str = None,
                       jack: np.ndarray | None = None, floor: float | None = None,
                       null: np.ndarray | None = None, level: float = CI_LEVEL) -> dict:
    """A two-sided `level` bootstrap interval for `point` from its replicates, and the bias.

    Methods (Efron & Tibshirani 1993, ch. 13-14; Davison & Hinkley 1997, 5.2-5.3), with
    q(p) the p-quantile of the replicates, a = (1 - level)/2 and bias = mean(replicates) - x:
    - "percentile": [q(a), q(1 - a)];
    - "basic" (reverse percentile): [2x - q(1 - a), 2x - q(a)];
    - "shifted": percentile on the bias-corrected statistic x - bias: [q(a) - 2 bias, q(1 - a) - 2 bias];
    - "widened": the basic interval moved one more bias away on the side the bias points to,
      then stretched to hold x: [min(2x - q(1 - a) - max(bias, 0), x),
      max(2x - q(a) - min(bias, 0), x)]. The bootstrap underestimates the upward bias of a
      max-min gap when the true gap is small (resamples start from already spread-out groups),
      so the basic interval sits too high; this conservative widening is hand-made and checked
      only by simulation (benchmarks/gap_ci_coverage.py, docs/STATISTICS.md), for gaps, not gains;
    - "bca": q(Phi(z0 + (z0 + z)/(1 - A (z0 + z)))) at z = Phi^-1(a), Phi^-1(1 - a), with
      z0 = Phi^-1(share of replicates below x, ties counted half) and the acceleration
      A = sum(d^3) / (6 sum(d^2)^1.5), d = mean(jack) - jack, from the leave-one-speaker-out
      values `jack` (without them A = 0: bias-corrected percentile). Hand-written because
      scipy.stats.bootstrap draws its own (unstratified) resamples; ours are stratified by group
      and shared across runs. z0's share is kept within [1/(2B), 1 - 1/(2B)] so it stays finite.
    `floor` clips both ends from below (0 for gaps). With `null` (gaps under group
    relabellings), when the permutation test `no_gap_p` does not reject "no gap" at 1 - level,
    the lower end is set to `floor`: a max-min gap is never 0 in a sample, so without this no
    interval holds a true gap of 0 (benchmarks/gap_ci_coverage.py). Undefined (NaN) replicates are left out.
    Returns ci_low, ci_high, bias and p_no_gap (NaN without `null`).
    """
    method = CI_METHOD if method is None else method
    if method not in CI_METHODS:
        raise ValueError(f"unknown interval method {method!r}; expected one of {CI_METHODS}")
    nan = {"ci_low": np.nan, "ci_high": np.nan, "bias": np.nan, "p_no_gap": np.nan}
    if reps is None or not np.isfinite(point):
        return nan
    reps = np.asarray(reps, float)
    reps = reps[np.isfinite(reps)]
    if not len(reps):
        return nan
    a = (1 - level) / 2
    bias = float(reps.mean() - point)
    if method == "percentile":
        lo, hi = np.percentile(reps, [100 * a, 100 * (1 - a)])
    elif method == "basic":
        q_lo, q_hi = np.percentile(reps, [100 * a, 100 * (1 - a)])
        lo, hi = 2 * point - q_hi, 2 * point - q_lo
    elif method == "shifted":
        lo, hi = np.percentile(reps, [100 * a, 100 * (1 - a)]) - 2 * bias
    elif method == "widened":
        q_lo, q_hi = np.percentile(reps, [100 * a, 100 * (1 - a)])
        lo = min(2 * point - q_hi - max(bias, 0.0), point)
        hi = max(2 * point - q_lo - min(bias, 0.0), point)
    else:  # bca
        share = (np.sum(reps < point) + 0.5 * np.sum(reps == point)) / len(reps)
        share = np.clip(share, 0.5 / len(reps), 1 - 0.5 / len(reps))
        z0 = stats.norm.ppf(share)
        accel = 0.0
        if jack is not None:
            j = np.asarray(jack, float)
            j = j[np.isfinite(j)]
            d = j.mean() - j if len(j) else j
            if len(d) and np.sum(d ** 2) > 0:
                accel = float(np.sum(d ** 3) / (6 * np.sum(d ** 2) ** 1.5))
        z = stats.norm.ppf([a, 1 - a])
        p = stats.norm.cdf(z0 + (z0 + z) / (1 - accel * (z0 + z)))
        lo, hi = np.percentile(reps, 100 * p)
    p_no_gap = no_gap_p(point, null)
    if floor is not None:
        if p_no_gap > 1 - level:
            lo = floor
        lo, hi = max(lo, floor), max(hi, floor)
    return {"ci_low": float(lo), "ci_high": float(hi), "bias": bias, "p_no_gap": p_no_gap}


def fold_differences(x, ref) -> np.ndarray:
    """The mean over seeds of x - ref within each fold, over the folds with a finite pair.

    `x`, `ref`: dicts (fold, seed) -> value; a pair is a key both hold with finite values (the
    same fold, test split and training seed). Sorted by fold."""
    by_fold: dict = {}
    for key, value in x.items():
        if key in ref and np.isfinite(value) and np.isfinite(ref[key]):
            by_fold.setdefault(key[0], []).append(value - ref[key])
    return np.array([np.mean(by_fold[f]) for f in sorted(by_fold)], float)


def paired_test(x, ref) -> tuple[float, int]:
    """Two-sided paired t-test over folds: `scipy.stats.ttest_1samp` of the fold means of
    x - ref (`fold_differences`; seeds averaged within a fold), df = folds - 1.

    The unit is the fold: the seeds of a fold share its test speakers and training split, so
    they are not independent, and folds are (disjoint test speakers). Its false-positive rate
    and power were simulated with fold effects, seed noise and clustered speakers at CREMA-D's
    fold sizes (benchmarks/significance.py, docs/STATISTICS.md). Returns (p, n_folds); p is NaN
    with fewer than 2 folds or when no fold mean differs from 0, and 0 when every fold differs
    by the same non-zero amount (no spread to weigh it against).
    """
    d = fold_differences(x, ref)
    if len(d) < 2 or not np.any(d != 0):
        return np.nan, len(d)
    if np.ptp(d) <= 1e-12 * np.max(np.abs(d)):  # the same difference in every fold (to rounding)
        return 0.0, len(d)
    return float(stats.ttest_1samp(d, 0.0).pvalue), len(d)


def holm(p) -> np.ndarray:
    """Holm's step-down adjusted p-values (family-wise error at any level); NaN stays NaN and
    is not counted in the family. Adjusted p_(i) = max over j <= i of min(1, (m - j + 1) p_(j))
    for the sorted p_(1) <= ... <= p_(m)."""
    p = np.asarray(p, float)
    out = np.full(p.shape, np.nan)
    idx = np.flatnonzero(np.isfinite(p))
    order = idx[np.argsort(p[idx], kind="stable")]
    m = len(order)
    out[order] = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * p[order]))
    return out


def gain(x, erm, metric: str):
    """Relative improvement over ERM: (x - ERM)/ERM for F1 and ACC, (ERM - x)/ERM for gaps."""
    return (x - erm) / erm if metric in SCORE_METRICS else (erm - x) / erm


SUMMARY_COLUMNS = ["set", "method", "attribute", "metric", "mean", "std", "n_folds", "n_seeds",
                   "n_values", "ci_low", "ci_high", "bias", "ci_method", "ci_note", "min_speakers",
                   "p_no_gap", "p_vs_erm", "n_pairs"]


def _ci_note(point: float, ci: dict) -> str:
    """'zero-width' when the interval has no width, 'excludes estimate' when it misses the point,
    'no gap not rejected' when the permutation test could not tell the gap from noise (its lower
    end is then 0, `bootstrap_interval`)."""
    if not np.isfinite(ci["ci_low"]):
        return ""
    if ci["ci_high"] - ci["ci_low"] <= ZERO_WIDTH:
        return "zero-width"
    if point < ci["ci_low"] - ZERO_WIDTH or point > ci["ci_high"] + ZERO_WIDTH:
        return "excludes estimate"
    if ci.get("p_no_gap", np.nan) > 1 - CI_LEVEL:
        return "no gap not rejected"
    return ""


def summarize(per_fold: pd.DataFrame, replicates: Replicates | dict | None,
              speakers: pd.DataFrame | None = None, *, method: str = None) -> pd.DataFrame:
    """Means over (fold, seed), spreads, intervals and paired tests per run; Overall; gains vs ERM.

    Columns SUMMARY_COLUMNS: mean and std (ddof 1) over the n_values finite (fold, seed) values,
    which come from n_folds folds and n_seeds seeds; ci_low, ci_high, bias (`bootstrap_interval`
    with `method`, default CI_METHOD; NaN for F1 and ACC, which are not bootstrapped);
    ci_note (`_ci_note`); min_speakers: the fewest test speakers of any group of the attribute in
    any fold (`speakers` = `speakers_per_group`); p_no_gap: the permutation test of no gap
    (`no_gap_p`; gaps only; below 1 - CI_LEVEL the interval may start above 0); p_vs_erm,
    n_pairs: `paired_test` against ERM's values of the same attribute and metric (a t-test over
    folds; n_pairs counts the folds paired; gain rows repeat their metric's; not corrected for
    multiple rows: `holm`). A gap's gain row is undefined (NaN, ci_note GAIN_UNDEFINED) where
    ERM's gap interval holds 0. A (fold, seed) whose value is undefined (NaN)
    is left out of that mean and of the counts.
    """
    method = CI_METHOD if method is None else method
    if replicates is None:
        replicates = Replicates({}, {})
    elif isinstance(replicates, dict):
        replicates = Replicates(dict(replicates), {})
    boot, jack = dict(replicates.boot), dict(replicates.jack)  # Overall's are added below
    null = dict(replicates.null or {})
    per_fold = per_fold.copy()
    if "seed" not in per_fold.columns:
        per_fold["seed"] = 0
    min_spk = {}
    if speakers is not None and len(speakers):
        present = speakers[speakers["n_speakers"] > 0]
        min_spk = present.groupby("attribute")["n_speakers"].min().to_dict()
    values = {key: dict(zip(zip(part["fold"], part["seed"]), part["value"].astype(float)))
              for key, part in per_fold.groupby(["set", "method", "attribute", "metric"], sort=True)}

    def row(key, vals: dict, mean: float | None = None):
        v = np.array(list(vals.values()), float)
        finite = np.isfinite(v)
        fin_keys = [k for k, ok in zip(vals, finite) if ok]
        if mean is None:
            mean = float(v[finite].mean()) if finite.any() else np.nan
        ci = bootstrap_interval(mean, boot.get(key), method=method, jack=jack.get(key), floor=0.0,
                                null=null.get(key))
        attribute = key[2]
        return dict(zip(("set", "method", "attribute", "metric"), key), mean=mean,
                    std=float(np.std(v[finite], ddof=1)) if finite.sum() > 1 else np.nan,
                    n_folds=len({f for f, _ in fin_keys}), n_seeds=len({s for _, s in fin_keys}),
                    n_values=int(finite.sum()), **ci,
                    ci_method=method if np.isfinite(ci["ci_low"]) else "",
                    ci_note=_ci_note(mean, ci),
                    min_speakers=min_spk.get(attribute, np.nan) if key[3] in GAP_METRICS else np.nan)

    rows = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for key, vals in values.items():
            rows.append(row(key, vals))
        # Overall: the mean of the four group methods at one supervision level, per (fold, seed).
        for run_set in sorted({k[0] for k in values} - {"baselines"}):
            for attribute, metric in sorted({k[2:] for k in values if k[0] == run_set}):
                keys = [(run_set, m, attribute, metric) for m in GROUP_METHODS]
                if not all(k in values for k in keys):
                    continue
                common = [fs for fs in values[keys[0]] if all(fs in values[k] for k in keys)]
                vals = {fs: float(np.nanmean([values[k][fs] for k in keys])) for fs in common}
                okey = (run_set, "overall", attribute, metric)
                values[okey] = vals
                if all(k in boot for k in keys):
                    boot[okey] = np.mean([boot[k] for k in keys], axis=0)
                if all(k in jack for k in keys):
                    jack[okey] = np.mean([jack[k] for k in keys], axis=0)
                if all(k in null for k in keys):
                    null[okey] = np.mean([null[k] for k in keys], axis=0)
                # The Overall cell is the mean of the four methods' means (PROTOCOL section 5).
                means = [np.nanmean(list(values[k].values())) for k in keys]
                rows.append(row(okey, vals, mean=float(np.mean(means))))
        summary = pd.DataFrame(rows)
        erm = {k[2:]: v for k, v in values.items() if k[:2] == ("baselines", "erm")}
        p_vals = []
        for r in summary.itertuples(index=False):
            ref = erm.get((r.attribute, r.metric))
            if ref is None or (r.set, r.method) == ("baselines", "erm"):
                p_vals.append((np.nan, 0))
            else:
                p_vals.append(paired_test(values[(r.set, r.method, r.attribute, r.metric)], ref))
        summary["p_vs_erm"] = [p for p, _ in p_vals]
        summary["n_pairs"] = [n for _, n in p_vals]
        erm_rows = summary[(summary["set"] == "baselines") & (summary["method"] == "erm")]
        erm_mean = erm_rows.set_index(["attribute", "metric"])["mean"]
        erm_low = erm_rows.set_index(["attribute", "metric"])["ci_low"]
        gains = []
        for r in summary.to_dict("records"):
            if ((r["set"], r["method"]) == ("baselines", "erm")
                    or (r["attribute"], r["metric"]) not in erm_mean.index):
                continue
            ref = erm_mean[(r["attribute"], r["metric"])]
            if r["metric"] in GAP_METRICS and erm_low[(r["attribute"], r["metric"])] <= 0:
                # ERM's own gap is not told from 0: a ratio over it is unstable, and its interval
                # could exclude 0 anyway (benchmarks/gap_ci_coverage.py --gains). Undefined, not a number.
                gains.append({**r, "metric": f"{r['metric']}_gain", "mean": np.nan, "std": np.nan,
                              "ci_low": np.nan, "ci_high": np.nan, "bias": np.nan, "p_no_gap": np.nan,
                              "ci_method": "", "ci_note": GAIN_UNDEFINED})
                continue
            key = (r["set"], r["method"], r["attribute"], r["metric"])
            ref_key = ("baselines", "erm", r["attribute"], r["metric"])
            value = gain(r["mean"], ref, r["metric"])
            both = key in boot and ref_key in boot
            jk = (gain(jack[key], jack[ref_key], r["metric"])
                  if key in jack and ref_key in jack else None)
            ci = bootstrap_interval(value, gain(boot[key], boot[ref_key], r["metric"]) if both else None,
                                    method=method, jack=jk)
            gains.append({**r, "metric": f"{r['metric']}_gain", "mean": value, "std": np.nan, **ci,
                          "ci_method": method if np.isfinite(ci["ci_low"]) else "",
                          "ci_note": _ci_note(value, ci)})
    out = pd.concat([summary, pd.DataFrame(gains)], ignore_index=True)
    return out[SUMMARY_COLUMNS]


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


def _attr(metric: str, truth: str) -> str:
    """The summary.csv `attribute` of a Table 1 metric: `all` for F1 and ACC, else `truth`."""
    return ALL_ATTRIBUTE if metric.split("_gain")[0] in SCORE_METRICS else truth


def _round(value) -> float | None:
    return None if value is None or not np.isfinite(value) else round(float(value), 4) + 0.0  # no "-0.0"


def _block(look: Lookup, run_set: str, method: str, names, attribute, *, p_of=()) -> dict:
    """{metric: mean} for `names`, plus {p_<metric>: p_vs_erm} for the metrics in `p_of`.

    Gaps are of `attribute`; F1 and ACC (and their gains) of all clips."""
    out = {}
    for metric in names:
        row = look.row(run_set, method, _attr(metric, attribute), metric)
        if row is not None:
            out[metric] = _round(row["mean"])
    for metric in p_of:
        row = look.row(run_set, method, _attr(metric, attribute), metric)
        if row is not None and "p_vs_erm" in row.index:
            out[f"p_{metric}"] = _round(row["p_vs_erm"])
    return out


def table2_attributes(schema: corpus_schema.Schema, truth: str) -> list[str]:
    """Table 2's attributes: every attribute of the corpus but Table 1's (`truth`), schema order."""
    return [a for a in schema.attribute_names if a != truth]


def _count(d) -> int:
    return sum(_count(v) for v in d.values()) if isinstance(d, dict) else 1


def headline(summary: pd.DataFrame, *, k: int, truth: str, others) -> dict:
    """The DVC metrics: headline numbers only, as nested dicts of plain numbers (DVC drops lists).

    table1.<erm|random|lff|disent|jtt|george|pgdro>.<f1|acc|tpr_gap|dp_gap>;
    table1.<ds|rw|gdro|gadro>.<gender|pseudo|kmeans>.<metric> (kmeans = the kmeans_k<k> runs);
    table1.overall.<level>.<metric, f1_gain, tpr_gap_gain, dp_gap_gain>; every Table 1 row but ERM's and Random's
    also has p_tpr_gap, the two-sided p of its TPR gap against ERM's from the t-test over fold
    means (`paired_test`; before issue 23 a Wilcoxon over (fold, seed) pairs), not corrected
    for the number of rows (reports/table1.md shows Holm-adjusted ones); a gap's gain is null
    where it is undefined (`summarize`). table2.<attribute>.erm.<tpr_gap|dp_gap> and
    table2.<attribute>.overall.k<16|32>.<tpr_gap|dp_gap> for each of `others` (Table 2's
    attributes, `table2_attributes`; CREMA-D: race, age). Means are over folds x seeds; gaps in
    table1 are gaps of `truth` (Table 1's attribute, `schema.truth_attribute`; the paper: gender;
    the level keeps the run set's name `gender` whatever it is). Undefined values are null;
    runs that do not exist have no keys. Table 2 sections are added in `others` order while the
    total stays within MAX_HEADLINE_KEYS (a corpus with many attributes: the rest are in
    summary.csv). Per-method Table 2 cells, intervals, spreads and the K sweep stay in
    data/eval/summary.csv (and reports/, plots/), so `dvc metrics show` stays short.
    """
    look = Lookup(summary)
    t1_metrics = SCORE_METRICS + GAP_METRICS
    levels = {"gender": "gender", "pseudo": "pseudo", "kmeans": kmeans_set(k)}
    table1: dict = {}
    for method, run_set in (("erm", "baselines"), ("random", "baselines"), ("lff", "baselines"),
                            ("disent", "baselines"), ("jtt", "baselines"), ("george", "baselines"),
                            ("pgdro", "pseudo")):
        block = _block(look, run_set, method, t1_metrics, truth,
                       p_of=() if method in ("erm", "random") else ("tpr_gap",))
        if block:
            table1[method] = block
    for method in GROUP_METHODS + ("overall",):
        # Overall gains: F1 and the two gaps (the paper's headline); ACC's gain is one division away.
        names = (t1_metrics + ("f1_gain", "tpr_gap_gain", "dp_gap_gain") if method == "overall"
                 else t1_metrics)
        per_level = {lvl: _block(look, s, method, names, truth, p_of=("tpr_gap",))
                     for lvl, s in levels.items()}
        per_level = {lvl: b for lvl, b in per_level.items() if b}
        if per_level:
            table1[method] = per_level

    ks = [kk for kk in TABLE2_KS if kmeans_set(kk) in look.sets()]
    table2: dict = {}
    room = MAX_HEADLINE_KEYS - _count(table1)
    for attribute in others:
        section = {"erm": _block(look, "baselines", "erm", GAP_METRICS, attribute)}
        # Gaps only: their gains vs ERM are in reports/table2.md and data/eval/summary.csv.
        per_k = {f"k{kk}": _block(look, kmeans_set(kk), "overall", GAP_METRICS, attribute) for kk in ks}
        per_k = {key: b for key, b in per_k.items() if b}
        if per_k:
            section["overall"] = per_k
        section = {key: b for key, b in section.items() if b}
        if section and _count(section) <= room:
            table2[attribute] = section
            room -= _count(section)
    return {"table1": table1, "table2": table2}
