"""ERM: empirical risk minimisation, the undebiased baseline (PROTOCOL section 4).

Objective: the batch mean of the class-balanced soft-target loss l_i. No groups, no params.
"""

from __future__ import annotations

from fairser.debias.base import Method, register


class ERM(Method):
    name = "erm"
    taxonomy = "baseline"

    def objective(self, batch, state, mask):
        return batch.mean(batch.losses())


register(ERM())
