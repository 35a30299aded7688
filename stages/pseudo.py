"""Pseudo stage: pseudo gender per clip from a pre-trained gender classifier (docs/DESIGN.md).

python stages/pseudo.py --corpus data/corpus --out data/pseudo [--inputs data/inputs/pseudo.json]
    [--params params.yaml]
Reads params: preset, idi.pseudo_model, idi.pseudo_revision, idi.pitch_threshold_hz; speaker.device,
compute (no effect on values).
"""

from fairser import config, provenance, stage
from fairser.idi import run_pseudo


def main() -> None:
    p = stage.clip_parser(__doc__.splitlines()[0], outputs="pseudo.csv, info.json", model="pseudo model",
                          inputs="data/inputs/pseudo.json")
    args = p.parse_args()
    params = config.load(args.params)
    run_pseudo(args.corpus, args.out, model=params["idi"]["pseudo_model"],
               threshold_hz=params["idi"]["pitch_threshold_hz"], device=params["speaker"]["device"],
               revision=params["idi"]["pseudo_revision"],
               fingerprint=provenance.read_fingerprint(args.inputs), compute=params["compute"])


if __name__ == "__main__":
    stage.run(main)
