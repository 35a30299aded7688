"""Issue 24's methods (adv, eopp, mmd, mixup, dfr, afr): their math on hand-computed cases, that
each reads its group input (or, for AFR, its loss-based weights), that each starts from ERM's
initialisation, and that each shrinks a planted group shortcut's TPR gap below ERM's."""

import numpy as np
import pytest
import torch

from fairser.debias import REGISTRY
from fairser.debias.adv import GradientReversal, schedule
from fairser.debias.afr import afr_weights
from fairser.debias.dfr import balanced_subset
from fairser.debias.eopp import soft_tpr_gap
from fairser.debias.lastlayer import dev_halves
from fairser.debias.mixup import partners
from fairser.debias.mmd import mmd_penalty
from fairser.metrics import tpr_gap
from fairser.train import FoldData, TrainConfig, build_run, fit, fit_methods

torch.set_num_threads(1)

NEW = ("adv", "eopp", "mmd", "mixup", "dfr", "afr")
HP = {"adv": {"lambda_max": 10.0, "gamma": 10.0}, "eopp": {"weight": 5.0, "tau": 0.05},
      "mmd": {"weight": 5.0}, "mixup": {"alpha": 2.0}, "dfr": {"lr": 0.05},
      "afr": {"gamma": 10.0, "reg": 0.0, "lr": 0.05}}


def test_each_new_method_names_its_family_and_params():
    assert {m: REGISTRY[m].taxonomy for m in NEW} == {
        "adv": "adversarial", "eopp": "regularisation", "mmd": "regularisation",
        "mixup": "augmentation", "dfr": "last-layer", "afr": "last-layer"}
    assert REGISTRY["afr"].groups is None
    assert all(REGISTRY[m].groups == "hard" for m in NEW if m != "afr")
    assert all(set(REGISTRY[m].params) == set(HP[m]) for m in NEW)


# -- math on hand-computed cases ----------------------------------------------------------------

def test_soft_tpr_gap_is_the_squared_spread_of_group_tprs_over_classes():
    thr = 0.5
    # class 0 positives: clips 0, 1 (group 0) and 2 (group 1); class 1 positives: clip 3 (group 1)
    targets = torch.tensor([[1.0, 0], [1, 0], [1, 0], [0, 1]])
    probs = torch.tensor([[1.0, 0], [0, 1], [1, 0], [0, 1]])
    m = torch.tensor([[1.0, 0], [1, 0], [0, 1], [0, 1]])
    gap = soft_tpr_gap(probs, targets, m, thr, tau=1e-4)  # tau -> 0: hard predictions
    # class 0: TPR 1/2 (group 0) vs 1 (group 1): gap 0.5; class 1: one group only -> 0
    assert gap.item() == pytest.approx((0.5 ** 2 + 0) / 2)
    # the group input matters: all clips in one group, no gap
    assert soft_tpr_gap(probs, targets, torch.tensor([[1.0, 0]] * 4), thr, 1e-4).item() == 0


def test_soft_tpr_gap_of_many_groups_is_the_positive_weighted_mean_over_pairs_not_the_spread():
    thr = 0.5
    # class 0 positives: two in group a (both predicted: TPR 1), one in b (missed: 0), one in c (1);
    # class 1 has no positive. Weights a 1/2, b 1/4, c 1/4; pairs a-b 1/8 (diff^2 1), a-c 1/8 (0),
    # b-c 1/16 (1): (1/8 + 1/16) / (1/8 + 1/8 + 1/16) = 0.6 for class 0, 0 for class 1.
    targets = torch.tensor([[1.0, 0]] * 4)
    probs = torch.tensor([[1.0, 0], [1, 0], [0, 1], [1, 0]])
    m = torch.tensor([[1.0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]])
    assert soft_tpr_gap(probs, targets, m, thr, tau=1e-4).item() == pytest.approx(0.6 / 2)
    # the max-min spread would be 1 (class 0): a lone missed positive weighs by its share


def test_mmd_penalty_vanishes_for_groups_alike_and_grows_when_they_separate():
    z = torch.tensor([[0.0, 0], [1, 0], [0.0, 0], [1, 0]])
    valid = torch.ones(4)
    alike = torch.tensor([[1.0, 0], [1, 0], [0, 1], [0, 1]])   # each group has both points
    apart = torch.tensor([[1.0, 0], [0, 1], [1, 0], [0, 1]])   # group = the point
    assert mmd_penalty(z, alike, valid).item() == pytest.approx(0, abs=1e-7)
    # apart: groups are the two points, each half the batch. Scale = mean d2 over 16 pairs = 0.5,
    # k(0,1) = exp(-2); MMD^2_g = 1 - 2 (1 + e^-2)/2 + (1 + e^-2)/2 = (1 - e^-2)/2 per group.
    assert mmd_penalty(z, apart, valid).item() == pytest.approx((1 - np.exp(-2)) / 2, rel=1e-5)


