"""Batched trainer: loss, optimiser, methods wiring, determinism and the debiasing property
(PROTOCOL sections 3-5). Tiny dims and few epochs: the whole file runs in seconds on one core."""

import copy
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from fairser import config, evaluate
from fairser.errors import InputError
from fairser import schema as corpus_schema
from fairser.schema import CREMA_D_CLASSES as EMOTIONS
from fairser.train import (BatchedAdam, FoldData, Run, TrainConfig, TrainingDiverged, _Job,
                           emo_superb_params,
                           build_run, cb_losses, class_weights, fit, plan_jobs, random_scores,
                           run_set, training_targets)
from helpers import shipped_params, shipped_params_text

torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parents[1]

HP = {"gdro": {"eta": 0.01}, "gadro": {"eta": 0.01, "adjustment": 4.0}, "pgdro": {"eta": 0.01},
      "lff": {"gce_q": 0.7, "ema_alpha": 0.7},
      "disent": {"gce_q": 0.7, "ema_alpha": 0.7, "lambda_dis": 1.0, "lambda_swap_b": 0.5,
                 "lambda_swap": 2.0, "swap_after_epoch": 1}}
POSITIVE_THRESHOLD = 1.0 / len(EMOTIONS)  # CREMA-D's 1/K
TINY = TrainConfig(epochs=3, batch_size=8, lr=1e-2, hidden=4)


def one_hot_p(classes):
    """Vote distributions p = 0.01 + 0.94 * onehot (PROTOCOL section 1 smoothing)."""
    p = np.full((len(classes), 6), 0.01)
    p[np.arange(len(classes)), classes] += 0.94
    return p


def toy(n=80, seed=0, layers=2, dim=5):
    rng = np.random.default_rng(seed)
    classes = rng.integers(0, 6, n)
    feats = rng.standard_normal((n, layers, dim)).astype(np.float32)
    feats[:, :, 0] += classes[:, None]
    return feats, one_hot_p(classes), classes, rng.integers(0, 2, n)


def fold_data(classes, groups, train, dev, test, fold=1):
    train = np.asarray(train)
    g = groups[train]
    soft = np.where(g[:, None] == np.arange(2), 0.9, 0.1)
    return FoldData(fold=fold, train=train, dev=np.asarray(dev), test=np.asarray(test),
                    labels=classes[train], groups=g, soft=soft)


# --- loss --------------------------------------------------------------------------------------

def test_class_weights_match_hand_computation():
    # N = 4, beta = 3/4; class 0 has 3 positives, class 1 has 1, classes 2-5 none (counted as 1)
    p = one_hot_p([0, 0, 0, 1])
    beta = 0.75
    raw = np.array([(1 - beta) / (1 - beta ** n) for n in (3, 1, 1, 1, 1, 1)])
    np.testing.assert_allclose(class_weights(p), raw * 6 / raw.sum())
    assert class_weights(p).sum() == pytest.approx(6)


def test_cb_loss_is_weighted_soft_cross_entropy():
    logits = torch.tensor([[1.0, 0.0, 0.0, 0.0, 0.0, 2.0]])
    t = torch.tensor([[0.5, 0.5, 0.0, 0.0, 0.0, 0.0]])
    w = torch.tensor([2.0, 1.0, 1.0, 1.0, 0.5, 0.5])
    logp = torch.log_softmax(logits, -1)[0]
    expected = -(0.5 * 2 + 0.5 * 1) * (0.5 * logp[0] + 0.5 * logp[1])
    assert cb_losses(logits, t, w).item() == pytest.approx(expected.item(), rel=1e-6)


def test_hard_target_is_the_normalised_multi_hot_vector():
    p = np.array([[0.5, 0.3, 0.05, 0.05, 0.05, 0.05], [1 / 6] * 6])
    hard = training_targets(p, "hard")
    np.testing.assert_allclose(hard[0], [0.5, 0.5, 0, 0, 0, 0])
    np.testing.assert_allclose(hard[1], [1 / 6] * 6)  # no class above 1/6: stays uniform
    np.testing.assert_array_equal(training_targets(p, "soft"), p)


def test_random_scores_are_seeded_probabilities_positive_about_half_the_time():
    a, b = random_scores(4000, 7, 6), random_scores(4000, 7, 6)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(a.sum(axis=1), 1.0)
    # P(e^u_k / sum_j e^u_j > 1/6) for u ~ U(0, 1) i.i.d. is about 0.47.
    assert abs((a > POSITIVE_THRESHOLD).mean() - 0.47) < 0.02
    assert not np.array_equal(a, random_scores(4000, 8, 6))


