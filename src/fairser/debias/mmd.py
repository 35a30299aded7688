"""MMD: a maximum mean discrepancy penalty between the representation and the group, added to
ERM's loss (Louizos et al. 2016, "The variational fair autoencoder", ICLR, section 2.3: an MMD
penalty between the latent codes of the sensitive groups; Gretton et al. 2012 for the estimator).

The representation is the hidden layer Linear(D, H) (the penultimate layer the head reads). Per
batch and group g, MMD^2 between g's codes and the whole batch's (one term per group, so it
covers k-means with many clusters, not only two groups) with a Gaussian kernel whose bandwidth is
the batch's mean squared pairwise distance (detached; a scale-free choice in place of their fixed
one): MMD^2_g = w_g'Kw_g - 2 w_g'Ku + u'Ku with w_g, u the normalised memberships and valid slots.
Penalty: sum_g (n_g / n) MMD^2_g over groups in the batch. Loss: l_ERM + weight * penalty.
Multi-label adaptation: none needed (the penalty does not read labels); the task loss is the
class-balanced soft-target one. Params: weight. Hard groups.
"""

from __future__ import annotations

import torch

from fairser.debias import dro
from fairser.debias.base import register


def mmd_penalty(z: torch.Tensor, memberships: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """z (..., B, H), memberships (..., B, G) (0 on padding), valid (..., B) float -> (...,)
    sum_g (n_g / n) MMD^2(codes of g, codes of the batch)."""
    sq = (z * z).sum(-1)
    d2 = (sq.unsqueeze(-1) + sq.unsqueeze(-2) - 2 * z @ z.transpose(-1, -2)).clamp_min(0)
    pair = valid.unsqueeze(-1) * valid.unsqueeze(-2)
    scale = ((d2 * pair).sum((-1, -2)) / pair.sum((-1, -2)).clamp_min(1)).detach().clamp_min(1e-12)
    k = torch.exp(-d2 / scale[..., None, None])
    n = valid.sum(-1, keepdim=True).clamp_min(1)
    u = valid / n                                                    # (..., B)
    mass = memberships.sum(-2)                                       # (..., G)
    w = memberships / mass.unsqueeze(-2).clamp_min(1e-12)            # (..., B, G)
    kw = k @ w                                                       # (..., B, G)
    ku = (k @ u.unsqueeze(-1)).squeeze(-1)                           # (..., B)
    mmd2 = (w * kw).sum(-2) - 2 * (w * ku.unsqueeze(-1)).sum(-2) + (u * ku).sum(-1, keepdim=True)
    return ((mass / n) * mmd2.clamp_min(0)).sum(-1)


class MMD(dro.HardGroups):
    name = "mmd"
    family = "mmd"  # its own jobs: the set's other runs train as without it
    taxonomy = "regularisation"
    params = ("weight",)


    def objective(self, batch, state, mask):
        m = batch.per_clip("memberships") * batch.vf.unsqueeze(-1)
        penalty = mmd_penalty(batch.z[:, 0], m, batch.vf)
        return batch.mean(batch.losses()) + batch.hp("weight").squeeze(1) * penalty


register(MMD())
