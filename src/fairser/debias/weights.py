"""Reweighting (RW) and downsampling (DS) over (class, group) cells (PROTOCOL section 4; paper
section 3.2 eq. 1, after Idrissi et al. 2022 "Simple data balancing achieves competitive
worst-group accuracy").

Both use each clip's single majority class c (folds.csv `label`) and its group g. A cell (c, g)
with no clip is simply absent: G_c counts only the non-empty groups of class c, so k-means with
k = 32 (many empty cells) needs no special case.
"""

from __future__ import annotations

import numpy as np


def _cells(labels, groups) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    labels = np.asarray(labels)
    groups = np.asarray(groups)
    if labels.shape != groups.shape or labels.ndim != 1:
        raise ValueError(f"labels {labels.shape} and groups {groups.shape} must be equal 1-d shapes")
    cells, cell_of, n_cg = np.unique(np.stack([labels, groups], 1), axis=0, return_inverse=True,
                                     return_counts=True)
    return labels, cells, cell_of.reshape(-1), n_cg


def rw_weights(labels, groups) -> np.ndarray:
    """Per-clip weight n_c / (G_c * n_{c,g}) for the clip's class c and group g.

    n_c: clips of class c; n_{c,g}: clips of class c in group g; G_c: non-empty groups of class c.
    Within class c every non-empty cell then carries total weight n_c / G_c, and the weights sum
    to the number of clips (mean 1), so the loss scale matches ERM's.
    """
    labels, cells, cell_of, n_cg = _cells(labels, groups)
    classes, n_c = np.unique(labels, return_counts=True)
    g_c = np.array([np.sum(cells[:, 0] == c) for c in classes])
    k = np.searchsorted(classes, labels)
    return (n_c[k] / (g_c[k] * n_cg[cell_of])).astype(np.float64)


def ds_select(labels, groups, rng: np.random.Generator) -> np.ndarray:
    """Sorted positions of a downsampled set: per class c, m_c = min over non-empty groups of
    n_{c,g}, and m_c clips drawn without replacement from each such group."""
    labels, cells, cell_of, n_cg = _cells(labels, groups)
    keep = []
    for c in np.unique(cells[:, 0]):
        in_class = np.flatnonzero(cells[:, 0] == c)
        m_c = n_cg[in_class].min()
        for cell in in_class:  # cells are sorted, so the draw order is fixed for a seed
            members = np.flatnonzero(cell_of == cell)
            keep.append(rng.choice(members, size=m_c, replace=False))
    return np.sort(np.concatenate(keep)) if keep else np.zeros(0, dtype=np.int64)
