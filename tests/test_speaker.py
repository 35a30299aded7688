"""Speaker embeddings: resemblyzer offline, a speechbrain ECAPA folder built by our code (weights only)."""

import json

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch

from fairser import speaker as S
from fairser.errors import InputError
from fairser.constants import SAMPLE_RATE
from helpers import tone

torch.set_num_threads(1)

# A tiny ECAPA-TDNN in the layout of speechbrain/spkrec-ecapa-voxceleb's hyperparams.yaml,
# including `pretrained_path: <hub id>`, which a local copy must override to load offline.
HPARAMS = """\
pretrained_path: speechbrain/spkrec-ecapa-voxceleb
n_mels: 24
compute_features: !new:speechbrain.lobes.features.Fbank
    n_mels: !ref <n_mels>
mean_var_norm: !new:speechbrain.processing.features.InputNormalization
    norm_type: sentence
    std_norm: False
embedding_model: !new:speechbrain.lobes.models.ECAPA_TDNN.ECAPA_TDNN
    input_size: !ref <n_mels>
    channels: [16, 16, 16, 16, 48]
    kernel_sizes: [5, 3, 3, 3, 1]
    dilations: [1, 2, 3, 4, 1]
    attention_channels: 8
    res2net_scale: 4
    se_channels: 8
    lin_neurons: 12
classifier: !new:speechbrain.lobes.models.ECAPA_TDNN.Classifier
    input_size: 12
    out_neurons: 3
modules:
    compute_features: !ref <compute_features>
    mean_var_norm: !ref <mean_var_norm>
    embedding_model: !ref <embedding_model>
    classifier: !ref <classifier>
pretrainer: !new:speechbrain.utils.parameter_transfer.Pretrainer
    loadables:
        embedding_model: !ref <embedding_model>
    paths:
        embedding_model: !ref <pretrained_path>/embedding_model.ckpt
"""


pytestmark = pytest.mark.usefixtures("hub_offline")


def tiny_ecapa(folder):
    """hyperparams.yaml + a randomly initialised embedding_model.ckpt, as on the hub."""
    from speechbrain.lobes.models.ECAPA_TDNN import ECAPA_TDNN

    folder.mkdir()
    (folder / "hyperparams.yaml").write_text(HPARAMS)
    torch.manual_seed(0)
    model = ECAPA_TDNN(24, channels=[16, 16, 16, 16, 48], attention_channels=8, res2net_scale=4,
                       se_channels=8, lin_neurons=12)
    torch.save(model.state_dict(), folder / "embedding_model.ckpt")
    return model


def test_ecapa_folder_gives_speechbrains_own_encode_batch_embedding(tmp_path):
    """Our build (hyperparams read as data, weights-only checkpoint) equals speechbrain's
    EncoderClassifier on the same folder, which evaluates the (here trusted) hyperparams.yaml."""
    from speechbrain.inference.classifiers import EncoderClassifier

    tiny_ecapa(tmp_path / "ecapa")
    enc = S.load_embedder(str(tmp_path / "ecapa"))
    wave = tone(0.6, 150)
    e = enc.embed(wave)
    assert e.shape == (12,) and e.dtype == np.float32
    theirs = EncoderClassifier.from_hparams(
        source=str(tmp_path / "ecapa"), savedir=str(tmp_path / "sb"),
        overrides={"pretrained_path": str(tmp_path / "ecapa")})
    with torch.inference_mode():
        expected = theirs.encode_batch(torch.from_numpy(wave)[None]).reshape(-1).numpy()
    np.testing.assert_allclose(e, expected, rtol=1e-5, atol=1e-6)


def test_ecapa_pads_a_very_short_clip(tmp_path):
    tiny_ecapa(tmp_path / "ecapa")
    enc = S.load_embedder(str(tmp_path / "ecapa"))
    assert np.isfinite(enc.embed(tone(0.01, 150))).all()


