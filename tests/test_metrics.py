"""fairser.metrics: hand-computed cases, the undefined-cell rules, and a fairlearn cross-check."""

import warnings

import numpy as np
import pandas as pd
import pytest

from fairser import metrics
from fairser.train import random_scores
from fairser.schema import CREMA_D_CLASSES as EMOTIONS


def _rows(*rows):
    return np.array(rows, dtype=np.int8)


def test_binarize_is_strict_at_one_sixth():
    got = metrics.binarize([[1 / 6, 0.166667, 0.5, 0.0, 0.1666, 0.2]], 1 / 6)
    assert got.tolist() == [[0, 1, 1, 0, 0, 1]]


def test_hamming_accuracy_counts_label_decisions():
    y = _rows([1, 0, 0, 0, 0, 0], [0, 1, 0, 0, 1, 0])
    p = _rows([1, 1, 0, 0, 0, 0], [0, 1, 0, 0, 1, 0])
    assert metrics.hamming_accuracy(y_true=y, y_pred=p) == pytest.approx(11 / 12)


def test_macro_f1_scores_empty_classes_zero():
    # Class 0: TP 1, FP 1 -> F1 2/3; class 1: TP 1 -> 1; classes 2-5: no positives at all -> 0.
    y = _rows([1, 0, 0, 0, 0, 0], [0, 1, 0, 0, 0, 0])
    p = _rows([1, 0, 0, 0, 0, 0], [1, 1, 0, 0, 0, 0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # zero_division=0 is a choice, not sklearn's warning
        assert metrics.macro_f1(y_true=y, y_pred=p) == pytest.approx((2 / 3 + 1) / 6)


def test_metrics_are_keyword_only():
    y = _rows([1, 0, 0, 0, 0, 0])
    with pytest.raises(TypeError):
        metrics.macro_f1(y, y)  # noqa
    with pytest.raises(TypeError):
        metrics.tpr_gap(y, y, ["a"])  # noqa


def test_scores_are_refused_where_multi_hot_is_expected():
    with pytest.raises(ValueError, match="binarize"):
        metrics.hamming_accuracy(y_true=np.full((2, 6), 0.3), y_pred=np.zeros((2, 6)))


@pytest.mark.parametrize("bad", ["y_true", "y_pred"])
@pytest.mark.parametrize("fn", [metrics.macro_f1, metrics.hamming_accuracy, metrics.group_counts,
                                metrics.tpr_gap, metrics.dp_gap], ids=lambda f: f.__name__)
def test_a_misshapen_array_is_named_in_the_error(fn, bad):
    good = np.zeros((2, 6), dtype=np.int8)
    kwargs = {"y_true": good, "y_pred": good}
    if fn not in (metrics.macro_f1, metrics.hamming_accuracy):
        kwargs["groups"] = ["a", "b"]
    kwargs[bad] = np.zeros((2, 5), dtype=np.int8)  # the class count is free, but must agree
    with pytest.raises(ValueError, match=r"^y_true and y_pred differ in shape: \(2, \d\), \(2, \d\)$"):
        fn(**kwargs)
    kwargs[bad] = np.zeros(2, dtype=np.int8)  # not (N, K) at all: that array is named
    with pytest.raises(ValueError, match=rf"^{bad} must have shape \(N, K\)"):
        fn(**kwargs)


def _two_group_case():
    """Class 0 is positive for all four clips; the model finds it for both A clips, one B clip."""
    y = np.zeros((4, 6), dtype=np.int8)
    y[:, 0] = 1
    y[:, 1] = [1, 0, 1, 0]
    p = np.zeros((4, 6), dtype=np.int8)
    p[:, 0] = [1, 1, 1, 0]
    p[:, 1] = [1, 0, 0, 0]
    return y, p, ["A", "A", "B", "B"]


def test_tpr_gap_hand_computed():
    y, p, g = _two_group_case()
    # Class 0: TPR_A = 1, TPR_B = 1/2 -> gap 1/2. Class 1: TPR_A = 1, TPR_B = 0 -> gap 1.
    # Classes 2-5 have no positives in any group: undefined, left out of the RMS.
    assert metrics.tpr_gap(y_true=y, y_pred=p, groups=g) == pytest.approx(np.sqrt((0.25 + 1) / 2))


def test_dp_gap_hand_computed():
    y, p, g = _two_group_case()
    # Class 0: rates A 1, B 1/2, overall 3/4 -> max DP 1/4. Class 1: A 1/2, B 0, all 1/4 -> 1/4.
    # Classes 2-5: nobody predicted positive -> DP 0 (defined: both groups have clips).
    assert metrics.dp_gap(y_true=y, y_pred=p, groups=g) == pytest.approx(np.sqrt(2 * 0.0625 / 6))


def test_tpr_cell_without_positives_is_left_out_not_zero():
    # Three groups; C has no positives of class 0, so class 0's gap is over A and B only.
    y = np.zeros((3, 6), dtype=np.int8)
    y[:2, 0] = 1
    p = np.zeros((3, 6), dtype=np.int8)
    p[0, 0] = 1
    counts = metrics.group_counts(y_true=y, y_pred=p, groups=["A", "B", "C"])
    tpr = metrics.tpr_by_group(tp=counts["tp"], pos=counts["pos"])
    assert tpr[0, 0] == 1 and tpr[1, 0] == 0 and np.isnan(tpr[2, 0])
    assert metrics.tpr_gap(y_true=y, y_pred=p, groups=["A", "B", "C"]) == pytest.approx(1.0)


def test_class_with_one_defined_group_is_left_out_and_none_left_is_nan():
    y = np.zeros((2, 6), dtype=np.int8)
    y[0, 0] = 1  # only group A has positives of class 0
    p = np.ones((2, 6), dtype=np.int8)
    assert np.isnan(metrics.tpr_gap(y_true=y, y_pred=p, groups=["A", "B"]))
    y[1, 1] = 1
    p[1, 1] = 0
    y[0, 1] = 1  # class 1: A 1, B 0 -> the only defined class
    assert metrics.tpr_gap(y_true=y, y_pred=p, groups=["A", "B"]) == pytest.approx(1.0)


def test_single_group_has_no_gap():
    y, p, _ = _two_group_case()
    assert np.isnan(metrics.tpr_gap(y_true=y, y_pred=p, groups=["A"] * 4))
    assert np.isnan(metrics.dp_gap(y_true=y, y_pred=p, groups=["A"] * 4))


def test_all_groups_missing_gives_nan():
    y, p, _ = _two_group_case()
    assert np.isnan(metrics.tpr_gap(y_true=y, y_pred=p, groups=[None] * 4))
    assert np.isnan(metrics.dp_gap(y_true=y, y_pred=p, groups=[None] * 4))


def test_missing_group_clips_are_left_out_of_overall_rate():
    y, p, _ = _two_group_case()
    with_unknown = np.vstack([y, np.ones((3, 6), np.int8)])
    p_unknown = np.vstack([p, np.ones((3, 6), np.int8)])
    g = ["A", "A", "B", "B", None, float("nan"), None]
    assert metrics.dp_gap(y_true=with_unknown, y_pred=p_unknown, groups=g) == pytest.approx(
        metrics.dp_gap(y_true=y, y_pred=p, groups=g[:4]))
    assert metrics.tpr_gap(y_true=with_unknown, y_pred=p_unknown, groups=g) == pytest.approx(
        metrics.tpr_gap(y_true=y, y_pred=p, groups=g[:4]))


def test_batched_counts_match_one_at_a_time():
    rng = np.random.default_rng(0)
    cases = []
    for _ in range(4):
        y = (rng.random((40, 6)) < 0.3).astype(np.int8)
        p = (rng.random((40, 6)) < 0.5).astype(np.int8)
        g = rng.choice(["x", "y", "z"], 40)
        cases.append((y, p, g))
    counts = [metrics.group_counts(y_true=y, y_pred=p, groups=g) for y, p, g in cases]
    stack = {k: np.stack([c[k] for c in counts]) for k in ("n", "pos", "tp", "sel")}
    tpr, dp = metrics.gaps_from_counts(**stack)
    for i, (y, p, g) in enumerate(cases):
        assert tpr[i] == pytest.approx(metrics.tpr_gap(y_true=y, y_pred=p, groups=g))
        assert dp[i] == pytest.approx(metrics.dp_gap(y_true=y, y_pred=p, groups=g))


@pytest.mark.filterwarnings("ignore")
def test_per_class_rates_and_gaps_match_fairlearn():
    from fairlearn.metrics import MetricFrame, selection_rate, true_positive_rate

    rng = np.random.default_rng(1)
    y = (rng.random((300, 6)) < 0.25).astype(np.int8)
    p = (rng.random((300, 6)) < np.array([0.2, 0.4, 0.5, 0.3, 0.6, 0.5])).astype(np.int8)
    g = rng.choice(["Young", "Middle", "Elderly"], 300, p=[0.5, 0.3, 0.2])
    c = metrics.group_counts(y_true=y, y_pred=p, groups=g)
    tpr = metrics.tpr_by_group(tp=c["tp"], pos=c["pos"])
    gaps, dps = [], []
    for k in range(6):
        mf = MetricFrame(metrics={"tpr": true_positive_rate, "sel": selection_rate},
                         y_true=y[:, k], y_pred=p[:, k], sensitive_features=g)
        by = mf.by_group.loc[c["names"]]
        np.testing.assert_allclose(tpr[:, k], by["tpr"].to_numpy())
        np.testing.assert_allclose(c["sel"][:, k] / c["n"], by["sel"].to_numpy())
        gaps.append(mf.difference()["tpr"])
        dps.append(np.abs(by["sel"] - mf.overall["sel"]).max())
    assert metrics.tpr_gap(y_true=y, y_pred=p, groups=g) == pytest.approx(
        np.sqrt(np.mean(np.square(gaps))))
    assert metrics.dp_gap(y_true=y, y_pred=p, groups=g) == pytest.approx(
        np.sqrt(np.mean(np.square(dps))))


def test_random_scores_on_real_test_labels_match_the_papers_random_row(reference_data):
    # PROTOCOL section 5's sanity check: random scores give a DP gap of ~0.014-0.015 on gender.
    rows = []
    for fold in range(1, 6):
        df = pd.read_csv(reference_data / "emo-superb" / "CREMA-D" / "Primary"
                         / f"labels_consensus_{fold}.csv")
        df = df[df["Split_Set"] == "Test"]
        y = metrics.binarize(df[list(EMOTIONS)].to_numpy(), 1 / 6)
        p = metrics.binarize(random_scores(len(df), seed=fold, n_classes=6), 1 / 6)
        g = df["Gender"].to_numpy()
        rows.append([metrics.macro_f1(y_true=y, y_pred=p), metrics.hamming_accuracy(y_true=y, y_pred=p),
                     metrics.tpr_gap(y_true=y, y_pred=p, groups=g),
                     metrics.dp_gap(y_true=y, y_pred=p, groups=g)])
    f1, acc, tpr, dp = np.mean(rows, axis=0)
    # Paper: F1 0.360, ACC 0.509, TPR gap 0.060, DP gap 0.015. Bounds are a few seed s.d.s wide.
    assert f1 == pytest.approx(0.360, abs=0.012)
    assert acc == pytest.approx(0.509, abs=0.01)
    assert dp == pytest.approx(0.015, abs=0.006)
    assert 0.02 < tpr < 0.08


def test_dp_gap_with_unequal_groups_takes_the_worst_group_against_the_pooled_rate():
    # Group A has 1 clip, group B 3. The overall rate pools clips (not the mean of group rates),
    # and the max over groups picks A, the small group, in both classes.
    y = np.zeros((4, 6), dtype=np.int8)
    p = np.zeros((4, 6), dtype=np.int8)
    p[:, 0] = [1, 1, 0, 0]  # class 0: A 1/1, B 1/3, overall 2/4 -> DP A 1/2, B 1/6
    p[:, 1] = [0, 1, 1, 1]  # class 1: A 0/1, B 3/3, overall 3/4 -> DP A 3/4, B 1/4
    g = ["A", "B", "B", "B"]
    # Classes 2-5: nobody predicted positive -> DP 0 in both groups.
    expected = np.sqrt(((1 / 2) ** 2 + (3 / 4) ** 2) / 6)
    assert metrics.dp_gap(y_true=y, y_pred=p, groups=g) == pytest.approx(expected)


def test_group_counts_by_hand_leave_out_clips_without_a_group():
    y, p, _ = _two_group_case()
    c = metrics.group_counts(y_true=y, y_pred=p, groups=["A", "A", "B", None])
    assert c["names"] == ["A", "B"]
    np.testing.assert_array_equal(c["n"], [2, 1])
    np.testing.assert_array_equal(c["pos"][:, :2], [[2, 1], [1, 1]])
    np.testing.assert_array_equal(c["tp"][:, :2], [[2, 1], [1, 0]])
    np.testing.assert_array_equal(c["sel"][:, :2], [[2, 1], [1, 0]])
    assert c["pos"][:, 2:].sum() == c["sel"][:, 2:].sum() == 0


def test_groups_of_another_length_are_refused():
    y, p, g = _two_group_case()
    with pytest.raises(ValueError, match="differ in length"):
        metrics.group_counts(y_true=y, y_pred=p, groups=g[:3])


def test_nan_group_is_missing_like_none():
    y, p, _ = _two_group_case()
    as_none = metrics.group_counts(y_true=y, y_pred=p, groups=["A", "A", "B", None])
    as_nan = metrics.group_counts(y_true=y, y_pred=p, groups=["A", "A", "B", float("nan")])
    assert as_nan["names"] == ["A", "B"]
    np.testing.assert_array_equal(as_nan["sel"], as_none["sel"])


def test_dp_leaves_out_a_group_without_clips():
    # Counts as the speaker bootstrap passes them: group C exists but has no clip in this fold.
    sel = np.array([[1, 0, 0, 0, 0, 0], [0, 2, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0]], float)
    n = np.array([1.0, 2.0, 0.0])
    # Overall rates: class 0 1/3, class 1 2/3 -> class 0: A |1 - 1/3|, B 1/3; class 1: A 2/3, B 1/3
    np.testing.assert_allclose(metrics.dp_per_class(sel=sel, n=n), [2 / 3, 2 / 3, 0, 0, 0, 0])


def test_dp_needs_two_groups_with_clips_in_each_batch_row():
    sel = np.zeros((2, 2, 6))
    n = np.array([[3.0, 0.0], [3.0, 2.0]])  # row 0: one group only -> undefined
    out = metrics.dp_per_class(sel=sel, n=n)
    assert np.isnan(out[0]).all() and (out[1] == 0).all()


def test_binarize_takes_the_threshold_it_is_given():
    # 1/K for K = 4 classes: 0.25 itself is not above it.
    got = metrics.binarize([[0.26, 0.24, 0.25, 0.25]], 1 / 4)
    assert got.tolist() == [[1, 0, 0, 0]]
    with pytest.raises(TypeError):
        metrics.binarize([[0.5, 0.5]])  # no hidden six-class default