def test_gradient_reversal_negates_and_scales_the_gradient_and_the_schedule_is_ganins():
    x = torch.ones(2, 3, requires_grad=True)
    GradientReversal.apply(x, torch.tensor(0.5)).sum().backward()
    assert torch.equal(x.grad, torch.full((2, 3), -0.5))
    assert schedule(1, 50, 1.0, 10.0) == 0.0
    assert schedule(26, 50, 2.0, 10.0) == pytest.approx(2 * (2 / (1 + np.exp(-5)) - 1))


def test_mixup_partners_share_the_label_and_differ_in_group():
    labels = torch.tensor([0, 0, 0, 1])
    groups = torch.tensor([0, 1, 1, 0])
    valid = torch.tensor([True, True, True, True])
    u = torch.rand(4, 4, generator=torch.Generator().manual_seed(0))
    j, has = partners(labels, groups, valid, u)
    assert has.tolist() == [True, True, True, False]  # clip 3 is alone in its class
    assert j[0].item() in (1, 2) and j[1].item() == 0 and j[2].item() == 0


def test_afr_weights_fall_with_the_erm_probability_of_the_targets_and_average_one():
    probs = torch.tensor([[0.9, 0.1], [0.5, 0.5], [0.1, 0.9], [0.3, 0.7]])
    targets = torch.tensor([[1.0, 0], [1, 0], [1, 0], [1, 0]])
    valid = torch.tensor([1.0, 1, 1, 0])
    w = afr_weights(probs, targets, valid, 2.0)
    e = np.exp(-2 * np.array([0.9, 0.5, 0.1]))
    np.testing.assert_allclose(w.numpy(), np.r_[3 * e / e.sum(), 0], rtol=1e-6)


def test_dev_halves_and_balanced_subsets():
    a, b = dev_halves(9, seed=0, fold=1, seed_index=0)
    assert len(a) == 5 and sorted(np.r_[a, b].tolist()) == list(range(9))
    groups = np.array([0, 0, 0, 1, 1, -1, 2, 2, 2])
    keep = balanced_subset(groups, np.random.default_rng(0))
    assert sorted(np.bincount(groups[keep] + 1).tolist()) == [0, 2, 2, 2]


# -- in the trainer ------------------------------------------------------------------------------

def planted(seed: int, n: int = 800, rho: float = 0.9):
    """Two classes; in train and dev the group follows the class 90% of the time and is read off
    cleanly from feature 1, while feature 0 shows the class through noise: a shortcut ERM takes.
    On the test clips the group is independent of the class, so ERM's TPRs differ by group."""
    rng = np.random.default_rng(seed)
    c = rng.integers(0, 2, n)
    g = np.where(rng.random(n) < rho, c, 1 - c)
    n_test = n // 3
    g[-n_test:] = rng.integers(0, 2, n_test)
    x = np.zeros((n, 1, 4), np.float32)
    x[:, 0, 0] = c + 0.6 * rng.standard_normal(n)
    x[:, 0, 1] = 2.0 * g + 0.1 * rng.standard_normal(n)
    p = np.full((n, 2), 0.05)
    p[np.arange(n), c] = 0.95
    n_train = 3 * n // 8
    tr, dv, te = np.arange(n_train), np.arange(n_train, n - n_test), np.arange(n - n_test, n)
    f = FoldData(fold=1, train=tr, dev=dv, test=te, labels=c[tr], groups=g[tr], dev_groups=g[dv],
                 dev_labels=c[dv])
    return x, p, f, c, g


def _gaps(results, c, g, f) -> dict:
    y = np.eye(2)[c[f.test]].astype(int)
    return {r.run.method: tpr_gap(y_true=y, y_pred=(r.test_probs > 0.5).astype(int), groups=g[f.test])
            for r in results}


@pytest.mark.parametrize("data_seed", [1, 2])
def test_every_new_method_shrinks_a_planted_shortcuts_tpr_gap_below_erms(data_seed):
    x, p, f, c, g = planted(data_seed)
    results = fit_methods(x, p, ["erm", *NEW], [f], TrainConfig(epochs=40, batch_size=32, lr=1e-2, hidden=8),
                          seed=data_seed, hparams=HP, label="planted", workers=1)
    gaps = _gaps(results, c, g, f)
    assert gaps["erm"] > 0.5  # the shortcut is taken
    for m in NEW:
        assert gaps[m] < gaps["erm"] - 0.1, (m, gaps)


