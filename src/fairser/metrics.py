"""SER and fairness metrics (docs/PROTOCOL.md section 5; paper section 4.3).

Every function takes (N, K) arrays (the pipeline: the K classes of the corpus schema, in its
order, data/corpus/schema.json; `fairser audit`: the classes of the audited predictions) and
keyword-only arguments, so `y_true`, `y_pred` and `groups` cannot be swapped by position.

- Targets: y_k = 1 iff the vote share p_k > 1/K (strict; CREMA-D: 1/6).
- Predictions: yhat_k = 1 iff the softmax probability > 1/K (strict), `binarize`.
- F1: macro F1 over the K classes of the multi-hot targets; ACC: Hamming accuracy.
- TPR gap (equal opportunity): TPR_{g,k} = P(yhat_k = 1 | y_k = 1, G = g);
  gap_k = max_g TPR_{g,k} - min_g TPR_{g,k}; TPR_gap = sqrt(mean_k gap_k^2).
- DP gap (demographic parity): DP(g, k) = |P(yhat_k = 1 | G = g) - P(yhat_k = 1)|;
  DP_gap = sqrt(mean_k max_g DP(g, k)^2) (our reading of the paper's garbled eq. 4).

Undefined cells, never silently 0:
- A group takes part only if it has at least one clip; clips whose group is missing (None or
  NaN, e.g. race "Unknown") are left out of every fairness rate, the overall rate included.
- TPR_{g,k} is undefined when group g has no positives of class k; that cell is left out of
  the max and min. A class with fewer than two defined groups is left out of the RMS.
- DP(g, k) needs at least two groups; the overall rate is over the included clips.
- When no class remains the gap is NaN.

The gap functions are built on `gaps_from_counts`, which works on per-group counts with any
leading batch shape, so the speaker bootstrap (fairser.evaluate) reuses the same definition.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from sklearn.metrics import adjusted_rand_score, f1_score, normalized_mutual_info_score


def binarize(scores, threshold: float) -> np.ndarray:
    """Multi-hot 0/1 array: 1 where the score (a probability or a vote share) exceeds `threshold`.

    The pipeline's strict threshold is 1/K for K classes (`Schema.threshold`; CREMA-D 1/6): it
    turns vote distributions into targets and softmax outputs into predictions (PROTOCOL sections 1
    and 5; EMO-SUPERB's 1/|Y|). No default, so no caller can fall back to six classes unseen.
    """
    scores = np.asarray(scores, dtype=float)
    return (scores > threshold).astype(np.int8)


def _check_multi_hot(name: str, a) -> np.ndarray:
    a = np.asarray(a)
    if a.ndim != 2 or a.shape[1] < 1:
        raise ValueError(f"{name} must have shape (N, K), K >= 1 classes; got {a.shape}")
    if not np.isin(a, (0, 1)).all():
        raise ValueError(f"{name} must be 0/1 multi-hot; binarize scores first")
    return a.astype(np.int8)


def _check_pair(y_true, y_pred) -> tuple[np.ndarray, np.ndarray]:
    """Both arrays 0/1 multi-hot of one shape (N, K); the message names both shapes."""
    y_true = _check_multi_hot("y_true", y_true)
    y_pred = _check_multi_hot("y_pred", y_pred)
    if y_true.shape != y_pred.shape:  # == would broadcast (N, 1) against (N, K)
        raise ValueError(f"y_true and y_pred differ in shape: {y_true.shape}, {y_pred.shape}")
    return y_true, y_pred


def macro_f1(*, y_true, y_pred) -> float:
    """Macro F1: the unweighted mean over the K classes of each class's binary F1.

    sklearn `f1_score(average="macro", zero_division=0)`: a class whose F1 is 0/0 (no true and
    no predicted positives) scores 0 and still counts in the mean, so the score never rises by
    dropping a class. Every real test fold has positives of all six classes, so this only
    matters on tiny data.
    """
    y_true, y_pred = _check_pair(y_true, y_pred)
    return float(f1_score(y_true, y_pred, average="macro", zero_division=0))


def hamming_accuracy(*, y_true, y_pred) -> float:
    """Hamming accuracy: the share of the N x K label decisions that are correct (1 - Hamming loss)."""
    y_true, y_pred = _check_pair(y_true, y_pred)
    return float((y_true == y_pred).mean())


def encode_groups(groups) -> tuple[np.ndarray, list]:
    """Integer codes for `groups` (-1 where missing: None or NaN) and the sorted group names."""
    groups = np.asarray(groups, dtype=object)
    missing = np.array([g is None or (isinstance(g, float) and np.isnan(g)) for g in groups],
                       dtype=bool)
    names = sorted({g for g, m in zip(groups, missing) if not m}, key=str)
    index = {g: i for i, g in enumerate(names)}
    codes = np.array([-1 if m else index[g] for g, m in zip(groups, missing)], dtype=np.int64)
    return codes, names


def group_counts(*, y_true, y_pred, groups) -> dict:
    """Per-group counts behind every fairness rate.

    Returns a dict with `names` (the groups, sorted), `n` (G,) clips per group, `pos` (G, K)
    clips with y_k = 1, `tp` (G, K) clips with y_k = 1 and yhat_k = 1, `sel` (G, K) clips with
    yhat_k = 1. Clips with a missing group are not counted.
    """
    y_true, y_pred = _check_pair(y_true, y_pred)
    codes, names = encode_groups(groups)
    if len(codes) != len(y_true) or len(y_true) != len(y_pred):
        raise ValueError(f"y_true, y_pred and groups differ in length: "
                         f"{len(y_true)}, {len(y_pred)}, {len(codes)}")
    keep = codes >= 0
    onehot = np.zeros((len(names), int(keep.sum())))
    onehot[codes[keep], np.arange(int(keep.sum()))] = 1.0
    yt, yp = y_true[keep].astype(float), y_pred[keep].astype(float)
    return {
        "names": names,
        "n": onehot.sum(axis=1),
        "pos": onehot @ yt,
        "tp": onehot @ (yt * yp),
        "sel": onehot @ yp,
    }


def _nan_ratio(num, den) -> np.ndarray:
    num, den = np.broadcast_arrays(np.asarray(num, float), np.asarray(den, float))
    out = np.full(num.shape, np.nan)
    np.divide(num, den, out=out, where=den > 0)
    return out


def _rms_over_classes(per_class: np.ndarray) -> np.ndarray:
    """sqrt(mean over defined classes of x^2) along the last axis; NaN where none is defined."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows are meant to give NaN
        return np.sqrt(np.nanmean(np.square(per_class), axis=-1))


def tpr_by_group(*, tp, pos) -> np.ndarray:
    """TPR_{g,k} = tp / pos; NaN where the group has no positives of the class (undefined)."""
    return _nan_ratio(tp, pos)


def selection_rate_by_group(*, sel, n) -> np.ndarray:
    """P(yhat_k = 1 | G = g) = sel / n; NaN where the group has no clips. `n`: (..., G)."""
    return _nan_ratio(sel, np.asarray(n, float)[..., None])


def tpr_gap_per_class(*, tp, pos) -> np.ndarray:
    """gap_k = max_g TPR_{g,k} - min_g TPR_{g,k} over the defined cells; NaN if < 2 are defined.

    `tp`, `pos`: (..., G, K) counts. Returns (..., K).
    """
    tpr = tpr_by_group(tp=tp, pos=pos)
    defined = ~np.isnan(tpr)
    hi = np.where(defined, tpr, -np.inf).max(axis=-2, initial=-np.inf)
    lo = np.where(defined, tpr, np.inf).min(axis=-2, initial=np.inf)
    return np.where(defined.sum(axis=-2) >= 2, hi - lo, np.nan)


def dp_per_class(*, sel, n) -> np.ndarray:
    """max_g DP(g, k), DP(g, k) = |sel_{g,k}/n_g - sum_g sel_{g,k} / sum_g n_g|.

    `sel`: (..., G, K), `n`: (..., G). Groups with no clips are left out; NaN for a class when
    fewer than two groups have clips. Returns (..., K).
    """
    sel = np.asarray(sel, float)
    n = np.asarray(n, float)
    present = n > 0
    rate = _nan_ratio(sel, n[..., None])
    overall = _nan_ratio(sel.sum(axis=-2), n.sum(axis=-1)[..., None])
    dp = np.abs(rate - overall[..., None, :])
    worst = np.where(present[..., None], dp, -np.inf).max(axis=-2, initial=-np.inf)
    return np.where(present.sum(axis=-1)[..., None] >= 2, worst, np.nan)


def gaps_from_counts(*, n, pos, tp, sel) -> tuple[np.ndarray, np.ndarray]:
    """(TPR gap, DP gap) from per-group counts with any leading batch shape (..., G[, 6])."""
    return (_rms_over_classes(tpr_gap_per_class(tp=tp, pos=pos)),
            _rms_over_classes(dp_per_class(sel=sel, n=n)))


def tpr_gap(*, y_true, y_pred, groups) -> float:
    """Equal-opportunity gap: sqrt(mean_k (max_g TPR_{g,k} - min_g TPR_{g,k})^2).

    See the module docstring for how undefined TPRs and missing groups are left out.
    """
    c = group_counts(y_true=y_true, y_pred=y_pred, groups=groups)
    return float(_rms_over_classes(tpr_gap_per_class(tp=c["tp"], pos=c["pos"])))


def dp_gap(*, y_true, y_pred, groups) -> float:
    """Demographic-parity gap: sqrt(mean_k max_g |P(yhat_k=1 | G=g) - P(yhat_k=1)|^2).

    `y_true` is only checked for shape (DP ignores the labels); it is taken so every gap has
    the same signature.
    """
    c = group_counts(y_true=y_true, y_pred=y_pred, groups=groups)
    return float(_rms_over_classes(dp_per_class(sel=c["sel"], n=c["n"])))


# --- cluster quality against true groups (k-means IDI, GEORGE) ------------------------------------

def purity(*, clusters, labels) -> float:
    """Purity = (1/N) sum over clusters of the size of its most common label (Manning et al., 2008,
    16.3). 1 when every cluster holds one label; a single cluster gives the majority share."""
    table = pd.crosstab(np.asarray(clusters), np.asarray(labels))
    return float(table.to_numpy().max(axis=1).sum() / table.to_numpy().sum())


def nmi(*, clusters, labels) -> float:
    """Normalised mutual information I(C; L) / mean(H(C), H(L)) (sklearn, arithmetic mean)."""
    return float(normalized_mutual_info_score(np.asarray(labels), np.asarray(clusters)))


def majority_share(labels) -> float:
    """The share of the most common label: the purity of a single cluster, the floor that any
    clustering's purity starts from (purity never falls below it)."""
    _, counts = np.unique(np.asarray(labels), return_counts=True)
    return float(counts.max() / counts.sum())


def adjusted_rand(*, clusters, labels) -> float:
    """Adjusted Rand index (Hubert & Arabie, 1985; sklearn adjusted_rand_score): 0 in expectation
    for clusters independent of the labels, 1 for the same partition."""
    return float(adjusted_rand_score(np.asarray(labels), np.asarray(clusters)))