# --- optimiser ---------------------------------------------------------------------------------

@pytest.mark.parametrize("fused", [True, False])
def test_batched_adam_matches_torch_adam_and_masks_inactive_runs(fused):
    torch.manual_seed(0)
    start = torch.randn(3, 4)
    ours = start.clone().requires_grad_()
    opt = BatchedAdam([ours], lr=0.1, fused=fused)
    ref = start[0].clone().requires_grad_()
    ref_opt = torch.optim.Adam([ref], lr=0.1)
    for step in range(5):
        target = torch.arange(4.0) * step
        grads = torch.autograd.grad(((ours - target) ** 2).sum(), [ours])
        opt.step(list(grads), np.array([True, step % 2 == 0, False]))
        ref_opt.zero_grad()
        ((ref - target) ** 2).sum().backward()
        ref_opt.step()
    np.testing.assert_allclose(ours[0].detach().numpy(), ref.detach().numpy(), atol=1e-5)
    np.testing.assert_array_equal(ours[2].detach().numpy(), start[2].numpy())
    assert opt.t.tolist() == [5, 3, 0]


# --- LfF and DisEnt losses on a two-sample batch -----------------------------------------------

# Class weights of the two training clips below, by hand from PROTOCOL section 3 (not the job's own):
# N = 2, beta = 1/2; class 0 has 2 positives, (1 - beta) / (1 - beta^2) = 2/3; classes 1-5 have
# none, counted as one, (1 - beta) / (1 - beta) = 1; normalised to sum 6.
CW_TWO_CLIPS = torch.tensor([2 / 3, 1, 1, 1, 1, 1]) * 6 / (5 + 2 / 3)


def two_clip_job(method, hp):
    feats, p, _, _ = toy(n=4, seed=3)
    p[:2] = one_hot_p([0, 0])  # both training clips are class 0, as their labels say
    run = Run(name=f"t/{method}", method=method, fold=1, train=np.array([0, 1]), dev=np.array([2]),
              test=np.array([3]), seed=0, labels=np.array([0, 0]), hparams=hp)
    cfg = TrainConfig(epochs=1, batch_size=2, hidden=3)
    p_t = torch.as_tensor(p)
    job = _Job(plan_jobs([run], 2)[0], torch.as_tensor(feats), p_t, p_t.float(), cfg, POSITIVE_THRESHOLD)
    pos, valid = torch.tensor([[0, 1]]), torch.tensor([[True, True]])
    z = job.encode(job.params, job.gather_local(pos)).detach()
    t = p_t.float()[:2][None]
    return job, pos, valid, z, t


def gce(l, logits, q, label=0):
    return q * torch.softmax(logits, -1)[..., label] ** q * l


def test_lff_loss_on_two_clips_by_hand():
    job, pos, valid, z, t = two_clip_job("lff", HP["lff"])
    loss = job.loss(job.params, pos, valid, epoch=1).item()
    # the biased model is encoder and head 1, the debiased (reported) one 0, ERM's init
    lb_logits, ld_logits = job.head(job.params, z[:, 1], 1)[0], job.head(job.params, z[:, 0], 0)[0]
    l_b, l_d = cb_losses(lb_logits, t[0], CW_TWO_CLIPS), cb_losses(ld_logits, t[0], CW_TWO_CLIPS)
    # first EMA update = the losses; both clips are class 0, so the class max is over both
    b, d = l_b / l_b.max(), l_d / l_d.max()
    w = b / (b + d + 1e-8)
    expected = gce(l_b, lb_logits, 0.7).mean() + (w * l_d).mean()
    assert loss == pytest.approx(expected.item(), rel=1e-5)


