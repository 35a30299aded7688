"""Speaker embeddings, one per clip, for the unsupervised IDI clustering (paper section 3.1).

Paper: ECAPA-TDNN (Desplanques et al., 2020) through speechbrain, `speechbrain/spkrec-ecapa-voxceleb`,
192-d. Offline default: `resemblyzer`, the GE2E LSTM speaker encoder (Wan et al., 2018) whose
weights ship inside its wheel, 256-d, unit norm; docs/SPEAKER_MODEL.md says why.
Batching (embed_batch): resemblyzer's partial utterances are all 160 frames long, so the partials
of many clips go through the LSTM in one forward pass with no padding, and each clip's embedding is
the renormalised mean of its own partials, as in embed_utterance (equal to float tolerance,
tests/test_speaker.py). ECAPA pools inexactly under zero-padding (reflect-padded convolutions),
so its clips still run one at a time.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np
import torch

from fairser.constants import SAMPLE_RATE
from fairser.features import (check_wavs, model_load_error, pad_to, partial_key, remove_partial,
                              resolve_device, usable_clips)

RESEMBLYZER = "resemblyzer"
# ECAPA's deepest block is a dilation-4, kernel-3 convolution with reflect padding, which needs a
# few frames of input; 100 ms (10 frames) is a safe floor, far below any real utterance.
ECAPA_MIN_SAMPLES = SAMPLE_RATE // 10
# Fewer samples than this after resemblyzer's silence trimming means its VAD found no speech
# (e.g. synthetic tones); the embedding then uses the volume-normalised clip untrimmed.
RESEMBLYZER_MIN_SAMPLES = SAMPLE_RATE // 4


def default_savedir(source: str) -> Path:
    """Where speechbrain links a model's files: a user cache, never inside a stage output."""
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "fairser" / "speechbrain"
    return base / re.sub(r"[^A-Za-z0-9_.-]", "_", source.strip("/"))


class Resemblyzer:
    """resemblyzer 0.1.4 VoiceEncoder: preprocess_wav (volume to -30 dBFS, long silences trimmed),
    then embed_utterance (mean of unit-norm partial embeddings over 1.6 s windows, renormalised)."""

    name = RESEMBLYZER
    dim = 256

    def __init__(self, device: torch.device = torch.device("cpu")):
        from resemblyzer import VoiceEncoder

        self.encoder = VoiceEncoder(str(device), verbose=False)

    @torch.inference_mode()
    def embed(self, wave: np.ndarray) -> np.ndarray:
        return self.encoder.embed_utterance(resemblyzer_input(wave)).astype(np.float32)


def resemblyzer_input(wave: np.ndarray) -> np.ndarray:
    """preprocess_wav, or the volume-normalised clip untrimmed when its VAD finds no speech."""
    from resemblyzer import preprocess_wav
    from resemblyzer.audio import normalize_volume

    processed = preprocess_wav(wave, source_sr=SAMPLE_RATE)
    if len(processed) < RESEMBLYZER_MIN_SAMPLES:
        processed = normalize_volume(wave, -30, increase_only=True)
    return processed


