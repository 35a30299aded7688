"""JTT, Just Train Twice (Liu et al. 2021, "Just train twice: improving group robustness without
training group information", ICML; PROTOCOL section 4b). Group-free, two phases.

Phase 1 is ERM stopped after T = `identification_epochs` epochs; its error set is the training
clips it gets wrong. Phase 2 retrains from the same initialisation with the error set upweighted
by lambda_up = `lambda_up`.

The paper tunes T and lambda_up over a grid (Waterbirds: T in {40, 50, 60} of 300 epochs,
lambda_up in {20, 50, 100}) and keeps the setting with the best worst-group validation accuracy,
which needs group labels. Here `identification_epochs` and `lambda_up` may each be a list: every
(T, lambda_up) pair of the grid is trained in phase 2 (batched with the others, as one job) and
the one with the highest macro-F1 on the fold's dev clips (PROTOCOL section 5's F1, predictions and
labels binarised at 1/K) is kept for that (fold, seed). That rule reads no demographic label.

Our adaptations, each stated:
- Multi-label error rule (`error_rule`): JTT's "misclassified" needs one true class, so both
  rules use the clip's single strict-majority class (folds.csv `label`) y:
  `prob`: p(y) <= 1/K (1/6 on CREMA-D), the class is not predicted at the threshold at which
  every model's probabilities are binarised (PROTOCOL section 5); lenient: a clip can be an error
  while y is its top class.
  `argmax`: the top class of phase 1 is not a class of the clip (its vote share <= 1/K), the
  closest reading of JTT's argmax error for a multi-label clip.
- Phase 1 is our ERM run of the same fold and seed (same initialisation and shuffle order), read
  after epoch T: ERM trained for T epochs, as the paper's identification model, without training
  it again (fairser.train.fit_methods shares it).
- Upweighting by loss weights instead of upsampling: clip weights lambda_up (error) and 1 (other),
  rescaled to mean 1 so the loss scale matches ERM's; equal in expectation to the paper's
  upsampled epoch, which would make our epochs up to lambda_up times longer.
- Grid: lambda_up their {20, 50, 100}; T a few values around 10 of our 50 epochs, the share of
  training their Waterbirds T = 60 of 300 is (params.yaml methods.jtt).
"""

from __future__ import annotations

import itertools

import numpy as np

from fairser.errors import InputError
from fairser.errors import ParamsError
from fairser.debias.base import Method, Run, base_run, get, register

ERROR_RULES = ("prob", "argmax")


def error_set(probs: np.ndarray, labels: np.ndarray, threshold: float | None = None, *,
              rule: str = "prob", votes: np.ndarray | None = None) -> np.ndarray:
    """(n,) bool, phase 1's error set (module docstring). probs (n, K) phase-1 probabilities;
    labels (n,) the single majority class ids; threshold the corpus's 1/K (None = 1/K of the K
    columns of `probs`).
    rule `prob`: probs[i, labels_i] <= threshold.
    rule `argmax`: votes[i, argmax_k probs[i, k]] <= threshold, `votes` (n, K) being the clips'
    vote distributions; without votes, argmax_k probs[i, k] != labels_i."""
    probs, labels = np.asarray(probs), np.asarray(labels)
    if threshold is None:
        threshold = 1.0 / probs.shape[1]
    if rule == "prob":
        return probs[np.arange(len(labels)), labels] <= threshold
    if rule == "argmax":
        top = probs.argmax(1)
        if votes is None:
            return top != labels
        return np.asarray(votes)[np.arange(len(labels)), top] <= threshold
    raise ParamsError(f"params.yaml: 'methods.jtt.error_rule' is {rule!r}; expected one of "
                      f"{', '.join(ERROR_RULES)}")


def upweights(errors: np.ndarray, lambda_up: float) -> np.ndarray:
    """lambda_up on the error set, 1 elsewhere, divided by the mean (so the mean weight is 1)."""
    w = np.where(errors, float(lambda_up), 1.0)
    return w / w.mean()


def grid(hparams: dict) -> list[dict]:
    """The (T, lambda_up) settings of methods.jtt, T-major, each a dict of single values
    (error_rule kept). A single number is a grid of one value."""
    def values(key):
        v = hparams[key]
        return list(v) if isinstance(v, (list, tuple)) else [v]

    for t in values("identification_epochs"):
        if not isinstance(t, (int, float)) or isinstance(t, bool) or int(t) != t or t < 1:
            raise ParamsError(f"params.yaml: 'methods.jtt.identification_epochs' is {t!r}; "
                              f"expected an integer >= 1")
    for lam in values("lambda_up"):
        if not isinstance(lam, (int, float)) or isinstance(lam, bool) or not np.isfinite(lam) or lam < 1:
            raise ParamsError(f"params.yaml: 'methods.jtt.lambda_up' is {lam!r}; expected a number >= 1")
    rule = hparams.get("error_rule", "prob")
    if rule not in ERROR_RULES:
        raise ParamsError(f"params.yaml: 'methods.jtt.error_rule' is {rule!r}; expected one of "
                          f"{', '.join(ERROR_RULES)}")
    return [{"identification_epochs": int(t), "lambda_up": float(lam), "error_rule": rule}
            for t, lam in itertools.product(values("identification_epochs"), values("lambda_up"))]


