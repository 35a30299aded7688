"""EOPP: a differentiable equal-opportunity (TPR gap) penalty across groups, added to ERM's loss.

Follows the relaxation of the fairness constraint into a penalty of Zafar et al. 2017 ("Fairness
beyond disparate treatment & disparate impact", WWW) and Donini et al. 2018 ("Empirical risk
minimization under fairness constraints", NeurIPS: equal opportunity as a constraint on the
positive class's rates), in the per-batch, soft-rate form of Padala and Gujar 2020 ("FNNC").

Multi-label adaptation (ours): every class k is its own binary task, as the TPR gap metric of
fairser.metrics reads it. A clip is a positive of k if its target t_k > 1/K (the metric's
threshold), and the model "predicts" k with the smooth indicator sigmoid((p_k - 1/K) / tau) of
its softmax probability p_k passing the same 1/K threshold. Per batch, the soft TPR t_gk of group
g on class k is the mean indicator over g's positives of k. The penalty is the mean over classes
of the squared TPR differences between groups, averaged over pairs of groups weighted by their
positives: sum_{g<h} w_g w_h (t_g - t_h)^2 / sum_{g<h} w_g w_h, w_g = g's share of the batch's
positives of k (0 where fewer than two groups have one). For two groups that is exactly the
squared TPR gap, (t_0 - t_1)^2, the metric's per-class term squared so its gradient stays finite
at 0. For many small groups (k-means clusters) it is not their max-min spread: with 16 clusters
in a batch of 32, most clusters hold one or two positives of a class, their max-min spread is near
1 whatever the model does, and a max-min penalty (this method's first form) drove the model to
predict every class alike (F1 0.26 on the surrogate). Loss: l_ERM + weight * penalty.
Params: weight, tau. Hard groups (the truth attribute, pseudo labels or k-means clusters).
"""

from __future__ import annotations

import torch

from fairser.debias import dro
from fairser.debias.base import register


def soft_tpr_gap(probs: torch.Tensor, targets: torch.Tensor, memberships: torch.Tensor,
                 threshold: float, tau) -> torch.Tensor:
    """(..., B, K) probabilities and targets, (..., B, G) memberships (0 on padding) -> (...,)
    mean over classes of the positive-weighted mean over pairs of groups of their squared soft TPR
    difference (the squared TPR gap for two groups; 0 where < 2 groups have a positive of the
    class). Uses sum_{g<h} w_g w_h (t_g - t_h)^2 = Var_w(t) and sum_{g<h} w_g w_h = (1 - sum w^2) / 2
    for weights w summing to 1."""
    predicted = torch.sigmoid((probs - threshold) / tau)
    positive = (targets > threshold).to(probs.dtype)
    pos = torch.einsum("...bg,...bk->...gk", memberships, positive)
    hit = torch.einsum("...bg,...bk->...gk", memberships, positive * predicted)
    tpr = hit / pos.clamp_min(1e-12)
    w = pos / pos.sum(-2, keepdim=True).clamp_min(1e-12)                    # (..., G, K)
    mean = (w * tpr).sum(-2, keepdim=True)
    var = (w * (tpr - mean) ** 2).sum(-2)                                   # (..., K)
    pairs = (1 - (w * w).sum(-2)) / 2
    two = (pos > 0).sum(-2) >= 2
    return torch.where(two, var / pairs.clamp_min(1e-12), torch.zeros_like(var)).mean(-1)


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
