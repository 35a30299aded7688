"""The error types every layer raises: the ground floor of fairser, importing nothing from it.

Stage scripts and the `fairser` console turn these into one line on stderr (fairser.stage.run).
"""

from __future__ import annotations


class InputError(ValueError):
    """Bad input data (a file, a clip, a model id): the message names it in one line."""


class ParamsError(ValueError):
    """A params.yaml value is missing, of the wrong type, or out of range."""
