"""JTT and GEORGE, the two-phase group-free methods (PROTOCOL section 4b): their pieces by hand, and
planted-shortcut runs where the minority group is known."""

import numpy as np
import pytest
import torch

from fairser.errors import ParamsError
from fairser.debias.base import BEST
from fairser.debias.george import cluster_groups
from fairser.debias.jtt import error_set, upweights
from fairser.train import FoldData, TrainConfig, build_run, fit, fit_methods

torch.set_num_threads(1)
HP = {"jtt": {"identification_epochs": 2, "lambda_up": 20},
      "george": {"eta": 1.0, "max_k": 4, "components": 2, "n_init": 3}}
CFG = TrainConfig(epochs=20, batch_size=32, lr=1e-2, hidden=16, seeds=1)


def test_jtt_error_is_the_majority_class_not_predicted_above_one_sixth():
    probs = np.array([[0.5, 0.1, 0.1, 0.1, 0.1, 0.1],
                      [0.1, 0.5, 0.1, 0.1, 0.1, 0.1],
                      [1 / 6] * 6])
    assert error_set(probs, np.array([0, 0, 2])).tolist() == [False, True, True]


def test_jtt_upweights_the_error_set_by_lambda_up_with_mean_one():
    w = upweights(np.array([True, False, False, False]), 5.0)
    np.testing.assert_allclose(w, np.array([5, 1, 1, 1]) / 2.0)
    assert w[0] / w[1] == 5.0 and w.mean() == pytest.approx(1.0)


def test_george_clusters_each_class_apart_with_k_by_silhouette():
    rng = np.random.default_rng(0)
    # class 0: two tight blobs; class 1: three tight blobs; max_k 4 must find 2 and 3
    centres = {0: [(0, 0), (10, 0)], 1: [(0, 10), (10, 10), (5, 20)]}
    hidden, labels, blob = [], [], []
    for c, cs in centres.items():
        for b, m in enumerate(cs):
            hidden.append(np.array(m) + 0.1 * rng.standard_normal((10, 2)))
            labels += [c] * 10
            blob += [(c, b)] * 10
    g = cluster_groups(np.concatenate(hidden), np.array(labels), max_k=4, components=2,
                       n_init=3, seed=0)
    assert sorted(set(g)) == list(range(5))
    assert set(g[:20]) == {0, 1} and set(g[20:]) == {2, 3, 4}  # numbered class by class
    for b in set(blob):  # each blob is one cluster
        assert len({x for x, bb in zip(g, blob) if bb == b}) == 1


def test_george_keeps_a_class_of_three_clips_as_one_group():
    g = cluster_groups(np.arange(12.0).reshape(6, 2), np.array([0, 0, 0, 1, 1, 1]), max_k=4,
                       components=2, n_init=3, seed=0)
    assert g.tolist() == [0, 0, 0, 1, 1, 1]


def test_jtt_needs_an_integer_number_of_identification_epochs():
    f = FoldData(fold=1, train=np.arange(4), dev=np.arange(4, 6), test=np.arange(6, 8),
                 labels=np.zeros(4, dtype=int))
    from fairser.debias import REGISTRY

    with pytest.raises(ParamsError, match="methods.jtt.identification_epochs"):
        REGISTRY["jtt"].phase1(f, 0, {"identification_epochs": 2.5, "lambda_up": 6}, 0)


def planted(seed, n_major=60, ratio=5):
    """One-layer features: dims 0-2 are the group (three noisy copies), dims 3-7 the class (mean
    plus N(0, 0.25)). In train and dev, group 0 is the 5:1 majority of classes 0-2 and group 1 of
    classes 3-5, so the group is a shortcut to the label; the minority clips of each class are
    the ones a shortcut model gets wrong and the ones its features set apart."""
    rng = np.random.default_rng(seed)
    mu = rng.standard_normal((6, 5))
    xs, cls, grp, split = [], [], [], []

    def add(c, g, s, n):
        x = np.zeros((n, 1, 8))
        x[:, 0, :3] = g + 0.05 * rng.standard_normal((n, 3))
        x[:, 0, 3:] = mu[c] + 0.5 * rng.standard_normal((n, 5))
        xs.append(x)
        cls.extend([c] * n)
        grp.extend([g] * n)
        split.extend([s] * n)

    for c in range(6):
        major = 0 if c < 3 else 1
        for s, n in (("train", n_major), ("dev", n_major // 3)):
            add(c, major, s, n)
            add(c, 1 - major, s, n // ratio)
        add(c, 0, "test", 20)
        add(c, 1, "test", 20)
    cls = np.array(cls)
    p = np.full((len(cls), 6), 0.01)
    p[np.arange(len(cls)), cls] += 0.94
    split = np.array(split)
    tr, dv, te = (np.flatnonzero(split == s) for s in ("train", "dev", "test"))
    minority = np.array(grp)[tr] != np.where(cls[tr] < 3, 0, 1)
    fold = FoldData(fold=1, train=tr, dev=dv, test=te, labels=cls[tr])
    return np.concatenate(xs).astype(np.float32), p, fold, minority


def test_jtt_error_set_is_mostly_the_planted_minority():
    for seed in range(3):
        x, p, fold, minority = planted(seed)
        res = fit_methods(x, p, ["jtt"], [fold], CFG, seed=seed, hparams=HP, label="t")
        w = res[0].run.sample_weight
        errors = w > w.min()
        # minority share: 1/6 of the training set, most of the error set
        assert errors.sum() >= 5 and minority[errors].mean() > 3 * minority.mean(), seed


def test_george_clusters_pick_out_the_planted_minority_of_each_class():
    scores = []
    for seed in range(3):
        x, p, fold, minority = planted(seed)
        res = fit_methods(x, p, ["george"], [fold], CFG, seed=seed, hparams=HP, label="t")
        groups = res[0].run.memberships.argmax(1)
        for c in range(6):
            m, g = minority[fold.labels == c], groups[fold.labels == c]
            # F1 of the cluster that best matches the class's minority clips
            f1 = max(2 * (m & (g == k)).sum() / (m.sum() + (g == k).sum()) for k in set(g))
            scores.append(f1)
    assert np.mean(scores) > 0.8 and np.median(scores) > 0.9, np.round(scores, 2)


def test_two_phase_methods_read_the_erm_run_of_their_fold_and_seed_without_changing_it():
    x, p, fold, _ = planted(0)
    res = fit_methods(x, p, ["erm", "jtt", "george"], [fold], CFG, seed=0, hparams=HP, label="t")
    erm, jtt = (next(r for r in res if r.run.method == m) for m in ("erm", "jtt"))
    assert set(erm.snapshots) == {2, BEST}  # JTT's epoch T and GEORGE's kept epoch
    expected = upweights(error_set(erm.snapshots[2]["probs"], fold.labels), 20)
    np.testing.assert_array_equal(jtt.run.sample_weight, expected)
    alone = fit(x, p, [build_run("erm", "erm", fold, seed=0)], CFG)[0]
    np.testing.assert_array_equal(alone.test_probs, erm.test_probs)
    assert jtt.run.seed == erm.run.seed  # phase 2 starts from ERM's initialisation
