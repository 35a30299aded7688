"""GEORGE (Sohoni et al. 2020, "No subclass left behind: fine-grained robustness in
coarse-grained classification problems", NeurIPS; PROTOCOL section 4b). Group-free, two phases.

Phase 1 is ERM; its penultimate features of the training clips are clustered per class, and the
(class, cluster) pairs become the groups of Group DRO in phase 2 (dro.GroupDRO, step size `eta`,
no group adjustment), retrained from the same initialisation. It is k-means IDI with the task
model's features in place of a speaker encoder's.

Our adaptations, each stated:
- Multi-label: the clips of a class are those whose single strict-majority class (folds.csv
  `label`) it is; GEORGE assumes one class per clip.
- Phase 1 is our ERM run of the same fold and seed at its kept (lowest dev loss) epoch, shared
  with the ERM row (fairser.train.fit_methods). Its penultimate features are Linear(D, H)'s
  outputs on the pooled input (our head has no non-linearity, so they are its hidden layer).
- PCA to `components` dimensions (sklearn) replaces their UMAP (2 components), so no umap-learn
  dependency; k-means (sklearn, n_init = `n_init`, their 3) with the cluster count k in
  2..`max_k` that maximises the silhouette score, as their search. A class with fewer than 4
  clips stays one cluster (a silhouette needs 2 <= k <= n - 1 and k-means two points per cluster).
"""

from __future__ import annotations

import numpy as np

from fairser.errors import InputError
from fairser.debias import dro
from fairser.debias.base import BEST, Run, base_run, get, register, seed_entropy


def cluster_groups(hidden: np.ndarray, labels: np.ndarray, *, max_k: int, components: int,
                   n_init: int, seed: int) -> np.ndarray:
    """(n,) group ids 0..G-1: per class (labels), k-means clusters of PCA(hidden), k by the
    silhouette score; groups numbered class by class."""
    from threadpoolctl import threadpool_limits

    # Many small fits: OpenMP threads cost more than they give here (and on a shared machine).
    with threadpool_limits(1):
        return _cluster_groups(hidden, labels, max_k=max_k, components=components, n_init=n_init,
                               seed=seed)


def _cluster_groups(hidden, labels, *, max_k, components, n_init, seed):
    from sklearn.cluster import KMeans
    from sklearn.decomposition import PCA
    from sklearn.metrics import silhouette_score

    hidden, labels = np.asarray(hidden, dtype=np.float64), np.asarray(labels)
    out = np.zeros(len(labels), dtype=np.int64)
    next_id = 0
    for c in np.unique(labels):
        rows = np.flatnonzero(labels == c)
        x = hidden[rows]
        best = np.zeros(len(rows), dtype=np.int64)
        if len(rows) >= 4:
            x = PCA(n_components=min(components, x.shape[1], len(rows)), svd_solver="full").fit_transform(x)
            best_score = -np.inf
            for k in range(2, min(max_k, len(rows) - 1) + 1):
                km = KMeans(n_clusters=k, n_init=n_init, random_state=seed).fit(x)
                if len(np.unique(km.labels_)) < 2:
                    continue
                score = silhouette_score(x, km.labels_)
                if score > best_score:
                    best, best_score = km.labels_.astype(np.int64), score
        _, best = np.unique(best, return_inverse=True)
        out[rows] = next_id + best.reshape(-1)
        next_id += best.max() + 1
    return out


class GEORGE(dro.GroupDRO):
    name = "george"
    params = ("eta", "max_k", "components", "n_init")

    def phase1(self, fold, seed, hparams, seed_index):
        run = get("erm").build("george/phase1-erm", fold, seed, {}, seed_index)
        run.snapshots = (BEST,)
        return run

    def build(self, name, fold, seed, hparams, seed_index, first=None):
        if first is None:
            raise InputError(f"method george needs its phase-1 ERM run (fold {fold.fold})")
        km_seed = int(np.random.SeedSequence(seed_entropy(seed, fold.fold, seed_index, 0x4745))
                      .generate_state(1)[0] % 2**31)
        g = cluster_groups(first.snapshots[BEST]["hidden"], fold.labels,
                           max_k=int(hparams["max_k"]), components=int(hparams["components"]),
                           n_init=int(hparams["n_init"]), seed=km_seed)
        return Run(**base_run(name, self.name, fold, seed, seed_index),
                   memberships=dro.hard_memberships(g, g.max() + 1), hparams=dict(hparams))


register(GEORGE())
