"""Debias methods of PROTOCOL section 4 and its group-free peers, one module per method.

Each method module subclasses `base.Method` (its params, the groups it needs, how it builds its
runs, its per-batch objective) and registers itself in `base.REGISTRY`; `fairser.train` is the
batched engine that trains whatever is registered. A new method is one new module that calls
`register` (imported before training; tests/toy_method.py is an example).

- erm, rw, ds, gdro, gadro, pgdro, lff, disent: PROTOCOL section 4.
- jtt (Liu et al. 2021) and george (Sohoni et al. 2020): two-phase, group-free.
- issue 24's families: adv (gradient-reversal adversary), eopp (TPR-gap penalty) and mmd
  (representation-group MMD penalty), mixup (within-class cross-group feature mixup), dfr
  (group-balanced last-layer retraining) and afr (group-free loss-based last-layer reweighting),
  the last two sharing `lastlayer`.
- shared math: `weights` (RW / DS cell counts), `dro` (group DRO q-updates and the objective
  GDRO, GADRO, PGDRO and GEORGE share), `lff` (GCE, loss EMAs, relative difficulty; LfF itself).
"""

from fairser.debias import base
from fairser.debias import dro, erm, rw, ds, gdro, gadro, pgdro, lff, disent, jtt, george  # noqa: F401
from fairser.debias import adv, eopp, mmd, mixup, lastlayer, dfr, afr  # noqa: F401
from fairser.debias.base import REGISTRY, Method, register
from fairser.debias.dro import adjusted_group_loss, dro_loss, group_losses, hard_memberships, update_q
from fairser.debias.lff import classwise_max, ema_update, gce_loss, relative_difficulty
from fairser.debias.weights import ds_select, rw_weights

__all__ = [
    "base", "REGISTRY", "Method", "register",
    "adjusted_group_loss", "dro_loss", "group_losses", "hard_memberships", "update_q",
    "classwise_max", "ema_update", "gce_loss", "relative_difficulty",
    "ds_select", "rw_weights",
]
