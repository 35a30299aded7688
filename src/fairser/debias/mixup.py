"""MIXUP: group-aware feature-space mixup, within a class across groups, after LISA (Yao et al.
2022, "Improving out-of-distribution robustness via selective augmentation", ICML: intra-label
mixup of examples from different domains, so the label no longer follows the domain).

Each training clip i of a batch is mixed with a partner j drawn uniformly among the batch's clips
of the same single majority class (folds.csv `label`) and another group: the hidden codes
(Linear(D, H)'s outputs; feature space, as Verma et al.'s manifold mixup, instead of LISA's input
space) become lam z_i + (1 - lam) z_j and the targets lam t_i + (1 - lam) t_j, lam ~ Beta(alpha,
alpha) per clip; a clip without such a partner in the batch stays unmixed. Loss: the batch mean
of the class-balanced loss of the mixed codes. Multi-label adaptation (ours): "same label" is the
same majority class, and the targets mixed are the soft vote distributions, so a pair of one
class still mixes its secondary emotions. Params: alpha. Hard groups. Partners and lam come from
the run's own stream (seed, 5): the same in any batch of runs.
"""

from __future__ import annotations

import numpy as np
import torch

from fairser.debias import dro
from fairser.debias.base import register


def partners(labels: torch.Tensor, groups: torch.Tensor, valid: torch.Tensor,
             u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(B,) labels, groups, valid, and (B, B) uniform draws -> (partner index (B,), has one (B,)):
    j = argmax of u over slots of the same label, another group, both valid."""
    ok = ((labels[:, None] == labels[None, :]) & (groups[:, None] != groups[None, :])
          & valid[:, None] & valid[None, :])
    j = torch.where(ok, u, torch.full_like(u, -1.0)).argmax(-1)
    return j, ok.any(-1)


class Mixup(dro.HardGroups):
    name = "mixup"
    family = "mixup"  # its own jobs: the set's other runs train as without it
    taxonomy = "augmentation"
    params = ("alpha",)


    def init_state(self, engine, mask):
        on = np.flatnonzero(mask.cpu().numpy())
        return {"rngs": {int(r): np.random.default_rng(np.random.SeedSequence([engine.runs[r].seed, 5]))
                         for r in on}}

    def objective(self, batch, state, mask):
        z, t = batch.z[:, 0], batch.targets
        R, B, _ = z.shape
        labels, valid = batch.labels(), batch.valid
        groups = batch.per_clip("memberships").argmax(-1)
        idx = torch.arange(B, device=z.device).expand(R, B).clone()
        lam = torch.ones(R, B, device=z.device)
        for r, rng in state["rngs"].items():
            if batch.engine.n_valid_host[r // batch.engine.M] == 0:
                continue  # this run's epoch is over: its stream does not depend on the job
            u = torch.as_tensor(rng.random((B, B)), dtype=z.dtype, device=z.device)
            draw = torch.as_tensor(rng.beta(batch.engine.runs[r].hparams["alpha"],
                                            batch.engine.runs[r].hparams["alpha"], B),
                                   dtype=z.dtype, device=z.device)
            j, has = partners(labels[r], groups[r], valid[r], u)
            idx[r] = torch.where(has, j, idx[r])
            lam[r] = torch.where(has, draw, lam[r])
        z_j = z.gather(1, idx.unsqueeze(-1).expand_as(z))
        t_j = t.gather(1, idx.unsqueeze(-1).expand_as(t))
        lz = lam.unsqueeze(-1)
        logits = batch.head(lz * z + (1 - lz) * z_j, 0)
        return batch.mean(batch.cb(logits, lz * t + (1 - lz) * t_j))


register(Mixup())
