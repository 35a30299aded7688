"""RW: reweighting over (class, group) cells (PROTOCOL section 4; paper section 3.2 eq. 1, after
Idrissi et al. 2022). Needs hard groups.

Each training clip gets weight n_c / (G_c n_{c,g}) (weights.rw_weights, mean 1); the objective
is the batch mean of w_i l_i.
"""

from __future__ import annotations

from fairser.debias import weights
from fairser.debias.base import Method, Run, base_run, needs_groups, register


class RW(Method):
    name = "rw"
    taxonomy = "pre-processing"
    groups = "hard"

    def build(self, name, fold, seed, hparams, seed_index, first=None):
        w = weights.rw_weights(fold.labels, needs_groups(fold, self.name))
        return Run(**base_run(name, self.name, fold, seed, seed_index), sample_weight=w)

    def objective(self, batch, state, mask):
        return batch.mean(batch.per_clip("sample_weight") * batch.losses())


register(RW())
