"""DS: downsampling every (class, group) cell to the class's smallest one (PROTOCOL section 4;
Idrissi et al. 2022). Needs hard groups.

The run trains with ERM's objective on the subset weights.ds_select draws (seeded per fold and
seed index), so its epochs are shorter.
"""

from __future__ import annotations

import numpy as np

from fairser.debias import weights
from fairser.debias.base import Method, Run, base_run, needs_groups, register, seed_entropy


class DS(Method):
    name = "ds"
    taxonomy = "pre-processing"
    groups = "hard"

    def build(self, name, fold, seed, hparams, seed_index, first=None):
        rng = np.random.default_rng(np.random.SeedSequence(
            seed_entropy(seed, fold.fold, seed_index, 0x4453)))
        keep = weights.ds_select(fold.labels, needs_groups(fold, self.name), rng)
        return Run(**{**base_run(name, self.name, fold, seed, seed_index),
                      "train": fold.train[keep], "labels": fold.labels[keep]})

    def objective(self, batch, state, mask):
        return batch.mean(batch.losses())


register(DS())
