"""Speaker stage: one speaker embedding per clip for the IDI clustering (docs/DESIGN.md).

python stages/speaker.py --corpus data/corpus --out data/speaker [--inputs data/inputs/speaker.json]
    [--params params.yaml]
Reads params: preset, speaker.model, speaker.revision; speaker.device, compute (no effect on values).
"""

from fairser import config, provenance, stage
from fairser.speaker import run


def main() -> None:
    p = stage.clip_parser(__doc__.splitlines()[0], outputs="embeddings.npy, index.csv, info.json",
                          model="speaker model", inputs="data/inputs/speaker.json")
    args = p.parse_args()
    params = config.load(args.params)
    s = params["speaker"]
    run(args.corpus, args.out, model=s["model"], device=s["device"], revision=s["revision"],
        fingerprint=provenance.read_fingerprint(args.inputs), compute=params["compute"])


if __name__ == "__main__":
    stage.run(main)
