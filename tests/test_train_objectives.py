"""What `train.fit` does with each run's objective, pinned on planted cases worked by hand
(PROTOCOL sections 3-4): the class-balance weights, GDRO / GADRO's q carried from step to step, and
test predictions taken from the epoch chosen on dev.

lr = 0 freezes every model at its initialisation, so each loss is the initial model's and the
objective's own arithmetic (q, weights) can be followed by hand. A group's loss L_g comes from
`fit` itself: the dev loss of a frozen ERM run whose dev set is that group's training clips (same
seed and training set, so the same initial model, standardisation and class weights).
"""

from dataclasses import replace

import numpy as np
import pytest
import torch

from fairser.train import FoldData, TrainConfig, build_run, class_weights, fit

torch.set_num_threads(1)

FROZEN = TrainConfig(epochs=2, batch_size=64, lr=0.0, hidden=4)  # one step per epoch, no update


def one_hot_p(classes):
    """Vote distributions p = 0.01 + 0.94 * onehot (PROTOCOL section 1 smoothing)."""
    p = np.full((len(classes), 6), 0.01)
    p[np.arange(len(classes)), classes] += 0.94
    return p


def toy(n, seed=0):
    """n clips, 2 layers x 5 dims, class signal in dimension 0."""
    rng = np.random.default_rng(seed)
    classes = rng.integers(0, 6, n)
    feats = rng.standard_normal((n, 2, 5)).astype(np.float32)
    feats[:, :, 0] += classes[:, None]
    return feats, one_hot_p(classes), classes


def frozen_group_losses(feats, p, classes, train, groups):
    """L_g of the initial model: a frozen ERM probe per group, dev = the group's training clips."""
    probes = [build_run("erm", f"probe/{g}", FoldData(
        fold=1, train=train, dev=train[groups == g], test=train[:1], labels=classes[train]), seed=0)
        for g in range(groups.max() + 1)]
    return np.array([r.dev_loss[0] for r in fit(feats, p, probes, FROZEN)])


# --- class-balance weights (PROTOCOL section 3) --------------------------------------------------

def test_class_weights_count_multi_label_positives_strictly_above_one_sixth():
    p = np.array([[0.5, 0.5, 0, 0, 0, 0],          # positives: classes 0, 1
                  [0.4, 0.2, 0.4, 0, 0, 0],        # 0, 1, 2 (0.2 > 1/6)
                  [1 / 6] * 6,                     # none: 1/6 is not above 1/6
                  [0.3, 0.1, 0.1, 0.1, 0.2, 0.2]])  # 0, 4, 5
    # N = 4, beta = 3/4; n_c = 3, 2, 1, 0 (counted as 1), 1, 1; w_c ~ (1 - beta) / (1 - beta^n_c)
    raw = np.array([0.25 / (1 - 0.75 ** 3), 0.25 / (1 - 0.75 ** 2), 1, 1, 1, 1])
    np.testing.assert_allclose(class_weights(p), raw * 6 / raw.sum(), rtol=1e-12)


def test_class_weights_of_a_single_clip_are_all_one():
    # N = 1: beta = 0, every class weighs the same (and no 0 / 0).
    np.testing.assert_array_equal(class_weights(one_hot_p([2])), np.ones(6))


def test_training_loss_carries_the_class_weights_of_its_own_training_set():
    # Two training sets on the same 10 feature rows (duplicated), differing only in their votes:
    # class 0 has 1 clip in A and 5 in B. Same features, seed and fold: the same frozen model, so
    # the dev clip's cross-entropy is the same and the dev losses differ only by w_i = sum_k w_k p_k.
    feats, _, _ = toy(12)
    classes_a = np.array([0, 1, 1, 1, 1, 1, 2, 3, 4, 5])
    classes_b = np.array([0, 0, 0, 0, 0, 1, 2, 3, 4, 5])
    feats = np.concatenate([feats[:10], feats[:10], feats[10:]])
    p = np.concatenate([one_hot_p(classes_a), one_hot_p(classes_b), one_hot_p([0, 0])])
    runs = [build_run("erm", f"cw/{name}", FoldData(fold=1, train=train, dev=np.array([20]),
                                                    test=np.array([21]), labels=labels), seed=0)
            for name, train, labels in (("a", np.arange(10), classes_a),
                                        ("b", np.arange(10, 20), classes_b))]
    a, b = fit(feats, p, runs, FROZEN)
    # N = 10, beta = 0.9: n_c = 1 gives (1 - beta) / (1 - beta) = 1, n_c = 5 gives 0.1 / (1 - 0.9^5)
    five = 0.1 / (1 - 0.9 ** 5)
    w_a = np.array([1, five, 1, 1, 1, 1]) * 6 / (5 + five)
    w_b = np.array([five, 1, 1, 1, 1, 1]) * 6 / (5 + five)
    dev_p = one_hot_p([0])[0]
    assert a.dev_loss[0] / b.dev_loss[0] == pytest.approx((w_a @ dev_p) / (w_b @ dev_p), rel=1e-5)


