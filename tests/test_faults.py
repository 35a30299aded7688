"""Faults a long run meets: a stage killed mid-write, bad params caught before any work, a clip
that breaks a model named in the error, and checkpoints that do not pile up."""

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import yaml

from fairser import features as F
from fairser import speaker as S
from fairser.errors import InputError
from fairser.constants import SAMPLE_RATE
from helpers import dvc_repo, shipped_params, tone

ROOT = Path(__file__).resolve().parents[1]


def _params(tmp_path: Path, **surrogate) -> Path:
    params = shipped_params()
    params["corpus"]["surrogate"].update(surrogate)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


@pytest.mark.slow  # a full-size surrogate download, killed once it writes: up to a minute
def test_a_stage_killed_mid_write_leaves_no_output(tmp_path):
    params = _params(tmp_path, n_actors=40, n_sentences=12, seconds=2.0)
    out = tmp_path / "data" / "corpus"
    cmd = [sys.executable, str(ROOT / "stages" / "download.py"), "--out", str(out), "--params", str(params)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    # Wait until the stage is writing clips into its temporary folder, then kill it outright.
    written = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        written = list((tmp_path / "data").glob(".corpus.tmp-*/wav/*.wav"))
        if len(written) > 5:
            break
        time.sleep(0.05)
    assert len(written) > 5, "the stage never started writing clips"
    assert proc.poll() is None, "the stage finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL  # killed, not finished
    # The kill hit mid-write: a temporary folder with some clips is left, the output is not there.
    left = list((tmp_path / "data").glob(".corpus.tmp-*"))
    assert len(left) == 1 and any((left[0] / "wav").iterdir())
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


# --- a clip that breaks a model is named (issue 10, fault 2) ---------------------------------------

def _corpus(root: Path, waves: dict) -> list[str]:
    (root / "wav").mkdir(parents=True)
    for file, wave in waves.items():
        sf.write(root / "wav" / file, wave, SAMPLE_RATE, subtype="PCM_16")
    pd.DataFrame({"file": list(waves)}).to_csv(root / "clips.csv", index=False)
    pd.DataFrame(columns=["file", "reason"]).to_csv(root / "skipped.csv", index=False)
    return list(waves)


def test_a_silent_clip_that_reaches_the_speaker_stage_is_named(tmp_path):
    # A corpus written by hand (download now skips such clips): the real offline embedder on an
    # all-zero clip raises deep inside librosa; the error must say which clip.
    corpus = tmp_path / "corpus"
    _corpus(corpus, {"1001_DFA_ANG_XX.wav": tone(0.4, 120), "1002_DFA_SAD_XX.wav": np.zeros(6400)})
    with pytest.raises(InputError) as err:
        S.run(corpus, tmp_path / "speaker", model="resemblyzer", device="cpu", progress=False)
    message = str(err.value)
    assert message.startswith(f"{corpus / 'wav' / '1002_DFA_SAD_XX.wav'}: speaker ")
    assert "not finite" in message  # librosa's own cause, kept after the clip's name
    assert "\n" not in message
    assert not (tmp_path / "speaker").exists()


class _Breaks:
    """An upstream (features) and an embedder (speaker) that fail on one clip's length."""

    name, layers, dim, min_samples, allow_padding = "breaks", 1, 2, 1, False

    def __init__(self, bad_samples: int):
        self.bad = bad_samples

    def _one(self, wave):
        if len(wave) == self.bad:
            raise ValueError("Audio buffer is not finite everywhere")
        return np.array([[wave.mean(), wave.std()]], dtype=np.float32)

    def pooled(self, waves):
        return np.stack([self._one(w) for w in waves])

    def embed(self, wave):
        return self._one(wave)[0]


def test_a_clip_that_breaks_the_upstream_is_named_by_features(tmp_path):
    files = _corpus(tmp_path, {"a.wav": tone(0.3, 150), "b.wav": tone(0.5, 150)})
    with pytest.raises(InputError) as err:
        F.extract(files, tmp_path / "wav", _Breaks(8000), batch_seconds=0.1,
                  partial_dir=tmp_path / "p", progress=False)
    assert str(err.value) == (f"{tmp_path / 'wav' / 'b.wav'}: features (breaks) failed "
                              "(ValueError: Audio buffer is not finite everywhere)")


def test_a_clip_that_breaks_the_embedder_is_named_by_speaker(tmp_path):
    files = _corpus(tmp_path, {"a.wav": tone(0.3, 150), "b.wav": tone(0.5, 150)})
    with pytest.raises(InputError) as err:
        S.embed_clips(files, tmp_path / "wav", _Breaks(8000), progress=False)
    assert str(err.value) == (f"{tmp_path / 'wav' / 'b.wav'}: speaker (breaks) failed "
                              "(ValueError: Audio buffer is not finite everywhere)")


# --- checkpoints do not pile up (issue 10, fault 8) ---------------------------------------------------

def _stale(root: Path) -> Path:
    stale = root / "some-other-model-0123456789abcdef"
    stale.mkdir(parents=True)
    (stale / "chunk_000000.npz").write_bytes(b"left by a failed run")
    return stale


@pytest.mark.parametrize("stage", ["features", "speaker"])
def test_a_finished_stage_leaves_no_checkpoint_folder_stale_or_own(tmp_path, stage):
    corpus = tmp_path / "corpus"
    _corpus(corpus, {"a.wav": tone(0.3, 150), "b.wav": tone(0.4, 220)})
    _stale(tmp_path / f".{stage}-partial")
    if stage == "features":
        F.run(corpus, tmp_path / stage, upstream="fbank", batch_seconds=1, device="cpu", progress=False)
    else:
        S.run(corpus, tmp_path / stage, model="resemblyzer", device="cpu", progress=False)
    assert (tmp_path / stage / "index.csv").is_file()
    assert not (tmp_path / f".{stage}-partial").exists()


def test_a_failed_stage_keeps_its_own_checkpoints_and_drops_stale_ones(tmp_path, monkeypatch):
    corpus = tmp_path / "corpus"
    _corpus(corpus, {"a.wav": tone(0.3, 150), "b.wav": tone(0.5, 220)})
    stale = _stale(tmp_path / ".features-partial")
    monkeypatch.setattr(F, "load_upstream", lambda name, device, revision=None: _Breaks(8000))
    with pytest.raises(InputError, match="b.wav"):
        F.run(corpus, tmp_path / "features", upstream="breaks", batch_seconds=0.1, device="cpu",
              progress=False)
    assert not stale.exists()
    own, = (tmp_path / ".features-partial").iterdir()
    assert len(list(own.glob("chunk_*.npz"))) == 1  # clip a.wav, kept for the rerun to resume


# --- a bad param leaves every output as it was (issue 10, fault 4) ---------------------------------

# The smallest pipeline that still runs every stage: 10 actors, two sentences (with one, a test
# fold lacks a class and the coverage rule stops it), one epoch, one k.
SMALLEST = {
    ("corpus", "surrogate", "n_actors"): 10,
    ("corpus", "surrogate", "n_sentences"): 2,
    ("corpus", "surrogate", "seconds"): 0.5,
    ("idi", "k"): 2,
    ("idi", "k_sweep"): [2],
    ("train", "epochs"): 1,
    ("methods", "jtt", "identification_epochs"): 1,  # at most train.epochs
    ("train", "hidden"): 8,
    ("evaluate", "bootstrap"): 2,
}


def _hashes(repo: Path) -> dict[str, str]:
    return {str(p.relative_to(repo)): hashlib.sha256(p.read_bytes()).hexdigest()
            for d in ("data", "metrics") for p in sorted((repo / d).rglob("*")) if p.is_file()}


@pytest.mark.slow
@pytest.mark.parametrize("command", [
    ["dvc", "exp", "run", "-S", "idi.k=abc"],
    ["dvc", "exp", "run", "-S", "train.lr=inf"],
    ["dvc", "exp", "run", "-S", "+train.epoch=1"],
    ["dvc", "exp", "run", "-S", "+methods.foo.eta=1"],
    ["dvc", "exp", "run", "-S", "idi.k_sweep=[1,2]"],
    ["dvc", "repro", "--force"],  # with `seed: -1` written into params.yaml
], ids=["exp-k-abc", "exp-lr-inf", "exp-unknown-key", "exp-unknown-method", "exp-sweep-1", "repro-seed"])
def test_a_bad_param_leaves_data_and_metrics_exactly_as_they_were(smallest_repo, command):
    repo, env = smallest_repo
    before = _hashes(repo)
    assert any(k.startswith("metrics/") for k in before) and "data/eval/summary.csv" in before
    if command[1] == "repro":
        text = (repo / "params.yaml").read_text()
        (repo / "params.yaml").write_text(text.replace("seed: 0", "seed: -1", 1))
    try:
        result = subprocess.run(command, cwd=repo, env=env, capture_output=True, text=True)
        assert result.returncode != 0, result.stdout + result.stderr
        assert _hashes(repo) == before
        # It failed in the params stage, with the one-line error, before any other stage ran.
        assert "error: params.yaml: " in result.stdout + result.stderr
        assert [line for line in (result.stdout + result.stderr).splitlines()
                if line.startswith("Running stage")] == ["Running stage 'params':"]
    finally:
        subprocess.run(["git", "checkout", "--", "params.yaml"], cwd=repo, env=env, check=True)


@pytest.mark.slow
def test_every_table_shows_the_skip_line_and_the_degenerate_biasing_warning(smallest_repo):
    repo, _ = smallest_repo
    for name in ("table1.md", "table1_vs_paper.md", "table2.md"):
        lines = (repo / "reports" / name).read_text().splitlines()
        assert lines[2] == "> Corpus: 220 of 220 labelled clips usable, 0 skipped"  # 10 actors x 22
        # Ratio 20 on 10 actors leaves most train classes without a minority clip
        # (split.on_degenerate: warn); the table shows the split stage's warning verbatim.
        coverage = json.loads((repo / "data" / "split" / "coverage.json").read_text())
        assert len(coverage["degenerate"]) > 0 and len(coverage["warnings"]) == 1
        assert lines[3] == f"> **Warning:** {coverage['warnings'][0]}"
        assert f"leaves {len(coverage['degenerate'])} train (fold, class) cells" in lines[3]


@pytest.fixture(scope="module")
def smallest_repo(tmp_path_factory):
    repo, env, _ = dvc_repo(tmp_path_factory.mktemp("faults"), SMALLEST)
    return repo, env
