"""JTT and GEORGE, the two-phase group-free methods (PROTOCOL section 4b): their pieces by hand, and
planted-shortcut runs where the minority group is known."""

import numpy as np
import pytest
import torch

from fairser.errors import ParamsError
from fairser.debias import REGISTRY
from fairser.debias.base import BEST, Run
from fairser.debias.george import cluster_groups, overcluster, reduce
from fairser.debias.jtt import dev_f1, error_set, grid, upweights
from fairser.train import FoldData, Result, TrainConfig, build_run, fit, fit_methods
from helpers import shipped_params

torch.set_num_threads(1)
HP = {"jtt": {"identification_epochs": 2, "lambda_up": 20, "error_rule": "prob"},
      "george": {"eta": 1.0, "max_k": 4, "components": 2, "n_init": 3, "overcluster_factor": 1,
                 "min_size": 25}}
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


@pytest.mark.parametrize("rule", ["prob", "argmax"])
def test_jtt_error_set_is_mostly_the_planted_minority(rule):
    hp = {"jtt": dict(HP["jtt"], error_rule=rule)}
    for seed in range(3):
        x, p, fold, minority = planted(seed)
        fold.votes = p[fold.train]
        res = fit_methods(x, p, ["jtt"], [fold], CFG, seed=seed, hparams=hp, label="t")
        errors = res[0].run.built["errors"]
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


# --- JTT: error rules, the grid and its selection, the error-set log ---------------------------

def test_jtt_argmax_rule_is_an_error_when_the_top_class_is_not_a_class_of_the_clip():
    probs = np.array([[0.40, 0.35, 0.05, 0.05, 0.05, 0.10],    # top 0: a class of the clip
                      [0.35, 0.40, 0.05, 0.05, 0.05, 0.10],    # top 1: also a class (votes 0.3)
                      [0.10, 0.10, 0.50, 0.10, 0.10, 0.10]])   # top 2: no vote share
    votes = np.array([[0.6, 0.3, 0.1, 0, 0, 0]] * 3)
    labels = np.array([0, 0, 0])
    assert error_set(probs, labels, rule="argmax", votes=votes).tolist() == [False, False, True]
    # without votes: the top class is not the single majority class
    assert error_set(probs, labels, rule="argmax").tolist() == [False, True, True]
    # `prob` calls none of them an error (0.40, 0.35 > 1/6) except the third (0.10 <= 1/6)
    assert error_set(probs, labels, rule="prob").tolist() == [False, False, True]


def test_jtt_unknown_error_rule_is_a_params_error():
    with pytest.raises(ParamsError, match="methods.jtt.error_rule"):
        error_set(np.full((1, 6), 1 / 6), np.array([0]), rule="loss")


def test_jtt_grid_is_every_t_and_lambda_pair_t_major():
    g = grid({"identification_epochs": [5, 10], "lambda_up": [20, 100], "error_rule": "argmax"})
    assert [(c["identification_epochs"], c["lambda_up"]) for c in g] == [(5, 20), (5, 100), (10, 20),
                                                                         (10, 100)]
    assert {c["error_rule"] for c in g} == {"argmax"}
    assert len(grid({"identification_epochs": 3, "lambda_up": 50})) == 1  # single values
    with pytest.raises(ParamsError, match="methods.jtt.lambda_up"):
        grid({"identification_epochs": [5], "lambda_up": [20, 0.5]})


def test_jtt_select_keeps_the_setting_with_the_best_dev_macro_f1():
    class R:  # the fields select reads
        def __init__(self, dev_probs):
            self.dev_probs, self.run = dev_probs, type("Run", (), {"dev": np.arange(6)})()

    p = np.full((6, 6), 0.05) + 0.65 * np.eye(6)  # one dev clip per class, votes 0.7
    wrong = np.roll(p, 1, axis=1)
    i, scores = REGISTRY["jtt"].select([R(wrong), R(p), R(wrong)], p, 1 / 6)
    assert i == 1 and scores[1] == pytest.approx(1.0) and scores[0] < 1.0


