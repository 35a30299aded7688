"""Pseudo stage: pseudo gender per clip from a pre-trained gender classifier (docs/DESIGN.md).

python stages/pseudo.py --corpus data/corpus --out data/pseudo [--inputs data/inputs/pseudo.json]
    [--params params.yaml]
Reads params: preset, idi.pseudo_model, idi.pseudo_revision, idi.pitch_threshold_hz; speaker.device,
compute (no effect on values).
"""

from fairser import config, provenance, stage
from fairser.idi import run_pseudo


def main() -> None:
    p = stage.parser(__doc__.splitlines()[0])
    p.add_argument("--corpus", required=True, help="folder with clips.csv, skipped.csv and wav/")
    p.add_argument("--out", required=True, help="output folder (pseudo.csv, info.json)")
    p.add_argument("--inputs", default=None,
                   help="the inputs stage's fingerprint of the pseudo model (data/inputs/pseudo.json)")
    args = p.parse_args()
    params = config.load(args.params)
    run_pseudo(args.corpus, args.out, model=params["idi"]["pseudo_model"],
               threshold_hz=params["idi"]["pitch_threshold_hz"], device=params["speaker"]["device"],
               revision=params["idi"]["pseudo_revision"],
               fingerprint=provenance.read_fingerprint(args.inputs), compute=params["compute"])


if __name__ == "__main__":
    stage.run(main)