def dev_f1(dev_probs: np.ndarray, dev_votes: np.ndarray, threshold: float) -> float:
    """Macro-F1 over classes of the dev predictions against the dev labels, both binarised at
    `threshold` (fairser.metrics, PROTOCOL section 5): the sweep's selection score."""
    from fairser.metrics import binarize, macro_f1

    return macro_f1(y_true=binarize(dev_votes, threshold), y_pred=binarize(dev_probs, threshold))


class JTT(Method):
    name = "jtt"
    taxonomy = "biased learner"
    # Checked by `grid` (each may be a list), not as single numbers.
    params = ()

    def configs(self, hparams):
        return grid(hparams)

    def phase1(self, fold, seed, hparams, seed_index):
        run = get("erm").build("jtt/phase1-erm", fold, seed, {}, seed_index)
        run.snapshots = tuple(sorted({c["identification_epochs"] for c in grid(hparams)}))
        return run

    def build(self, name, fold, seed, hparams, seed_index, first=None):
        if first is None:
            raise InputError(f"method jtt needs its phase-1 ERM run (fold {fold.fold})")
        (hp,) = grid(hparams)  # one setting per phase-2 run
        errors = error_set(first.snapshots[hp["identification_epochs"]]["probs"], fold.labels,
                           fold.threshold, rule=hp["error_rule"], votes=fold.votes)
        return Run(**base_run(name, self.name, fold, seed, seed_index),
                   sample_weight=upweights(errors, hp["lambda_up"]), hparams=hp,
                   built={"errors": errors})

    def select(self, results, p, threshold):
        """The setting with the highest dev macro-F1 (`dev_f1`; the first of the grid on ties)."""
        scores = [dev_f1(r.dev_probs, np.asarray(p)[r.run.dev], threshold) for r in results]
        return int(np.argmax(scores)), scores

    def objective(self, batch, state, mask):
        return batch.mean(batch.per_clip("sample_weight") * batch.losses())

    def logs(self, results, attributes) -> dict:
        """error_set.csv: per fold, seed and identification epoch T of the grid, the error set's
        size, its share of the training clips, and per true group of every attribute the share of
        the error set in that group (error_share) beside the group's share of the training clips
        (train_share): a group JTT singles out has error_share > train_share. Clips of a missing
        value are a group `(missing)`. `chosen` marks the T of the kept setting.
        sweep.csv: every phase-2 setting's dev macro-F1 and which one was kept."""
        import pandas as pd

        err_rows, sweep_rows = [], []
        for res in results:
            hp = res.run.hparams
            for other, score in zip(res.sweep, res.sweep_scores):
                o = other.run.hparams
                sweep_rows.append({"fold": res.run.fold, "seed": res.run.seed_index,
                                   "identification_epochs": o["identification_epochs"],
                                   "lambda_up": o["lambda_up"], "error_rule": o["error_rule"],
                                   "dev_f1": score, "chosen": int(other is res)})
            errors_at = {o.run.hparams["identification_epochs"]: o.run.built["errors"]
                         for o in res.sweep or [res]}
            for t, errors in sorted(errors_at.items()):
                base = {"fold": res.run.fold, "seed": res.run.seed_index, "identification_epochs": t,
                        "error_rule": hp["error_rule"], "chosen": int(t == hp["identification_epochs"]),
                        "errors": int(errors.sum()), "train": len(errors),
                        "error_rate": float(errors.mean())}
                for name, values in attributes.items():
                    v = np.array(["(missing)" if x is None else x
                                  for x in np.asarray(values, dtype=object)[res.run.train]], dtype=object)
                    for g in sorted(set(v), key=str):
                        in_g = v == g
                        err_rows.append({**base, "attribute": name, "group": g,
                                         "error_share": float(in_g[errors].mean()) if errors.any() else float("nan"),
                                         "train_share": float(in_g.mean())})
        cols = ["fold", "seed", "identification_epochs", "error_rule", "chosen", "errors", "train",
                "error_rate", "attribute", "group", "error_share", "train_share"]
        return {"error_set.csv": pd.DataFrame(err_rows, columns=cols),
                "sweep.csv": pd.DataFrame(sweep_rows, columns=["fold", "seed", "identification_epochs",
                                                               "lambda_up", "error_rule", "dev_f1",
                                                               "chosen"])}


register(JTT())
