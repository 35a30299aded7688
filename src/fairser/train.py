"""The batched trainer: the SER head on cached features, for every registered method.

Methods (PROTOCOL section 4, JTT, GEORGE) live one per module under fairser/debias/ and are looked
up in fairser.debias.base.REGISTRY: each declares its params, groups, run builder and per-batch
objective; this module only batches, optimises, keeps the best epoch and writes the files.

Model (PROTOCOL section 3, EMO-SUPERB's head): softmax weights over the upstream's layers ->
Linear(D, hidden) -> mean over frames (already done by the feature cache) -> Linear(hidden, K)
(K = the corpus's classes, data/corpus/schema.json; 6 on CREMA-D).
Inputs are standardised in a way the model class absorbs (see _Job; emo_superb_params).
Loss: class-balanced soft-target cross-entropy (Cui et al. 2019 "Class-balanced loss based on
effective number of samples"), weights recomputed on each run's training set (for DS, its
subset). The dev loss is the plain loss with those training weights, so a class with no dev
positive needs no special case. Adam, lr 1e-4, batch 32, 50 epochs; the epoch with the lowest
dev loss is kept (paper appendix A).

Speed: a grid is ~165 runs of 50 epochs. Instead of one Python loop per run, the runs of a job
are stacked tensors (R, ...) trained in one loop with batched matrix products. Runs that share a
training set (same fold and seed: ERM, RW, GDRO, GADRO, PGDRO of one fold) also share its shuffle
order, so each step gathers that fold's batch once and mixes its layers for all of those runs in
one product; the methods then differ only in their objective (a paired comparison). Runs whose
epoch is over (a smaller fold, a DS subset) are masked out of the update. Jobs of at most
MAX_GROUPS_PER_JOB training sets run side by side, one per CPU core.
"""

from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from fairser.errors import InputError
from fairser import schema as corpus_schema
from fairser.debias import base
from fairser.debias.base import (BEST, REGISTRY, Batch, FoldData, Result, Run,  # noqa: F401
                                 cb_losses, run_seed)
from fairser.method_sets import EXTENSIONS, KMEANS_SETS, SET_FILE, SETS
from fairser.features import resolve_device
from fairser.io import ONLY_EMPTY_IS_NA, atomic_dir, read_csv

ADAM_BETAS = (0.9, 0.999)
ADAM_EPS = 1e-8
EVAL_CHUNK = 256  # clips per forward pass when scoring dev and test sets


class TrainingDiverged(InputError):
    """A NaN or infinite loss; usually non-finite features or too high a learning rate."""


@dataclass(frozen=True)
class TrainConfig:
    """The `train:` section of params.yaml, with the device resolved."""

    epochs: int = 50
    batch_size: int = 32
    lr: float = 1e-4
    hidden: int = 256
    target: str = "soft"
    device: str = "cpu"
    seeds: int = 1

    @classmethod
    def from_params(cls, params: dict) -> "TrainConfig":
        t = params["train"]
        return cls(epochs=t["epochs"], batch_size=t["batch_size"], lr=t["lr"], hidden=t["hidden"],
                   target=t["target"], device=resolve_device(t["device"], key="train.device").type,
                   seeds=t["seeds"])


# ---------------------------------------------------------------------------------------------
# Targets and loss


def training_targets(p: np.ndarray, kind: str, threshold: float | None = None) -> np.ndarray:
    """The distribution each clip is trained towards.

    soft: the vote distribution p itself (PROTOCOL section 3).
    hard: the multi-hot target y_k = [p_k > threshold] (1/K; 1/6 on CREMA-D), normalised to sum
    1; a clip with no class above the threshold (a uniform vote) keeps the uniform distribution.
    """
    p = np.asarray(p, dtype=np.float64)
    if kind == "soft":
        return p.copy()
    if kind != "hard":
        raise ValueError(f"target kind {kind!r}; expected soft or hard")
    y = (p > (1.0 / p.shape[1] if threshold is None else threshold)).astype(np.float64)
    n = y.sum(1, keepdims=True)
    return np.where(n > 0, y / np.maximum(n, 1), 1.0 / p.shape[1])


def class_weights(p_train: np.ndarray, threshold: float | None = None) -> np.ndarray:
    """Class-balanced weights w_c (Cui et al. 2019; PROTOCOL section 3), summing to the class count.

    n_c = training clips with p_c > threshold (1/K), beta = (N - 1) / N, w_c proportional to
    (1 - beta) / (1 - beta^n_c). A class with no positive clip would get an infinite weight; it
    is counted as one clip (the largest finite weight) so training stays finite.
    """
    p_train = np.asarray(p_train, dtype=np.float64)
    n = len(p_train)
    if threshold is None:  # 1/K of p's K columns
        threshold = 1.0 / p_train.shape[1]
    n_c = np.maximum((p_train > threshold).sum(0), 1)
    beta = (n - 1) / n
    w = (1 - beta) / (1 - beta ** n_c) if beta > 0 else np.ones(p_train.shape[1])
    return w * p_train.shape[1] / w.sum()


def random_scores(n: int, seed: int, n_classes: int) -> np.ndarray:
    """The Random baseline: softmax of i.i.d. U(0, 1) logits per clip, seeded.

    Binarised at 1/K like any model's probabilities (each class is positive about 47% of the
    time). Of the simple choices checked on the real EMO-SUPERB test folds (uniform scores
    normalised, Dirichlet(1), softmax of N(0, 1) logits), this is the one that reproduces the
    paper's Random row on F1, ACC and DP gap (0.360 / 0.509 / 0.015; tests/test_metrics.py).
    Rows sum to 1, like every other run's predictions.
    """
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x52414E44]))
    z = np.exp(rng.random((n, n_classes)))
    return z / z.sum(axis=1, keepdims=True)


# ---------------------------------------------------------------------------------------------
# Batched Adam


