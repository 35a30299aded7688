"""What the last-layer methods (DFR, AFR) share: the trained ERM model of the same fold and seed
is their phase 1; its SER head alone is retrained on one half of the dev split (the held-out
data these methods need), the other half choosing the kept epoch. The encoder (layer weights and
Linear(D, H)) stays ERM's: the objective reads its codes detached, so Adam, with zero gradients
and zero moments, leaves it bit for bit unchanged; inputs are standardised as ERM's were (with
its training rows). A convex problem on fixed codes, fitted to convergence in their papers: the
head gets its own Adam step size `lr` (methods.<name>.lr), so each is its own family (job)."""

from __future__ import annotations

import numpy as np
import torch

from fairser.errors import InputError
from fairser.debias.base import Method, Run, base_run, get, seed_entropy


def dev_halves(n_dev: int, seed: int, fold: int, seed_index: int) -> tuple[np.ndarray, np.ndarray]:
    """Positions in the dev split: (retraining half, selection half), a seeded random split
    (stream (seed, fold, 6[, seed index])); the retraining half gets the extra clip."""
    order = np.random.default_rng(np.random.SeedSequence(seed_entropy(seed, fold, seed_index, 6))
                                  ).permutation(n_dev)
    cut = (n_dev + 1) // 2
    return np.sort(order[:cut]), np.sort(order[cut:])


class LastLayer(Method):
    """Phase 1: ERM with its kept parameters. Phase 2: the head retrained from ERM's parameters
    on `retrain_rows` of the fold (override), with per-clip weights `sample_weight` if any."""

    taxonomy = "last-layer"

    needs_labels = False

    def learning_rate(self, lr, hparams):
        return float(hparams["lr"])

    def phase1(self, fold, seed, hparams, seed_index):
        run = get("erm").build(f"{self.name}/phase1-erm", fold, seed, {}, seed_index)
        run.keep_params = True
        run.apart = "lastlayer"  # where the set has no ERM run, its jobs stay as without this one
        return run

    def retrain_rows(self, fold, half: np.ndarray, seed: int, seed_index: int, tag: int) -> np.ndarray:
        """Positions in fold.dev of the clips of `half` the head is retrained on (tag 7) or its
        epoch is chosen on (tag 8); all of them unless the method subsamples (stream tag)."""
        return half

    def build(self, name, fold, seed, hparams, seed_index, first=None):
        if first is None or first.params is None:
            raise InputError(f"method {self.name} needs its phase-1 ERM run (fold {fold.fold})")
        if len(fold.dev) < 2:
            raise InputError(f"method {self.name}: fold {fold.fold} has {len(fold.dev)} dev clip(s); "
                             f"it needs two to split")
        a, b = dev_halves(len(fold.dev), seed, fold.fold, seed_index)
        rows = self.retrain_rows(fold, a, seed, seed_index, 7)
        fields = base_run(name, self.name, fold, seed, seed_index)
        fields.update(train=fold.dev[rows], dev=fold.dev[self.retrain_rows(fold, b, seed, seed_index, 8)],
                      labels=None if fold.dev_labels is None else fold.dev_labels[rows])
        return Run(**fields, hparams=dict(hparams), init=[np.asarray(x) for x in first.params],
                   standardise=fold.train)

    def head_losses(self, batch) -> torch.Tensor:
        """(R, B) class-balanced losses of the head on the encoder's detached codes."""
        return batch.cb(batch.head(batch.z[:, 0].detach(), 0))


