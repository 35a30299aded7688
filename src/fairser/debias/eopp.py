"""EOPP: a differentiable equal-opportunity (TPR gap) penalty across groups, added to ERM's loss.

Follows the relaxation of the fairness constraint into a penalty of Zafar et al. 2017 ("Fairness
beyond disparate treatment & disparate impact", WWW) and Donini et al. 2018 ("Empirical risk
minimization under fairness constraints", NeurIPS: equal opportunity as a constraint on the
positive class's rates), in the per-batch, soft-rate form of Padala and Gujar 2020 ("FNNC").

Multi-label adaptation (ours): every class k is its own binary task, as the TPR gap metric of
fairser.metrics reads it. A clip is a positive of k if its target t_k > 1/K (the metric's
threshold), and the model "predicts" k with the smooth indicator sigmoid((p_k - 1/K) / tau) of
its softmax probability p_k passing the same 1/K threshold. Per batch, the soft TPR of group g
on class k is the mean indicator over g's positives of k; the penalty is the mean over classes
of (max_g - min_g soft TPR)^2 over groups with a positive in the batch (the metric's RMS over
classes, squared so its gradient stays finite at 0). Loss: l_ERM + weight * penalty.
Params: weight, tau. Hard groups (the truth attribute, pseudo labels or k-means clusters).
"""

from __future__ import annotations

import torch

from fairser.debias import dro
from fairser.debias.base import register


def soft_tpr_gap(probs: torch.Tensor, targets: torch.Tensor, memberships: torch.Tensor,
                 threshold: float, tau) -> torch.Tensor:
    """(..., B, K) probabilities and targets, (..., B, G) memberships (0 on padding) -> (...,)
    mean over classes of the squared spread of soft TPRs across groups (0 where < 2 groups have
    a positive of the class)."""
    predicted = torch.sigmoid((probs - threshold) / tau)
    positive = (targets > threshold).to(probs.dtype)
    pos = torch.einsum("...bg,...bk->...gk", memberships, positive)
    hit = torch.einsum("...bg,...bk->...gk", memberships, positive * predicted)
    defined = pos > 0
    tpr = hit / pos.clamp_min(1e-12)
    hi = torch.where(defined, tpr, torch.full_like(tpr, -1.0)).amax(-2)
    lo = torch.where(defined, tpr, torch.full_like(tpr, 2.0)).amin(-2)
    gap = torch.where(defined.sum(-2) >= 2, hi - lo, torch.zeros_like(hi))
    return (gap ** 2).mean(-1)


class EOPP(dro.HardGroups):
    name = "eopp"
    family = "eopp"  # its own jobs: the set's other runs train as without it
    taxonomy = "regularisation"
    params = ("weight", "tau")


    def objective(self, batch, state, mask):
        logits = batch.head(batch.z[:, 0], 0)
        m = batch.per_clip("memberships") * batch.vf.unsqueeze(-1)
        tau = batch.hp("tau")
        tau = torch.where(tau > 0, tau, 1.0)  # runs of other methods (tau 0): no NaN gradients
        penalty = soft_tpr_gap(torch.softmax(logits, -1), batch.targets, m,
                               batch.engine.threshold, tau.unsqueeze(-1))
        return batch.mean(batch.cb(logits)) + batch.hp("weight").squeeze(1) * penalty


register(EOPP())