@pytest.mark.parametrize("epoch", [1, 2])
def test_disent_loss_on_two_clips_by_hand(epoch):
    hp = HP["disent"]  # swap_after_epoch = 1: epoch 2 swaps
    job, pos, valid, z, t = two_clip_job("disent", hp)
    perm = np.random.default_rng(np.random.SeedSequence([job.groups[0].lead.seed, 4])).permutation(2)
    # the training loop sets the host-side batch counts; mimic it
    job.n_valid_host = np.array([2])
    loss = job.loss(job.params, pos, valid, epoch=epoch).item()
    z_i, z_b = z[0, 0], z[0, 1]
    cw = CW_TWO_CLIPS

    def head(k, a, b):
        return job.head(job.params, torch.cat([a, b], -1)[None], k)[0]

    lc_logits, la_logits = head(0, z_i, z_b), head(1, z_i, z_b)
    l_c, l_a = cb_losses(lc_logits, t[0], cw), cb_losses(la_logits, t[0], cw)
    a, c = l_a / l_a.max(), l_c / l_c.max()
    w = a / (a + c + 1e-8)
    expected = (w * l_c).mean() + hp["lambda_dis"] * gce(l_a, la_logits, 0.7).mean()
    if epoch > hp["swap_after_epoch"]:
        zs = z_b[perm]
        sc_logits, sa_logits = head(0, z_i, zs), head(1, z_i, zs)
        swap_c = (w * cb_losses(sc_logits, t[0], cw)).mean()
        swap_a = gce(cb_losses(sa_logits, t[0][perm], cw), sa_logits, 0.7).mean()
        expected = expected + hp["lambda_swap"] * (swap_c + hp["lambda_swap_b"] * swap_a)
    assert loss == pytest.approx(expected.item(), rel=1e-5)


def test_lff_last_batch_padding_does_not_erase_clip_0s_loss_ema():
    # The trainer pads a last, partly filled batch with position 0; here clip 0 is that batch's
    # one real clip, so its EMA must hold its loss after the step (it stayed 0 before the fix).
    job, _, _, z, t = two_clip_job("lff", HP["lff"])
    pos, valid = torch.tensor([[0, 0]]), torch.tensor([[True, False]])
    job.loss(job.params, pos, valid, epoch=1)
    l_b = cb_losses(job.head(job.params, z[:, 1], 1)[0], t[0], job.cw[0])
    l_d = cb_losses(job.head(job.params, z[:, 0], 0)[0], t[0], job.cw[0])
    ema, seen = job.states["lff"]["ema"], job.states["lff"]["seen"]
    assert ema[0, 0, 0].item() == pytest.approx(l_b[0].item(), rel=1e-6)
    assert ema[0, 1, 0].item() == pytest.approx(l_d[0].item(), rel=1e-6)
    assert seen[0, :, 0].tolist() == [1.0, 1.0] and seen[0, :, 1].tolist() == [0.0, 0.0]


# --- batching, determinism ---------------------------------------------------------------------

def grid_runs(classes, groups):
    """Two folds of different sizes (48 and 38 clips: 6 and 5 steps of 8, so the smaller one's
    epoch ends first in a shared job) and every method."""
    folds = [fold_data(classes, groups, np.arange(0, 48), np.arange(48, 60), np.arange(60, 80), 1),
             fold_data(classes, groups, np.arange(24, 62), np.arange(0, 12), np.arange(62, 80), 2)]
    methods = ["erm", "rw", "ds", "gdro", "gadro", "pgdro", "lff", "disent"]
    return [build_run(m, f"s/{m}", f, seed=0, hparams=HP.get(m)) for f in folds for m in methods]


def test_runs_sharing_a_training_set_are_trained_together():
    feats, p, classes, groups = toy()
    jobs = plan_jobs(grid_runs(classes, groups), batch_size=8)
    head_job = next(j for j in jobs if j[0].lead.method == "erm")
    assert [sorted(r.method for r in g.runs) for g in head_job] == [
        ["erm", "gadro", "gdro", "pgdro", "rw"]] * 2
    assert sorted(len(g.lead.train) for g in head_job) == [38, 48]  # one job, masked steps


def test_training_is_deterministic_bit_for_bit():
    feats, p, classes, groups = toy()
    runs = grid_runs(classes, groups)
    a, b = fit(feats, p, runs, TINY), fit(feats, p, copy.deepcopy(runs), TINY)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x.test_probs, y.test_probs)
        np.testing.assert_array_equal(x.dev_loss, y.dev_loss)
        np.testing.assert_array_equal(x.train_loss, y.train_loss)


