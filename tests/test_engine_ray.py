"""The Ray engine gives the local engine's rows: features, speaker and pseudo on a tiny corpus.

Slow: starting Ray and its actors takes tens of seconds on a small machine. One local Ray
instance (tests/conftest.py `ray_local`) serves every test here.
"""

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from fairser import engine, features, idi, speaker
from fairser.errors import InputError
from fairser.constants import SAMPLE_RATE
from helpers import tone

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("hub_offline")]

RAY = {"engine": "ray", "threads": 1, "ray_workers": 2}
LOCAL = {"engine": "local", "threads": 1}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """Five tones of different lengths and pitches, and one clip that is not audio."""
    root = tmp_path_factory.mktemp("corpus")
    (root / "wav").mkdir()
    files = [f"10{i:02d}_DFA_ANG_XX.wav" for i in range(6)]
    for i, f in enumerate(files[:5]):
        sf.write(root / "wav" / f, tone(0.3 + 0.35 * i, 105 + 30 * i, seed=i), SAMPLE_RATE,
                 subtype="PCM_16")
    (root / "wav" / files[5]).write_bytes(b"RIFF\x10\x00\x00\x00WAVEjunk")
    pd.DataFrame({"file": files}).to_csv(root / "clips.csv", index=False)
    return root, files


JOBS = {
    "features": features.FeaturesJob("fbank", "cpu", batch_seconds=2.0),
    "speaker": speaker.SpeakerJob("resemblyzer", "cpu"),
    "pseudo": idi.PseudoJob("pitch", 165.0, "cpu", batch_seconds=2.0),
}


@pytest.mark.parametrize("kind", sorted(JOBS))
def test_ray_engine_rows_equal_the_local_engine_rows_with_an_undecodable_clip(ray_local, corpus, kind):
    root, files = corpus
    blocks = [[0, 5, 2], [4], [1, 3]]  # the bad clip shares a block with good ones
    sources = [root / "wav" / f for f in files]
    local = engine.run(JOBS[kind], files, sources, blocks, compute=LOCAL, progress=False)
    remote = engine.run(JOBS[kind], files, sources, blocks, compute=RAY, progress=False)
    assert list(remote.rows) == list(local.rows) == files[:5]  # in `files` order, whatever Ray's
    for f in files[:5]:
        np.testing.assert_allclose(remote.rows[f], local.rows[f], rtol=1e-6, atol=1e-6)
    assert remote.skipped == local.skipped and list(remote.skipped) == [files[5]]
    assert remote.skipped[files[5]].startswith("undecodable (")


def test_ray_engine_stages_write_the_local_engines_caches(ray_local, corpus, tmp_path):
    root, files = corpus
    good = tmp_path / "corpus"
    (good / "wav").mkdir(parents=True)
    for f in files[:5]:
        (good / "wav" / f).write_bytes((root / "wav" / f).read_bytes())
    pd.DataFrame({"file": files[:5]}).to_csv(good / "clips.csv", index=False)
    out = {}
    for name, compute in (("local", LOCAL), ("ray", RAY)):
        d = tmp_path / name
        features.run(good, d / "features", upstream="fbank", batch_seconds=2.0, device="cpu",
                     compute=compute, progress=False)
        speaker.run(good, d / "speaker", model="resemblyzer", device="cpu", compute=compute,
                    progress=False)
        idi.run_pseudo(good, d / "pseudo", model="pitch", threshold_hz=165.0, device="cpu",
                       compute=compute, progress=False)
        out[name] = d
    a, b = out["local"], out["ray"]
    for rel in ("features/index.csv", "features/info.json", "speaker/index.csv", "speaker/info.json",
                "pseudo/pseudo.csv"):
        assert (a / rel).read_text() == (b / rel).read_text(), rel
    np.testing.assert_array_equal(np.load(a / "features/features.npy"), np.load(b / "features/features.npy"))
    np.testing.assert_allclose(np.load(a / "speaker/embeddings.npy"), np.load(b / "speaker/embeddings.npy"),
                               rtol=0, atol=1e-6)


def test_ray_engine_stage_names_an_undecodable_clip_like_the_local_one(ray_local, corpus, tmp_path):
    root, files = corpus
    messages = []
    for compute in (LOCAL, RAY):
        with pytest.raises(InputError) as err:
            speaker.embed_clips(files, root / "wav", speaker.load_embedder("resemblyzer"),
                                job=JOBS["speaker"], compute=compute, progress=False)
        messages.append(str(err.value))
    assert messages[0] == messages[1] and "1005_DFA_ANG_XX.wav: undecodable" in messages[0]
