"""ADV: adversarial removal of the group from the representation with a gradient-reversal layer
(Ganin and Lempitsky 2015, "Unsupervised domain adaptation by backpropagation", ICML; as a
fairness method, Beutel et al. 2017 "Data decisions and theoretical implications when
adversarially learning fair representations", and Edwards and Storkey 2016).

An adversary head Linear(H, G) reads the hidden codes (Linear(D, H)'s outputs) through a gradient
reversal layer and predicts each clip's group: the truth attribute, the pseudo label, or the
k-means cluster id (G = the run's clusters). The adversary minimises its cross-entropy; the
reversal passes -lambda_p times its gradient to the encoder, which so learns codes the group
cannot be read from. Schedule (theirs): lambda_p = lambda_max (2 / (1 + exp(-gamma p)) - 1), p =
the share of training done at the start of the epoch, (epoch - 1) / epochs. Loss: l_ERM + CE_adv.
Multi-label adaptation (ours): none in the adversary (it reads codes, not labels); the task loss
is the class-balanced soft-target one, and the reported model is the SER head alone. The model's
initialisation is ERM's (the adversary draws from the stream (seed, 4)). Params: lambda_max,
gamma. Hard groups.
"""

from __future__ import annotations

import math

import torch

from fairser.debias import dro
from fairser.debias.base import generator, linear_init, register


class GradientReversal(torch.autograd.Function):
    """Identity forward; backward multiplies the gradient by -scale (scale broadcast to x)."""

    @staticmethod
    def forward(ctx, x, scale):
        ctx.save_for_backward(scale)
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        (scale,) = ctx.saved_tensors
        return -scale * grad, None


def schedule(epoch: int, epochs: int, lambda_max, gamma):
    """lambda_p = lambda_max (2 / (1 + exp(-gamma p)) - 1), p = (epoch - 1) / epochs."""
    p = (epoch - 1) / epochs
    if torch.is_tensor(gamma):
        return lambda_max * (2.0 / (1.0 + torch.exp(-gamma * p)) - 1.0)
    return lambda_max * (2.0 / (1.0 + math.exp(-gamma * p)) - 1.0)


class Adversarial(dro.HardGroups):
    name = "adv"
    taxonomy = "adversarial"
    family = "adv"   # its own job: the adversary's parameters are not the other methods'
    params = ("lambda_max", "gamma")


    def extra_params(self, engine):
        G, H = engine.memberships.shape[2], engine.cfg.hidden
        heads = [linear_init(generator(r.seed, 4, 0), H, G) for r in engine.runs]
        return [torch.stack([w for w, _ in heads]), torch.stack([b for _, b in heads])]

    def init_state(self, engine, mask):
        # Groups a run lacks (fewer clusters than the job's G) are not among its adversary's answers.
        present = engine.memberships_host.sum(1) > 0                    # (R, G)
        return {"absent": torch.as_tensor(~present, device=engine.device).unsqueeze(1)}

    def objective(self, batch, state, mask):
        lam = schedule(batch.epoch, batch.engine.cfg.epochs, batch.hp("lambda_max"), batch.hp("gamma"))
        z = GradientReversal.apply(batch.z[:, 0], lam.unsqueeze(-1))
        w, b = batch.params[5], batch.params[6]
        logits = torch.baddbmm(b.unsqueeze(1), z, w).masked_fill(state["absent"], -1e9)
        m = batch.per_clip("memberships")
        ce = -(m * torch.log_softmax(logits, -1)).sum(-1)
        return batch.mean(batch.losses()) + batch.mean(ce)


register(Adversarial())
