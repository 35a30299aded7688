"""GDRO: group DRO over hard groups (Sagawa et al. 2020, Algorithm 1; PROTOCOL section 4).

Params: eta (q step size). Memberships are the one-hot groups; the objective is dro.GroupDRO's.
"""

from __future__ import annotations

from fairser.debias import dro
from fairser.debias.base import register


class GDRO(dro.HardGroups, dro.GroupDRO):
    name = "gdro"
    taxonomy = "DRO"
    params = ("eta",)


register(GDRO())
