"""Execution engines: thread sizing, per-clip skip reasons, and a default run that never imports Ray.

The Ray engine's equality with the local one is tests/test_engine_ray.py (slow: Ray's startup).
"""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch
import yaml

from fairser import engine, stage
from fairser import features as F
from fairser.errors import InputError
from fairser.errors import ParamsError
from fairser.constants import SAMPLE_RATE
from helpers import shipped_params, tone

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def no_env(monkeypatch):
    monkeypatch.delenv(engine.THREADS_ENV, raising=False)


def test_threads_default_to_the_cpus_this_process_may_use(no_env):
    assert engine.thread_count(None) == len(os.sched_getaffinity(0))


def test_compute_threads_sets_the_count_and_the_environment_wins(monkeypatch):
    monkeypatch.delenv(engine.THREADS_ENV, raising=False)
    assert engine.thread_count(3) == 3
    monkeypatch.setenv(engine.THREADS_ENV, "1")
    assert engine.thread_count(3) == 1


@pytest.mark.parametrize("value", ["0", "two", "-1"])
def test_a_bad_thread_environment_value_is_one_line_naming_it(monkeypatch, value):
    monkeypatch.setenv(engine.THREADS_ENV, value)
    with pytest.raises(ParamsError, match=rf"FAIRSER_THREADS={value!r}"):
        engine.thread_count(None)


def test_stage_entry_sizes_torch_threads_from_its_params_file(tmp_path, no_env):
    params = shipped_params()
    params["compute"]["threads"] = 1
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(params))
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        assert stage.threads_from_params(["--out", "x", "--params", str(tmp_path / "p.yaml")]) == 1
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def corpus_with_a_bad_clip(root):
    """Three tones of different lengths and one file that is not audio."""
    wav = root / "wav"
    wav.mkdir(parents=True)
    files = [f"10{i:02d}_DFA_ANG_XX.wav" for i in range(4)]
    for i, (f, s) in enumerate(zip(files[:3], (0.3, 0.5, 0.4))):
        sf.write(wav / f, tone(s, 110 + 60 * i, seed=i), SAMPLE_RATE, subtype="PCM_16")
    (wav / files[3]).write_bytes(b"RIFF\x10\x00\x00\x00WAVEjunk")
    return files, wav


def run_fbank(files, wav, blocks, **kwargs):
    job = F.FeaturesJob("fbank", "cpu", batch_seconds=1.0)
    return engine.run(job, files, [wav / f for f in files], blocks, progress=False, **kwargs)


def test_an_undecodable_clip_is_a_skipped_row_with_its_reason(tmp_path):
    files, wav = corpus_with_a_bad_clip(tmp_path)
    out = run_fbank(files, wav, [[0, 3], [1, 2]])
    assert sorted(out.rows) == sorted(files[:3])
    assert list(out.skipped) == [files[3]] and out.skipped[files[3]].startswith("undecodable (")
    assert str(tmp_path) not in out.skipped[files[3]]  # reasons are the same on every machine
    with pytest.raises(InputError, match=rf"{wav}/1003_DFA_ANG_XX.wav: undecodable"):
        out.stacked(files)


def test_rows_do_not_depend_on_how_clips_are_blocked(tmp_path):
    files, wav = corpus_with_a_bad_clip(tmp_path)
    a = run_fbank(files[:3], wav, [[0, 1, 2]])
    b = run_fbank(files[:3], wav, [[2], [0], [1]])
    for f in files[:3]:
        np.testing.assert_array_equal(a.rows[f], b.rows[f])


def test_unknown_engine_is_refused(tmp_path):
    files, wav = corpus_with_a_bad_clip(tmp_path)
    with pytest.raises(ValueError, match="compute.engine"):
        run_fbank(files[:1], wav, [[0]], compute={"engine": "dask"})


