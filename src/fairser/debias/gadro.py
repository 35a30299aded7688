"""GADRO: group DRO with the group adjustment C / sqrt(n_g) (Sagawa et al. 2020 section 3.3,
paper eq. 3; PROTOCOL section 4).

Params: eta, adjustment (C). Otherwise as GDRO (dro.GroupDRO reads `adjustment`).
"""

from __future__ import annotations

from fairser.debias.base import register
from fairser.debias.gdro import GDRO


class GADRO(GDRO):
    name = "gadro"
    taxonomy = "DRO"
    params = ("eta", "adjustment")


register(GADRO())
