"""What every stage script shares: one-line errors and the params file argument."""

from __future__ import annotations

import argparse
import os
import sys

from fairser.config import ParamsError


class InputError(ValueError):
    """Bad input data (a file, a clip, a model id): the message names it in one line."""


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    return p


def run(main) -> None:
    """Call `main()`; turn expected failures into one line on stderr and exit status 1.

    Set FAIRSER_TRACEBACK=1 to see the full traceback instead.
    """
    try:
        main()
    except (ParamsError, InputError, FileNotFoundError) as err:
        if os.environ.get("FAIRSER_TRACEBACK"):
            raise
        print(f"error: {err}", file=sys.stderr)
        sys.exit(1)