def test_unloadable_speaker_model_is_one_line_naming_it(tmp_path):
    with pytest.raises(InputError) as err:
        S.load_embedder("nobody-here/no-such-ecapa")
    msg = str(err.value)
    assert "nobody-here/no-such-ecapa" in msg and "-S speaker.model=" in msg and "\n" not in msg


def test_resemblyzer_gives_unit_norm_256d_and_separates_voices():
    enc = S.load_embedder("resemblyzer")
    low_a, low_b, high = (enc.embed(tone(0.8, f, seed=s)) for f, s in [(110, 1), (112, 2), (240, 3)])
    assert low_a.shape == (256,)
    np.testing.assert_allclose(np.linalg.norm(low_a), 1.0, rtol=1e-5)
    assert low_a @ low_b > low_a @ high


def two_clip_corpus(corpus, skipped=()):
    """A corpus folder of two tones (a low and a high voice); `skipped` clips are listed, no wav."""
    (corpus / "wav").mkdir(parents=True)
    files = ["1001_DFA_ANG_XX.wav", "1002_DFA_SAD_XX.wav"]
    for i, f in enumerate(files):
        sf.write(corpus / "wav" / f, tone(0.4, 120 + 90 * i), SAMPLE_RATE, subtype="PCM_16")
    pd.DataFrame({"file": files + list(skipped)}).to_csv(corpus / "clips.csv", index=False)
    if skipped:
        pd.DataFrame({"file": list(skipped), "reason": ["empty"] * len(skipped)}).to_csv(
            corpus / "skipped.csv", index=False)
    return files


def test_stage_writes_one_row_per_usable_clip(tmp_path):
    corpus = tmp_path / "corpus"
    files = two_clip_corpus(corpus, skipped=["1003_DFA_SAD_XX.wav"])
    tiny_ecapa(tmp_path / "ecapa")
    S.run(corpus, tmp_path / "speaker", model=str(tmp_path / "ecapa"), device="cpu", progress=False)
    emb = np.load(tmp_path / "speaker" / "embeddings.npy")
    assert emb.shape == (2, 12) and emb.dtype == np.float32
    assert pd.read_csv(tmp_path / "speaker" / "index.csv")["file"].tolist() == files
    info = json.loads((tmp_path / "speaker" / "info.json").read_text())
    assert info["dim"] == 12
    assert (info["model"]["kind"], info["model"]["model"]) == ("folder", str(tmp_path / "ecapa"))


class Counting:
    """A stand-in embedder: a clip's embedding is its first samples; it can be told to die."""

    name = "counting"

    def __init__(self, fail_after=None):
        self.clips, self.fail_after = 0, fail_after

    def embed(self, wave):
        if self.fail_after is not None and self.clips == self.fail_after:
            raise KeyboardInterrupt  # as if the stage were killed here
        self.clips += 1
        return wave[:4].astype(np.float32)


def test_killed_speaker_run_resumes_where_it_stopped_with_identical_result(tmp_path, monkeypatch):
    monkeypatch.setattr(S, "CHUNK_CLIPS", 2)
    wav = tmp_path / "wav"
    wav.mkdir()
    files = [f"10{i:02d}_DFA_ANG_XX.wav" for i in range(7)]
    for i, f in enumerate(files):
        sf.write(wav / f, tone(0.3, 100 + 15 * i, seed=i), SAMPLE_RATE, subtype="PCM_16")
    partial = tmp_path / "partial"
    with pytest.raises(KeyboardInterrupt):
        S.embed_clips(files, wav, Counting(fail_after=5), partial_dir=partial, progress=False)
    assert len(list(partial.glob("chunk_*.npz"))) == 2  # 4 of the 5 embedded clips were saved
    second = Counting()
    resumed = S.embed_clips(files, wav, second, partial_dir=partial, progress=False)
    direct = S.embed_clips(files, wav, Counting(), progress=False)
    assert second.clips == 3
    np.testing.assert_array_equal(resumed, direct)