def _shuffled(f: FoldData, seed: int) -> FoldData:
    rng = np.random.default_rng(seed)
    return FoldData(fold=f.fold, train=f.train, dev=f.dev, test=f.test, labels=f.labels,
                    groups=rng.permutation(f.groups), dev_groups=rng.permutation(f.dev_groups),
                    dev_labels=f.dev_labels)


def test_each_group_method_reads_its_groups_and_erm_does_not():
    x, p, f, c, g = planted(1, n=240)
    cfg = TrainConfig(epochs=3, batch_size=32, lr=1e-2, hidden=8)
    methods = ["erm", "adv", "eopp", "mmd", "mixup", "dfr"]
    true = fit_methods(x, p, methods, [f], cfg, seed=0, hparams=HP, label="t", workers=1)
    shuf = fit_methods(x, p, methods, [_shuffled(f, 0)], cfg, seed=0, hparams=HP, label="s", workers=1)
    for a, b in zip(true, shuf):
        if a.run.method == "erm":
            np.testing.assert_array_equal(a.test_probs, b.test_probs)
        else:
            assert not np.allclose(a.test_probs, b.test_probs, atol=1e-6), a.run.method


def test_afr_reads_its_loss_based_weights():
    x, p, f, c, g = planted(1, n=240)
    cfg = TrainConfig(epochs=3, batch_size=32, lr=1e-2, hidden=8)
    runs = {gamma: fit_methods(x, p, ["afr"], [f], cfg, seed=0, label="a", workers=1,
                               hparams={"afr": {**HP["afr"], "gamma": gamma}})[-1]
            for gamma in (0.0, 10.0)}
    assert not np.allclose(runs[0.0].test_probs, runs[10.0].test_probs, atol=1e-6)


def test_new_methods_start_from_erms_weights_and_last_layer_methods_keep_erms_encoder():
    x, p, f, c, g = planted(1, n=240)
    cfg = TrainConfig(epochs=2, batch_size=32, lr=1e-2, hidden=8)
    # A zero-strength penalty or reversal leaves ERM's training: same initialisation, same steps.
    zero = {"adv": {"lambda_max": 0.0, "gamma": 10.0}, "eopp": {"weight": 0.0, "tau": 0.05},
            "mmd": {"weight": 0.0}}
    results = fit_methods(x, p, ["erm", "adv", "eopp", "mmd"], [f], cfg, seed=3, hparams=zero,
                          label="z", workers=1)
    erm = results[0].test_probs
    for r in results[1:]:
        np.testing.assert_allclose(r.test_probs, erm, rtol=0, atol=1e-6, err_msg=r.run.method)
    # DFR: ERM's kept parameters go in; the encoder comes out bit for bit, the head moved.
    erm_run = build_run("erm", "e", f, seed=3)
    erm_run.keep_params = True
    (first,) = fit(x, p, [erm_run], cfg, workers=1)
    dfr_run = build_run("dfr", "d", f, seed=3, hparams=HP["dfr"], first=first)
    dfr_run.keep_params = True
    (dfr,) = fit(x, p, [dfr_run], cfg, workers=1)
    for i in range(3):
        np.testing.assert_array_equal(dfr.params[i], first.params[i])
    assert not np.allclose(dfr.params[3], first.params[3])


def test_the_paper_methods_train_bit_for_bit_the_same_with_the_new_methods_beside_them():
    """The new methods train in jobs of their own (DFR's ERM phase 1 too), so switching them on
    (train.extensions) leaves every number of the set's other methods as it was."""
    x, p, f, c, g = planted(1, n=240)
    # Shapes where a batched product of more runs rounds differently (at 1e-7) from one of fewer
    x = np.concatenate([np.repeat(x, 13, axis=1)] * 40, axis=2)  # (n, 13 layers, 160)
    cfg = TrainConfig(epochs=2, batch_size=32, lr=1e-3, hidden=64, seeds=2)
    hp = {**HP, "gdro": {"eta": 0.01}, "gadro": {"eta": 0.01, "adjustment": 4.0}}
    paper = ["rw", "ds", "gdro", "gadro"]
    alone = fit_methods(x, p, paper, [f], cfg, seed=0, hparams=hp, label="a")
    beside = fit_methods(x, p, paper + ["adv", "eopp", "mmd", "mixup", "dfr"], [f], cfg, seed=0,
                         hparams=hp, label="b")
    for a, b in zip(alone, beside):
        assert (a.run.method, a.run.seed_index) == (b.run.method, b.run.seed_index)
        np.testing.assert_array_equal(a.test_probs, b.test_probs)
        np.testing.assert_array_equal(a.dev_loss, b.dev_loss)
