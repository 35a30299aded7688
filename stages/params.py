"""Stage params: validate the whole params.yaml before any other stage runs (or DVC removes
anything), and write a constant file that every other stage depends on.

    python stages/params.py --out data/params [--params params.yaml]

The output never changes with the params (DVC then reruns only the stages whose own params
changed), and it is declared `persist` in dvc.yaml, so a failing validation leaves it, and every
other output, as it was.
"""

from pathlib import Path

from fairser import config, stage
from fairser.io import atomic_write_text

CONTENT = "params.yaml passed fairser.config.validate (this file is constant by design)\n"


def main() -> None:
    p = stage.parser(__doc__.splitlines()[0])
    p.add_argument("--out", required=True, type=Path, help="output folder (data/params)")
    args = p.parse_args()
    config.load(args.params)
    target = args.out / "valid.txt"
    if not target.is_file() or target.read_text() != CONTENT:
        atomic_write_text(target, CONTENT)
    print(f"params: {args.params} is valid")


if __name__ == "__main__":
    stage.run(main)
