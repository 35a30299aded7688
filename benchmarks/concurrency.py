"""Pipelines sharing a machine: one `dvc repro` alone vs two at once, and the speaker stage's speed.

    PYTHONPATH=src .venv/bin/python benchmarks/concurrency.py [--actors 91] [--threads N]
        [--baseline-rev REV] [--skip-pipelines]

Not a test; figures go to docs/PERFORMANCE.md. In temporary git repositories holding this
checkout's pipeline (src/, stages/, dvc.yaml, params.yaml with the default surrogate of --actors
actors) it measures, in order:
  1. the speaker stage alone on that corpus (clips/s), for this code and, with --baseline-rev, for
     the code of an older commit (the per-clip loop before batching), back to back;
  2. one full `dvc repro` alone (wall time);
  3. two full `dvc repro` at once, in two separate clones (separate caches, so neither can reuse
     the other's stages): the wall time until both finish, and its ratio to (2).
--threads sets FAIRSER_THREADS for every stage (default: unset, so each stage sizes torch's pools
to the CPUs it may use). The machine's load average is printed before each step: on a shared
machine, say what else was running.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable


def machine() -> str:
    cpu = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    return (f"{cpu}, {os.cpu_count()} cores ({len(os.sched_getaffinity(0))} usable), Python "
            f"{platform.python_version()}, torch {torch.__version__}")


def load() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.1f} (1 min), {five:.1f} (5 min)"


def environment(threads: int | None, src: Path) -> dict:
    env = dict(os.environ, DVC_NO_ANALYTICS="1", GIT_AUTHOR_NAME="bench",
               GIT_AUTHOR_EMAIL="bench@localhost", GIT_COMMITTER_NAME="bench",
               GIT_COMMITTER_EMAIL="bench@localhost", PYTHONPATH=str(src))
    env["PATH"] = f"{Path(PYTHON).parent}{os.pathsep}{env['PATH']}"
    env.pop("OMP_NUM_THREADS", None)  # the stages size their own pools
    if threads is not None:
        env["FAIRSER_THREADS"] = str(threads)
    else:
        env.pop("FAIRSER_THREADS", None)
    return env


def make_repo(repo: Path, actors: int, source: Path | None = None) -> None:
    """A git + DVC repository holding the pipeline of `source` (default: this checkout)."""
    source = source or ROOT
    for name in ("src", "stages"):
        shutil.copytree(source / name, repo / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(source / "dvc.yaml", repo)
    params = yaml.safe_load((source / "params.yaml").read_text())
    params["corpus"]["surrogate"]["n_actors"] = actors
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    env = environment(None, repo / "src")
    for cmd in (["git", "init", "-q"], ["dvc", "init", "-q"], ["git", "add", "-A"],
                ["git", "commit", "-qm", "bench"]):
        subprocess.run(cmd, cwd=repo, env=env, check=True, stdout=subprocess.DEVNULL)


def timed(cmd, cwd: Path, env: dict) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, cwd=cwd, env=env, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def speaker_speed(repo: Path, threads: int | None, label: str) -> None:
    """Time the speaker stage on the repo's corpus (data/corpus must exist)."""
    env = environment(threads, repo / "src")
    clips = len(pd.read_csv(repo / "data" / "corpus" / "clips.csv"))
    out = repo / "data" / "bench-speaker"
    print(f"  [{load()}]", flush=True)
    dt = timed([PYTHON, "stages/speaker.py", "--corpus", "data/corpus", "--out", str(out)], repo, env)
    shutil.rmtree(out, ignore_errors=True)
    print(f"speaker stage alone ({label}): {clips} clips in {dt:.1f} s = {clips / dt:.1f} clips/s "
          f"(includes loading the model)", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--actors", type=int, default=91, help="surrogate actors (default: params.yaml's)")
    ap.add_argument("--threads", type=int, default=None, help="FAIRSER_THREADS for every stage")
    ap.add_argument("--baseline-rev", default=None,
                    help="also time the speaker stage of this git revision (e.g. the pre-batching commit)")
    ap.add_argument("--skip-pipelines", action="store_true", help="only the speaker-stage figures")
    args = ap.parse_args()
    threads = "unset (affinity count)" if args.threads is None else args.threads
    print(f"machine: {machine()}; FAIRSER_THREADS {threads}; {args.actors}-actor surrogate", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        a = tmp / "a"
        make_repo(a, args.actors)
        env = environment(args.threads, a / "src")
        subprocess.run(["dvc", "repro", "download"], cwd=a, env=env, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        speaker_speed(a, args.threads, "this code")
        if args.baseline_rev:
            old = tmp / "old"
            old.mkdir()
            archive = subprocess.run(["git", "-C", str(ROOT), "archive", args.baseline_rev, "src", "stages", "params.yaml"],
                                     check=True, capture_output=True).stdout
            subprocess.run(["tar", "-x", "-C", str(old)], input=archive, check=True)
            shutil.copytree(a / "data", old / "data")
            speaker_speed(old, args.threads, f"code of {args.baseline_rev}")
        if args.skip_pipelines:
            return
        b, c = tmp / "b", tmp / "c"
        for clone in (b, c):
            subprocess.run(["git", "clone", "-q", str(a), str(clone)], check=True)
        print(f"  [{load()}]", flush=True)
        alone = timed(["dvc", "repro"], b, environment(args.threads, b / "src"))
        print(f"one dvc repro alone: {alone:.0f} s", flush=True)
        for clone in (b, c):  # start both from nothing, each with its own cache
            shutil.rmtree(clone / ".dvc" / "cache", ignore_errors=True)
            shutil.rmtree(clone / "data", ignore_errors=True)
            (clone / "dvc.lock").unlink(missing_ok=True)
        print(f"  [{load()}]", flush=True)
        t0 = time.perf_counter()
        procs = [subprocess.Popen(["dvc", "repro"], cwd=clone, env=environment(args.threads, clone / "src"),
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for clone in (b, c)]
        ends = []
        for p in procs:
            if p.wait() != 0:
                raise SystemExit("a concurrent dvc repro failed")
            ends.append(time.perf_counter() - t0)
        both = max(ends)
        print(f"two dvc repro at once: both done after {both:.0f} s (first {min(ends):.0f} s) = "
              f"{both / alone:.2f}x one alone (2x is the 2-core ideal)", flush=True)
        print(f"  [{load()}]", flush=True)


if __name__ == "__main__":
    main()
