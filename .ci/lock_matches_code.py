"""Fail when dvc.lock does not match the committed code or params (issue 26: a stale lock).

Run in a fresh clone, where no stage output exists: `dvc status` then reports every data
dependency as deleted, which is expected. What must not appear is a *code* or *params*
dependency (a file git tracks: src/, stages/, params.yaml, or a folder of tracked .py files such
as src/fairser/debias) whose content differs from the hash dvc.lock recorded: that means the
committed outputs were made by other code than the committed code. Standard library only.
"""

from __future__ import annotations

import json
import subprocess
import sys


def tracked_code(path: str, tracked: set[str]) -> bool:
    """A file git tracks, or a folder holding tracked Python files."""
    if path in tracked:
        return True
    prefix = path.rstrip("/") + "/"
    return any(t.startswith(prefix) and t.endswith(".py") for t in tracked)


def stale(status: dict, tracked: set[str]) -> list[str]:
    """One line per stage dependency that is code or params and changed since dvc.lock."""
    lines = []
    for stage, entries in status.items():
        for entry in entries:
            if not isinstance(entry, dict):
                continue
            for dep, state in entry.get("changed deps", {}).items():
                if isinstance(state, dict):  # params: {"idi.k": "modified"}
                    lines += [f"{stage}: {dep} {key} {how}" for key, how in state.items()]
                elif state != "deleted" and tracked_code(dep, tracked):
                    lines.append(f"{stage}: {dep} {state}")
    return lines


def main() -> int:
    tracked = set(subprocess.run(["git", "ls-files"], check=True, capture_output=True,
                                 text=True).stdout.splitlines())
    status = json.loads(subprocess.run(["dvc", "status", "--json"], check=True, capture_output=True,
                                       text=True).stdout or "{}")
    lines = stale(status, tracked)
    if lines:
        print("dvc.lock does not match the committed code/params; run `dvc repro` and commit dvc.lock "
              "with its outputs:\n  " + "\n  ".join(lines), file=sys.stderr)
        return 1
    print("dvc.lock matches the committed code and params (absent data dependencies and outputs "
          "are expected in a fresh clone)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
