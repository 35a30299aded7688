"""Time JTT's sweep and GEORGE's UMAP + overclustering on the surrogate-sized problem (not a test).

    .venv/bin/python benchmarks/groupfree_cost.py [--layers 1 --dim 80] [--seeds 3] [--epochs 50]

Trains ERM (JTT's and GEORGE's shared phase 1) and the two phase 2s of the baselines stage on the
synthetic cache of benchmarks/train_grid.py (5 folds of ~1,700 training clips), once with the
settings before issue 23 (JTT: one setting T = 10, lambda_up = 100; GEORGE: no overclustering)
and once with params.yaml's grid and overclustering, and prints wall and CPU seconds of each
and of GEORGE's clustering alone. The difference is what issue 23 adds to the default repro.
"""

from __future__ import annotations

import argparse
import copy
import time
from pathlib import Path

import numpy as np
import torch

import train_grid  # benchmarks/train_grid.py, beside this script
from fairser import config
from fairser.debias.george import cluster_groups
from fairser.train import FoldData, TrainConfig, default_workers, fit_methods


def clock(fn):
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - t0, time.process_time() - c0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layers", type=int, default=1)
    ap.add_argument("--dim", type=int, default=80)
    ap.add_argument("--epochs", type=int, default=50)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--workers", type=int, default=None)
    args = ap.parse_args()
    torch.set_num_threads(1)
    params = config.load(Path(__file__).resolve().parents[1] / "params.yaml")
    feats, p, _, folds = train_grid.synthetic(args.layers, args.dim)
    fds = [FoldData(fold=f, train=d["train"], dev=d["dev"], test=d["test"], labels=d["labels"],
                    threshold=1 / 6, votes=p[d["train"]]) for f, d in folds.items()]
    cfg = TrainConfig(epochs=args.epochs, seeds=args.seeds, hidden=params["train"]["hidden"])
    workers = args.workers or default_workers()
    new = {m: params["methods"][m] for m in ("jtt", "george")}
    old = copy.deepcopy(new)
    old["jtt"].update(identification_epochs=10, lambda_up=100, error_rule="prob")
    old["george"].update(overcluster_factor=1)
    # numba compiles UMAP once per process: pay it before timing
    _, dt, _ = clock(lambda: cluster_groups(np.random.default_rng(0).standard_normal((60, 8)),
                                            np.zeros(60, int), max_k=3, components=2, n_init=1, seed=0))
    print(f"UMAP first call (numba compilation, once per process): {dt:.1f} s wall")
    for label, hp in (("before (1 JTT setting, no overclustering)", old),
                      ("params.yaml (JTT grid, overclustering)", new)):
        res, dt, dc = clock(lambda: fit_methods(feats, p, ["erm", "jtt", "george"], fds, cfg,
                                                 seed=0, hparams=hp, label="b", workers=workers))
        erm = [r for r in res if r.run.method == "erm"]
        _, gt, gc = clock(lambda: [cluster_groups(
            r.snapshots[0]["hidden"], r.run.labels, max_k=hp["george"]["max_k"],
            components=hp["george"]["components"], n_init=hp["george"]["n_init"], seed=1,
            losses=-np.log(r.snapshots[0]["probs"][np.arange(len(r.run.labels)), r.run.labels]),
            overcluster_factor=hp["george"]["overcluster_factor"],
            min_size=hp["george"]["min_size"]) for r in erm])
        n2 = sum(max(1, len(r.sweep)) for r in res if r.run.method in ("jtt", "george"))
        print(f"{label}: ERM {len(erm)} runs + {n2} phase-2 runs: {dt:.1f} s wall, {dc:.1f} s cpu; "
              f"GEORGE clustering of {len(erm)} feature sets alone: {gt:.1f} s wall, {gc:.1f} s cpu",
              flush=True)
    print(f"L={args.layers} D={args.dim}, {args.seeds} seeds, {args.epochs} epochs, {workers} workers")


if __name__ == "__main__":
    main()
