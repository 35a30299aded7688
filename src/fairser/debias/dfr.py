"""DFR: deep feature reweighting, last-layer retraining on group-balanced held-out data
(Kirichenko et al. 2023, "Last layer re-training is sufficient for robustness to spurious
correlations", ICLR; DFR^Val_Tr).

Theirs: an ERM model's features, a logistic-regression last layer fitted on a group-balanced
subset of the validation set. Ours (debias.lastlayer): the ERM run of the same fold and seed;
its head Linear(H, K) retrained, from ERM's head, with Adam for train.epochs epochs on a
group-balanced subset of half the dev split, the kept epoch chosen by the plain loss on a
group-balanced subset of the other half (their group-balanced model selection). Balanced as
their (class, attribute) groups: within each single majority class (folds.csv `label`), every
group downsampled without replacement to the class's smallest group (weights.ds_select, DS's
rule; streams (seed, fold, 7 or 8[, seed index])); without dev labels, the groups alone.
Multi-label adaptation (ours): the class of a cell is the majority class, and the head keeps
the class-balanced soft-target loss on the vote distributions. No L1 penalty (their lasso
strength is tuned on the same held-out data, which here also chooses the epoch).
Hard groups, which must also cover the dev clips (data/groups files do). Params: lr (the head's
Adam step size).
"""

from __future__ import annotations

import numpy as np

from fairser.errors import InputError
from fairser.debias import weights
from fairser.debias.base import register, seed_entropy
from fairser.debias.lastlayer import LastLayer


def balanced_subset(groups: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Sorted positions: every group id >= 0 downsampled to the smallest group's count (ids < 0,
    clips in no group of the training set, are left out)."""
    ids, counts = np.unique(groups[groups >= 0], return_counts=True)
    if len(ids) == 0:
        return np.zeros(0, dtype=np.int64)
    m = counts.min()
    keep = [rng.choice(np.flatnonzero(groups == g), size=m, replace=False) for g in ids]
    return np.sort(np.concatenate(keep))


class DFR(LastLayer):
    name = "dfr"
    family = "dfr"
    params = ("lr",)
    groups = "hard"

    def retrain_rows(self, fold, half, seed, seed_index, tag):
        if fold.dev_groups is None:
            raise InputError(f"method dfr needs groups for the dev clips (fold {fold.fold})")
        rng = np.random.default_rng(np.random.SeedSequence(seed_entropy(seed, fold.fold, seed_index, tag)))
        groups = fold.dev_groups[half]
        if fold.dev_labels is None:
            return half[balanced_subset(groups, rng)]
        known = np.flatnonzero(groups >= 0)
        return half[known[weights.ds_select(fold.dev_labels[half][known], groups[known], rng)]]

    def objective(self, batch, state, mask):
        return batch.mean(self.head_losses(batch))


register(DFR())