def test_jtt_sweep_trains_every_setting_and_keeps_one_per_fold_and_seed():
    x, p, fold, _ = planted(0)
    hp = {"jtt": {"identification_epochs": [1, 2], "lambda_up": [5, 20], "error_rule": "argmax"}}
    cfg = TrainConfig(epochs=3, batch_size=32, lr=1e-2, hidden=8, seeds=2)
    res = fit_methods(x, p, ["erm", "jtt"], [fold], cfg, seed=0, hparams=hp, label="t")
    jtt = [r for r in res if r.run.method == "jtt"]
    erm = {r.run.seed_index: r for r in res if r.run.method == "erm"}
    assert len(jtt) == 2 and all(len(r.sweep) == 4 for r in jtt)
    for r in jtt:
        scores = [dev_f1(o.dev_probs, p[fold.dev], 1 / 6) for o in r.sweep]
        assert r.sweep_scores == pytest.approx(scores)
        assert r is r.sweep[int(np.argmax(scores))]
        for o in r.sweep:  # every setting reads its T from the ERM run of its seed
            t = o.run.hparams["identification_epochs"]
            expected = error_set(erm[r.run.seed_index].snapshots[t]["probs"], fold.labels,
                                 rule="argmax", votes=p[fold.train])
            np.testing.assert_array_equal(o.run.built["errors"], expected)
            np.testing.assert_allclose(o.run.sample_weight,
                                       upweights(expected, o.run.hparams["lambda_up"]))


def test_jtt_error_set_log_gives_each_groups_share_of_the_errors_by_hand():
    errors = np.array([True, True, False, False, False, True])
    run = Run(name="t", method="jtt", fold=3, train=np.array([0, 1, 2, 3, 4, 5]), dev=np.array([6]),
              test=np.array([7]), seed=0, seed_index=1, built={"errors": errors},
              hparams={"identification_epochs": 4, "lambda_up": 20.0, "error_rule": "prob"})
    res = Result(run=run, test_probs=np.zeros((1, 6)), train_loss=np.zeros(1), dev_loss=np.zeros(1),
                 best_epoch=1)
    res.sweep, res.sweep_scores = [res], [0.5]
    sex = np.array(["Female", "Female", "Male", "Male", "Male", "Male", "Male", "Male"], dtype=object)
    race = np.array([None, "Asian", "Asian", "Asian", None, "Asian", None, None], dtype=object)
    tables = REGISTRY["jtt"].logs([res], {"gender": sex, "race": race})
    t = tables["error_set.csv"].set_index(["attribute", "group"])
    assert (t["errors"] == 3).all() and (t["train"] == 6).all() and (t["chosen"] == 1).all()
    # errors are clips 0, 1, 5: 2 of 3 female (2 of 6 training clips are female)
    assert t.loc[("gender", "Female"), "error_share"] == pytest.approx(2 / 3)
    assert t.loc[("gender", "Female"), "train_share"] == pytest.approx(2 / 6)
    assert t.loc[("race", "(missing)"), "error_share"] == pytest.approx(1 / 3)
    assert t.loc[("race", "Asian"), "train_share"] == pytest.approx(4 / 6)
    sweep = tables["sweep.csv"]
    assert sweep[["fold", "seed", "identification_epochs", "chosen"]].values.tolist() == [[3, 1, 4, 1]]


# --- GEORGE: UMAP, overclustering, cluster quality ---------------------------------------------

def blobs(centres, n, seed=0, scale=0.3, dim=8):
    rng = np.random.default_rng(seed)
    x = np.concatenate([np.resize(np.asarray(c, float), dim) + scale * rng.standard_normal((n, dim))
                        for c in centres])
    return x, np.repeat(np.arange(len(centres)), n)


def test_george_umap_is_bit_identical_for_a_seed():
    x, _ = blobs([(0,), (5,)], 30)
    a, b = (reduce(x, components=2, seed=3) for _ in range(2))
    np.testing.assert_array_equal(a, b)
    assert a.shape == (60, 2)


