"""Stage download: the corpus (surrogate, CREMA-D, EMO-SUPERB labels or a manifest) into --out, per docs/DESIGN.md.

    python stages/download.py --out data/corpus [--inputs data/inputs/corpus.json] [--params params.yaml]
        [--cache data/.download-cache]
"""

import json
from pathlib import Path

from fairser import config, corpus, provenance, stage, values


def main() -> None:
    p = stage.parser(__doc__.splitlines()[0])
    p.add_argument("--out", required=True, type=Path, help="output folder (data/corpus)")
    p.add_argument("--inputs", default=None, type=Path,
                   help="the inputs stage's fingerprint of the corpus files and folders (data/inputs/corpus.json)")
    p.add_argument("--cache", default=Path("data/.download-cache"), type=Path,
                   help="where downloads and their .part files live between runs (crema-d only)")
    args = p.parse_args()
    params = config.load(args.params)
    out = corpus.build(args.out, params, cache=args.cache,
                       inputs=provenance.read_fingerprint(args.inputs))
    info = json.loads((out / "corpus.json").read_text())
    print(f"{info['corpus']}: {info['actors']} actors; {info['coverage']}")
    if values.describe(info.get("normalised") or {}):
        print(f"values normalised: {values.describe(info['normalised'])}")


if __name__ == "__main__":
    stage.run(main)