# --- GDRO / GADRO (PROTOCOL section 4; Sagawa et al. 2020) ---------------------------------------

def dro_case():
    """30 training clips in two groups of unequal size (24 and 6), so C / sqrt(n_g) differs."""
    feats, p, classes = toy(40)
    train = np.arange(30)
    groups = (train >= 24).astype(int)
    fold = FoldData(fold=1, train=train, dev=np.arange(30, 35), test=np.arange(35, 40),
                    labels=classes[train], groups=groups)
    return feats, p, classes, train, groups, fold


def test_erm_minimises_the_batch_mean_loss():
    feats, p, classes, train, groups, fold = dro_case()
    L = frozen_group_losses(feats, p, classes, train, groups)
    erm = fit(feats, p, [build_run("erm", "t/erm", fold, seed=0)], FROZEN)[0]
    np.testing.assert_allclose(erm.train_loss, (24 * L[0] + 6 * L[1]) / 30, rtol=1e-5)


@pytest.mark.parametrize("method, hparams", [("gdro", {"eta": 1.0}),
                                             ("gadro", {"eta": 1.0, "adjustment": 3.0})])
def test_dro_q_is_updated_from_the_adjusted_losses_and_carried_to_the_next_step(method, hparams):
    feats, p, classes, train, groups, fold = dro_case()
    L = frozen_group_losses(feats, p, classes, train, groups)
    res = fit(feats, p, [build_run(method, f"t/{method}", fold, seed=0, hparams=hparams)], FROZEN)[0]
    # Step t: q <- q exp(eta (L_g + C / sqrt(n_g))) renormalised, from the previous step's q; the
    # step's loss is sum_g q_g L_g with the updated q (plain L_g). One step per epoch.
    eta, c, n = hparams["eta"], hparams.get("adjustment", 0.0), np.array([24.0, 6.0])
    q, expected = np.array([0.5, 0.5]), []
    for _ in range(FROZEN.epochs):
        q = q * np.exp(eta * (L + c / np.sqrt(n)))
        q = q / q.sum()
        expected.append(q @ L)
    assert abs(expected[1] - expected[0]) > 1e-3 * expected[0]  # the q carried over shows
    np.testing.assert_allclose(res.train_loss, expected, rtol=1e-5)


def test_gadro_differs_from_gdro_by_its_adjustment_alone():
    # Same eta, same groups: with C = 0 GADRO is GDRO, step for step.
    feats, p, classes, train, groups, fold = dro_case()
    runs = [build_run("gdro", "t/gdro", fold, seed=0, hparams={"eta": 1.0}),
            build_run("gadro", "t/gadro0", fold, seed=0, hparams={"eta": 1.0, "adjustment": 0.0}),
            build_run("gadro", "t/gadro3", fold, seed=0, hparams={"eta": 1.0, "adjustment": 3.0})]
    gdro, gadro0, gadro3 = fit(feats, p, runs, FROZEN)
    np.testing.assert_array_equal(gdro.train_loss, gadro0.train_loss)
    assert np.abs(gadro3.train_loss - gdro.train_loss).max() > 1e-3


# --- the kept epoch (PROTOCOL section 3: the epoch with the lowest dev loss) --------------------

def test_test_predictions_come_from_the_epoch_chosen_on_dev():
    feats, p, classes = toy(70)
    train, test = np.arange(40), np.arange(40, 50)
    # Dev "wrong": copies of training clips labelled with another class, so its loss rises as the
    # model fits the training labels (an early epoch is kept). Dev "right": fresh clips with true
    # labels, whose loss falls (a late epoch is kept). Training itself ignores dev.
    feats = np.concatenate([feats, feats[:10]])
    p = np.concatenate([p, one_hot_p((classes[:10] + 3) % 6)])
    dev = {"wrong": np.arange(70, 80), "right": np.arange(50, 70)}
    cfg = TrainConfig(epochs=6, batch_size=8, lr=3e-2, hidden=4)
    runs = [build_run("erm", f"dev/{name}", FoldData(fold=1, train=train, dev=rows, test=test,
                                                     labels=classes[train]), seed=0)
            for name, rows in dev.items()]
    wrong, right = fit(feats, p, runs, cfg)
    assert wrong.best_epoch < right.best_epoch  # the planted situation holds
    assert np.abs(wrong.test_probs - right.test_probs).max() > 1e-3  # and the epochs differ
    for res in (wrong, right):
        # Training is the same up to any epoch, so a run stopped at the kept epoch ends there.
        stopped = fit(feats, p, [res.run], replace(cfg, epochs=res.best_epoch))[0]
        np.testing.assert_allclose(res.test_probs, stopped.test_probs, atol=1e-6, err_msg=res.run.name)
