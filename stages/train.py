"""Train stage: every method of one run set on every fold, from the feature cache (docs/DESIGN.md).

python stages/train.py --set <baselines|gender|pseudo|kmeans|kmeans_extensions> [--k K] --corpus data/corpus \
    --features data/features --split data/split --groups data/groups --out data/runs/<set-name>
Reads params: seed, train (epochs, batch_size, lr, hidden, target, device, seeds, extensions) and
methods.<name> of the set's methods (gdro, gadro, pgdro, lff, disent, jtt, george, and
train.extensions' adv, eopp, mmd, mixup, dfr, afr). kmeans: the paper's group methods on the
clusters of --k; kmeans_extensions: issue 24's group methods on them (dvc.yaml: at idi.k). The
classes (the head's K outputs, the predictions.csv columns, folds.csv labels) and the threshold
1/K come from data/corpus/schema.json.
"""

import torch

from fairser import config, stage
from fairser.errors import InputError
from fairser.method_sets import KMEANS_SETS
from fairser.train import SETS, run_set


def main() -> None:
    p = stage.parser(__doc__.splitlines()[0])
    p.add_argument("--set", required=True, choices=sorted(SETS), help="run set")
    p.add_argument("--k", type=int, default=None, help="k-means k (with --set kmeans or kmeans_extensions)")
    p.add_argument("--corpus", required=True,
                   help="folder with clips.csv (vote distributions) and schema.json")
    p.add_argument("--features", required=True, help="folder with features.npy and index.csv")
    p.add_argument("--split", required=True, help="folder with folds.csv")
    p.add_argument("--groups", required=True, help="folder with gender.csv, pseudo.csv, kmeans_k<K>.csv")
    p.add_argument("--out", required=True, help="output folder: <method>/{predictions,curve}.csv")
    args = p.parse_args()
    params = config.load(args.params)
    if (args.set in KMEANS_SETS) != (args.k is not None):
        raise InputError(f"--k is required with --set {' or '.join(KMEANS_SETS)} and only then")
    # One intra-op thread; fit() trains jobs side by side, one per core, instead. The products
    # are small, and intra-op threads spin-waiting for busy cores of a shared machine cost more
    # than they give (benchmarks/train_grid.py).
    torch.set_num_threads(1)
    results = run_set(args.set, k=args.k, corpus=args.corpus, features=args.features,
                      split=args.split, groups_dir=args.groups, out=args.out, params=params)
    print(f"train {args.set}{'' if args.k is None else f' k={args.k}'}: {len(results)} runs -> {args.out}")


if __name__ == "__main__":
    stage.run(main)