class BatchedAdam:
    """Adam (Kingma and Ba 2015; torch.optim.Adam without weight decay) over parameters stacked
    along a leading run dimension, with one step count per run. torch.optim cannot skip the
    update (and moment decay) of runs whose epoch is already over, so we mask per run.

    The update itself is torch's fused Adam kernel (what `torch.optim.Adam(fused=True)` runs),
    given only the active runs' slices: one pass over memory instead of ~10 for the same
    formula. `fused=False` is a plain-tensor version of the same update.
    """

    def __init__(self, params: list[torch.Tensor], lr: float, fused: bool = True):
        self.params = params
        self.lr = lr
        self.fused = fused and hasattr(torch, "_fused_adam_")
        self.m = [torch.zeros_like(p) for p in params]
        self.v = [torch.zeros_like(p) for p in params]
        n = params[0].shape[0]
        self.steps = [torch.zeros((), dtype=torch.float32, device=params[0].device) for _ in range(n)]
        self._views = [(list(p.detach().unbind(0)), list(m.unbind(0)), list(v.unbind(0)))
                       for p, m, v in zip(params, self.m, self.v)]
        self._all = None

    @property
    def t(self) -> torch.Tensor:
        """(R,) number of updates each run has had."""
        return torch.stack(self.steps)

    @torch.no_grad()
    def step(self, grads: list[torch.Tensor], active: np.ndarray) -> None:
        """Update the runs where the host-side bool array `active` (R,) is true."""
        on = np.flatnonzero(active)
        if len(on) == 0:
            return
        for r in on:
            self.steps[r] += 1
        b1, b2 = ADAM_BETAS
        if self.fused:
            if len(on) == len(self.steps):  # every run active (most steps): lists built once
                if self._all is None:
                    self._all = tuple([x[r] for x in views for r in on]
                                      for views in zip(*self._views))
                    self._all_t = [self.steps[r] for _ in self.params for r in on]
                ps, ms, vs = self._all
                ts = self._all_t
                gs = [x for g in grads for x in g.unbind(0)]
            else:
                ps, gs, ms, vs, ts = [], [], [], [], []
                for (p_views, m_views, v_views), g in zip(self._views, grads):
                    g_views = g.unbind(0)
                    for r in on:
                        ps.append(p_views[r])
                        gs.append(g_views[r])
                        ms.append(m_views[r])
                        vs.append(v_views[r])
                        ts.append(self.steps[r])
            torch._fused_adam_(ps, gs, ms, vs, [], ts, lr=self.lr, beta1=b1, beta2=b2,
                               weight_decay=0.0, eps=ADAM_EPS, amsgrad=False, maximize=False)
            return
        mask = torch.as_tensor(active, device=self.params[0].device)
        t = self.t
        sqrt_c2 = (1 - b2 ** t).sqrt()
        lr_c1 = self.lr / (1 - b1 ** t)
        for p, g, m, v in zip(self.params, grads, self.m, self.v):
            shape = (-1,) + (1,) * (p.dim() - 1)
            sel = mask.view(shape)
            m_new = m.mul(b1).add_(g, alpha=1 - b1)
            v_new = v.mul(b2).addcmul_(g, g, value=1 - b2)
            p_new = p - m_new / (v_new.sqrt() / sqrt_c2.view(shape) + ADAM_EPS) * lr_c1.view(shape)
            m.copy_(torch.where(sel, m_new, m))
            v.copy_(torch.where(sel, v_new, v))
            p.copy_(torch.where(sel, p_new, p))


# ---------------------------------------------------------------------------------------------
# Parameters


_generator, _linear = base.generator, base.linear_init


def _init_params(runs: list[Run], arch: base.Arch, layers: int, dim: int, hidden: int,
                 n_classes: int) -> list[torch.Tensor]:
    """Per-run parameters from the run's own seed, so a run starts the same in any batch.

    Layer logits start at 0 (uniform layer weights, as s3prl's weighted-sum upstream).
    Returns [layer_logits (R, E, L), w1 (R, E, D, H), b1 (R, E, H), w2 (R, heads, in, K),
    b2 (R, heads, K)], K = n_classes (the corpus's classes).
    """
    a, w1, b1, w2, b2 = [], [], [], [], []
    for run in runs:
        enc = [_linear(_generator(run.seed, 1, e), dim, hidden) for e in range(arch.encoders)]
        head = [_linear(_generator(run.seed, 2, k), arch.head_in_factor * hidden, n_classes)
                for k in range(arch.heads)]
        a.append(torch.zeros(arch.encoders, layers))
        w1.append(torch.stack([w for w, _ in enc]))
        b1.append(torch.stack([b for _, b in enc]))
        w2.append(torch.stack([w for w, _ in head]))
        b2.append(torch.stack([b for _, b in head]))
    return [torch.stack(x) for x in (a, w1, b1, w2, b2)]


# ---------------------------------------------------------------------------------------------
# Jobs: runs grouped by training set, trained together


@dataclass
class _Group:
    """Runs sharing one training set and seed: one shuffle order and one gathered batch."""

    runs: list[Run]

    @property
    def lead(self) -> Run:
        return self.runs[0]


def _family(run: Run) -> str:
    return REGISTRY[run.method].family


def _group_key(run: Run) -> tuple:
    norm = None if run.standardise is None else np.asarray(run.standardise).tobytes()
    return (_family(run), run.apart, run.seed, np.asarray(run.train).tobytes(),
            np.asarray(run.dev).tobytes(), norm)


# Groups per job, at most. A fixed number (not the core count) keeps job composition, and so
# every floating-point result, the same on any machine. 8 splits the 15 training sets of 5 folds x
# 3 seeds into 2 jobs that two cores train side by side; a step's Python and kernel-launch cost is
# paid once per job, so fewer, larger jobs cost less CPU (docs/PERFORMANCE.md: about a third less
# than jobs of 3 on the surrogate's shape).
MAX_GROUPS_PER_JOB = 8


