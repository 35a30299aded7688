"""Split stage: the 1:20 gender-biased train/dev sets per fold, and their counts (docs/DESIGN.md).

python stages/split.py --corpus data/corpus --out data/split [--params params.yaml]
"""

from fairser import cli, config
from fairser.split import run


def main() -> None:
    p = cli.parser(__doc__.splitlines()[0])
    p.add_argument("--corpus", required=True, help="folder with clips.csv, actors.csv, skipped.csv")
    p.add_argument("--out", required=True, help="output folder (folds.csv, counts.csv)")
    args = p.parse_args()
    params = config.load(args.params)
    run(args.corpus, args.out, ratio=params["split"]["ratio"], seed=params["seed"])


if __name__ == "__main__":
    cli.run(main)