def test_george_recovers_planted_subclusters_with_purity_one():
    # two classes, each made of three well separated blobs of 40 clips in 8 dimensions
    x0, b0 = blobs([(0, 0), (8, 0), (0, 8)], 40, seed=1)
    x1, b1 = blobs([(8, 8), (16, 0), (0, 16)], 40, seed=2)
    x, labels = np.concatenate([x0, x1]), np.repeat([0, 1], 120)
    truth = np.concatenate([b0, 3 + b1])
    g = cluster_groups(x, labels, max_k=5, components=2, n_init=3, seed=0,
                       losses=np.zeros(240), overcluster_factor=3, min_size=10)
    from fairser.idi import nmi, purity

    assert purity(clusters=g, labels=truth) == pytest.approx(1.0)
    assert purity(clusters=truth, labels=g) == pytest.approx(1.0)  # no blob split either
    assert nmi(clusters=g, labels=truth) == pytest.approx(1.0)


def test_george_overclustering_keeps_a_part_with_higher_loss_and_better_silhouette():
    # blobs at 0, 6 and 12 on a line, clustered {0, 6} and {12}: splitting the first cluster
    # raises both parts' silhouette; only the part whose loss is at least its cluster's mean
    # (blob 1) and that has min_size clips is kept
    x, blob = blobs([(0, 0), (6, 0), (12, 0)], 30, scale=0.2, dim=2)
    clusters = np.where(blob == 2, 1, 0)
    hard = np.where(blob == 1, 2.0, 0.5)  # blob 1 is the hard part of cluster 0
    out = overcluster(x, clusters, hard, factor=2, n_init=3, seed=0, min_size=10)
    assert len(set(out[blob == 1])) == 1 and set(out[blob == 1]).isdisjoint(out[blob == 0])
    assert len(set(out[blob == 0])) == 1
    # too small to keep: nothing changes
    same = overcluster(x, clusters, hard, factor=2, n_init=3, seed=0, min_size=31)
    np.testing.assert_array_equal(same, clusters)


def test_george_log_has_purity_and_nmi_per_attribute():
    g = np.array([0, 0, 1, 1, 1, 2])
    run = Run(name="t", method="george", fold=2, train=np.arange(6), dev=np.array([6]),
              test=np.array([7]), seed=0, memberships=np.eye(3)[g])
    res = Result(run=run, test_probs=np.zeros((1, 6)), train_loss=np.zeros(1), dev_loss=np.zeros(1),
                 best_epoch=1)
    sex = np.array(["Male", "Male", "Female", "Female", "Male", "Male", None, None], dtype=object)
    t = REGISTRY["george"].logs([res], {"gender": sex})["clusters.csv"]
    row = t.iloc[0]
    assert (row["fold"], row["groups"], row["attribute"]) == (2, 3, "gender")
    assert row["purity"] == pytest.approx(5 / 6)  # cluster 1 holds 2 female, 1 male
    assert row["majority_share"] == pytest.approx(4 / 6)
    assert 0 < row["nmi"] < 1


# --- params ------------------------------------------------------------------------------------

def _params(**jtt):
    from fairser import config

    params = config.resolve(shipped_params())
    params["train"]["epochs"] = 20
    params["methods"]["jtt"].update(jtt)
    return params


@pytest.mark.parametrize("key, value", [("identification_epochs", [5, 10]), ("identification_epochs", 7),
                                        ("lambda_up", [20, 50.5, 100]), ("error_rule", "prob")])
def test_jtt_params_take_a_value_or_a_list(key, value):
    from fairser import config

    config.validate(_params(**{key: value}))


@pytest.mark.parametrize("key, value, message", [
    ("identification_epochs", [], "'methods.jtt.identification_epochs' is []"),
    ("identification_epochs", [5, 5], "'methods.jtt.identification_epochs' is [5, 5]"),
    ("identification_epochs", [5, 21], "an integer from 1 to train.epochs (20)"),
    ("lambda_up", [20, 0.5], "'methods.jtt.lambda_up' is [20, 0.5]"),
    ("error_rule", "loss", "'methods.jtt.error_rule' is 'loss'; expected one of prob, argmax")])
def test_jtt_params_reject_bad_grids_in_one_line(key, value, message):
    from fairser import config

    with pytest.raises(ParamsError) as err:
        config.validate(_params(**{key: value}))
    assert message in str(err.value) and "\n" not in str(err.value)


