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
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import yaml

from fairser.constants import SAMPLE_RATE
from fairser.errors import InputError
from fairser.features import (ClipJob, check_wavs, clear_stale_partials, pad_to, partial_key,
                              resolve_device, run_clips, usable_clips)
from fairser.provenance import model_for_stage, model_load_error

RESEMBLYZER = "resemblyzer"
# ECAPA's deepest block is a dilation-4, kernel-3 convolution with reflect padding, which needs a
# few frames of input; 100 ms (10 frames) is a safe floor, far below any real utterance.
ECAPA_MIN_SAMPLES = SAMPLE_RATE // 10
# Fewer samples than this after resemblyzer's silence trimming means its VAD found no speech
# (e.g. synthetic tones); the embedding then uses the volume-normalised clip untrimmed.
RESEMBLYZER_MIN_SAMPLES = SAMPLE_RATE // 4


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


# hyperparams.yaml entries our code builds, and the one class each may name. Nothing else in the
# file is used, and nothing in it is evaluated (no hyperpyyaml): see load_ecapa_spec.
ECAPA_PARTS = {
    "compute_features": "speechbrain.lobes.features.Fbank",
    "mean_var_norm": "speechbrain.processing.features.InputNormalization",
    "embedding_model": "speechbrain.lobes.models.ECAPA_TDNN.ECAPA_TDNN",
}
# hyperpyyaml tags that run code or read other files while loading: a file with one is refused.
CODE_TAGS = ("!apply", "!applyref", "!include", "!module")
ECAPA_FILES = ("hyperparams.yaml", "embedding_model.ckpt")


class _Tagged:
    """An inert stand-in for a hyperpyyaml tag (`!new:x.Y`, `!ref <k>`, ...): data, never called."""

    def __init__(self, tag: str, value):
        self.tag, self.value = tag, value


class _InertLoader(yaml.SafeLoader):
    """PyYAML's safe loader, with every `!tag` kept as a _Tagged value instead of constructed."""


def _tagged(loader, suffix, node):
    tag = node.tag
    if isinstance(node, yaml.MappingNode):
        value = loader.construct_mapping(node, deep=True)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_scalar(node)
    return _Tagged(tag, value)


_InertLoader.add_multi_constructor("!", _tagged)


def load_ecapa_spec(hparams: Path, source: str) -> dict:
    """{part: keyword arguments} of ECAPA_PARTS from a speechbrain hyperparams.yaml, read as data.

    `!ref <key>` resolves to a top-level plain value; any other expression, a class other than
    ECAPA_PARTS names, or a tag that would run code (CODE_TAGS) is a one-line error.
    """
    text = hparams.read_text()
    for tag in CODE_TAGS:
        if re.search(re.escape(tag) + r"(?![A-Za-z])", text):
            raise InputError(f"{hparams}: refused, it holds a {tag} tag (code run at load time); "
                             f"speaker.model folders are read as data only")
    loader = _InertLoader(text)  # a SafeLoader: tags stay data, nothing is imported or called
    try:
        doc = loader.get_single_data()
    except yaml.YAMLError as err:
        raise InputError(f"{hparams}: not YAML ({str(err).splitlines()[0]})") from None
    finally:
        loader.dispose()
    if not isinstance(doc, dict):
        raise InputError(f"{hparams}: expected a mapping at the top level")

    def plain(value, where, depth=0):
        if isinstance(value, _Tagged):
            ref = re.fullmatch(r"<([A-Za-z_][\w]*)>", str(value.value).strip())
            if value.tag != "!ref" or ref is None or ref.group(1) not in doc or depth > 8:
                raise InputError(f"{hparams}: {where} is {value.tag} {value.value!r}; only plain "
                                 f"values and !ref <key> are read")
            return plain(doc[ref.group(1)], where, depth + 1)
        if isinstance(value, list):
            return [plain(v, where, depth) for v in value]
        if isinstance(value, dict):
            return {k: plain(v, where, depth) for k, v in value.items()}
        return value

    spec = {}
    for part, cls in ECAPA_PARTS.items():
        entry = doc.get(part)
        if not isinstance(entry, _Tagged) or entry.tag != f"!new:{cls}":
            found = entry.tag if isinstance(entry, _Tagged) else type(entry).__name__
            raise InputError(f"speaker.model '{source}': {hparams.name} entry '{part}' must be "
                             f"!new:{cls} (found {found}); only the ECAPA-TDNN layout of "
                             f"speechbrain/spkrec-ecapa-voxceleb is supported")
        kwargs = plain(entry.value if entry.value != "" else {}, part)
        if not isinstance(kwargs, dict):
            raise InputError(f"{hparams}: '{part}' takes keyword arguments only")
        spec[part] = kwargs
    return spec


