"""Small test-data makers shared by several test modules."""

import functools
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import yaml

from fairser.constants import SAMPLE_RATE

ROOT = Path(__file__).resolve().parents[1]


@functools.cache
def shipped_params_text(root: Path = ROOT) -> str:
    """The text of the params.yaml the project ships: `root`'s committed copy (`git show
    HEAD:./params.yaml`) in a git work tree whose HEAD has one, else the file itself (a tarball copy).

    Tests never read the workspace file: `dvc exp run -S idi.k=32` leaves the experiment's values in
    it, and the tests must pass the same after a user's experiment. An edit of params.yaml itself is
    seen by the tests once committed.
    """
    try:
        shown = subprocess.run(["git", "show", "HEAD:./params.yaml"], cwd=root, capture_output=True,
                               text=True, encoding="utf-8")
    except FileNotFoundError:  # no git installed
        shown = None
    if shown is not None and shown.returncode == 0:
        return shown.stdout
    return (Path(root) / "params.yaml").read_text(encoding="utf-8")


def shipped_params(root: Path = ROOT) -> dict:
    """shipped_params_text parsed as DVC and `fairser.config.read_yaml` parse it (YAML 1.2); a fresh
    dict on each call, so a test may change it."""
    from ruamel.yaml import YAML

    return YAML(typ="safe").load(shipped_params_text(root))


def tone(seconds, f0, seed=0):
    """A harmonic tone plus a little noise: speech-like enough for shapes and pitch."""
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    wave = sum(np.sin(2 * np.pi * f0 * h * t) / h for h in range(1, 6))
    wave = wave + 0.01 * np.random.default_rng(seed).standard_normal(len(t))
    return (0.3 * wave / np.abs(wave).max()).astype(np.float32)


def run_ok(args, cwd, env) -> str:
    """Run a command; fail the test with its output unless it exits 0. Returns stdout + stderr."""
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True)
    assert result.returncode == 0, f"{' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout + result.stderr


def dvc_repo(repo: Path, overrides: dict, *, repro: bool = True) -> tuple[Path, dict, str]:
    """A git repository at `repo` holding the project's pipeline with params.yaml changed by
    `overrides` ({(section, ..., key): value}), reproduced once (unless `repro` is false) and committed.

    Returns (repo, the environment to run git and dvc in, the output of the first `dvc repro`, or "").
    """
    for name in ("src", "stages"):
        shutil.copytree(ROOT / name, repo / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "dvc.yaml", repo / "dvc.yaml")
    params = shipped_params()
    for path, value in overrides.items():
        node = params
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))

    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    env["PYTHONPATH"] = str(repo / "src")  # the copy's code, not an installed one
    env.update(GIT_AUTHOR_NAME="test", GIT_AUTHOR_EMAIL="test@localhost",
               GIT_COMMITTER_NAME="test", GIT_COMMITTER_EMAIL="test@localhost",
               DVC_NO_ANALYTICS="1")
    run_ok(["git", "init", "-q"], repo, env)
    run_ok(["dvc", "init", "-q"], repo, env)
    run_ok(["dvc", "config", "core.analytics", "false"], repo, env)
    first = run_ok(["dvc", "repro"], repo, env) if repro else ""
    run_ok(["git", "add", "-A"], repo, env)
    run_ok(["git", "commit", "-qm", "baseline"], repo, env)
    return repo, env, first