def test_george_overcluster_factor_must_be_a_positive_integer():
    from fairser import config

    params = _params()
    params["methods"]["george"]["overcluster_factor"] = 0
    with pytest.raises(ParamsError, match="methods.george.overcluster_factor"):
        config.validate(params)


def test_baselines_stage_writes_the_sweep_error_set_and_cluster_logs(tmp_path):
    import pandas as pd

    from fairser.train import run_set
    from test_train_schema import tiny_params, write_corpus

    write_corpus(tmp_path)
    params = tiny_params()
    params["methods"]["jtt"].update(identification_epochs=[1, 2], lambda_up=[20, 50])
    out = tmp_path / "runs"
    run_set("baselines", corpus=tmp_path / "corpus", features=tmp_path / "features",
            split=tmp_path / "split", groups_dir=tmp_path / "groups", out=out, params=params)
    sweep = pd.read_csv(out / "jtt" / "sweep.csv")
    assert len(sweep) == 2 * 4 and sweep.groupby("fold")["chosen"].sum().tolist() == [1, 1]
    errors = pd.read_csv(out / "jtt" / "error_set.csv")
    assert set(errors["identification_epochs"]) == {1, 2} and set(errors["attribute"]) == {"gender"}
    shares = errors.groupby(["fold", "identification_epochs"])["train_share"].sum()
    np.testing.assert_allclose(shares, 1.0)  # the groups of an attribute cover the training clips
    clusters = pd.read_csv(out / "george" / "clusters.csv")
    assert clusters["fold"].tolist() == [1, 2] and (clusters["purity"] >= clusters["majority_share"]).all()


def test_report_groupfree_table_averages_the_kept_error_sets_and_cluster_quality():
    import pandas as pd

    from fairser.report import groupfree_markdown

    base = dict(error_rule="argmax", train=10, attribute="gender")
    error_set = pd.DataFrame([
        # fold 1 kept T = 5; the T = 10 rows are not kept and must not count
        dict(base, fold=1, seed=0, identification_epochs=5, chosen=1, errors=2, error_rate=0.2,
             group="Female", train_share=0.1, error_share=0.5),
        dict(base, fold=1, seed=0, identification_epochs=5, chosen=1, errors=2, error_rate=0.2,
             group="Male", train_share=0.9, error_share=0.5),
        dict(base, fold=1, seed=0, identification_epochs=10, chosen=0, errors=9, error_rate=0.9,
             group="Female", train_share=0.1, error_share=0.0),
        dict(base, fold=2, seed=0, identification_epochs=10, chosen=1, errors=4, error_rate=0.4,
             group="Female", train_share=0.2, error_share=0.25),
    ])
    sweep = pd.DataFrame([dict(fold=1, seed=0, identification_epochs=5, lambda_up=20.0, error_rule="argmax",
                               dev_f1=0.5, chosen=1),
                          dict(fold=2, seed=0, identification_epochs=10, lambda_up=100.0,
                               error_rule="argmax", dev_f1=0.5, chosen=1)])
    clusters = pd.DataFrame([dict(fold=1, seed=0, attribute="gender", groups=6, purity=0.9,
                                  majority_share=0.8, nmi=0.1),
                             dict(fold=2, seed=0, attribute="gender", groups=8, purity=0.7,
                                  majority_share=0.6, nmi=0.3)])
    md = groupfree_markdown(error_set=error_set, sweep=sweep, clusters=clusters, notice="SURROGATE")
    assert md.splitlines()[0].endswith("[SURROGATE]")
    assert "T = 5, lambda_up = 20 (1 of 2)" in md and "T = 10, lambda_up = 100 (1 of 2)" in md
    assert "Error set at the kept T: 30.0% of the training clips (range 20.0% to 40.0%)" in md
    assert "| gender | Female | 0.150 | 0.375 |" in md  # (0.1 + 0.2) / 2, (0.5 + 0.25) / 2
    assert "| gender | 7.0 | 0.800 | 0.700 | 0.200 |" in md


def test_george_keeps_a_class_with_identical_features_as_one_group():
    g = cluster_groups(np.zeros((12, 4)), np.zeros(12, dtype=int), max_k=4, components=2, n_init=3,
                       seed=0, losses=np.ones(12), overcluster_factor=2, min_size=1)
    assert g.tolist() == [0] * 12