def ecapa_files(source: str, revision: str | None) -> dict[str, Path]:
    """hyperparams.yaml and embedding_model.ckpt of a local folder or a hub id (at `revision`)."""
    from fairser.provenance import model_kind, quiet_hub_loading, require_hub_model

    kind = model_kind("speaker.model", source)
    if kind == "folder":
        files = {name: Path(source).expanduser() / name for name in ECAPA_FILES}
        missing = [n for n, p in files.items() if not p.is_file()]
        if missing:
            raise InputError(f"speaker.model '{source}': the folder lacks {', '.join(missing)}")
        return files
    from huggingface_hub import hf_hub_download

    commit = require_hub_model("speaker.model", source, revision)
    quiet_hub_loading()
    try:
        return {name: Path(hf_hub_download(source, name, revision=commit)) for name in ECAPA_FILES}
    except Exception as err:
        raise model_load_error("speaker.model", source, err) from None


class SpeechBrainEncoder:
    """ECAPA-TDNN speaker embeddings, built by our code from a speechbrain model folder or hub id.

    Same computation as speechbrain's EncoderClassifier.encode_batch (speechbrain 1.x, default
    normalize=False): Fbank -> InputNormalization -> ECAPA_TDNN, with lengths 1. The three are
    speechbrain's own classes, built with the keyword arguments of hyperparams.yaml read as data
    (load_ecapa_spec); the weights come from embedding_model.ckpt through a weights-only
    torch.load. hyperparams.yaml is never evaluated (hyperpyyaml would construct any class and run
    `!apply` calls it names), so a model folder or hub id cannot run code here. mean_var_norm_emb
    is not applied, as in encode_batch: it only shifts every embedding by one vector
    (std_norm False in the hub model), which neither k-means nor t-SNE can see.
    """

    def __init__(self, source: str, device: torch.device = torch.device("cpu"),
                 revision: str | None = None):
        from speechbrain.lobes.features import Fbank
        from speechbrain.lobes.models.ECAPA_TDNN import ECAPA_TDNN
        from speechbrain.processing.features import InputNormalization

        self.name = source
        self.device = device
        files = ecapa_files(source, revision)
        spec = load_ecapa_spec(files["hyperparams.yaml"], source)
        try:
            self.compute_features = Fbank(**spec["compute_features"])
            self.mean_var_norm = InputNormalization(**spec["mean_var_norm"])
            self.embedding_model = ECAPA_TDNN(**spec["embedding_model"])
            state = torch.load(files["embedding_model.ckpt"], map_location="cpu", weights_only=True)
            self.embedding_model.load_state_dict(state, strict=True)
        except Exception as err:  # wrong arguments, not a state dict, shapes that do not match
            raise model_load_error("speaker.model", source, err) from None
        for module in (self.compute_features, self.mean_var_norm, self.embedding_model):
            module.to(device).eval()
        self.dim = None

    @torch.inference_mode()
    def embed(self, wave: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(pad_to(wave, ECAPA_MIN_SAMPLES))[None].float().to(self.device)
        lens = torch.ones(1, device=self.device)
        feats = self.mean_var_norm(self.compute_features(x), lens)
        return self.embedding_model(feats, lens).reshape(-1).float().cpu().numpy()


def load_embedder(name: str, device: torch.device = torch.device("cpu"), revision: str | None = None):
    """`resemblyzer` or a speechbrain ECAPA hub id (at `revision`) / local folder."""
    if name == RESEMBLYZER:
        return Resemblyzer(device)
    return SpeechBrainEncoder(name, device, revision)


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


@dataclass(frozen=True)
class SpeakerJob(ClipJob):
    """fairser.engine's job for the speaker stage: the embedder's name, device (params value,
    resolved where the model loads) and hub revision; plain values, so Ray can send it to its
    actors."""

    model: str
    device: str = "auto"
    revision: str | None = None
    name = "speaker"

    def load(self):
        return load_embedder(self.model, resolve_device(self.device, key="speaker.device"),
                             self.revision)

    def process(self, embedder, waves: list[np.ndarray]):
        return embed_batch(embedder, waves)


def embed_clips(files, wav_dir: str | Path, embedder=None, *, partial_dir: str | Path | None = None,
                progress: bool = True, job: SpeakerJob | None = None,
                compute: dict | None = None) -> np.ndarray:
    """(N, E) float32, one embedding per clip in `files` order; a clip that fails names itself.

    Clips go in blocks of CHUNK_CLIPS (fairser.engine; local or Ray from `compute`, with `job`
    describing the model for Ray, `embedder` a loaded one for local). With `partial_dir`, every
    block is checkpointed there and a rerun embeds only the clips no chunk holds; the caller
    removes it once the output is final.
    """
    files = list(files)
    if job is None:
        job = SpeakerJob(getattr(embedder, "name", "embedder"), "cpu")
    blocks = [list(range(i, min(i + CHUNK_CLIPS, len(files)))) for i in range(0, len(files), CHUNK_CLIPS)]
    return run_clips(job, files, wav_dir, blocks, compute=compute, model=embedder,
                     partial_dir=partial_dir, progress=progress,
                     desc=f"speaker ({job.model})").astype(np.float32)


def run(corpus: str | Path, out: str | Path, *, model: str, device: str = "auto",
        partial_root: str | Path | None = None, progress: bool = True,
        revision: str | None = None, fingerprint: dict | None = None,
        compute: dict | None = None) -> None:
    """Stage `speaker`: data/corpus -> data/speaker/{embeddings.npy, index.csv, info.json}.

    A hub model loads the commit of `fingerprint` (data/inputs/speaker.json) or `revision`;
    info.json's `model` records it, or a local folder's content hash.

    Resumable: checkpoints go to `partial_root` (default: `.speaker-partial` beside `out`), keyed
    by model and corpus, and are removed once the output has been renamed into place.
    `compute` picks the engine (fairser.engine): the local one loads the model here, Ray's actors
    each load their own.
    """
    import pandas as pd

    from fairser.io import atomic_dir

    files = usable_clips(corpus)
    wav_dir = Path(corpus) / "wav"
    lengths = check_wavs(wav_dir, files)
    load_rev, model_info = model_for_stage("speaker.model", model, revision, fingerprint)
    job = SpeakerJob(model, device, load_rev)
    local = (compute or {}).get("engine", "local") == "local"
    embedder = job.load() if local else None
    root = Path(partial_root) if partial_root is not None else Path(out).parent / ".speaker-partial"
    partial = root / partial_key(model, files, lengths, model_info)
    clear_stale_partials(root, keep=partial)
    emb = embed_clips(files, wav_dir, embedder, partial_dir=partial, progress=progress, job=job,
                      compute=compute)
    with atomic_dir(out) as tmp:
        np.save(tmp / "embeddings.npy", emb)
        pd.DataFrame({"file": files}).to_csv(tmp / "index.csv", index=False)
        info = {"model": model_info, "dim": int(emb.shape[1]), "clips": int(emb.shape[0]),
                "dtype": "float32"}
        (tmp / "info.json").write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")
    clear_stale_partials(root)  # the output is final: no checkpoint is needed any more
