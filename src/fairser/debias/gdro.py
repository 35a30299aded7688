"""GDRO: group DRO over hard groups (Sagawa et al. 2020, Algorithm 1; PROTOCOL section 4).

Params: eta (q step size). Memberships are the one-hot groups; the objective is dro.GroupDRO's.
"""

from __future__ import annotations

from fairser.debias import dro
from fairser.debias.base import Run, base_run, needs_groups, register


class GDRO(dro.GroupDRO):
    name = "gdro"
    params = ("eta",)
    groups = "hard"

    def build(self, name, fold, seed, hparams, seed_index, first=None):
        g = needs_groups(fold, self.name)
        return Run(**base_run(name, self.name, fold, seed, seed_index),
                   memberships=dro.hard_memberships(g, g.max() + 1), hparams=dict(hparams))


register(GDRO())