def test_batched_training_equals_one_run_at_a_time():
    feats, p, classes, groups = toy()
    runs = grid_runs(classes, groups)
    batched = fit(feats, p, runs, TINY)
    for run, res in zip(runs, batched):
        alone = fit(feats, p, [run], TINY)[0]
        assert alone.best_epoch == res.best_epoch, run.name
        np.testing.assert_allclose(alone.dev_loss, res.dev_loss, rtol=1e-5, err_msg=run.name)
        np.testing.assert_allclose(alone.train_loss, res.train_loss, rtol=1e-5, err_msg=run.name)
        np.testing.assert_allclose(alone.test_probs, res.test_probs, atol=1e-6, err_msg=run.name)


def test_results_have_probabilities_for_every_test_clip():
    feats, p, classes, groups = toy()
    for res in fit(feats, p, grid_runs(classes, groups), TINY):
        assert res.test_probs.shape == (len(res.run.test), 6)
        np.testing.assert_allclose(res.test_probs.sum(1), 1, rtol=1e-5)
        assert 1 <= res.best_epoch <= TINY.epochs
        assert res.dev_loss[res.best_epoch - 1] == res.dev_loss.min()


# --- edge cases --------------------------------------------------------------------------------

def test_a_class_with_no_positives_on_dev_still_gives_a_finite_dev_loss():
    feats, p, classes, groups = toy()
    dev = np.flatnonzero(classes[60:] == classes[60]) + 60  # one class only on dev
    f = fold_data(classes, groups, np.arange(0, 60), dev, np.arange(60, 80))
    res = fit(feats, p, [build_run("erm", "s/erm", f, seed=0)], TINY)[0]
    assert np.all(np.isfinite(res.dev_loss))


def test_a_class_with_no_positives_in_train_keeps_finite_weights():
    w = class_weights(one_hot_p([0, 0, 1]))
    assert np.all(np.isfinite(w)) and w.sum() == pytest.approx(6)


def test_nan_loss_stops_with_one_line_naming_method_fold_run_and_epoch():
    feats, p, classes, groups = toy()
    feats[3, 0, 1] = np.inf
    f = fold_data(classes, groups, np.arange(0, 60), np.arange(60, 70), np.arange(70, 80), fold=4)
    with pytest.raises(TrainingDiverged) as err:
        fit(feats, p, [build_run("gdro", "gender/gdro", f, seed=0, hparams=HP["gdro"])], TINY)
    msg = str(err.value)
    assert "\n" not in msg
    for part in ("method gdro", "fold 4", "gender/gdro", "epoch 1"):
        assert part in msg


def test_group_aware_methods_need_groups():
    feats, p, classes, groups = toy()
    f = FoldData(fold=1, train=np.arange(10), dev=np.arange(10, 12), test=np.arange(12, 14),
                 labels=classes[:10])
    with pytest.raises(InputError, match="rw needs a groups file"):
        build_run("rw", "x/rw", f, seed=0)


# --- the debiasing property (PROTOCOL section 5 TPR gap, computed here) ----------------------------