def test_speaker_stage_removes_its_checkpoints_when_done(tmp_path):
    corpus = tmp_path / "corpus"
    two_clip_corpus(corpus)
    S.run(corpus, tmp_path / "speaker", model="resemblyzer", device="cpu", progress=False)
    assert (tmp_path / "speaker" / "embeddings.npy").is_file()
    assert not (tmp_path / ".speaker-partial").exists()


def test_a_model_folder_cannot_run_code_through_its_hyperparams(tmp_path, monkeypatch):
    """hyperpyyaml would run both lines below while loading; we read the file as data only."""
    monkeypatch.chdir(tmp_path)
    marker, marker2 = tmp_path / "MARKER", tmp_path / "MARKER2"
    tiny_ecapa(tmp_path / "ecapa")
    hparams = tmp_path / "ecapa" / "hyperparams.yaml"
    # A constructor call outside the three parts we build: never constructed, the folder loads.
    hparams.write_text(HPARAMS + f'side_effect: !new:os.system ["touch {marker2}"]\n')
    assert S.load_embedder(str(tmp_path / "ecapa")).embed(tone(0.3, 150)).shape == (12,)
    assert not marker2.exists()
    # A load-time call: the file is refused outright.
    hparams.write_text(HPARAMS + f'run: !apply:os.system ["touch {marker}"]\n')
    with pytest.raises(InputError, match="refused, it holds a !apply tag"):
        S.load_embedder(str(tmp_path / "ecapa"))
    assert not marker.exists()


def test_an_architecture_part_naming_another_class_is_refused(tmp_path):
    tiny_ecapa(tmp_path / "ecapa")
    hparams = tmp_path / "ecapa" / "hyperparams.yaml"
    hparams.write_text(HPARAMS.replace("!new:speechbrain.lobes.models.ECAPA_TDNN.ECAPA_TDNN",
                                       "!new:subprocess.Popen"))
    with pytest.raises(InputError, match="embedding_model' must be !new:speechbrain"):
        S.load_embedder(str(tmp_path / "ecapa"))


def test_batched_resemblyzer_equals_embed_utterance_clip_by_clip():
    enc = S.load_embedder("resemblyzer")
    # 0.3 s (one zero-padded partial), 1.6 s, 3.1 s (several partials), and a near-silent clip
    # whose VAD keeps nothing (the untrimmed fallback).
    waves = [tone(0.3, 120, seed=1), tone(1.6, 180, seed=2), tone(3.1, 230, seed=3),
             (1e-4 * np.random.default_rng(4).standard_normal(8000)).astype(np.float32)]
    assert len(S.resemblyzer_partials(waves[2])) > 1
    rows, reasons = S.embed_batch(enc, waves)
    assert reasons == [None] * 4
    for wave, row in zip(waves, rows):
        np.testing.assert_allclose(row, enc.embed(wave), rtol=0, atol=2e-6)


def test_batched_speaker_pass_gives_a_clip_that_fails_a_reason_not_a_crash():
    enc = S.load_embedder("resemblyzer")
    bad = np.full(8000, np.nan, dtype=np.float32)  # librosa refuses non-finite audio
    rows, reasons = S.embed_batch(enc, [tone(0.5, 120), bad])
    assert rows[0] is not None and rows[1] is None
    assert reasons[0] is None and "speaker preprocessing failed" in reasons[1]


def test_speaker_stage_names_an_undecodable_clip_after_embedding_the_others(tmp_path):
    wav = tmp_path / "wav"
    wav.mkdir()
    files = ["1001_DFA_ANG_XX.wav", "1002_DFA_ANG_XX.wav"]
    sf.write(wav / files[0], tone(0.4, 120), SAMPLE_RATE, subtype="PCM_16")
    (wav / files[1]).write_bytes(b"RIFF not audio at all")
    partial = tmp_path / "partial"
    with pytest.raises(InputError, match=r"1002_DFA_ANG_XX.wav: undecodable"):
        S.embed_clips(files, wav, S.load_embedder("resemblyzer"), partial_dir=partial, progress=False)
    assert len(list(partial.glob("chunk_*.npz"))) == 1  # the good clip is checkpointed
