"""`dvc status` sees inside local folders: the inputs stage on a tiny CREMA-D-layout project.

A temporary git + DVC repository with the project's dvc.yaml, corpus.audio_dir holding three
real CREMA-D clip names (synthetic tones), the real metadata (FAIRSER_REFERENCE_DATA) and a tiny local
WavLM folder as features.upstream. After `dvc repro` of the audio and model stages, each edit is
followed by `dvc repro -s inputs` (what `dvc repro` runs first) and `dvc status`. The tests share
one project and run in file order.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import soundfile as sf
import yaml

from conftest import reference_data_or_skip
from fairser.constants import SAMPLE_RATE
from helpers import shipped_params, tone
from test_features import tiny_wavlm

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow
CLIPS = ("1001_DFA_ANG_XX.wav", "1002_DFA_SAD_XX.wav", "1003_DFA_HAP_XX.wav")
MODEL_STAGES = ("features", "speaker", "pseudo")


def _run(args, cwd, env):
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True)
    assert result.returncode == 0, f"{' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout + result.stderr


def _changed(repo, env) -> set[str]:
    """Stages of the audio and model chain that `dvc status` reports (the always-changed inputs
    stage itself aside)."""
    status = json.loads(_run(["dvc", "status", "--json", "inputs", "download", *MODEL_STAGES], repo, env))
    return {stage for stage, why in status.items() if why != ["always changed"]}


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """Set up once; each test leaves the pipeline up to date again for the next."""
    reference = reference_data_or_skip()
    tmp_path = tmp_path_factory.mktemp("inputs")
    repo = tmp_path / "repo"
    repo.mkdir()
    for name in ("src", "stages"):
        shutil.copytree(ROOT / name, repo / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "dvc.yaml", repo / "dvc.yaml")
    audio = tmp_path / "audio"
    audio.mkdir()
    for i, clip in enumerate(CLIPS):
        sf.write(audio / clip, tone(0.3, 120 + 60 * i, seed=i), SAMPLE_RATE, subtype="PCM_16")
    params = shipped_params()
    params["corpus"].update(name="crema-d", audio_dir=str(audio), metadata_dir=str(reference))
    params["features"]["upstream"] = tiny_wavlm(tmp_path / "wavlm", "group")
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))

    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
               GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@localhost", GIT_COMMITTER_NAME="t",
               GIT_COMMITTER_EMAIL="t@localhost", DVC_NO_ANALYTICS="1", HF_HUB_OFFLINE="1",
               PYTHONPATH=str(repo / "src"))
    _run(["git", "init", "-q"], repo, env)
    _run(["dvc", "init", "-q"], repo, env)
    _run(["dvc", "repro", *MODEL_STAGES], repo, env)
    assert _changed(repo, env) == set()
    return repo, env, audio, tmp_path / "wavlm"


def test_an_untouched_rerun_of_the_inputs_stage_changes_nothing(project):
    repo, env, _, _ = project
    before = {p.name: p.read_bytes() for p in (repo / "data" / "inputs").iterdir()}
    _run(["dvc", "repro", "-s", "inputs"], repo, env)
    assert {p.name: p.read_bytes() for p in (repo / "data" / "inputs").iterdir()} == before
    assert _changed(repo, env) == set()


def test_one_byte_of_the_upstreams_weights_reruns_features_only(project):
    repo, env, _, wavlm = project
    weights = wavlm / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1
    weights.write_bytes(bytes(data))
    _run(["dvc", "repro", "-s", "inputs"], repo, env)
    assert _changed(repo, env) == {"features"}
    _run(["dvc", "repro", *MODEL_STAGES], repo, env)


def test_adding_a_wav_to_audio_dir_reruns_the_download(project):
    repo, env, audio, _ = project
    sf.write(audio / "1004_DFA_NEU_XX.wav", tone(0.3, 200), SAMPLE_RATE, subtype="PCM_16")
    _run(["dvc", "repro", "-s", "inputs"], repo, env)
    assert _changed(repo, env) == {"download"}
    # ... and with it every stage that reads the corpus.
    ran = _run(["dvc", "repro", *MODEL_STAGES], repo, env)
    assert {"download", "features", "speaker", "pseudo"} <= {
        line.split("'")[1] for line in ran.splitlines() if line.startswith("Running stage '")}


def test_replacing_a_wav_with_one_of_equal_size_and_mtime_reruns_the_download(project):
    repo, env, audio, _ = project
    clip = audio / CLIPS[0]
    stat = clip.stat()
    sf.write(clip, tone(0.3, 333, seed=5), SAMPLE_RATE, subtype="PCM_16")
    os.utime(clip, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert clip.stat().st_size == stat.st_size
    _run(["dvc", "repro", "-s", "inputs"], repo, env)
    assert _changed(repo, env) == {"download"}
