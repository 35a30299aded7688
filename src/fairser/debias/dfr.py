"""DFR: deep feature reweighting, last-layer retraining on group-balanced held-out data
(Kirichenko et al. 2023, "Last layer re-training is sufficient for robustness to spurious
correlations", ICLR; DFR^Val_Tr).

Theirs: an ERM model's features, a logistic-regression last layer fitted on a group-balanced
subset of the validation set. Ours (debias.lastlayer): the ERM run of the same fold and seed;
its head Linear(H, K) retrained, from ERM's head, with Adam for train.epochs epochs on a
group-balanced subset of half the dev split (every group present downsampled, without
replacement, to the smallest group's count; stream (seed, fold, 7[, seed index])), the kept epoch
chosen by the plain loss on the other half. Multi-label adaptation (ours): the groups are
balanced alone, not (class, group) cells as in their Waterbirds groups, since a clip has several
classes; the head keeps the class-balanced soft-target loss. No L1 penalty (their lasso strength
is tuned on the same held-out data, which here also chooses the epoch). Hard groups, which must
also cover the dev clips (data/groups files do). No params.
"""

from __future__ import annotations

import numpy as np

from fairser.errors import InputError
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
    groups = "hard"

    def retrain_rows(self, fold, half, seed, seed_index):
        if fold.dev_groups is None:
            raise InputError(f"method dfr needs groups for the dev clips (fold {fold.fold})")
        rng = np.random.default_rng(np.random.SeedSequence(seed_entropy(seed, fold.fold, seed_index, 7)))
        return half[balanced_subset(fold.dev_groups[half], rng)]

    def objective(self, batch, state, mask):
        return batch.mean(self.head_losses(batch))


register(DFR())