def plan_jobs(runs: list[Run], batch_size: int, max_groups: int | None = None) -> list[list[_Group]]:
    """Split runs into jobs: groups of one family with the same number of runs per group and
    steps per epoch within 25% of each other (so masked-out steps waste little), at most
    `max_groups` groups each (None: MAX_GROUPS_PER_JOB, read now, so a benchmark can set it)."""
    max_groups = MAX_GROUPS_PER_JOB if max_groups is None else max_groups
    groups: dict[tuple, _Group] = {}
    for run in runs:
        groups.setdefault(_group_key(run), _Group([])).runs.append(run)
    buckets: dict[tuple, list[_Group]] = {}
    for g in groups.values():
        buckets.setdefault((_family(g.lead), g.lead.apart, len(g.runs)), []).append(g)
    jobs = []
    for bucket in buckets.values():
        bucket.sort(key=lambda g: len(g.lead.train))
        job: list[_Group] = []
        for g in bucket:
            steps = -(-len(g.lead.train) // batch_size)
            if job and (len(job) == max_groups
                        or steps > 1.25 * -(-len(job[0].lead.train) // batch_size)):
                jobs.append(job)
                job = []
            job.append(g)
        jobs.append(job)
    return jobs


def _pad(arrays: list[np.ndarray], fill=0) -> tuple[np.ndarray, np.ndarray]:
    """Stack ragged 1-d (or (n, ...)) arrays into (R, n_max, ...) with a validity mask."""
    n_max = max(1, max(len(a) for a in arrays))
    first = np.asarray(arrays[0])
    out = np.full((len(arrays), n_max) + first.shape[1:], fill, dtype=first.dtype)
    mask = np.zeros((len(arrays), n_max), dtype=bool)
    for i, a in enumerate(arrays):
        out[i, : len(a)] = a
        mask[i, : len(a)] = True
    return out, mask


class _Job:
    """Tensors of one job: G groups x M runs each, R = G * M runs, in group-major order."""

    def __init__(self, groups: list[_Group], feats: torch.Tensor, p: torch.Tensor,
                 targets: torch.Tensor, cfg: TrainConfig, threshold: float):
        self.groups = groups
        self.K = p.shape[1]  # classes (the head's output size)
        self.runs = [r for g in groups for r in g.runs]
        self.cfg = cfg
        # The job's methods, in first-appearance order; one family, so one architecture.
        self.methods = list(dict.fromkeys(REGISTRY[r.method] for r in self.runs))
        self.family = self.methods[0].family
        self.arch = self.methods[0].arch
        self.batch_width = cfg.batch_size
        self.G, self.M = len(groups), len(groups[0].runs)
        self.R = len(self.runs)
        dev = torch.device(cfg.device)
        self.device = dev
        self.feats, self.targets = feats, targets
        n, self.L, self.D = feats.shape

        def t(x, dtype=None):
            return torch.as_tensor(np.asarray(x), device=dev, dtype=dtype)

        train, self.train_mask = _pad([g.lead.train for g in groups])
        self.n_train = np.array([len(g.lead.train) for g in groups])
        self.train = t(train, torch.long)
        devrows, devmask = _pad([g.lead.dev for g in groups])
        self.dev, self.dev_mask = t(devrows, torch.long), t(devmask)
        testrows, testmask = _pad([g.lead.test for g in groups])
        self.test, self.test_mask = t(testrows, torch.long), t(testmask)

        # Standardise with the group's training set: centre every (layer, dim) on its mean, and
        # divide each dimension by ONE scale shared by all layers (the root mean over layers of
        # the per-layer variances). Then sum_l a_l (h_l - mu_l) / s = (sum_l a_l h_l) / s - c(a):
        # the 1/s folds into Linear(D, H)'s weight and c(a) into its bias, so the head is exactly
        # EMO-SUPERB's model class (emo_superb_params; tests/test_train.py checks it on a
        # 13-layer model). A scale per layer could not be folded into the shared Linear. The
        # point of scaling: Adam's fixed lr then means the same step for any upstream (the
        # fbank cache is on log-mel scale with variances beside the means; WavLM has a few
        # very large dimensions).
        mu, isd = [], []
        for g in groups:
            norm = g.lead.train if g.lead.standardise is None else g.lead.standardise
            x = feats[torch.as_tensor(norm, device=dev)].double()
            mu.append(x.mean(0))
            sd = x.var(0, unbiased=False).mean(0).sqrt()                 # (D,)
            # A dimension constant on the training set keeps scale 1 (as sklearn's
            # StandardScaler): 1/tiny would blow up whatever it does on dev and test clips.
            isd.append(torch.where(sd > 1e-8, 1.0 / sd, 1.0)[None])
        self.mu = torch.stack(mu).float()      # (G, L, D)
        self.isd = torch.stack(isd).float()    # (G, 1, D): one scale per dimension
        # Each group's training and dev clips, standardised once, laid out (G, L, n, D) so a
        # step's gather is one index into a flat (G * L * n, D) view and lands as (G, L, B, D),
        # the layout of the layer-mixing product; no per-step standardisation or transpose.
        n_local = max(len(g.lead.train) + len(g.lead.dev) for g in groups)
        self.local = torch.zeros(self.G, self.L, n_local, self.D, device=dev)
        for i, g in enumerate(groups):
            rows = torch.as_tensor(np.concatenate([g.lead.train, g.lead.dev]), device=dev)
            x = (feats[rows] - self.mu[i]) * self.isd[i]
            self.local[i, :, : len(rows)] = x.transpose(0, 1)
        self.n_local = n_local
        self.dev_local = t(_pad([len(g.lead.train) + np.arange(len(g.lead.dev)) for g in groups])[0],
                           torch.long)

        cw = [class_weights(p[torch.as_tensor(g.lead.train, device=dev)].cpu().numpy(), threshold)
              for g in groups]
        self.cw = t(np.repeat(np.stack(cw), self.M, 0), torch.float32)  # (R, K)

        # Per-run, per-training-clip arrays (padded to the job's largest training set).
        nmax = train.shape[1]
        sw = np.ones((self.R, nmax))
        for i, r in enumerate(self.runs):
            if r.sample_weight is not None:
                sw[i, : len(r.sample_weight)] = r.sample_weight
        self.sample_weight = t(sw, torch.float32)
        n_groups = max((r.memberships.shape[1] for r in self.runs if r.memberships is not None),
                       default=1)
        memb = np.zeros((self.R, nmax, n_groups))
        for i, r in enumerate(self.runs):
            if r.memberships is not None:
                memb[i, : len(r.memberships), : r.memberships.shape[1]] = r.memberships
        self.memberships = t(memb, torch.float32)
        self.memberships_host = memb
        self.n_train_max = nmax
        self._hp: dict[str, torch.Tensor] = {}
        labels = np.full((self.G, nmax), self.K)  # K marks padding
        for i, g in enumerate(groups):
            if g.lead.labels is not None:
                labels[i, : len(g.lead.labels)] = g.lead.labels
        self.labels = t(labels, torch.long)

        self.threshold = threshold
        init = _init_params(self.runs, self.arch, self.L, self.D, cfg.hidden, self.K)
        for i, r in enumerate(self.runs):
            for x, value in zip(init, r.init or []):
                x[i] = torch.as_tensor(np.asarray(value), dtype=x.dtype)
        self.params = [x.to(dev).requires_grad_() for x in init]
        extra = self.methods[0].extra_params(self)
        for i, r in enumerate(self.runs):
            for x, value in zip(extra, (r.init or [])[len(init):]):
                x.data[i] = torch.as_tensor(np.asarray(value), dtype=x.dtype, device=dev)
        self.params += [x.to(dev).requires_grad_() for x in extra]
        self.rngs = [np.random.default_rng(np.random.SeedSequence([g.lead.seed, 3])) for g in groups]
        # Each method's runs (R,) and its state across steps (e.g. group DRO's q, LfF's EMAs).
        self.masks = {m.name: t([r.method == m.name for r in self.runs]) for m in self.methods}
        self.states = {m.name: m.init_state(self, self.masks[m.name]) for m in self.methods}
        self.n_valid_host = self.n_train.copy()

    # -- forward ------------------------------------------------------------------------------

    def gather_local(self, pos: torch.Tensor) -> torch.Tensor:
        """(G, B) positions in each group's train ++ dev list -> (G, L, B * D) standardised."""
        G, B = pos.shape
        start = (torch.arange(G, device=self.device)[:, None] * self.L
                 + torch.arange(self.L, device=self.device)[None, :]) * self.n_local  # (G, L)
        flat = (start[:, :, None] + pos[:, None, :]).reshape(-1)
        return self.local.view(-1, self.D)[flat].view(G, self.L, B * self.D)

    def gather_rows(self, rows: torch.Tensor) -> torch.Tensor:
        """(G, B) feature rows (e.g. test clips) -> (G, L, B * D), standardised here."""
        G, B = rows.shape
        x = (self.feats[rows] - self.mu[:, None]) * self.isd[:, None]   # (G, B, L, D)
        return x.permute(0, 2, 1, 3).reshape(G, self.L, B * self.D)

    def encode(self, params, x: torch.Tensor) -> torch.Tensor:
        """x (G, L, B * D) -> (R, E, B, H) encoder outputs of every run of each group."""
        a, w1, b1 = params[:3]
        G = x.shape[0]
        B = x.shape[2] // self.D
        E = self.arch.encoders
        w = torch.softmax(a, -1).reshape(G, self.M * E, self.L)
        h = torch.bmm(w, x).reshape(self.R * E, B, self.D)            # layer-weighted input
        z = torch.baddbmm(b1.reshape(self.R * E, 1, -1), h, w1.reshape(self.R * E, self.D, -1))
        return z.reshape(self.R, E, B, -1)

    def head(self, params, z: torch.Tensor, k: int) -> torch.Tensor:
        """(R, B, in) -> (R, B, K) logits of head k."""
        w2, b2 = params[3][:, k], params[4][:, k]
        return torch.baddbmm(b2.unsqueeze(1), z, w2)

    def predict(self, params, x: torch.Tensor) -> torch.Tensor:
        """Logits of the model each method reports (Method.predict: the head for ERM-like runs,
        LfF's debiased model, DisEnt's intrinsic classifier on [z_intrinsic, z_bias])."""
        return self.methods[0].predict(self, params, self.encode(params, x))

    def per_run(self, x: torch.Tensor) -> torch.Tensor:
        """Group-level (G, ...) -> run-level (R, ...)."""
        return x.repeat_interleave(self.M, 0)

    _per_run = per_run

    def hp(self, key: str) -> torch.Tensor:
        """(R, 1) methods.<method>.<key> of each run; 0 where a run's method has no such key."""
        if key not in self._hp:
            self._hp[key] = torch.tensor([float(r.hparams.get(key, 0.0)) for r in self.runs],
                                         device=self.device).unsqueeze(1)
        return self._hp[key]

    # -- objectives -------------------------------------------------------------------------

    def loss(self, params, pos: torch.Tensor, valid: torch.Tensor, epoch: int) -> torch.Tensor:
        """(R,) loss each run minimises on the batch at positions `pos` of its training set:
        its method's objective (Method.objective), the methods of a job sharing the batch."""
        rows = self.train.gather(1, pos)
        batch = Batch(self, params, self.encode(params, self.gather_local(pos)),
                      self.per_run(self.targets[rows]), self.per_run(valid), self.per_run(pos), epoch)
        loss = None
        for m in self.methods:
            mask = self.masks[m.name]
            value = m.objective(batch, self.states[m.name], mask)
            loss = value if loss is None else torch.where(mask, value, loss)
        return loss

    # -- evaluation -------------------------------------------------------------------------

    @torch.no_grad()
    def score(self, params, rows: torch.Tensor, mask: torch.Tensor,
              local: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(R,) mean plain class-balanced loss and (R, n, K) probabilities on padded rows
        (`local`: the same clips' positions in the standardised group store, when there)."""
        total = torch.zeros(self.R, device=self.device)
        probs = []
        for s in range(0, rows.shape[1], EVAL_CHUNK):
            r, m = rows[:, s: s + EVAL_CHUNK], self._per_run(mask[:, s: s + EVAL_CHUNK]).float()
            x = self.gather_rows(r) if local is None else self.gather_local(local[:, s: s + EVAL_CHUNK])
            logits = self.predict(params, x)
            total += (cb_losses(logits, self._per_run(self.targets[r]), self.cw) * m).sum(1)
            probs.append(torch.softmax(logits, -1))
        n = self._per_run(mask).sum(1).clamp_min(1)
        return total / n, torch.cat(probs, 1)

    @torch.no_grad()
    def train_outputs(self, params) -> tuple[torch.Tensor, torch.Tensor]:
        """(R, n_train, K) probabilities of the reported model and (R, n_train, H) encoder-0
        outputs on each run's training clips (what a two-phase method's second phase reads)."""
        pos = torch.as_tensor(np.tile(np.arange(self.n_train_max), (self.G, 1)), device=self.device)
        probs, hidden = [], []
        for s in range(0, pos.shape[1], EVAL_CHUNK):
            z = self.encode(params, self.gather_local(pos[:, s: s + EVAL_CHUNK]))
            probs.append(torch.softmax(self.methods[0].predict(self, params, z), -1))
            hidden.append(z[:, 0])
        return torch.cat(probs, 1), torch.cat(hidden, 1)


def emo_superb_params(job: _Job, params, r: int) -> dict:
    """Run r's head (family "head") written as EMO-SUPERB's frame-level model: layer weights
    w = softmax(a), then Linear(D, H) with weight W (D, H) and bias b on every frame's
    sum_l w_l h_lt, mean over the clip's frames, Linear(H, K) with (W2, b2). On cached frame
    means it gives the same logits as job.predict: standardisation is a per-(layer, dim) shift
    and a per-dim scale, folded into W = diag(1/s) W1 and b = b1 - (sum_l w_l mu_l / s) W1."""
    g = r // job.M
    w = torch.softmax(params[0][r, 0].detach().double(), -1)              # (L,)
    isd, mu = job.isd[g, 0].double(), job.mu[g].double()                  # (D,), (L, D)
    w1, b1 = params[1][r, 0].detach().double(), params[2][r, 0].detach().double()
    return {"layer_weights": w, "W": isd[:, None] * w1,
            "b": b1 - ((w[:, None] * mu).sum(0) * isd) @ w1,
            "W2": params[3][r, 0].detach().double(), "b2": params[4][r, 0].detach().double()}


def _check_runs(runs: list[Run], n_rows: int, epochs: int) -> None:
    for r in runs:
        if r.method not in REGISTRY:
            raise InputError(f"run {r.name} fold {r.fold}: unknown method {r.method!r}; "
                             f"expected one of {sorted(REGISTRY)}")
        where = f"run {r.name} ({r.method}, fold {r.fold})"
        if len(r.train) == 0 or len(r.dev) == 0:
            raise InputError(f"{where}: empty training or dev set")
        for part in (r.train, r.dev, r.test):
            if len(part) and (np.min(part) < 0 or np.max(part) >= n_rows):
                raise InputError(f"{where}: feature row out of range [0, {n_rows})")
        if r.labels is None and REGISTRY[r.method].needs_labels:
            raise InputError(f"{where}: needs a single class label per training clip")
        if any(not 0 <= e <= epochs for e in r.snapshots):
            raise InputError(f"{where}: snapshot epochs {r.snapshots} outside 0..{epochs}")


def default_workers() -> int:
    """CPU cores this process may use."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def fit(features: np.ndarray, p: np.ndarray, runs: list[Run], cfg: TrainConfig,
        workers: int | None = None, threshold: float | None = None) -> list[Result]:
    """Train every run; return results in the order of `runs`.

    features: (N, L, D) cache (any float dtype; rows are indexed by the runs);
    p: (N, K) vote distributions over the corpus's K classes (the head has K outputs; targets
    come from p per cfg.target; class weights count p_c > threshold on each run's training set).
    threshold: the positive threshold, schema.Schema.threshold; None = 1.0 / K.
    workers: jobs trained at once on CPU, one Python thread each (torch releases the GIL in
    its kernels). With torch.set_num_threads(1) this uses the cores without intra-op threads,
    whose spin-waits cost more than they give on products this small on a shared machine.
    Results do not depend on it. Default: the cores available.
    Raises TrainingDiverged naming method, fold, run and epoch on a NaN or infinite loss.
    """
    _check_runs(runs, len(features), cfg.epochs)
    if threshold is None:
        threshold = 1.0 / np.shape(p)[1]
    dev = torch.device(cfg.device)
    used = np.unique(np.concatenate([np.concatenate([r.train, r.dev, r.test]
                                                    + ([] if r.standardise is None else [r.standardise]))
                                    for r in runs]).astype(np.int64))
    # Only the rows some run reads go to the device, as float32 (the cache is float16).
    remap = np.full(len(features), -1, dtype=np.int64)
    remap[used] = np.arange(len(used))
    feats = torch.as_tensor(np.asarray(features[used], dtype=np.float32), device=dev)
    p_used = torch.as_tensor(np.asarray(p, dtype=np.float64)[used], device=dev)
    targets = torch.as_tensor(training_targets(np.asarray(p)[used], cfg.target, threshold),
                              dtype=torch.float32, device=dev)

    def local(r: Run) -> Run:
        return Run(**{**r.__dict__, "train": remap[r.train], "dev": remap[r.dev],
                      "test": remap[r.test],
                      "standardise": None if r.standardise is None else remap[r.standardise]})

    local_runs = [local(r) for r in runs]

    def train(job_groups):
        job = _Job(job_groups, feats, p_used, targets, cfg, threshold)
        return list(zip(job.runs, _train_job(job)))

    jobs = plan_jobs(local_runs, cfg.batch_size)
    workers = 1 if dev.type != "cpu" else min(len(jobs), workers or default_workers())
    if workers > 1:
        with ThreadPoolExecutor(workers) as pool:
            done = list(pool.map(train, jobs))
    else:
        done = [train(j) for j in jobs]
    by_id = {id(run): res for pairs in done for run, res in pairs}
    out = []
    for original, r in zip(runs, local_runs):
        res = by_id[id(r)]
        res.run = original
        out.append(res)
    return out


def _train_job(job: _Job) -> list[Result]:
    """The epoch loop of one job: shuffled steps, masked updates, dev loss after each epoch, and
    a copy of each run's parameters at its lowest dev loss so far (scored on test at the end)."""
    cfg = job.cfg
    B = cfg.batch_size
    opt = BatchedAdam(job.params, job.methods[0].learning_rate(cfg.lr, job.runs[0].hparams))
    wanted = sorted({e for r in job.runs for e in r.snapshots})
    snaps: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    steps = int(-(-job.n_train.max() // B))
    best = torch.full((job.R,), float("inf"), device=job.device)
    best_params = [p.detach().clone() for p in job.params]
    best_epoch = np.zeros(job.R, dtype=int)
    train_curve = np.zeros((job.R, cfg.epochs))
    dev_curve = np.zeros((job.R, cfg.epochs))
    for epoch in range(1, cfg.epochs + 1):
        order = np.zeros((job.G, steps * B), dtype=np.int64)
        valid = np.zeros((job.G, steps * B), dtype=bool)
        for i, (rng, n) in enumerate(zip(job.rngs, job.n_train)):
            order[i, :n] = rng.permutation(n)
            valid[i, :n] = True
        order_t = torch.as_tensor(order, device=job.device)
        valid_t = torch.as_tensor(valid, device=job.device)
        total = torch.zeros(job.R, device=job.device)
        finite = torch.ones(job.R, dtype=torch.bool, device=job.device)
        n_steps = torch.zeros(job.R, device=job.device)
        for s in range(steps):
            pos, v = order_t[:, s * B:(s + 1) * B], valid_t[:, s * B:(s + 1) * B]
            active = job._per_run(v.any(1))
            # The same counts on the host, so no step waits on the device to learn them.
            job.n_valid_host = np.clip(job.n_train - s * B, 0, B)
            active_host = np.repeat(job.n_valid_host > 0, job.M)
            loss = job.loss(job.params, pos, v, epoch)
            # Runs are independent, so the gradient of the sum is each run's own gradient.
            # Parameters an objective does not read (a frozen encoder) get zero gradients.
            grads = torch.autograd.grad(torch.where(active, loss, 0.0).sum(), job.params,
                                        materialize_grads=True)
            opt.step(grads, active_host)
            ld = loss.detach()
            finite &= torch.isfinite(ld) | ~active
            total += torch.where(active, ld, 0.0)
            n_steps += active
        dev_loss, _ = job.score(job.params, job.dev, job.dev_mask, job.dev_local)
        finite &= torch.isfinite(dev_loss)
        if not bool(finite.all()):
            r = job.runs[int(torch.nonzero(~finite)[0, 0])]
            raise TrainingDiverged(f"method {r.method}, fold {r.fold}, run {r.name}: loss is NaN "
                                   f"or infinite at epoch {epoch}")
        train_curve[:, epoch - 1] = (total / n_steps.clamp_min(1)).cpu().numpy()
        dev_curve[:, epoch - 1] = dev_loss.cpu().numpy()
        better = dev_loss < best
        best = torch.where(better, dev_loss, best)
        best_epoch[better.cpu().numpy()] = epoch
        for bp, p in zip(best_params, job.params):
            bp.copy_(torch.where(better.view((-1,) + (1,) * (p.dim() - 1)), p.detach(), bp))
        if epoch in wanted:
            snaps[epoch] = tuple(x.cpu().numpy() for x in job.train_outputs(job.params))
    if BEST in wanted:
        snaps[BEST] = tuple(x.cpu().numpy() for x in job.train_outputs(best_params))
    _, probs = job.score(best_params, job.test, job.test_mask)
    probs = probs.cpu().numpy().astype(np.float64)
    _, dev_probs = job.score(best_params, job.dev, job.dev_mask, job.dev_local)
    dev_probs = dev_probs.cpu().numpy().astype(np.float64)
    results = []
    for i, run in enumerate(job.runs):
        n = len(run.train)
        kept = {e: {"probs": snaps[e][0][i, :n].astype(np.float64), "hidden": snaps[e][1][i, :n]}
                for e in run.snapshots}
        kept_params = ([x[i].cpu().numpy().copy() for x in best_params] if run.keep_params
                       else None)
        results.append(Result(run=run, test_probs=probs[i, : len(run.test)],
                              train_loss=train_curve[i], dev_loss=dev_curve[i],
                              best_epoch=int(best_epoch[i]), snapshots=kept,
                              dev_probs=dev_probs[i, : len(run.dev)], params=kept_params))
    return results


# ---------------------------------------------------------------------------------------------
# Methods: looked up in fairser.debias.base.REGISTRY (one module per method under debias/)


def build_run(method: str, name: str, fold: FoldData, *, seed: int, hparams: dict | None = None,
              seed_index: int = 0, first: Result | None = None) -> Run:
    """The Run of `method` (a registered method) on one fold with training seed index
    `seed_index`; hparams = methods.<method>; `first`: a two-phase method's trained phase1 run."""
    m = base.get(method)
    hparams = hparams or {}
    base.check_params(m, hparams)
    return m.build(name, fold, seed, hparams, seed_index, first)


# ---------------------------------------------------------------------------------------------
# Files (docs/DESIGN.md): inputs checked before any training, outputs through atomic_dir

# Output columns (agreed interface): predictions.csv is fold, seed, file, <classes>.
CURVE_COLUMNS = ("fold", "seed", "epoch", "train_loss", "dev_loss", "chosen")


def groups_filename(set_name: str, k: int | None = None) -> str | None:
    """data/groups file of a run set: gender.csv, pseudo.csv, kmeans_k<K>.csv (the sets
    kmeans and kmeans_extensions); None for baselines."""
    if set_name in KMEANS_SETS:
        if k is None:
            raise InputError(f"--set {set_name} needs --k")
        return f"kmeans_k{k}.csv"
    return {"baselines": None, "gender": "gender.csv", "pseudo": "pseudo.csv"}[set_name]


def load_folds(corpus, features, split, groups_path=None, *, classes, threshold: float,
               n_groups_soft: int = 2):
    """Read and check the inputs of a training stage; return (features memmap, p (N, K),
    {fold: FoldData}, {fold: test files}). `classes`: the schema's K class names (clips.csv
    columns, folds.csv `label` values); `threshold`: its 1/K, carried in FoldData.

    p and every row index refer to the feature cache's rows (index.csv order).
    """
    corpus, features, split = Path(corpus), Path(features), Path(split)
    classes = list(classes)
    clips = read_csv(corpus / "clips.csv", ["file", *classes], **ONLY_EMPTY_IS_NA)
    index = read_csv(features / "index.csv", ["file"], **ONLY_EMPTY_IS_NA)
    folds = read_csv(split / "folds.csv", ["fold", "file", "split", "label"], **ONLY_EMPTY_IS_NA)
    npy = features / "features.npy"
    if not npy.is_file():
        raise InputError(f"{npy}: no such file")
    feats = np.load(npy, mmap_mode="r")
    if feats.ndim != 3 or len(feats) != len(index):
        raise InputError(f"{npy}: shape {feats.shape}; expected (N, layers, dim) with N = "
                         f"{len(index)} rows of {features / 'index.csv'}")
    row = {f: i for i, f in enumerate(index["file"])}
    lost = sorted(set(folds["file"]) - set(row))
    if lost:
        raise InputError(f"{features / 'index.csv'}: {len(lost)} clips of folds.csv have no "
                         f"features, e.g. {lost[0]}")
    clip_p = clips.set_index("file")[classes]
    lost = sorted(set(index["file"]) - set(clip_p.index))
    if lost:
        raise InputError(f"{corpus / 'clips.csv'}: {len(lost)} feature rows have no vote "
                         f"distribution, e.g. {lost[0]}")
    p = clip_p.loc[index["file"]].to_numpy(np.float64)
    if not np.all(np.isfinite(p)) or np.any(p < 0):
        raise InputError(f"{corpus / 'clips.csv'}: vote distributions must be finite and >= 0")
    bad = sorted(set(folds["split"]) - {"train", "dev", "test"})
    if bad:
        raise InputError(f"{split / 'folds.csv'}: unknown split values {bad}")

    groups = None
    if groups_path is not None:
        groups = read_csv(groups_path, ["fold", "file", "group"], **ONLY_EMPTY_IS_NA)
        groups = groups.set_index(["fold", "file"])
    out, tests = {}, {}
    for fold, df in folds.groupby("fold", sort=True):
        fold = int(fold)
        tr, dv, te = (df[df["split"] == s] for s in ("train", "dev", "test"))
        if len(tr) == 0 or len(dv) == 0 or len(te) == 0:
            raise InputError(f"{split / 'folds.csv'}: fold {fold} lacks train, dev or test rows")
        if tr["label"].isna().any() or not tr["label"].isin(classes).all():
            raise InputError(f"{split / 'folds.csv'}: fold {fold} has training clips without a "
                             f"single class label in {classes}")
        f = FoldData(fold=fold, train=np.array([row[x] for x in tr["file"]]),
                     dev=np.array([row[x] for x in dv["file"]]),
                     test=np.array([row[x] for x in te["file"]]),
                     labels=np.array([classes.index(x) for x in tr["label"]]), threshold=threshold,
                     votes=p[[row[x] for x in tr["file"]]])
        if dv["label"].notna().all() and dv["label"].isin(classes).all():
            f.dev_labels = np.array([classes.index(x) for x in dv["label"]])
        if groups is not None:
            keys = list(zip([fold] * len(tr), tr["file"]))
            missing = [k for k in keys if k not in groups.index]
            if missing:
                raise InputError(f"{groups_path}: {len(missing)} training clips of fold {fold} "
                                 f"have no group, e.g. {missing[0][1]}")
            g = groups.loc[keys]
            # Ids present in this fold's training set, renumbered 0..G-1 (k-means ids may skip).
            _, f.groups = np.unique(g["group"].to_numpy(), return_inverse=True)
            f.groups = f.groups.reshape(-1)
            ids = np.unique(g["group"].to_numpy())
            dev_keys = list(zip([fold] * len(dv), dv["file"]))
            if all(k in groups.index for k in dev_keys):
                # Dev clips in the training set's groups (a k-means id absent from training: -1).
                d = groups.loc[dev_keys]["group"].to_numpy()
                at = np.clip(np.searchsorted(ids, d), 0, len(ids) - 1)
                f.dev_groups = np.where(ids[at] == d, at, -1)
            soft_cols = [f"p_{i}" for i in range(n_groups_soft)]
            if all(c in g.columns for c in soft_cols):
                soft = g[soft_cols].to_numpy(np.float64)
                if not np.all(np.isfinite(soft)) or np.any(soft < 0) or np.any(soft.sum(1) <= 0):
                    raise InputError(f"{groups_path}: p_0, p_1 must be finite, >= 0, not both 0")
                f.soft = soft / soft.sum(1, keepdims=True)
        out[fold] = f
        tests[fold] = te["file"].to_numpy()
    return feats, p, out, tests


def fit_methods(features, p, methods: list[str], folds: list[FoldData], cfg: TrainConfig, *,
                seed: int, hparams: dict, label: str, workers: int | None = None,
                threshold: float | None = None) -> list[Result]:
    """Every method on every fold, once per seed index s < cfg.seeds (the seeds are more groups
    of the same batched jobs, not more jobs one after another). Two-phase methods: first every
    phase-1 run is trained batched with the one-phase runs (a phase-1 run equal to a run of the
    set, e.g. ERM's, is that run, with snapshots added), then every phase 2 batched.
    Returns the one-phase and phase-2 results (hparams = the methods: section)."""
    one, firsts, second = [], {}, []
    for method in methods:
        m, hp = base.get(method), hparams.get(method, {})
        base.check_params(m, hp)
        for fold in folds:
            for s in range(cfg.seeds):
                r1 = m.phase1(fold, seed, hp, s)
                if r1 is None:
                    one.append(build_run(method, f"{label}/{method}", fold, seed=seed, hparams=hp,
                                         seed_index=s))
                    continue
                key = (r1.method, r1.fold, s, np.asarray(r1.train).tobytes())
                if key in firsts:  # JTT and GEORGE of one (fold, seed) read one ERM run
                    firsts[key].snapshots = tuple(sorted(set(firsts[key].snapshots) | set(r1.snapshots)))
                    firsts[key].keep_params |= r1.keep_params
                else:
                    firsts[key] = r1
                second.append((method, hp, fold, s, key))
    # A phase-1 run that the set trains anyway is that run (same method, fold, seed, rows).
    shared = {}
    for r in one:
        key = (r.method, r.fold, r.seed_index, np.asarray(r.train).tobytes())
        if key in firsts:
            r.snapshots = tuple(sorted(set(r.snapshots) | set(firsts[key].snapshots)))
            r.keep_params |= firsts[key].keep_params
            shared[key] = r
    extra = [r for key, r in firsts.items() if key not in shared]
    results = fit(features, p, one + extra, cfg, workers=workers, threshold=threshold)
    first_result = {}
    for res in results:
        key = (res.run.method, res.run.fold, res.run.seed_index, np.asarray(res.run.train).tobytes())
        if key in firsts:
            first_result[key] = res
    if not second:
        return results
    # Phase 2: every setting of a method's sweep (Method.configs) trains in the same batched
    # jobs; Method.select keeps one per (fold, seed).
    runs2, spans = [], []
    for method, hp, fold, s, key in second:
        m = base.get(method)
        start = len(runs2)
        runs2 += [build_run(method, f"{label}/{method}", fold, seed=seed, hparams=c, seed_index=s,
                            first=first_result[key]) for c in m.configs(hp)]
        spans.append((m, start, len(runs2)))
    done = fit(features, p, runs2, cfg, workers=workers, threshold=threshold)
    kept = []
    for m, a, b in spans:
        i, scores = m.select(done[a:b], p, 1.0 / np.shape(p)[1] if threshold is None else threshold)
        kept.append(done[a + i])
        kept[-1].sweep, kept[-1].sweep_scores = done[a:b], list(scores)
    return results[: len(one)] + kept


def clip_attributes(corpus, features, schema) -> dict:
    """{attribute: (N,) true group name or None} per feature row (features/index.csv order), from
    clips.csv and actors.csv (schema.clip_groups)."""
    corpus = Path(corpus)
    clips = read_csv(corpus / "clips.csv", ["file", "actor"], dtype={"file": str})
    actors = read_csv(corpus / "actors.csv", ["actor", *(a.column for a in schema.attributes)])
    table = corpus_schema.clip_groups(clips, actors, schema, corpus / "actors.csv").set_index("file")
    index = read_csv(Path(features) / "index.csv", ["file"], **ONLY_EMPTY_IS_NA)["file"]
    missing = sorted(set(index) - set(table.index))
    if missing:
        raise InputError(f"{corpus / 'clips.csv'}: no row for feature clip {missing[0]}")
    rows = table.loc[index]
    return {name: np.array([None if pd.isna(v) else v for v in rows[name]], dtype=object)
            for name in schema.attribute_names}


def run_set(set_name: str, *, corpus, features, split, groups_dir, out, params: dict,
            k: int | None = None) -> list[Result]:
    """The train_* stage: every method of the set on every fold of folds.csv, once per training
    seed index s < train.seeds, written to out/<method>/predictions.csv (fold, seed, file,
    <classes>, the schema's classes of data/corpus/schema.json) and curve.csv (CURVE_COLUMNS);
    docs/DESIGN.md."""
    if set_name not in SETS:
        raise InputError(f"--set {set_name!r}; expected one of {sorted(SETS)}")
    name_file = groups_filename(set_name, k)
    groups_path = None if name_file is None else Path(groups_dir) / name_file
    cfg = TrainConfig.from_params(params)
    seed = params["seed"]
    schema = corpus_schema.load(corpus)
    feats, p, folds, tests = load_folds(corpus, features, split, groups_path, classes=schema.classes,
                                        threshold=schema.threshold)
    set_label = set_name if set_name not in KMEANS_SETS else f"kmeans_k{k}"
    if feats.shape[1] == 0 or feats.shape[2] == 0:
        raise InputError(f"{features}: empty feature cache shape {feats.shape}")
    for start in range(0, len(feats), 1024):  # cheap next to training; a bad row fails here
        if not np.isfinite(feats[start: start + 1024]).all():
            raise InputError(f"{Path(features) / 'features.npy'}: non-finite values in rows "
                             f"{start}..{min(start + 1024, len(feats)) - 1}")
    # Issue 24's methods train when train.extensions names them (params.yaml; README).
    chosen = set(params["train"].get("extensions", []))
    methods = [m for m in SETS[set_name] if m not in EXTENSIONS or m in chosen]
    trained = [m for m in methods if m != "random"]
    results = fit_methods(feats, p, trained, list(folds.values()), cfg, seed=seed,
                          hparams=params["methods"], label=set_label, threshold=schema.threshold)
    by_key = {(r.run.method, r.run.fold, r.run.seed_index): r for r in results}
    # Methods that log how they built their runs (JTT's error sets, GEORGE's clusters) against
    # the true groups of the training clips: logging only, never an input of training.
    logged = [m for m in trained if type(base.get(m)).logs is not base.Method.logs]
    attributes = clip_attributes(corpus, features, schema) if logged else {}

    with atomic_dir(out) as tmp:
        if set_name == "kmeans_extensions":  # which k-means set its runs belong to (fairser.evaluate)
            (tmp / SET_FILE).write_text(json.dumps({"set": set_label}) + "\n")
        for method in methods:
            preds, curves = [], []
            for fold in folds:
                for s in range(cfg.seeds):
                    if method == "random":
                        probs = random_scores(len(tests[fold]), run_seed(seed, fold, s), len(schema.classes))
                        res = None
                    else:
                        res = by_key[(method, fold, s)]
                        probs = res.test_probs
                    df = pd.DataFrame(probs, columns=list(schema.classes))
                    df.insert(0, "file", tests[fold])
                    df.insert(0, "seed", s)
                    df.insert(0, "fold", fold)
                    preds.append(df)
                    if res is not None:
                        e = np.arange(1, cfg.epochs + 1)
                        curves.append(pd.DataFrame({
                            "fold": fold, "seed": s, "epoch": e, "train_loss": res.train_loss,
                            "dev_loss": res.dev_loss, "chosen": (e == res.best_epoch).astype(int)}))
            folder = tmp / method
            folder.mkdir()
            pd.concat(preds).to_csv(folder / "predictions.csv", index=False, float_format="%.8g")
            curve = (pd.concat(curves) if curves else
                     pd.DataFrame(columns=list(CURVE_COLUMNS)))
            curve.to_csv(folder / "curve.csv", index=False, float_format="%.8g")
            if method in logged:
                kept = [by_key[(method, fold, s)] for fold in folds for s in range(cfg.seeds)]
                for file_name, table in base.get(method).logs(kept, attributes).items():
                    table.to_csv(folder / file_name, index=False, float_format="%.6g")
    return results