class Doubling:
    """A job that knows nothing of audio: reads a number from a text file, doubles it in batches,
    and fails on a negative number (so the engine has to find which item broke the batch)."""

    name = "doubling"
    device = "cpu"

    def __init__(self):
        self.batches = []

    def load(self):
        return "model"

    def read(self, source):
        return float(Path(source).read_text())

    def process(self, model, inputs):
        self.batches.append(list(inputs))
        if any(x < 0 for x in inputs):
            raise ValueError("negative input")
        return [np.array([2 * x]) for x in inputs], [None] * len(inputs)


def test_the_engine_maps_any_job_over_blocks_and_names_the_item_that_fails(tmp_path):
    values = {"a": 1.0, "b": -1.0, "c": 3.0, "d": 4.0}
    for key, x in values.items():
        (tmp_path / key).write_text(str(x))
    (tmp_path / "e").write_text("not a number")
    keys = [*values, "e"]
    job = Doubling()
    out = engine.run(job, keys, [tmp_path / k for k in keys], [[0, 1, 2], [3, 4]], progress=False)
    assert {k: float(r[0]) for k, r in out.rows.items()} == {"a": 2.0, "c": 6.0, "d": 8.0}
    assert out.skipped["b"] == "doubling (str) failed (ValueError: negative input)"
    assert out.skipped["e"].startswith("undecodable (ValueError")
    # the failing block's batch, then its items one by one; the unreadable item never reaches it
    assert job.batches == [[1.0, -1.0, 3.0], [1.0], [-1.0], [3.0], [4.0]]
    with pytest.raises(InputError, match=rf"^{tmp_path}/b: doubling"):
        out.stacked(keys)


def test_checkpointed_items_are_not_redone(tmp_path):
    for key, x in {"a": 1.0, "b": 2.0, "c": 5.0}.items():
        (tmp_path / key).write_text(str(x))
    keys, partial = ["a", "b", "c"], tmp_path / "partial"
    first = Doubling()
    engine.run(first, keys[:2], [tmp_path / k for k in keys[:2]], [[0], [1]], partial_dir=partial,
               progress=False)
    second = Doubling()
    out = engine.run(second, keys, [tmp_path / k for k in keys], [[0, 1, 2]], partial_dir=partial,
                     progress=False)
    assert second.batches == [[5.0]]
    np.testing.assert_array_equal(out.stacked(keys), [[2.0], [4.0], [10.0]])
    assert sorted(p.name for p in partial.glob("chunk_*.npz")) == [
        "chunk_000000.npz", "chunk_000001.npz", "chunk_000002.npz"]


NO_RAY = """
import sys
from pathlib import Path
import pandas as pd
from fairser import features, idi, speaker
corpus = Path(sys.argv[1])
features.run(corpus, corpus.parent / "f", upstream="fbank", batch_seconds=64, device="cpu",
             compute={"engine": "local", "threads": 1}, progress=False)
speaker.run(corpus, corpus.parent / "s", model="resemblyzer", device="cpu",
            compute={"engine": "local", "threads": 1}, progress=False)
idi.run_pseudo(corpus, corpus.parent / "p", model="pitch", threshold_hz=165.0, device="cpu",
               compute={"engine": "local", "threads": 1}, progress=False)
print("ray" in sys.modules, any(m.startswith("ray.") for m in sys.modules))
"""


def test_the_local_engine_never_imports_ray(tmp_path):
    corpus = tmp_path / "corpus"
    files, _ = corpus_with_a_bad_clip(corpus)
    (corpus / "wav" / files[3]).unlink()
    pd.DataFrame({"file": files[:3]}).to_csv(corpus / "clips.csv", index=False)
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"), OMP_NUM_THREADS="1")
    out = subprocess.run([sys.executable, "-c", NO_RAY, str(corpus)], env=env, capture_output=True,
                         text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "False"]
    assert (tmp_path / "f" / "features.npy").is_file() and (tmp_path / "p" / "pseudo.csv").is_file()
