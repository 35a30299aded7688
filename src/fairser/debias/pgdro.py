"""PGDRO: group DRO with probabilistic (soft) group memberships p_ig (Ghosal and Li 2023;
PROTOCOL section 4): L_g = sum_i p_ig l_i / sum_i p_ig, n_g = sum_i p_ig.

Params: eta. Needs soft memberships (the pseudo groups file's p_0, p_1).
"""

from __future__ import annotations

from fairser.errors import InputError
from fairser.debias import dro
from fairser.debias.base import Run, base_run, register


class PGDRO(dro.GroupDRO):
    name = "pgdro"
    taxonomy = "DRO"
    params = ("eta",)
    groups = "soft"

    def build(self, name, fold, seed, hparams, seed_index, first=None):
        if fold.soft is None:
            raise InputError(f"method pgdro needs soft memberships p_0, p_1 (fold {fold.fold})")
        return Run(**base_run(name, self.name, fold, seed, seed_index), memberships=fold.soft,
                   hparams=dict(hparams))


register(PGDRO())
