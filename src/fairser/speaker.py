"""Speaker embeddings, one per clip, for the unsupervised IDI clustering (paper section 3.1).

Paper: ECAPA-TDNN (Desplanques et al., 2020) through speechbrain, `speechbrain/spkrec-ecapa-voxceleb`,
192-d. Offline default: `resemblyzer`, the GE2E LSTM speaker encoder (Wan et al., 2018) whose
weights ship inside its wheel, 256-d, unit norm; docs/SPEAKER_MODEL.md says why.
Clips are embedded one at a time: neither model pools exactly under zero-padding (ECAPA's
reflect-padded convolutions, resemblyzer's fixed 1.6 s windows), and both are fast enough alone.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from fairser.cli import InputError
from fairser.constants import SAMPLE_RATE
from fairser.features import (check_wavs, clear_stale_partials, clip_error, load_chunks,
                              model_load_error, pad_to, partial_key, read_wav,
                              resolve_device, save_chunk, usable_clips, wav_path)

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
        from resemblyzer import preprocess_wav
        from resemblyzer.audio import normalize_volume

        processed = preprocess_wav(wave, source_sr=SAMPLE_RATE)
        if len(processed) < RESEMBLYZER_MIN_SAMPLES:
            processed = normalize_volume(wave, -30, increase_only=True)
        return self.encoder.embed_utterance(processed).astype(np.float32)


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


# Clips per checkpoint chunk: a killed run loses at most this many embeddings.
CHUNK_CLIPS = 256


def embed_clips(files, wav_dir: str | Path, embedder, *, partial_dir: str | Path | None = None,
                progress: bool = True) -> np.ndarray:
    """(N, E) float32, one embedding per clip in `files` order; a non-finite one names its clip.

    With `partial_dir`, every CHUNK_CLIPS embeddings are checkpointed there and a rerun embeds only
    the clips no chunk holds (fairser.features' chunks); the caller removes it once the output is
    final.
    """
    files = list(files)
    done, number = {}, 0
    if partial_dir is not None:
        partial_dir = Path(partial_dir)
        partial_dir.mkdir(parents=True, exist_ok=True)
        done = load_chunks(partial_dir)
        number = len(list(partial_dir.glob("chunk_*.npz")))
    todo = [f for f in files if f not in done]
    names, rows = [], []

    def flush():
        nonlocal number
        if partial_dir is not None and names:
            save_chunk(partial_dir, number, names, np.stack(rows))
            number += 1
        done.update(zip(names, rows))
        names.clear()
        rows.clear()

    for file in tqdm(todo, desc=f"speaker ({embedder.name})", unit="clip", disable=not progress,
                     total=len(files), initial=len(files) - len(todo)):
        try:
            e = np.asarray(embedder.embed(read_wav(wav_path(wav_dir, file))), dtype=np.float32)
        except Exception as err:
            raise clip_error(wav_path(wav_dir, file), err, f"speaker ({embedder.name})") from err
        if not np.isfinite(e).all():
            raise InputError(f"{wav_path(wav_dir, file)}: speaker embedding is not finite (silent clip?)")
        names.append(file)
        rows.append(e)
        if len(names) == CHUNK_CLIPS:
            flush()
    flush()
    return np.stack([done[f] for f in files]).astype(np.float32)


def run(corpus: str | Path, out: str | Path, *, model: str, device: str = "auto",
        savedir: str | Path | None = None, partial_root: str | Path | None = None,
        progress: bool = True) -> None:
    """Stage `speaker`: data/corpus -> data/speaker/{embeddings.npy, index.csv, info.json}.

    Resumable: checkpoints go to `partial_root` (default: `.speaker-partial` beside `out`), keyed
    by model and corpus, and are removed once the output has been renamed into place.
    """
    import pandas as pd

    from fairser.io import atomic_dir

    files = usable_clips(corpus)
    wav_dir = Path(corpus) / "wav"
    lengths = check_wavs(wav_dir, files)
    embedder = load_embedder(model, resolve_device(device, key="speaker.device"), savedir)
    root = Path(partial_root) if partial_root is not None else Path(out).parent / ".speaker-partial"
    partial = root / partial_key(model, files, lengths)
    clear_stale_partials(root, keep=partial)
    emb = embed_clips(files, wav_dir, embedder, partial_dir=partial, progress=progress)
    with atomic_dir(out) as tmp:
        np.save(tmp / "embeddings.npy", emb)
        pd.DataFrame({"file": files}).to_csv(tmp / "index.csv", index=False)
        info = {"model": model, "dim": int(emb.shape[1]), "clips": int(emb.shape[0]), "dtype": "float32"}
        (tmp / "info.json").write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")
    clear_stale_partials(root)  # the output is final: no checkpoint is needed any more
