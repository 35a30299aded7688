"""Features stage: per-layer mean-pooled hidden states of a frozen upstream (docs/DESIGN.md).

python stages/features.py --corpus data/corpus --out data/features [--inputs data/inputs/upstream.json]
    [--params params.yaml]
Reads params: preset, features.upstream, features.revision, features.batch_seconds; features.device,
compute (no effect on values).
"""

from fairser import config, provenance, stage
from fairser.features import run


def main() -> None:
    p = stage.clip_parser(__doc__.splitlines()[0], outputs="features.npy, index.csv, info.json", model="upstream",
                          inputs="data/inputs/upstream.json")
    args = p.parse_args()
    params = config.load(args.params)
    f = params["features"]
    run(args.corpus, args.out, upstream=f["upstream"], batch_seconds=f["batch_seconds"],
        device=f["device"], revision=f["revision"],
        fingerprint=provenance.read_fingerprint(args.inputs), compute=params["compute"])


if __name__ == "__main__":
    stage.run(main)