def shortcut_data(seed, n_major=60, ratio=20, n_test=40, dim=8, signal=0.6):
    """Layer features whose dim 0 IS the group: in train (and dev) group 0 is the 1:20 majority
    of classes 0-4 and group 1 of class 5 (a rarer class), so the group predicts the label;
    in test every (class, group) cell has n_test clips, so a shortcut shows as a TPR gap."""
    rng = np.random.default_rng(seed)
    mu = rng.standard_normal((6, dim - 1)) * signal
    xs, cls, grp, split = [], [], [], []

    def add(c, g, s, n):
        x = np.zeros((n, 2, dim))
        x[:, :, 1:] = (mu[c] + rng.standard_normal((n, dim - 1)))[:, None]
        x[:, :, 0] = g
        x[:, 1] *= 0.5
        xs.append(x)
        cls.extend([c] * n)
        grp.extend([g] * n)
        split.extend([s] * n)

    for c in range(6):
        major = 0 if c < 5 else 1
        n_c = n_major if c < 5 else n_major // 3
        for s, n in (("train", n_c), ("dev", n_c // 3)):
            add(c, major, s, n)
            add(c, 1 - major, s, max(1, n // ratio))
        add(c, 0, "test", n_test)
        add(c, 1, "test", n_test)
    return (np.concatenate(xs).astype(np.float32), one_hot_p(np.array(cls)), np.array(cls),
            np.array(grp), np.array(split))


def tpr_gap(probs, p, g):
    """PROTOCOL section 5: TPR_{g,k} = P(yhat_k | y_k, G = g); gap_k = max - min; RMS over k."""
    yhat, y = probs > POSITIVE_THRESHOLD, p > POSITIVE_THRESHOLD
    gaps = [np.ptp([yhat[(g == h) & y[:, k], k].mean() for h in (0, 1)]) for k in range(6)]
    return float(np.sqrt(np.mean(np.square(gaps))))


def test_group_aware_methods_with_true_groups_lower_the_tpr_gap_of_erm():
    # Few steps, so GDRO/GADRO take a larger q step than the paper's 0.01 to move q at all.
    hp = {"gdro": {"eta": 1.0}, "gadro": {"eta": 1.0, "adjustment": 1.0}}
    cfg = TrainConfig(epochs=20, batch_size=32, lr=1e-2, hidden=16)
    gaps = {m: [] for m in ("erm", "rw", "ds", "gdro", "gadro")}
    for seed in range(4):
        x, p, cls, grp, split = shortcut_data(seed)
        tr, dv, te = (np.flatnonzero(split == s) for s in ("train", "dev", "test"))
        f = FoldData(fold=1, train=tr, dev=dv, test=te, labels=cls[tr], groups=grp[tr])
        runs = [build_run(m, m, f, seed=seed, hparams=hp.get(m)) for m in gaps]
        for res in fit(x, p, runs, cfg):
            gaps[res.run.method].append(tpr_gap(res.test_probs, p[te], grp[te]))
    mean = {m: np.mean(v) for m, v in gaps.items()}
    assert mean["erm"] > 0.3, mean  # the shortcut is learned
    for m in ("rw", "ds", "gdro", "gadro"):
        assert mean[m] < mean["erm"], (m, mean)


# --- the stage's file edges --------------------------------------------------------------------

def write_inputs(root, n=60, with_soft=True, drop_group=None):
    feats, p, classes, groups = toy(n=n)
    files = [f"10{i:02d}_IEO_ANG_XX.wav" for i in range(n)]
    (root / "corpus").mkdir()
    (root / "features").mkdir()
    (root / "split").mkdir()
    (root / "groups").mkdir()
    clips = pd.DataFrame(p, columns=list(EMOTIONS))
    clips.insert(0, "file", files)
    clips.insert(1, "actor", 1001 + np.arange(n) % 6)  # JTT's and GEORGE's logs read the groups
    clips.to_csv(root / "corpus" / "clips.csv", index=False)
    pd.DataFrame({"actor": 1001 + np.arange(6), "sex": ["Male", "Female"] * 3, "age": [25, 40, 60] * 2,
                  "race": ["Caucasian", "Asian", "Unknown"] * 2}).to_csv(root / "corpus" / "actors.csv",
                                                                       index=False)
    corpus_schema.save(corpus_schema.crema_d(), root / "corpus")
    np.save(root / "features" / "features.npy", feats.astype(np.float16))
    pd.DataFrame({"file": files}).to_csv(root / "features" / "index.csv", index=False)
    rows = []
    for fold in (1, 2):
        test = set(range((fold - 1) * 20, fold * 20))
        rest = [i for i in range(n) if i not in test]
        for i in range(n):
            split = "test" if i in test else ("dev" if rest.index(i) < 8 else "train")
            label = EMOTIONS[classes[i]] if split != "test" else ""
            rows.append((fold, files[i], split, label))
    folds = pd.DataFrame(rows, columns=["fold", "file", "split", "label"])
    folds.to_csv(root / "split" / "folds.csv", index=False)
    g = folds[folds["split"] != "test"].copy()
    g["group"] = [groups[files.index(f)] for f in g["file"]]
    if with_soft:
        g["p_0"] = np.where(g["group"] == 0, 0.8, 0.2)
        g["p_1"] = 1 - g["p_0"]
    if drop_group is not None:  # drop the first training clip of fold 1
        g = g.drop(g.index[(g["fold"] == 1) & (g["split"] == "train")][:1])
    g.to_csv(root / "groups" / "pseudo.csv", index=False)
    return folds


def tiny_params(seeds=2, extensions=()):
    params = config.resolve(shipped_params())
    params["train"].update(epochs=2, batch_size=8, hidden=4, device="cpu", seeds=seeds,
                           extensions=list(extensions))
    params["methods"]["jtt"]["identification_epochs"] = 1
    return params


def test_stage_writes_predictions_for_every_test_clip_seed_and_curves(tmp_path):
    folds = write_inputs(tmp_path)
    out = tmp_path / "runs" / "pseudo"
    run_set("pseudo", corpus=tmp_path / "corpus", features=tmp_path / "features",
            split=tmp_path / "split", groups_dir=tmp_path / "groups", out=out, params=tiny_params())
    test = folds[folds["split"] == "test"]
    expected = sorted((f, s, x) for f, x in zip(test["fold"], test["file"]) for s in (0, 1))
    for method in ("rw", "ds", "gdro", "gadro", "pgdro"):
        pred = pd.read_csv(out / method / "predictions.csv")
        assert list(pred.columns) == ["fold", "seed", "file", *EMOTIONS]
        assert sorted(zip(pred["fold"], pred["seed"], pred["file"])) == expected
        curve = pd.read_csv(out / method / "curve.csv")
        assert list(curve.columns) == ["fold", "seed", "epoch", "train_loss", "dev_loss", "chosen"]
        assert len(curve) == 2 * 2 * 2  # folds x seeds x epochs
        assert curve.groupby(["fold", "seed"])["chosen"].sum().tolist() == [1] * 4
    assert not list((tmp_path / "runs").glob(".*"))  # no temporary folder left behind


def test_seeds_differ_and_seed_0_does_not_depend_on_how_many_seeds(tmp_path):
    write_inputs(tmp_path)
    kw = dict(corpus=tmp_path / "corpus", features=tmp_path / "features", split=tmp_path / "split",
              groups_dir=tmp_path / "groups")
    run_set("baselines", out=tmp_path / "one", params=tiny_params(1), **kw)
    run_set("baselines", out=tmp_path / "two", params=tiny_params(2), **kw)
    for method in ("erm", "random", "lff", "jtt", "george"):
        one = pd.read_csv(tmp_path / "one" / method / "predictions.csv")
        two = pd.read_csv(tmp_path / "two" / method / "predictions.csv")
        s0, s1 = (two[two["seed"] == s].reset_index(drop=True) for s in (0, 1))
        pd.testing.assert_frame_equal(one, s0)
        assert not np.allclose(s0[list(EMOTIONS)], s1[list(EMOTIONS)])


def test_stage_rejects_a_groups_file_missing_training_clips(tmp_path):
    write_inputs(tmp_path, drop_group=True)
    with pytest.raises(InputError, match="pseudo.csv: 1 training clips of fold 1 have no group"):
        run_set("pseudo", corpus=tmp_path / "corpus", features=tmp_path / "features",
                split=tmp_path / "split", groups_dir=tmp_path / "groups",
                out=tmp_path / "runs" / "pseudo", params=tiny_params())
    assert not (tmp_path / "runs" / "pseudo").exists()


def test_stage_rejects_non_finite_features_before_training(tmp_path):
    write_inputs(tmp_path)
    npy = tmp_path / "features" / "features.npy"
    feats = np.load(npy)
    feats[5, 1, 2] = np.nan
    np.save(npy, feats)
    with pytest.raises(InputError, match="features.npy: non-finite values"):
        run_set("baselines", corpus=tmp_path / "corpus", features=tmp_path / "features",
                split=tmp_path / "split", groups_dir=tmp_path / "groups",
                out=tmp_path / "runs" / "baselines", params=tiny_params())


def test_baselines_stage_writes_random_scores_without_a_curve(tmp_path):
    write_inputs(tmp_path)
    out = tmp_path / "runs" / "baselines"
    run_set("baselines", corpus=tmp_path / "corpus", features=tmp_path / "features",
            split=tmp_path / "split", groups_dir=tmp_path / "groups", out=out,
            params=tiny_params())
    assert sorted(x.name for x in out.iterdir()) == ["disent", "erm", "george", "jtt", "lff", "random"]
    assert len(pd.read_csv(out / "random" / "predictions.csv")) == 40 * 2  # clips x seeds
    assert len(pd.read_csv(out / "random" / "curve.csv")) == 0


def test_results_do_not_depend_on_the_number_of_worker_threads():
    feats, p, classes, groups = toy()
    runs = grid_runs(classes, groups)
    one, two = fit(feats, p, runs, TINY, workers=1), fit(feats, p, runs, TINY, workers=2)
    for a, b in zip(one, two):
        np.testing.assert_array_equal(a.test_probs, b.test_probs)


def test_a_missing_method_setting_is_named_before_training():
    feats, p, classes, groups = toy()
    f = fold_data(classes, groups, np.arange(40), np.arange(40, 50), np.arange(50, 60))
    hp = {k: v for k, v in HP["disent"].items() if k != "lambda_swap"}
    with pytest.raises(config.ParamsError, match="methods.disent.lambda_swap"):
        build_run("disent", "b/disent", f, seed=0, hparams=hp)


def test_a_feature_constant_on_train_does_not_blow_up_on_test():
    feats, p, classes, groups = toy()
    feats[:60, 1, 3] = 2.0   # constant on train and dev ...
    feats[60:, 1, 3] = 50.0  # ... but not on test
    f = fold_data(classes, groups, np.arange(50), np.arange(50, 60), np.arange(60, 80))
    res = fit(feats, p, [build_run("erm", "s/erm", f, seed=0)], TINY)[0]
    assert np.all(np.isfinite(res.test_probs)) and res.test_probs.max() < 1.0


def test_stage_reports_a_missing_groups_file_in_one_line(tmp_path):
    write_inputs(tmp_path)
    (tmp_path / "params.yaml").write_text(shipped_params_text())
    cmd = [sys.executable, str(ROOT / "stages" / "train.py"), "--params", str(tmp_path / "params.yaml"),
           "--set", "kmeans", "--k", "16", "--corpus", str(tmp_path / "corpus"),
           "--features", str(tmp_path / "features"), "--split", str(tmp_path / "split"),
           "--groups", str(tmp_path / "groups"), "--out", str(tmp_path / "runs" / "kmeans_k16")]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        f"error: {tmp_path / 'groups' / 'kmeans_k16.csv'}: no such file; expected columns fold, file, group"]


# --- the head is EMO-SUPERB's model class ------------------------------------------------------

def tiny_13_layer_upstream():
    """A randomly initialised 12-layer WavLM (13 hidden states), built from a small config."""
    from transformers import Wav2Vec2FeatureExtractor, WavLMConfig, WavLMModel

    from fairser.features import HFUpstream

    torch.manual_seed(0)
    cfg = WavLMConfig(hidden_size=16, num_hidden_layers=12, num_attention_heads=2,
                      intermediate_size=32, conv_dim=(8, 8), conv_kernel=(10, 3), conv_stride=(5, 2),
                      conv_bias=True, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2,
                      num_buckets=32, feat_extract_norm="layer", do_stable_layer_norm=True)
    extractor = Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=16000, do_normalize=True,
                                         return_attention_mask=True)
    return HFUpstream(WavLMModel(cfg), extractor, "tiny-wavlm")


def test_cached_head_equals_frame_level_emo_superb_head_on_a_13_layer_upstream():
    from helpers import tone

    up = tiny_13_layer_upstream()
    waves = [tone(0.05 + 0.02 * i, 110 + 25 * i, seed=i) for i in range(8)]
    frames = []
    for w in waves:  # every frame of each clip, layer by layer: (13, T, D)
        inputs = up.extractor([w], sampling_rate=16000, return_tensors="pt")
        with torch.inference_mode():
            hidden = up.model(inputs["input_values"], output_hidden_states=True).hidden_states
        frames.append(torch.stack(hidden, 0)[:, 0].double())
    cache = np.stack([up.pooled([w])[0] for w in waves])
    assert cache.shape == (8, 13, 16) and len({f.shape[1] for f in frames}) > 1
    p = one_hot_p(np.arange(8) % 6)
    run = Run(name="t/erm", method="erm", fold=1, train=np.arange(6), dev=np.array([6]),
              test=np.arange(8), seed=0, labels=np.arange(6) % 6)
    p_t = torch.as_tensor(p)
    job = _Job(plan_jobs([run], 4)[0], torch.as_tensor(cache), p_t, p_t.float(),
               TrainConfig(hidden=5), POSITIVE_THRESHOLD)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():  # arbitrary trained-looking parameters, layer weights far from uniform
        for x in job.params:
            x.copy_(torch.randn(x.shape, generator=gen))
    ours = job.predict(job.params, job.gather_rows(job.test))[0].detach().double().numpy()
    hp = emo_superb_params(job, job.params, 0)
    for i, h in enumerate(frames):
        mixed = (hp["layer_weights"][:, None, None] * h).sum(0)            # (T, D)
        pooled = (mixed @ hp["W"] + hp["b"]).mean(0)                       # Linear per frame, mean
        np.testing.assert_allclose(ours[i], (pooled @ hp["W2"] + hp["b2"]).numpy(),
                                   rtol=1e-4, atol=1e-4)


def test_train_extensions_chooses_which_of_issue_24s_methods_a_set_trains(tmp_path):
    write_inputs(tmp_path)
    out = tmp_path / "runs" / "pseudo"
    run_set("pseudo", corpus=tmp_path / "corpus", features=tmp_path / "features",
            split=tmp_path / "split", groups_dir=tmp_path / "groups", out=out,
            params=tiny_params(seeds=1, extensions=["mmd", "dfr", "afr"]))
    # afr is group-free (the baselines set's): the pseudo set gains only mmd and dfr
    assert sorted(x.name for x in out.iterdir()) == ["dfr", "ds", "gadro", "gdro", "mmd", "pgdro", "rw"]
    pred = pd.read_csv(out / "dfr" / "predictions.csv")
    assert np.allclose(pred.iloc[:, 3:].sum(axis=1), 1.0)


def test_kmeans_sets_train_the_sweep_apart_from_issue_24s_methods_and_evaluate_joins_them(tmp_path):
    write_inputs(tmp_path)
    groups = pd.read_csv(tmp_path / "groups" / "pseudo.csv")[["fold", "file", "split", "group"]]
    groups.to_csv(tmp_path / "groups" / "kmeans_k3.csv", index=False)
    params = tiny_params(seeds=1, extensions=["adv", "eopp", "mmd", "mixup", "dfr", "afr"])
    runs = tmp_path / "runs"
    for name in ("kmeans", "kmeans_extensions"):
        run_set(name, k=3, corpus=tmp_path / "corpus", features=tmp_path / "features",
                split=tmp_path / "split", groups_dir=tmp_path / "groups",
                out=runs / ("kmeans_k3" if name == "kmeans" else name), params=params)
    # The k sweep's stage trains the paper's four; issue 24's group methods train at one k apart.
    assert sorted(x.name for x in (runs / "kmeans_k3").iterdir()) == ["ds", "gadro", "gdro", "rw"]
    ext = runs / "kmeans_extensions"
    assert sorted(x.name for x in ext.iterdir() if x.is_dir()) == ["adv", "dfr", "eopp", "mixup", "mmd"]
    assert json.loads((ext / "set.json").read_text()) == {"set": "kmeans_k3"}
    # evaluate reads both folders as one set, kmeans_k3, each run from where it was written
    found = {r.name: r.path for r in evaluate.find_runs(runs)}
    assert set(found) == {f"kmeans_k3/{m}" for m in ("ds", "gadro", "gdro", "rw", "adv", "dfr", "eopp",
                                                     "mixup", "mmd")}
    assert found["kmeans_k3/adv"] == ext / "adv" / "predictions.csv"
    # the same run written twice, or a set.json that names no k-means set: one line, the file
    shutil.copytree(ext / "adv", runs / "kmeans_k3" / "adv")
    with pytest.raises(InputError, match="kmeans_k3/adv is also"):
        evaluate.find_runs(runs)
    shutil.rmtree(runs / "kmeans_k3" / "adv")
    (ext / "set.json").write_text('{"set": "gender"}')
    with pytest.raises(InputError, match="set.json: set 'gender'; expected kmeans_k<K>"):
        evaluate.find_runs(runs)


def test_jobs_hold_at_most_eight_training_sets_so_five_folds_by_three_seeds_fill_two_cores():
    feats, p, classes, groups = toy()
    fold = FoldData(fold=1, train=np.arange(40), dev=np.arange(40, 50), test=np.arange(50, 60),
                    labels=classes[:40])
    runs = [build_run("erm", "erm", fold, seed=seed, seed_index=0) for seed in range(15)]
    assert sorted(len(job) for job in plan_jobs(runs, batch_size=8)) == [7, 8]


def test_train_extensions_names_only_issue_24s_methods():
    raw = shipped_params()
    for bad in (["nope"], ["dfr", "dfr"], ["gdro"], "dfr"):
        raw["train"]["extensions"] = bad
        with pytest.raises(config.ParamsError, match="train.extensions"):
            config.resolve(raw)
    raw["train"]["extensions"] = []
    assert config.resolve(raw)["train"]["extensions"] == []
