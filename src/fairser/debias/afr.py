"""AFR: automatic feature reweighting, group-free last-layer retraining (Qiu et al. 2023, "Simple
and fast group robustness by automatic feature reweighting", ICML).

Theirs: an ERM model's last layer retrained on held-out data with per-example weights
w_i = exp(-gamma p_i) / Z, p_i the ERM model's probability of the true class, plus an L2 penalty
reg ||theta - theta_ERM||^2 towards the ERM last layer. Ours (debias.lastlayer): the ERM run of
the same fold and seed; its head retrained on half the dev split, the other half choosing the
kept epoch; no groups anywhere. Multi-label adaptation (ours): p_i = sum_k t_ik p_ik, the
probability the ERM model puts on the clip's vote distribution t_i (its true-class probability
when t_i is one-hot); weights normalised to mean 1 over the retraining clips, applied to the
class-balanced soft-target loss (which already balances classes, their second normalisation).
Params: gamma, reg, lr (the head's Adam step size).
"""

from __future__ import annotations

import torch

from fairser.debias.base import register
from fairser.debias.lastlayer import LastLayer


def afr_weights(probs: torch.Tensor, targets: torch.Tensor, valid: torch.Tensor, gamma) -> torch.Tensor:
    """(..., n, K) ERM probabilities and targets, (..., n) valid -> (..., n) weights
    exp(-gamma sum_k t_k p_k), mean 1 over the valid clips, 0 elsewhere."""
    w = torch.exp(-gamma * (targets * probs).sum(-1)) * valid
    return w * valid.sum(-1, keepdim=True) / w.sum(-1, keepdim=True).clamp_min(1e-30)


class AFR(LastLayer):
    name = "afr"
    family = "afr"
    params = ("gamma", "reg", "lr")

    def init_state(self, engine, mask):
        # At initialisation the runs hold ERM's parameters: score their retraining clips once.
        probs, _ = engine.train_outputs(engine.params)
        targets = engine.per_run(engine.targets[engine.train])
        valid = engine.per_run(torch.as_tensor(engine.train_mask, device=engine.device)).float()
        return {"w": afr_weights(probs, targets, valid, engine.hp("gamma")),
                "w2": engine.params[3].detach().clone(), "b2": engine.params[4].detach().clone()}

    def objective(self, batch, state, mask):
        w = state["w"].gather(1, batch.pos)
        l2 = ((batch.params[3] - state["w2"]) ** 2).sum((1, 2, 3)) + \
            ((batch.params[4] - state["b2"]) ** 2).sum((1, 2))
        return batch.mean(w * self.head_losses(batch)) + batch.hp("reg").squeeze(1) * l2


register(AFR())
