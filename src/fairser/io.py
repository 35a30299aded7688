"""Small file helpers shared by the stages: atomic outputs and CSV/JSON writing."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from pathlib import Path


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
