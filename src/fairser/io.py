"""Small file helpers shared by the stages: atomic outputs, checked CSV reading, JSON writing."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from pathlib import Path

import pandas as pd

from fairser.errors import InputError


@contextlib.contextmanager
def atomic_dir(out: str | Path):
    """Yield a temporary folder beside `out`; on success it replaces `out` in one rename.

    On any exception the temporary folder is removed and `out` is left as it was, so a killed or
    failed stage never leaves a half-written output that looks valid to the next stage.
    """
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    # A stage killed outright (SIGKILL, power loss) leaves its temporary folder behind; it was
    # never renamed, so nothing reads it. Clear such leftovers before starting again.
    for stale in out.parent.glob(f".{out.name}.tmp-*"):
        shutil.rmtree(stale, ignore_errors=True)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    tmp.mkdir()
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if out.exists():
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        out.rename(old)
        tmp.rename(out)
        shutil.rmtree(old)
    else:
        tmp.rename(out)


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write `text` to `path` through a temporary file and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_json(path: str | Path, obj) -> None:
    """Write `obj` as sorted, indented JSON, atomically."""
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


# pandas.read_csv options: only an empty cell is missing, so a value spelt "NA" or "null" stays text.
ONLY_EMPTY_IS_NA = {"keep_default_na": False, "na_values": [""]}


def read_csv(path: str | Path, columns, **kwargs) -> pd.DataFrame:
    """Read a CSV that a stage depends on (extra arguments go to pandas.read_csv).

    A missing file, an unreadable or empty one, or a missing column is one InputError naming
    the file, before any work is done with it.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    try:
        df = pd.read_csv(path, **kwargs)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise InputError(f"{path}: unreadable CSV ({str(err).splitlines()[0]}); "
                         f"expected columns {', '.join(columns)}") from None
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise InputError(f"{path}: missing column(s) {', '.join(missing)}")
    return df
