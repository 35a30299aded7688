"""Every speed figure in docs/PERFORMANCE.md, measured on this machine (not a test).

    .venv/bin/python benchmarks/pipeline.py            # about 10 minutes on 2 cores

Prints, in order:
  1. surrogate generation time per hour of audio;
  2. real-time factors of the upstreams and speaker models (benchmarks/upstream_rtf.py);
  3. training-grid throughput in runs per minute, fbank shape over 50 epochs and WavLM shape over
     a few epochs (benchmarks/train_grid.py; time is linear in epochs);
  4. DVC on a small surrogate in a temporary git repository: a full `dvc repro`, a no-op
     `dvc repro`, and `dvc exp run -S idi.k=<another k>` against the full run.
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

import soundfile as sf
import torch
import yaml

from fairser.corpus import build_surrogate

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, "
            f"torch {torch.__version__}, load average {os.getloadavg()[0]:.1f} at start")


def surrogate_generation(n_actors: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        out = build_surrogate(Path(tmp) / "corpus", n_actors=n_actors, n_sentences=12, seconds=1.6)
        dt = time.perf_counter() - t0
        hours = sum(sf.info(p).duration for p in (out / "wav").glob("*.wav")) / 3600
    print(f"surrogate: {n_actors} actors, {hours:.2f} h of audio in {dt:.1f} s "
          f"= {dt / hours:.0f} s per hour of audio (written to disk)", flush=True)


def sub_benchmark(script: str, *args: str) -> None:
    subprocess.run([PYTHON, str(ROOT / "benchmarks" / script), *args], check=True)


def dvc_timings(n_actors: int, k_other: int) -> None:
    env = dict(os.environ, DVC_NO_ANALYTICS="1", GIT_AUTHOR_NAME="bench",
               GIT_AUTHOR_EMAIL="bench@localhost", GIT_COMMITTER_NAME="bench",
               GIT_COMMITTER_EMAIL="bench@localhost")
    env["PATH"] = f"{Path(PYTHON).parent}{os.pathsep}{env['PATH']}"
    with tempfile.TemporaryDirectory() as tmp:
        repo = Path(tmp)
        for name in ("src", "stages"):
            shutil.copytree(ROOT / name, repo / name, ignore=shutil.ignore_patterns("__pycache__"))
        shutil.copy(ROOT / "dvc.yaml", repo)
        params = yaml.safe_load((ROOT / "params.yaml").read_text())
        params["corpus"]["surrogate"]["n_actors"] = n_actors
        (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))

        def run(*args: str) -> float:
            t0 = time.perf_counter()
            subprocess.run(list(args), cwd=repo, env=env, check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            return time.perf_counter() - t0

        run("git", "init", "-q")
        run("dvc", "init", "-q")
        full = run("dvc", "repro")
        run("git", "add", "-A")
        run("git", "commit", "-qm", "baseline")
        noop = run("dvc", "repro")
        exp = run("dvc", "exp", "run", "-S", f"idi.k={k_other}")
    print(f"dvc ({n_actors}-actor surrogate, default params): full repro {full:.0f} s, "
          f"no-op repro {noop:.1f} s, exp run -S idi.k={k_other} {exp:.1f} s "
          f"({exp / full:.1%} of the full run)", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--generate-actors", type=int, default=30)
    ap.add_argument("--audio-seconds", default="20", help="audio per RTF pass")
    ap.add_argument("--wavlm-epochs", default="5")
    ap.add_argument("--dvc-actors", type=int, default=30)
    args = ap.parse_args()
    print(f"machine: {machine()}", flush=True)
    surrogate_generation(args.generate_actors)
    sub_benchmark("upstream_rtf.py", "--seconds", args.audio_seconds)
    sub_benchmark("train_grid.py", "--layers", "2", "--dim", "80")
    sub_benchmark("train_grid.py", "--layers", "13", "--dim", "768", "--epochs", args.wavlm_epochs)
    dvc_timings(args.dvc_actors, k_other=32)


if __name__ == "__main__":
    main()
