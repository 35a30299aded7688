"""Frozen-upstream features: length bucketing, exact length-aware pooling, fbank layers, resume."""

import json

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch

from fairser import features as F
from fairser.errors import InputError
from fairser.constants import SAMPLE_RATE
from helpers import tone

torch.set_num_threads(1)


pytestmark = pytest.mark.usefixtures("hub_offline")




def write_corpus(root, seconds, skipped=()):
    """data/corpus layout of docs/DESIGN.md with one clip per entry of `seconds`."""
    (root / "wav").mkdir(parents=True)
    files = [f"10{i:02d}_DFA_ANG_XX.wav" for i in range(len(seconds))]
    for i, (file, s) in enumerate(zip(files, seconds)):
        if file not in skipped:
            sf.write(root / "wav" / file, tone(s, 110 + 20 * i, seed=i), SAMPLE_RATE, subtype="PCM_16")
    pd.DataFrame({"file": files, "actor": [1000 + i for i in range(len(files))]}).to_csv(
        root / "clips.csv", index=False)
    pd.DataFrame({"file": list(skipped), "reason": ["corrupt"] * len(skipped)}).to_csv(
        root / "skipped.csv", index=False)
    return [f for f in files if f not in skipped]


def tiny_wavlm(folder, norm):
    """A randomly initialised 2-layer WavLM saved like a hub checkpoint, with its feature extractor."""
    from transformers import Wav2Vec2FeatureExtractor, WavLMConfig, WavLMModel

    torch.manual_seed(0)
    cfg = WavLMConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                      conv_dim=(16, 16), conv_kernel=(10, 3), conv_stride=(5, 2), conv_bias=True,
                      num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2, num_buckets=32,
                      feat_extract_norm=norm, do_stable_layer_norm=norm == "layer")
    WavLMModel(cfg).save_pretrained(folder)
    Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=SAMPLE_RATE, do_normalize=True,
                             return_attention_mask=True).save_pretrained(folder)
    return str(folder)


def test_length_batches_cover_every_clip_once_within_budget():
    lengths = [5, 1, 3, 3, 9, 2, 20]
    batches = F.length_batches(lengths, 10)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    for b in batches:
        assert len(b) == 1 or len(b) * max(lengths[i] for i in b) <= 10
    assert batches[-1] == [6]  # longer than the budget: runs alone


def test_length_batches_without_padding_only_group_equal_lengths():
    batches = F.length_batches([4, 4, 3, 4, 3], 100, allow_padding=False)
    assert sorted(map(sorted, batches)) == [[0, 1, 3], [2, 4]]


def test_fbank_is_one_layer_whose_frame_mean_is_exactly_mean_and_variance():
    up = F.FbankUpstream()
    wave = tone(0.3, 150)
    frames = up.frames(wave).numpy()
    vectors = up.frame_vectors(wave).numpy()
    np.testing.assert_array_equal(vectors[:, : F.N_MELS], frames)
    pooled = up.pooled([wave])[0]
    assert pooled.shape == (1, 2 * F.N_MELS)
    np.testing.assert_array_equal(pooled[0], vectors.mean(0).astype(np.float32))
    np.testing.assert_allclose(pooled[0, : F.N_MELS], frames.mean(0), rtol=1e-6)
    np.testing.assert_allclose(pooled[0, F.N_MELS:], frames.var(0), rtol=1e-5, atol=1e-7)


def test_fbank_pads_a_clip_shorter_than_one_window():
    pooled = F.FbankUpstream().pooled([tone(0.005, 200)])  # 80 samples < 400
    assert pooled.shape == (1, 1, 2 * F.N_MELS) and np.isfinite(pooled).all()


@pytest.mark.parametrize("norm", ["layer", "group"])
def test_hf_pooling_equals_one_clip_at_a_time_mean_over_valid_frames(tmp_path, norm):
    up = F.load_upstream(tiny_wavlm(tmp_path / "m", norm))
    assert (up.layers, up.dim) == (3, 32)
    assert up.allow_padding and up.split == (norm == "group")
    waves = [tone(s, 120 + 30 * i, seed=i) for i, s in enumerate([0.2, 0.35, 0.35, 0.5])]
    lengths = [len(w) for w in waves]
    batched = np.zeros((4, 3, 32), dtype=np.float32)
    for b in F.length_batches(lengths, 4 * 8000, allow_padding=up.allow_padding):
        batched[b] = up.pooled([waves[i] for i in b])
    assert any(len({lengths[i] for i in b}) > 1 for b in F.length_batches(lengths, 32000))
    for i, w in enumerate(waves):
        inputs = up.extractor([w], sampling_rate=SAMPLE_RATE, return_tensors="pt")
        with torch.inference_mode():
            hidden = up.model(inputs["input_values"], output_hidden_states=True).hidden_states
        alone = torch.stack(hidden, 1)[0].mean(1).numpy()  # every frame of the clip is valid
        np.testing.assert_allclose(batched[i], alone, rtol=1e-4, atol=1e-5)


