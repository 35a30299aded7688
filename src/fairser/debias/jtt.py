"""JTT, Just Train Twice (Liu et al. 2021, "Just train twice: improving group robustness without
training group information", ICML; PROTOCOL section 4b). Group-free, two phases.

Phase 1 is ERM stopped after T = `identification_epochs` epochs; its error set is the training
clips it gets wrong. Phase 2 retrains from the same initialisation with the error set upweighted
by lambda_up = `lambda_up`.

Our adaptations, each stated:
- Multi-label error rule: a clip is an error when phase 1 does not predict its single
  strict-majority class (folds.csv `label`), i.e. gives that class probability <= 1/K (1/6 on
  CREMA-D), the threshold at which every model's probabilities are binarised (PROTOCOL section 5). JTT assumes one
  class per clip, like LfF.
- Phase 1 is our ERM run of the same fold and seed (same initialisation and shuffle order), read
  after epoch T: ERM trained for T epochs, as the paper's identification model, without training
  it again (fairser.train.fit_methods shares it).
- Upweighting by loss weights instead of upsampling: clip weights lambda_up (error) and 1 (other),
  rescaled to mean 1 so the loss scale matches ERM's; equal in expectation to the paper's
  upsampled epoch, which would make our epochs up to lambda_up times longer.
- Defaults: their Waterbirds choice lambda_up = 100 (grid {20, 50, 100}); T = 10 of our 50
  epochs, the fraction of training their Waterbirds T = 60 of 300 is. They tuned both with
  validation group labels, which a group-free method here does not have.
"""

from __future__ import annotations

import numpy as np

from fairser.errors import InputError
from fairser.errors import ParamsError
from fairser.debias.base import Method, Run, base_run, get, register


def error_set(probs: np.ndarray, labels: np.ndarray, threshold: float | None = None) -> np.ndarray:
    """(n,) bool: the clip's class `labels` is not predicted, probs[i, labels_i] <= threshold
    (the corpus's 1/K; None = 1/K of the K columns of `probs`)."""
    probs, labels = np.asarray(probs), np.asarray(labels)
    if threshold is None:
        threshold = 1.0 / probs.shape[1]
    return probs[np.arange(len(labels)), labels] <= threshold


def upweights(errors: np.ndarray, lambda_up: float) -> np.ndarray:
    """lambda_up on the error set, 1 elsewhere, divided by the mean (so the mean weight is 1)."""
    w = np.where(errors, float(lambda_up), 1.0)
    return w / w.mean()


class JTT(Method):
    name = "jtt"
    params = ("identification_epochs", "lambda_up")

    @staticmethod
    def _epochs(hparams) -> int:
        t = hparams["identification_epochs"]
        if int(t) != t or t < 1:
            raise ParamsError(f"params.yaml: 'methods.jtt.identification_epochs' is {t!r}; "
                              f"expected an integer >= 1")
        return int(t)

    def phase1(self, fold, seed, hparams, seed_index):
        run = get("erm").build("jtt/phase1-erm", fold, seed, {}, seed_index)
        run.snapshots = (self._epochs(hparams),)
        return run

    def build(self, name, fold, seed, hparams, seed_index, first=None):
        if first is None:
            raise InputError(f"method jtt needs its phase-1 ERM run (fold {fold.fold})")
        errors = error_set(first.snapshots[self._epochs(hparams)]["probs"], fold.labels, fold.threshold)
        return Run(**base_run(name, self.name, fold, seed, seed_index),
                   sample_weight=upweights(errors, hparams["lambda_up"]), hparams=dict(hparams))

    def objective(self, batch, state, mask):
        return batch.mean(batch.per_clip("sample_weight") * batch.losses())


register(JTT())
