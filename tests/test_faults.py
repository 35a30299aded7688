"""Faults a long run meets: a stage killed mid-write, and bad params caught before any work."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


def _params(tmp_path: Path, **surrogate) -> Path:
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["corpus"]["surrogate"].update(surrogate)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


@pytest.mark.slow  # a full-size surrogate download, killed once it writes: up to a minute
def test_a_stage_killed_mid_write_leaves_no_output(tmp_path):
    params = _params(tmp_path, n_actors=91, n_sentences=12, seconds=3.0)
    out = tmp_path / "data" / "corpus"
    proc = subprocess.Popen([sys.executable, str(ROOT / "stages" / "download.py"), "--out", str(out),
                             "--params", str(params)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    # Wait until the stage is writing clips into its temporary folder, then kill it outright.
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        partial = list((tmp_path / "data").glob(".corpus.tmp-*/wav/*.wav"))
        if len(partial) > 5:
            break
        time.sleep(0.1)
    assert proc.poll() is None, "the stage finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not out.exists()


def test_bad_params_fail_in_one_line_before_any_output(tmp_path):
    params = _params(tmp_path, n_actors=10, n_sentences=2, seconds=0.6)
    raw = yaml.safe_load(params.read_text())
    raw["split"]["ratio"] = "twenty"
    params.write_text(yaml.safe_dump(raw))
    out = tmp_path / "corpus"
    result = subprocess.run([sys.executable, str(ROOT / "stages" / "download.py"), "--out", str(out),
                             "--params", str(params)], capture_output=True, text=True)
    assert result.returncode == 1
    assert result.stderr.strip().count("\n") == 0
    assert "split.ratio" in result.stderr
    assert not out.exists()