class SpeechBrainEncoder:
    """A speechbrain EncoderClassifier (hub id or local folder with hyperparams.yaml), encode_batch.

    A local copy of a hub model keeps `pretrained_path: <hub id>` in its hyperparams.yaml; it is
    overridden with the folder so its checkpoints load from there, not from the hub.
    """

    def __init__(self, source: str, device: torch.device = torch.device("cpu"),
                 savedir: str | Path | None = None):
        from speechbrain.inference.classifiers import EncoderClassifier

        self.name = source
        overrides = {}
        hparams = Path(source) / "hyperparams.yaml"
        if hparams.is_file() and re.search(r"^pretrained_path\s*:", hparams.read_text(), re.M):
            overrides["pretrained_path"] = str(Path(source).resolve())
        try:
            self.model = EncoderClassifier.from_hparams(
                source=source, savedir=str(savedir or default_savedir(source)), overrides=overrides,
                run_opts={"device": str(device)})
        except Exception as err:  # offline / not cached / not a speechbrain folder
            raise model_load_error("speaker.model", source, err, "spkrec-ecapa-voxceleb") from None
        self.model.eval()
        self.dim = None

    @torch.inference_mode()
    def embed(self, wave: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(pad_to(wave, ECAPA_MIN_SAMPLES))[None]
        return self.model.encode_batch(x).reshape(-1).float().cpu().numpy()


def load_embedder(name: str, device: torch.device = torch.device("cpu"),
                  savedir: str | Path | None = None):
    """`resemblyzer` or a speechbrain hub id / local folder."""
    if name == RESEMBLYZER:
        return Resemblyzer(device)
    return SpeechBrainEncoder(name, device, savedir)


# Clips per block: one checkpoint chunk and one batched pass; a killed run loses at most these.
CHUNK_CLIPS = 64
# Partial utterances per LSTM forward pass (bounds memory: 160 frames x 1024 gate values each).
PARTIALS_PER_PASS = 512


def resemblyzer_partials(wave: np.ndarray) -> np.ndarray:
    """(P, 160, 40) mel partials of one clip, exactly as VoiceEncoder.embed_utterance cuts them
    (its default rate 1.3 and min_coverage 0.75), after resemblyzer_input."""
    from resemblyzer import VoiceEncoder
    from resemblyzer.audio import wav_to_mel_spectrogram

    x = resemblyzer_input(wave)
    wav_slices, mel_slices = VoiceEncoder.compute_partial_slices(len(x), rate=1.3, min_coverage=0.75)
    if wav_slices[-1].stop >= len(x):
        x = np.pad(x, (0, wav_slices[-1].stop - len(x)), "constant")
    mel = wav_to_mel_spectrogram(x)
    return np.array([mel[s] for s in mel_slices])


@torch.inference_mode()
def resemblyzer_batch(encoder, waves: list[np.ndarray]):
    """embed_utterance for many clips: every clip's partials through the LSTM together, then per
    clip the mean of its unit-norm partial embeddings, renormalised. Returns (rows, reasons):
    a clip whose preprocessing fails or whose embedding is not finite gets a reason, no row."""
    parts, owner, reasons = [], [], [None] * len(waves)
    for i, wave in enumerate(waves):
        try:
            p = resemblyzer_partials(wave)
        except Exception as err:  # noqa: BLE001 (e.g. librosa on non-finite audio: this clip's fault)
            reasons[i] = f"speaker preprocessing failed ({type(err).__name__}: {str(err)[:200]})"
            continue
        parts.append(p)
        owner.extend([i] * len(p))
    rows: list = [None] * len(waves)
    if not parts:
        return rows, reasons
    mels = np.concatenate(parts)
    out = np.concatenate([encoder(torch.from_numpy(mels[j:j + PARTIALS_PER_PASS]).to(encoder.device))
                          .cpu().numpy() for j in range(0, len(mels), PARTIALS_PER_PASS)])
    owner = np.asarray(owner)
    for i in np.unique(owner):
        raw = np.mean(out[owner == i], axis=0)
        rows[i] = (raw / np.linalg.norm(raw, 2)).astype(np.float32)
    return rows, reasons


def embed_batch(embedder, waves: list[np.ndarray], batch_seconds: float | None = None):
    """fairser.engine's batched pass: (rows, reasons) for `waves`. Resemblyzer batches across
    clips; any other embedder (ECAPA: inexact under padding) embeds them one by one. A
    non-finite embedding is this clip's reason (silent clip?), not a row."""
    if isinstance(embedder, Resemblyzer):
        rows, reasons = resemblyzer_batch(embedder.encoder, waves)
    else:
        rows, reasons = [], []
        for wave in waves:
            rows.append(np.asarray(embedder.embed(wave), dtype=np.float32))
            reasons.append(None)
    for i, row in enumerate(rows):
        if reasons[i] is None and not np.isfinite(row).all():
            rows[i], reasons[i] = None, "speaker embedding is not finite (silent clip?)"
    return rows, reasons


def embed_clips(files, wav_dir: str | Path, embedder=None, *, partial_dir: str | Path | None = None,
                progress: bool = True, task=None, compute: dict | None = None) -> np.ndarray:
    """(N, E) float32, one embedding per clip in `files` order; a clip that fails names itself.

    Clips go in blocks of CHUNK_CLIPS (fairser.engine; local or Ray from `compute`, with `task`
    describing the model for Ray, `embedder` a loaded one for local). With `partial_dir`, every
    block is checkpointed there and a rerun embeds only the clips no chunk holds; the caller
    removes it once the output is final.
    """
    from fairser import engine

    files = list(files)
    if task is None:
        task = engine.ClipTask("speaker", getattr(embedder, "name", "embedder"), "cpu")
    blocks = [list(range(i, min(i + CHUNK_CLIPS, len(files)))) for i in range(0, len(files), CHUNK_CLIPS)]
    result = engine.run_clips(task, files, wav_dir, blocks, compute=compute, model=embedder,
                              partial_dir=partial_dir, progress=progress,
                              desc=f"speaker ({task.model})")
    return result.stacked(files, wav_dir).astype(np.float32)


def run(corpus: str | Path, out: str | Path, *, model: str, device: str = "auto",
        savedir: str | Path | None = None, partial_root: str | Path | None = None,
        progress: bool = True, compute: dict | None = None) -> None:
    """Stage `speaker`: data/corpus -> data/speaker/{embeddings.npy, index.csv, info.json}.

    Resumable: checkpoints go to `partial_root` (default: `.speaker-partial` beside `out`), keyed
    by model and corpus, and are removed once the output has been renamed into place.
    `compute` picks the engine (fairser.engine): the local one loads the model here, Ray's actors
    each load their own.
    """
    import pandas as pd

    from fairser import engine
    from fairser.io import atomic_dir

    files = usable_clips(corpus)
    wav_dir = Path(corpus) / "wav"
    lengths = check_wavs(wav_dir, files)
    options = (("savedir", str(savedir)),) if savedir is not None else ()
    task = engine.ClipTask("speaker", model, device, options)
    local = (compute or {}).get("engine", "local") == "local"
    embedder = (load_embedder(model, resolve_device(device, key="speaker.device"), savedir)
                if local else None)
    root = Path(partial_root) if partial_root is not None else Path(out).parent / ".speaker-partial"
    partial = root / partial_key(model, files, lengths)
    emb = embed_clips(files, wav_dir, embedder, partial_dir=partial, progress=progress, task=task,
                      compute=compute)
    with atomic_dir(out) as tmp:
        np.save(tmp / "embeddings.npy", emb)
        pd.DataFrame({"file": files}).to_csv(tmp / "index.csv", index=False)
        info = {"model": model, "dim": int(emb.shape[1]), "clips": int(emb.shape[0]), "dtype": "float32"}
        (tmp / "info.json").write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")
    remove_partial(partial)
