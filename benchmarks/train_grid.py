"""Time the whole training grid on a synthetic cache of CREMA-D size (not a test).

    .venv/bin/python benchmarks/train_grid.py [--layers 13 --dim 768] [--workers 2] [--epochs 50]
        [--seeds 3]

The offline fbank shape is --layers 1 --dim 80.
The grid is what `dvc repro` trains: baselines (erm, random, lff, disent, jtt, george), gender and pseudo
(rw, ds, gdro, gadro; pseudo adds pgdro), and kmeans k in {2, 4, 8, 16, 32} (rw, ds, gdro, gadro):
35 method x supervision configurations x 5 folds x `--seeds` training seeds (params.yaml
train.seeds; the seeds are more groups of the same batched jobs). Each set is one `fit` call, as each is one
stage. Shapes: 7,442 clips, 5 folds of ~1,700 biased training clips, ~450 dev and ~1,490 test.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from fairser.train import FoldData, SETS, TrainConfig, default_workers, fit_methods

N_CLIPS, N_TRAIN, N_DEV = 7442, 1700, 450
HP = {"gdro": {"eta": 0.01}, "gadro": {"eta": 0.01, "adjustment": 4.0}, "pgdro": {"eta": 0.01},
      "lff": {"gce_q": 0.7, "ema_alpha": 0.7},
      "disent": {"gce_q": 0.7, "ema_alpha": 0.7, "lambda_dis": 1.0, "lambda_swap_b": 1.0,
                 "lambda_swap": 1.0, "swap_after_epoch": 10},
      # params.yaml's (issue 23): JTT's grid, GEORGE's overclustering
      "jtt": {"identification_epochs": [5, 10], "lambda_up": [20, 50, 100], "error_rule": "argmax"},
      "george": {"eta": 0.01, "max_k": 10, "components": 2, "n_init": 3, "overcluster_factor": 5,
                 "min_size": 25}}


def synthetic(layers: int, dim: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    feats = rng.standard_normal((N_CLIPS, layers, dim), dtype=np.float32).astype(np.float16)
    p = rng.dirichlet(np.ones(6) * 0.5, size=N_CLIPS) * 0.94 + 0.01
    gender = rng.integers(0, 2, N_CLIPS)
    order = rng.permutation(N_CLIPS)
    folds = {}
    for fold in range(1, 6):
        test = np.sort(order[(fold - 1) * N_CLIPS // 5: fold * N_CLIPS // 5])
        rest = np.setdiff1d(order, test)
        pick = rng.permutation(rest)
        train, dev = np.sort(pick[:N_TRAIN]), np.sort(pick[N_TRAIN:N_TRAIN + N_DEV])
        folds[fold] = dict(train=train, dev=dev, test=test, labels=p[train].argmax(1))
    return feats, p, gender, folds


def grid_sets():
    yield "baselines", None
    yield "gender", None
    yield "pseudo", None
    for k in (2, 4, 8, 16, 32):
        yield "kmeans", k


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layers", type=int, default=13)
    ap.add_argument("--dim", type=int, default=768)
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads (stage: 1)")
    ap.add_argument("--workers", type=int, default=None, help="jobs at once (default: cores)")
    ap.add_argument("--epochs", type=int, default=50)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--seeds", type=int, default=3, help="training seeds per method and fold")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    feats, p, gender, folds = synthetic(args.layers, args.dim)
    cfg = TrainConfig(epochs=args.epochs, device=args.device, seeds=args.seeds)
    HP["jtt"]["identification_epochs"] = sorted({min(t, args.epochs) for t in (5, 10)})
    rng = np.random.default_rng(1)
    workers = args.workers or default_workers()
    total, cpu, n_runs = 0.0, 0.0, 0
    for set_name, k in grid_sets():
        fds = []
        for fold, f in folds.items():
            tr = f["train"]
            if set_name == "kmeans":
                groups = rng.integers(0, k, len(tr))
            else:
                groups = gender[tr]
            _, groups = np.unique(groups, return_inverse=True)
            soft = np.where(gender[tr][:, None] == np.arange(2), 0.9, 0.1)  # PGDRO memberships
            fds.append(FoldData(fold=fold, train=tr, dev=f["dev"], test=f["test"],
                                labels=f["labels"], groups=groups, soft=soft, votes=p[tr]))
        methods = [m for m in SETS[set_name] if m != "random"]
        t0, c0 = time.perf_counter(), time.process_time()
        # As the stage: one-phase runs and JTT/GEORGE's phase 1 (the ERM runs) batched, then
        # every phase 2 batched.
        runs = fit_methods(feats, p, methods, fds, cfg, seed=0, hparams=HP, label=set_name,
                           workers=workers)
        dt, dc = time.perf_counter() - t0, time.process_time() - c0
        total += dt
        cpu += dc
        n_runs += len(runs)
        label = set_name if k is None else f"kmeans_k{k}"
        print(f"{label:12s} {len(runs):3d} runs {dt:7.1f} s wall {dc:7.1f} s cpu", flush=True)
    # CPU time matters on a shared machine: wall time there includes waiting for the cores.
    print(f"grid: {n_runs} trained runs (+{5 * args.seeds} random), L={args.layers} D={args.dim}, "
          f"{args.seeds} seeds, {args.epochs} epochs, {workers} workers x {args.threads} threads: {total:.1f} s wall, "
          f"{cpu:.1f} s cpu")


if __name__ == "__main__":
    main()