def test_group_norm_model_without_split_parts_batches_equal_lengths_only(tmp_path):
    up = F.load_upstream(tiny_wavlm(tmp_path / "m", "group"))
    up.split = up.allow_padding = False  # as for a model not built like wav2vec 2.0
    with pytest.raises(ValueError, match="unequal lengths"):
        up.pooled([tone(0.2, 100), tone(0.3, 100)])
    same = [tone(0.2, 100, seed=1), tone(0.2, 150, seed=2)]
    np.testing.assert_allclose(up.pooled(same), np.concatenate([up.pooled([w]) for w in same]),
                               rtol=1e-4, atol=1e-5)


def test_hf_clip_shorter_than_receptive_field_is_padded_not_dropped(tmp_path):
    up = F.load_upstream(tiny_wavlm(tmp_path / "m", "layer"))
    # one frame of the last conv (kernel 3, stride 2) needs 3 inputs; 3 frames of (10, 5) need 20
    assert up.min_samples == (3 - 1) * 5 + 10
    pooled = up.pooled([tone(0.0005, 200)])  # 8 samples
    assert pooled.shape == (1, 3, 32) and np.isfinite(pooled).all()


def test_unloadable_model_id_is_one_line_naming_it_and_the_local_copy_override():
    with pytest.raises(InputError) as err:
        F.load_upstream("nobody-here/no-such-model-xyz")
    msg = str(err.value)
    assert "nobody-here/no-such-model-xyz" in msg and "-S features.upstream=" in msg
    assert "\n" not in msg


def test_wrong_sample_rate_is_named_before_model_work(tmp_path):
    write_corpus(tmp_path / "corpus", [0.2])
    bad = tmp_path / "corpus" / "wav" / "1000_DFA_ANG_XX.wav"
    sf.write(bad, np.zeros(800, dtype=np.float32), 8000)
    with pytest.raises(InputError, match="1000_DFA_ANG_XX.wav.*16000 Hz"):
        F.run(tmp_path / "corpus", tmp_path / "features", upstream="no/such-model", batch_seconds=1,
              progress=False)


def test_stage_writes_contract_files_and_skips_skipped_clips(tmp_path):
    files = write_corpus(tmp_path / "corpus", [0.2, 0.3, 0.25], skipped=("1001_DFA_ANG_XX.wav",))
    F.run(tmp_path / "corpus", tmp_path / "features", upstream="fbank", batch_seconds=1, progress=False)
    feats = np.load(tmp_path / "features" / "features.npy", mmap_mode="r")
    assert feats.dtype == np.float16 and feats.shape == (2, 1, 2 * F.N_MELS)
    assert pd.read_csv(tmp_path / "features" / "index.csv")["file"].tolist() == files
    info = json.loads((tmp_path / "features" / "info.json").read_text())
    assert (info["upstream"], info["layers"], info["dim"]) == ("fbank", 1, 2 * F.N_MELS)
    assert info["model"] == {"model": "fbank", "kind": "builtin"}
    assert not (tmp_path / ".features-partial").exists()


class Flaky(F.FbankUpstream):
    """fbank that dies after `fail_after` batches, counting the clips it computed."""

    def __init__(self, fail_after=None):
        super().__init__()
        self.fail_after, self.batches, self.clips = fail_after, 0, 0

    def pooled(self, waves):
        if self.fail_after is not None and self.batches == self.fail_after:
            raise KeyboardInterrupt
        self.batches += 1
        self.clips += len(waves)
        return super().pooled(waves)


def test_killed_run_resumes_where_it_stopped_with_identical_result(tmp_path):
    files = write_corpus(tmp_path / "corpus", [0.1, 0.2, 0.3, 0.4, 0.5])
    wav = tmp_path / "corpus" / "wav"
    partial = tmp_path / "partial"
    with pytest.raises(KeyboardInterrupt):
        F.extract(files, wav, Flaky(fail_after=2), batch_seconds=0.45, partial_dir=partial, progress=False)
    assert len(list(partial.glob("chunk_*.npz"))) == 2
    second = Flaky()
    resumed = F.extract(files, wav, second, batch_seconds=0.45, partial_dir=partial, progress=False)
    fresh = Flaky()
    direct = F.extract(files, wav, fresh, batch_seconds=0.45, partial_dir=tmp_path / "p2", progress=False)
    assert 0 < second.clips < fresh.clips == len(files)
    np.testing.assert_array_equal(resumed, direct)


def test_partial_key_changes_with_upstream_and_corpus():
    a = F.partial_key("fbank", ["a.wav", "b.wav"], [10, 20])
    assert a == F.partial_key("fbank", ["a.wav", "b.wav"], [10, 20])
    assert a != F.partial_key("microsoft/wavlm-base-plus", ["a.wav", "b.wav"], [10, 20])
    assert a != F.partial_key("fbank", ["a.wav", "b.wav"], [10, 21])


def test_device_auto_falls_back_to_cpu_and_cuda_without_one_is_refused(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert F.resolve_device("auto", key="features.device").type == "cpu"
    with pytest.raises(InputError, match="'features.device' is 'cuda'"):
        F.resolve_device("cuda", key="features.device")
