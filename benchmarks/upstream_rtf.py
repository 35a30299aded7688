"""Real-time factor (compute seconds / audio seconds) of the feature and speaker models on this CPU.

python benchmarks/upstream_rtf.py [--seconds 60] [--threads 2]

Models at random init in their real shapes (no download): WavLM Base+ (WavLMConfig defaults), the
ECAPA-TDNN of speechbrain/spkrec-ecapa-voxceleb (channels 1024 x 4, 3072), plus fbank and
resemblyzer (its weights ship in the wheel). Audio: seeded noise clips of 1.5-3.5 s (CREMA-D-like
lengths) adding up to about --seconds. One warm-up clip per model is not timed.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from fairser.constants import SAMPLE_RATE
from fairser.features import FbankUpstream, HFUpstream, length_batches


def clips(total_seconds: float, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    out, got = [], 0.0
    while got < total_seconds:
        s = rng.uniform(1.5, 3.5)
        out.append((0.1 * rng.standard_normal(int(s * SAMPLE_RATE))).astype(np.float32))
        got += s
    return out


def time_batches(fn, waves, batches) -> float:
    fn([waves[0][:SAMPLE_RATE]])  # warm-up (allocations, lazy init)
    start = time.perf_counter()
    for b in batches:
        fn([waves[i] for i in b])
    return time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch-seconds", type=float, default=64.0)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    waves = clips(args.seconds)
    audio = sum(len(w) for w in waves) / SAMPLE_RATE
    lengths = [len(w) for w in waves]
    budget = args.batch_seconds * SAMPLE_RATE
    print(f"{len(waves)} clips, {audio:.1f} s of audio, torch threads {args.threads}")
    rows = []

    rows.append(("fbank (2 layers x 80)", time_batches(FbankUpstream().pooled, waves,
                                                       length_batches(lengths, budget))))

    from transformers import Wav2Vec2FeatureExtractor, WavLMConfig, WavLMModel

    torch.manual_seed(0)
    wavlm = HFUpstream(WavLMModel(WavLMConfig()), Wav2Vec2FeatureExtractor(return_attention_mask=True),
                       "WavLM Base+ (random init)")
    exact = length_batches(lengths, budget, allow_padding=wavlm.allow_padding)
    rows.append((f"WavLM Base+, exact (per-clip conv, {len(exact)} length-bucketed batches)",
                 time_batches(wavlm.pooled, waves, exact)))
    one = [[i] for i in range(len(waves))]
    rows.append(("WavLM Base+, exact, one clip at a time", time_batches(wavlm.pooled, waves, one)))
    # The reference setup: padded batches of 8 clips (inexact under GroupNorm), by length or not.
    wavlm.split, wavlm.allow_padding = False, True
    unsorted = [list(range(i, min(i + 8, len(waves)))) for i in range(0, len(waves), 8)]
    rows.append(("WavLM Base+, padded batch 8, unsorted (inexact)",
                 time_batches(wavlm.pooled, waves, unsorted)))
    del wavlm

    from speechbrain.lobes.features import Fbank
    from speechbrain.lobes.models.ECAPA_TDNN import ECAPA_TDNN
    from speechbrain.processing.features import InputNormalization

    feats, norm = Fbank(n_mels=80), InputNormalization(norm_type="sentence", std_norm=False)
    ecapa = ECAPA_TDNN(80, channels=[1024, 1024, 1024, 1024, 3072], lin_neurons=192).eval()

    @torch.inference_mode()
    def ecapa_embed(ws):
        for w in ws:  # one clip at a time, as fairser.speaker does
            x = torch.from_numpy(w)[None]
            ecapa(norm(feats(x), torch.ones(1)), torch.ones(1))

    rows.append(("ECAPA-TDNN (spkrec-ecapa-voxceleb shape, random init)",
                 time_batches(ecapa_embed, waves, [[i] for i in range(len(waves))])))

    from fairser.speaker import Resemblyzer

    enc = Resemblyzer()
    rows.append(("resemblyzer (GE2E, pretrained)",
                 time_batches(lambda ws: [enc.embed(w) for w in ws], waves,
                              [[i] for i in range(len(waves))])))

    print(f"{'model':<70} {'seconds':>8} {'RTF':>6}")
    for name, sec in rows:
        print(f"{name:<70} {sec:8.2f} {sec / audio:6.3f}")


if __name__ == "__main__":
    main()
