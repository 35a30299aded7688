"""What every stage script shares: the params file argument, thread sizing and one-line errors."""

from __future__ import annotations

import argparse
import os
import sys

from fairser.errors import InputError, ParamsError


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    return p


def clip_parser(description: str, *, outputs: str, model: str, inputs: str) -> argparse.ArgumentParser:
    """The arguments of a per-clip stage (features, speaker, pseudo): --params, --corpus, --out
    (a folder holding `outputs`) and --inputs, the inputs stage's fingerprint of its `model`
    (the file `inputs`)."""
    p = parser(description)
    p.add_argument("--corpus", required=True, help="folder with clips.csv, skipped.csv and wav/")
    p.add_argument("--out", required=True, help=f"output folder ({outputs})")
    p.add_argument("--inputs", default=None,
                   help=f"the inputs stage's fingerprint of the {model} ({inputs})")
    return p


def threads_from_params(argv=None) -> int:
    """Size torch's thread pools from the stage's params file (`--params`, compute.threads) and
    FAIRSER_THREADS before the stage does any work (fairser.engine.configure)."""
    from fairser import config, engine

    only_params = argparse.ArgumentParser(add_help=False)  # --help stays the stage's own
    only_params.add_argument("--params", default="params.yaml")
    argv = sys.argv[1:] if argv is None else argv
    if "-h" in argv or "--help" in argv:  # help needs no params file
        return engine.configure(None)
    known, _ = only_params.parse_known_args(argv)
    return engine.configure(config.load(known.params)["compute"])


def run(main, *, size_threads=threads_from_params) -> None:
    """Size torch's threads (`size_threads()`: a stage's from its params file), then call `main()`;
    turn expected failures into one line on stderr and exit status 1.

    Set FAIRSER_TRACEBACK=1 to see the full traceback instead.
    """
    try:
        size_threads()
        main()
    except (ParamsError, InputError, FileNotFoundError) as err:
        if os.environ.get("FAIRSER_TRACEBACK"):
            raise
        print(f"error: {err}", file=sys.stderr)
        sys.exit(1)
