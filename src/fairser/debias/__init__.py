"""Debias methods of SPEC section 4, one module per family.

- `weights`: reweighting (RW) and downsampling (DS) from class x group counts.
- `dro`: group DRO q-updates (GDRO, GADRO, PGDRO with soft memberships).
- `lff`: generalized cross-entropy, per-clip loss EMAs and the relative-difficulty weights of
  LfF and DisEnt.

Each module is plain functions of arrays; `fairser.train` wires them into the batched trainer.
"""

from fairser.debias.dro import adjusted_group_loss, dro_loss, group_losses, hard_memberships, update_q
from fairser.debias.lff import classwise_max, ema_update, gce_loss, relative_difficulty
from fairser.debias.weights import ds_select, rw_weights

__all__ = [
    "adjusted_group_loss", "dro_loss", "group_losses", "hard_memberships", "update_q",
    "classwise_max", "ema_update", "gce_loss", "relative_difficulty",
    "ds_select", "rw_weights",
]
