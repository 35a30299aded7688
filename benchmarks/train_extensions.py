"""Time what issue 24's methods add to training (not a test).

    .venv/bin/python benchmarks/train_extensions.py [--layers 1 --dim 80] [--seeds 3] [--epochs 50]
        [--workers 2] [--sets baselines gender] [--max-groups 8]

On the surrogate-sized problem of benchmarks/train_grid.py (the offline fbank cache: --layers 1
--dim 80; CREMA-D's 7,442 clips, 5 folds), each set is trained as its stage trains it, first with
the paper's methods only (train.extensions: []), then with the new methods added (all at once,
and with --each also one at a time), and prints the CPU and wall seconds they add (CPU time is
the figure to read on a shared machine). The baselines set's base is its ERM alone: AFR's phase 1
is that ERM run, so what AFR adds is its phase 2, the same as against the whole set. A set's
extra time counts once per stage that trains it: the group methods train in three (gender,
pseudo, and kmeans_extensions at idi.k), so their cost in `dvc repro` is about 3 x their gender
figure, and AFR's is its baselines figure. --max-groups sets fairser.train.MAX_GROUPS_PER_JOB
(training sets per job) for the whole run, to compare job sizes.
"""

from __future__ import annotations

import argparse
import time

import torch

from train_grid import HP, synthetic

from fairser import train
from fairser.method_sets import EXTENSION_GROUP_METHODS, SETS
from fairser.train import FoldData, TrainConfig, default_workers, fit_methods

HP = {**HP, "adv": {"lambda_max": 1.0, "gamma": 10}, "eopp": {"weight": 1.0, "tau": 0.05},
      "mmd": {"weight": 1.0}, "mixup": {"alpha": 2.0}, "dfr": {"lr": 1e-2},
      "afr": {"gamma": 4.0, "reg": 0.0, "lr": 1e-2}}


def timed(feats, p, methods, fds, cfg, workers) -> tuple[float, float]:
    t0, c0 = time.perf_counter(), time.process_time()
    fit_methods(feats, p, methods, fds, cfg, seed=0, hparams=HP, label="bench", workers=workers)
    return time.perf_counter() - t0, time.process_time() - c0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layers", type=int, default=1)
    ap.add_argument("--dim", type=int, default=80)
    ap.add_argument("--epochs", type=int, default=50)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--sets", nargs="+", default=["gender", "baselines"])
    ap.add_argument("--each", action="store_true", help="also time each new method alone")
    ap.add_argument("--max-groups", type=int, default=None,
                    help="training sets per job (default: fairser.train.MAX_GROUPS_PER_JOB)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    if args.max_groups is not None:
        train.MAX_GROUPS_PER_JOB = args.max_groups
    feats, p, gender, folds = synthetic(args.layers, args.dim)
    cfg = TrainConfig(epochs=args.epochs, seeds=args.seeds)
    workers = args.workers or default_workers()
    fds = []
    for fold, f in folds.items():
        dev_labels = p[f["dev"]].argmax(1)
        fds.append(FoldData(fold=fold, train=f["train"], dev=f["dev"], test=f["test"],
                            labels=f["labels"], groups=gender[f["train"]],
                            dev_groups=gender[f["dev"]], dev_labels=dev_labels))
    print(f"L={args.layers} D={args.dim}, {args.seeds} seeds, {args.epochs} epochs, {workers} workers, "
          f"jobs of at most {train.MAX_GROUPS_PER_JOB} training sets")
    for set_name in args.sets:
        paper = ["erm"] if set_name == "baselines" else [
            m for m in SETS[set_name] if m not in EXTENSION_GROUP_METHODS + ("afr", "random")]
        new = [m for m in SETS[set_name] if m in EXTENSION_GROUP_METHODS + ("afr",)]
        base_wall, base_cpu = timed(feats, p, paper, fds, cfg, workers)
        print(f"{set_name:10s} {'+'.join(paper)} {base_wall:7.1f} s wall {base_cpu:7.1f} s cpu", flush=True)
        wall, cpu = timed(feats, p, paper + new, fds, cfg, workers)
        print(f"{set_name:10s} + {'+'.join(new)} adds {wall - base_wall:7.1f} s wall "
              f"{cpu - base_cpu:7.1f} s cpu", flush=True)
        for m in new if args.each and len(new) > 1 else []:
            wall, cpu = timed(feats, p, paper + [m], fds, cfg, workers)
            print(f"{set_name:10s} + {m:8s} adds {wall - base_wall:7.1f} s wall {cpu - base_cpu:7.1f} s cpu",
                  flush=True)


if __name__ == "__main__":
    main()
