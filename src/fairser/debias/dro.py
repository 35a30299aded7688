"""Group distributionally robust optimisation: GDRO, GADRO and PGDRO (PROTOCOL section 4).

- GDRO, Sagawa et al. 2020 ("Distributionally robust neural networks for group shifts", ICLR,
  Algorithm 1): q starts uniform; each step L_g = mean loss of group g in the batch (0 if the
  group is absent); q_g <- q_g exp(eta L_g), renormalised; the loss is sum_g q_g L_g.
- GADRO (the same paper's group adjustment, section 3.3; paper eq. 3): C / sqrt(n_g) is added to
  L_g in the q update, n_g = training clips of group g, C = `methods.gadro.adjustment`.
- PGDRO, Ghosal and Li 2023 ("Distributionally robust optimization with probabilistic group",
  AAAI): soft memberships p_ig replace the one-hot ones, L_g = sum_i p_ig l_i / sum_i p_ig,
  n_g = sum_i p_ig.

Hard groups are one-hot memberships, so all three share these functions. Tensors may carry
leading batch-of-runs dimensions: losses (..., B), memberships (..., B, G), q (..., G).
"""

from __future__ import annotations

import numpy as np
import torch

from fairser.debias.base import Method, Run, base_run, needs_groups


def hard_memberships(groups, n_groups: int) -> np.ndarray:
    """(N, G) one-hot float64 memberships from integer group ids in [0, n_groups)."""
    groups = np.asarray(groups)
    out = np.zeros((len(groups), n_groups))
    out[np.arange(len(groups)), groups] = 1.0
    return out


def group_losses(losses: torch.Tensor, memberships: torch.Tensor) -> torch.Tensor:
    """L_g = sum_i m_ig l_i / sum_i m_ig over the batch, and 0 for a group with no mass in it.

    Padding rows of a batch must have zero membership.
    """
    mass = memberships.sum(-2)
    total = (memberships * losses.unsqueeze(-1)).sum(-2)
    return torch.where(mass > 0, total / mass.clamp_min(torch.finfo(mass.dtype).tiny), 0.0)


def adjusted_group_loss(group_loss: torch.Tensor, group_sizes: torch.Tensor,
                        adjustment) -> torch.Tensor:
    """L_g + C / sqrt(n_g): what GADRO's q update sees (C = 0 gives GDRO). Added to every group,
    present in the batch or not, as in Sagawa et al.'s code."""
    return group_loss + adjustment / group_sizes.sqrt()


def update_q(q: torch.Tensor, adjusted_loss: torch.Tensor, eta) -> torch.Tensor:
    """q_g exp(eta L_g) / sum_h q_h exp(eta L_h), with the losses detached.

    The largest eta * L_g is subtracted before exp: exact after renormalisation, and it keeps a
    large step from overflowing.
    """
    step = eta * adjusted_loss.detach()
    step = step - step.amax(-1, keepdim=True)
    q = q * torch.exp(step)
    return q / q.sum(-1, keepdim=True).clamp_min(torch.finfo(q.dtype).tiny)


def dro_loss(q: torch.Tensor, group_loss: torch.Tensor) -> torch.Tensor:
    """sum_g q_g L_g, the quantity GDRO minimises (q is a constant for the gradient)."""
    return (q.detach() * group_loss).sum(-1)


class HardGroups(Method):
    """A method whose runs carry the fold's hard groups as one-hot memberships (Run.memberships;
    GDRO, and issue 24's ADV, EOPP, MMD, MIXUP)."""

    groups = "hard"

    def build(self, name, fold, seed, hparams, seed_index, first=None):
        g = needs_groups(fold, self.name)
        return Run(**base_run(name, self.name, fold, seed, seed_index),
                   memberships=hard_memberships(g, g.max() + 1), hparams=dict(hparams))


class GroupDRO(Method):
    """The objective GDRO, GADRO, PGDRO and GEORGE share: per run, q (uniform over the groups
    the run has) updated from this batch's (adjusted) group losses, then sum_g q_g L_g. Group
    sizes n_g = sum of memberships over the training set; `adjustment` (C) is 0 unless the
    method reads it."""

    def init_state(self, engine, mask):
        sizes = engine.memberships_host.sum(1)                         # (R, G)
        # Groups a run does not have (fewer than the job's G) get size inf: no adjustment, and
        # their zero membership keeps L_g = 0; their q starts at 0 and stays there.
        q = torch.as_tensor(np.where(sizes > 0, 1.0, 0.0), dtype=torch.float32, device=engine.device)
        return {"q": q / q.sum(1, keepdim=True).clamp_min(1),
                "sizes": torch.as_tensor(np.where(sizes > 0, sizes, np.inf), dtype=torch.float32,
                                         device=engine.device)}

    def objective(self, batch, state, mask):
        gl = group_losses(batch.losses(), batch.per_clip("memberships") * batch.vf.unsqueeze(-1))
        adj = adjusted_group_loss(gl, state["sizes"], batch.hp("adjustment"))
        q = update_q(state["q"], adj, batch.hp("eta"))
        state["q"] = torch.where((mask & batch.valid.any(1)).unsqueeze(1), q, state["q"])
        return dro_loss(state["q"], gl)
