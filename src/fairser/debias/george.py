"""GEORGE (Sohoni et al. 2020, "No subclass left behind: fine-grained robustness in
coarse-grained classification problems", NeurIPS; PROTOCOL section 4b). Group-free, two phases.

Phase 1 is ERM; its penultimate features of the training clips are clustered per class, and the
(class, cluster) pairs become the groups of Group DRO in phase 2 (dro.GroupDRO, step size `eta`,
no group adjustment), retrained from the same initialisation. It is k-means IDI with the task
model's features in place of a speaker encoder's.

Their clustering step (section 4 and appendix of the paper; the authors' code), as run here:
1. Per class, UMAP of the features to `components` dimensions (theirs: 2), fitted on that
   class's clips only.
2. k-means (n_init = `n_init`, their 3) for every k in 2..`max_k`; k is the one with the highest
   mean over clusters of the clusters' mean silhouette (later k on ties, as theirs).
3. Overclustering: each of those clusters is split by k-means into `overcluster_factor` (their 5)
   sub-clusters. A sub-cluster is kept as a cluster of its own when (a) its clips' mean
   silhouette under the split clustering is above both their mean silhouette under the unsplit
   one and 0, (b) its clips' mean phase-1 loss is at least that of the cluster it came from, and
   (c) it holds at least max(`min_size`, 0.5% of the class) clips (their 25 and 0.5%).
   Clips of sub-clusters not kept stay together in what is left of their cluster.

Our adaptations, each stated:
- Multi-label: the clips of a class are those whose single strict-majority class (folds.csv
  `label`) it is; GEORGE assumes one class per clip. The phase-1 loss of a clip in step 3 is the
  cross-entropy -log p(label) of that class under the phase-1 model.
- Phase 1 is our ERM run of the same fold and seed at its kept (lowest dev loss) epoch, shared
  with the ERM row (fairser.train.fit_methods). Its penultimate features are Linear(D, H)'s
  outputs on the pooled input (our head has no non-linearity, so they are its hidden layer).
- Their step 3 also requires 25 dev clips per sub-cluster (they cluster dev features too); we
  cluster training clips only, so that condition is dropped.
- UMAP runs with a fixed random_state and n_jobs = 1 (umap-learn's deterministic mode) and
  n_neighbors = min(15, n - 1); a class with fewer than MIN_CLASS_CLIPS clips, or whose clips
  all have the same features, stays one cluster (UMAP's spectral start and a silhouette need a
  few distinct clips per cluster).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from fairser.errors import InputError
from fairser.debias import dro
from fairser.metrics import majority_share, nmi, purity
from fairser.debias.base import BEST, Run, base_run, get, register, seed_entropy

MIN_CLASS_CLIPS = 10
SIZE_SHARE = 0.005  # (c) above: their sz_threshold_pct


def cluster_groups(hidden: np.ndarray, labels: np.ndarray, *, max_k: int, components: int,
                   n_init: int, seed: int, losses: np.ndarray | None = None,
                   overcluster_factor: int = 1, min_size: int = 25) -> np.ndarray:
    """(n,) group ids 0..G-1: per class (labels), steps 1-3 of the module docstring on
    `hidden` (n, H); groups numbered class by class. overcluster_factor 1 skips step 3 (then
    `losses` (n,) may be None)."""
    from threadpoolctl import threadpool_limits

    hidden, labels = np.asarray(hidden, dtype=np.float64), np.asarray(labels)
    if overcluster_factor > 1 and (losses is None or len(losses) != len(labels)):
        raise InputError("GEORGE's overclustering needs one phase-1 loss per clip")
    # Many small fits: OpenMP threads cost more than they give here (and on a shared machine).
    with threadpool_limits(1):
        out = np.zeros(len(labels), dtype=np.int64)
        next_id = 0
        for c in np.unique(labels):
            rows = np.flatnonzero(labels == c)
            local = np.zeros(len(rows), dtype=np.int64)
            # identical features have no structure (UMAP would spread them at random)
            if len(rows) >= MIN_CLASS_CLIPS and np.ptp(hidden[rows], axis=0).max() > 0:
                x = reduce(hidden[rows], components=components, seed=seed)
                local = best_k_clusters(x, max_k=max_k, n_init=n_init, seed=seed)
                if overcluster_factor > 1:
                    local = overcluster(x, local, np.asarray(losses, dtype=np.float64)[rows],
                                        factor=overcluster_factor, n_init=n_init, seed=seed,
                                        min_size=max(min_size, SIZE_SHARE * len(rows)))
            _, local = np.unique(local, return_inverse=True)
            out[rows] = next_id + local.reshape(-1)
            next_id += local.max() + 1
    return out


def reduce(x: np.ndarray, *, components: int, seed: int) -> np.ndarray:
    """UMAP of one class's features to `components` dimensions (step 1), deterministic for a seed
    on CPU (random_state fixed, n_jobs 1)."""
    import warnings

    from umap import UMAP

    with warnings.catch_warnings():  # "n_jobs overridden by random_state": what we ask for
        warnings.simplefilter("ignore", UserWarning)
        return UMAP(n_components=components, n_neighbors=min(15, len(x) - 1), random_state=seed,
                    n_jobs=1).fit_transform(x).astype(np.float64)


def _mean_cluster_silhouette(x: np.ndarray, labels: np.ndarray) -> float:
    from sklearn.metrics import silhouette_samples

    s = silhouette_samples(x, labels)
    return float(np.mean([s[labels == k].mean() for k in np.unique(labels)]))


def best_k_clusters(x: np.ndarray, *, max_k: int, n_init: int, seed: int) -> np.ndarray:
    """k-means with k in 2..max_k (at most n - 1) by the mean per-cluster silhouette (step 2)."""
    from sklearn.cluster import KMeans

    best, best_score = np.zeros(len(x), dtype=np.int64), -np.inf
    for k in range(2, min(max_k, len(x) - 1) + 1):
        found = KMeans(n_clusters=k, n_init=n_init, random_state=seed).fit_predict(x)
        if len(np.unique(found)) < 2:
            continue
        score = _mean_cluster_silhouette(x, found)
        if score >= best_score:
            best, best_score = found.astype(np.int64), score
    return best


def overcluster(x: np.ndarray, clusters: np.ndarray, losses: np.ndarray, *, factor: int,
                n_init: int, seed: int, min_size: float) -> np.ndarray:
    """Step 3: split each cluster into `factor` k-means sub-clusters and keep those that pass
    (a)-(c) of the module docstring; returns new cluster ids (not necessarily consecutive)."""
    from sklearn.cluster import KMeans
    from sklearn.metrics import silhouette_samples

    clusters = np.asarray(clusters, dtype=np.int64)
    if len(np.unique(clusters)) < 2:
        return clusters
    split = np.zeros(len(x), dtype=np.int64)
    for c in np.unique(clusters):
        rows = np.flatnonzero(clusters == c)
        k = min(factor, len(rows))
        sub = (KMeans(n_clusters=k, n_init=n_init, random_state=seed).fit_predict(x[rows])
               if k > 1 else np.zeros(len(rows), dtype=np.int64))
        split[rows] = c * factor + sub
    if len(np.unique(split)) < 2 or len(np.unique(split)) == len(x):
        return clusters
    before, after = silhouette_samples(x, clusters), silhouette_samples(x, split)
    out = clusters.copy()
    next_id = clusters.max() + 1
    for s in np.unique(split):
        m = split == s
        parent = clusters == s // factor
        if (after[m].mean() > max(before[m].mean(), 0.0)
                and losses[m].mean() >= losses[parent].mean()
                and m.sum() >= min_size and m.sum() < parent.sum()):
            out[m] = next_id
            next_id += 1
    return out


class GEORGE(dro.GroupDRO):
    name = "george"
    taxonomy = "biased learner"
    params = ("eta", "max_k", "components", "n_init", "overcluster_factor", "min_size")

    def phase1(self, fold, seed, hparams, seed_index):
        run = get("erm").build("george/phase1-erm", fold, seed, {}, seed_index)
        run.snapshots = (BEST,)
        return run

    def build(self, name, fold, seed, hparams, seed_index, first=None):
        if first is None:
            raise InputError(f"method george needs its phase-1 ERM run (fold {fold.fold})")
        km_seed = int(np.random.SeedSequence(seed_entropy(seed, fold.fold, seed_index, 0x4745))
                      .generate_state(1)[0] % 2**31)
        snap = first.snapshots[BEST]
        p_label = snap["probs"][np.arange(len(fold.labels)), fold.labels]
        g = cluster_groups(snap["hidden"], fold.labels,
                           max_k=int(hparams["max_k"]), components=int(hparams["components"]),
                           n_init=int(hparams["n_init"]), seed=km_seed,
                           losses=-np.log(np.clip(p_label, 1e-12, 1.0)),
                           overcluster_factor=int(hparams["overcluster_factor"]),
                           min_size=int(hparams["min_size"]))
        return Run(**base_run(name, self.name, fold, seed, seed_index),
                   memberships=dro.hard_memberships(g, g.max() + 1), hparams=dict(hparams))

    def logs(self, results, attributes) -> dict:
        """clusters.csv: per fold and seed, the number of groups and their purity, majority
        share and NMI against each true attribute of the training clips (fairser.metrics'
        definitions, as data/groups/quality.csv for k-means IDI); clips whose value is missing
        are left out. `attributes`: {name: (N,) group name or None per feature row}."""
        rows = []
        for res in results:
            g = res.run.memberships.argmax(1)
            for name, values in attributes.items():
                v = np.asarray(values, dtype=object)[res.run.train]
                known = np.array([x is not None for x in v], dtype=bool)
                if not known.any():
                    continue
                rows.append({"fold": res.run.fold, "seed": res.run.seed_index, "attribute": name,
                             "groups": int(g.max() + 1),
                             "purity": purity(clusters=g[known], labels=v[known]),
                             "majority_share": majority_share(v[known]),
                             "nmi": nmi(clusters=g[known], labels=v[known])})
        return {"clusters.csv": pd.DataFrame(rows, columns=["fold", "seed", "attribute", "groups",
                                                            "purity", "majority_share", "nmi"])}


register(GEORGE())
