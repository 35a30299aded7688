"""Learning from Failure (LfF) and DisEnt weights (PROTOCOL section 4).

- LfF, Nam et al. 2020 ("Learning from failure: training debiased classifier from biased
  classifier", NeurIPS, Algorithm 1): a biased model trained with generalized cross-entropy (GCE,
  Zhang and Sabuncu 2018) amplifies the shortcut; a per-clip exponential moving average of both
  models' losses, divided by the class-wise maximum, gives the relative difficulty
  W = L_b / (L_b + L_d) that weights the debiased model's loss.
- DisEnt, Lee et al. 2021 ("Learning debiased representation via disentangled feature
  augmentation", NeurIPS) uses the same GCE and weights on its bias and intrinsic branches.

This module is also the LfF method (params gce_q, ema_alpha; no groups); disent.py is DisEnt.

Both assume one class per clip. Our clips are multi-label, so the GCE gather (p_y of the class y)
and the class-wise normalisation use the clip's single strict-majority class (folds.csv `label`);
the loss multiplied by the GCE factor is still our class-balanced soft-target loss.
"""

from __future__ import annotations

import torch

from fairser.debias.base import Arch, Method, register


def gce_loss(losses: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor, q) -> torch.Tensor:
    """GCE as Nam et al.'s code implements it: q * p_y^q (a constant for the gradient) times the
    loss, whose gradient equals that of (1 - p_y^q) / q scaled by q. It up-weights clips the
    model already fits (high p_y), which is what makes the model biased.

    losses (..., B), logits (..., B, K), labels (..., B) class ids.
    """
    p_y = torch.softmax(logits, -1).gather(-1, labels.unsqueeze(-1)).squeeze(-1)
    return q * p_y.detach() ** q * losses


def ema_update(ema: torch.Tensor, seen: torch.Tensor, index: torch.Tensor, values: torch.Tensor,
               alpha, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-clip EMA e_i <- alpha e_i + (1 - alpha) l_i, started at the first loss seen (as Nam et
    al.'s EMA class: (1 - alpha * seen_i)). Returns new (ema, seen); `mask` (..., B) drops padding.

    ema, seen (..., N); index, values, mask (..., B). Valid positions within a batch are
    distinct; padded slots may repeat any position (the trainer points them at 0). They write
    into one extra slot that is dropped, so a padded slot can never overwrite a real update
    (scatter with repeated indices keeps an undefined one of the writes).
    """
    n = ema.shape[-1]
    target = torch.where(mask, index, n)
    pad = torch.zeros(ema.shape[:-1] + (1,), dtype=ema.dtype, device=ema.device)
    old = ema.gather(-1, index)
    was_seen = seen.gather(-1, index)
    new = alpha * old + (1 - alpha * was_seen) * values.detach()
    new_ema = torch.cat([ema, pad], -1).scatter(-1, target, new)[..., :n]
    new_seen = torch.cat([seen, pad], -1).scatter(-1, target, torch.ones_like(was_seen))[..., :n]
    return new_ema, new_seen


def classwise_max(ema: torch.Tensor, labels: torch.Tensor, n_classes: int) -> torch.Tensor:
    """(..., n_classes) max of `ema` over the clips of each class; labels == n_classes marks
    padding (it lands in an extra slot that is dropped). Classes with no clip get 0."""
    shape = ema.shape[:-1] + (n_classes + 1,)
    out = torch.zeros(shape, dtype=ema.dtype, device=ema.device)
    return out.scatter_reduce(-1, labels, ema, reduce="amax", include_self=True)[..., :n_classes]


def relative_difficulty(ema_b: torch.Tensor, ema_d: torch.Tensor, max_b: torch.Tensor,
                        max_d: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """W = (L_b / max_b) / (L_b / max_b + L_d / max_d + eps), per clip, each EMA divided by its
    class-wise maximum (the max of the clip's class). eps as Nam et al."""
    b = ema_b / max_b.clamp_min(eps)
    d = ema_d / max_d.clamp_min(eps)
    return b / (b + d + eps)


def ema_state(engine) -> dict:
    """Per-clip loss EMAs of both models of every run of a job, (R, 2, n_train max)."""
    zeros = torch.zeros(engine.R, 2, engine.n_train_max, device=engine.device)
    return {"ema": zeros.clone(), "seen": zeros.clone()}


def difficulty(state: dict, batch, loss_b: torch.Tensor, loss_d: torch.Tensor,
               labels: torch.Tensor) -> torch.Tensor:
    """LfF weights of the batch: both models' EMAs updated at the batch's positions (alpha =
    ema_alpha), each divided by the class-wise max over the run's training clips, then W."""
    alpha = batch.hp("ema_alpha").unsqueeze(-1)
    vals = torch.stack([loss_b, loss_d], 1)                           # (R, 2, B)
    idx = batch.pos.unsqueeze(1).expand(-1, 2, -1)
    m = batch.valid.unsqueeze(1).expand(-1, 2, -1)
    state["ema"], state["seen"] = ema_update(state["ema"], state["seen"], idx, vals, alpha, m)
    all_labels = batch.engine.per_run(batch.engine.labels).unsqueeze(1).expand(-1, 2, -1)
    cmax = classwise_max(state["ema"], all_labels, batch.engine.K)    # (R, 2, K)
    e = state["ema"].gather(2, idx)
    lab = labels.unsqueeze(1).expand(-1, 2, -1)
    mx = cmax.gather(2, lab)
    return relative_difficulty(e[:, 0], e[:, 1], mx[:, 0], mx[:, 1])


class LfF(Method):
    """Nam et al. 2020 Algorithm 1: the relative-difficulty-weighted loss on the debiased model
    (encoder and head 0), which is the model reported, and GCE on the biased model (encoder and
    head 1). The debiased model is encoder and head 0 so that it starts from the same weights as
    ERM's run of the same (fold, seed) (fairser.train initialises encoder e and head k of a run
    from its seed and e, k) and sees the same shuffle order: LfF's row is paired with ERM's as
    the other methods' are. GCE's gather and the class-wise max use the clip's single majority
    class (folds.csv `label`): LfF assumes one class per clip and ours are multi-label."""

    name = "lff"
    taxonomy = "biased learner"
    family = "lff"
    arch = Arch(2, 2, 1)
    params = ("gce_q", "ema_alpha")

    def init_state(self, engine, mask):
        return ema_state(engine)

    def objective(self, batch, state, mask):
        labels = batch.labels()
        logit_d, logit_b = batch.head(batch.z[:, 0], 0), batch.head(batch.z[:, 1], 1)
        l_b, l_d = batch.cb(logit_b), batch.cb(logit_d)
        w = difficulty(state, batch, l_b, l_d, labels)
        gce = gce_loss(l_b, logit_b, labels, batch.hp("gce_q"))
        return batch.mean(gce) + batch.mean(w.detach() * l_d)

    def predict(self, engine, params, z):
        return engine.head(params, z[:, 0], 0)


register(LfF())
