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


def _not_a_file(path: Path, expected: str) -> InputError | None:
    """The one line for a `path` that cannot be read as a file (a folder, missing), or None.

    It ends with `expected` (what the user should supply there), as the other reading errors do."""
    if path.is_dir():
        return InputError(f"{path}: is a folder, not a file; expected {expected}")
    if not path.is_file():
        return InputError(f"{path}: no such file; expected {expected}")
    return None


def _not_utf8(path: Path, expected: str) -> InputError:
    """The one line for a file that is not UTF-8, naming the line of its first bad byte."""
    raw = path.read_bytes()
    try:
        raw.decode("utf-8")
        where = ""
    except UnicodeDecodeError as err:
        line = raw[:err.start].count(b"\n") + 1
        where = f" (line {line}: byte 0x{raw[err.start]:02x})"
    return InputError(f"{path}: not UTF-8 text{where}; save it as UTF-8; expected {expected}")


def read_text(path: str | Path, expected: str) -> str:
    """The text of a UTF-8 file (a byte-order mark is dropped); a missing, empty or non-UTF-8 file
    is one InputError naming the file and `expected` (what it should hold)."""
    path = Path(path)
    why = _not_a_file(path, expected)
    if why:
        raise why
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise _not_utf8(path, expected) from None
    if not text.strip():
        raise InputError(f"{path}: empty file; expected {expected}")
    return text


def read_csv(path: str | Path, columns, *, expected: str | None = None, **kwargs) -> pd.DataFrame:
    """Read a CSV that a stage depends on (extra arguments go to pandas.read_csv).

    A missing file or a folder, an empty, non-UTF-8 (a byte-order mark is fine) or unparsable one,
    or a missing column is one InputError naming the file and the expected columns (`expected`
    describes them where a list cannot), before any work is done with it.
    """
    path = Path(path)
    expected = expected or (f"columns {', '.join(columns)}" if len(columns) else "a CSV with a header line")
    why = _not_a_file(path, expected)
    if why:
        raise why
    kwargs.setdefault("encoding", "utf-8-sig")
    try:
        df = pd.read_csv(path, **kwargs)
    except UnicodeDecodeError as err:
        raise _not_utf8(path, expected) from None
    except pd.errors.EmptyDataError:
        raise InputError(f"{path}: empty file (no header line); expected {expected}") from None
    except pd.errors.ParserError as err:
        raise InputError(f"{path}: unreadable CSV ({str(err).splitlines()[0]}); expected {expected}") from None
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise InputError(f"{path}: missing column(s) {', '.join(missing)}")
    return df
