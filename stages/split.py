"""Split stage: the biased (paper: 1:20 by gender) train/dev sets per fold, and their counts (docs/DESIGN.md).

python stages/split.py --corpus data/corpus --out data/split [--params params.yaml]
"""

import sys

from fairser import config, stage
from fairser.split import run


def main() -> None:
    p = stage.parser(__doc__.splitlines()[0])
    p.add_argument("--corpus", required=True, help="folder with clips.csv, actors.csv, skipped.csv")
    p.add_argument("--out", required=True, help="output folder (folds.csv, counts.csv, coverage.json)")
    args = p.parse_args()
    params = config.load(args.params)
    s = params["split"]
    warnings = run(args.corpus, args.out, ratio=s["ratio"], seed=params["seed"], bias=s["bias"],
                   truth=params["idi"]["truth"], min_clips_per_class=s["min_clips_per_class"],
                   min_clips_per_group=s["min_clips_per_group"], on_degenerate=s["on_degenerate"],
                   on_sparse_class=s["on_sparse_class"])
    for line in warnings:
        print(f"warning: {line} (listed in {args.out}/coverage.json)", file=sys.stderr)


if __name__ == "__main__":
    stage.run(main)
