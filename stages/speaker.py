"""Speaker stage: one speaker embedding per clip for the IDI clustering (docs/DESIGN.md).

python stages/speaker.py --corpus data/corpus --out data/speaker [--params params.yaml]
Reads params: preset, speaker.model; speaker.device, compute (no effect on values).
"""

from fairser import cli, config
from fairser.speaker import run


def main() -> None:
    p = cli.parser(__doc__.splitlines()[0])
    p.add_argument("--corpus", required=True, help="folder with clips.csv, skipped.csv and wav/")
    p.add_argument("--out", required=True, help="output folder (embeddings.npy, index.csv, info.json)")
    args = p.parse_args()
    params = config.load(args.params)
    s = params["speaker"]
    run(args.corpus, args.out, model=s["model"], device=s["device"], compute=params["compute"])


if __name__ == "__main__":
    cli.run(main)
