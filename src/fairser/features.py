"""Frozen-upstream features: per-layer, length-aware mean-pooled hidden states (PROTOCOL section 3).

The downstream head (EMO-SUPERB) is softmax layer weights -> Linear(D, 256) -> mean over valid
frames -> Linear(256, 6). Nothing non-linear sits before the pooling, so
mean_t(W sum_l a_l h_lt) = W sum_l a_l mean_t(h_lt): caching the per-layer frame means once is
exact and training never reads audio again.

Upstreams:
- any Hugging Face SSL speech model id or local folder (wav2vec 2.0, HuBERT, WavLM; the paper's is
  `microsoft/wavlm-base-plus`), loaded with AutoFeatureExtractor + AutoModel, every hidden state
  (embedding output + one per transformer layer);
- `fbank`, the offline upstream: one "layer" whose frame vector is [x_t, (x_t - clip mean)^2] of
  the 40-bin log-mel x_t (FBANK_LAYERS), so its frame mean is the clip's [mean, variance].
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from fairser import engine
from fairser.constants import SAMPLE_RATE
from fairser.errors import InputError
from fairser.provenance import load_hf, model_for_stage, model_load_error  # noqa: F401 (re-export)

FBANK = "fbank"
# 40 bins (a common SER front end; the reviewer's linear probe in issue 9 used 40): with the
# variances beside the means the layer is 80 wide, the width one fbank layer had before, so
# training three seeds stays within the pipeline's time budget (docs/PERFORMANCE.md).
N_MELS = 40
# One layer whose frame vector is [x_t, (x_t - m)^2], x_t the 40-bin log-mel frame and m its mean
# over the clip: its frame mean is exactly [mean, per-bin variance] (spread: pitch movement,
# energy dynamics, which the plain mean cannot carry). Until FORMAT_VERSION 1 these were two
# 80-dim "layers", which the head's softmax layer mix summed bin by bin, so it could not weigh
# mean and variance apart (issue 9.6); as one 80-dim layer, Linear(80, H) weighs each freely.
FBANK_LAYERS = ("log-mel ++ log-mel centred per clip, squared (after pooling: per-bin mean ++ "
                "per-bin variance)",)
# Bump when the pooled values a given upstream produces change, so old partial chunks are ignored.
FORMAT_VERSION = 2


def resolve_device(name: str, *, key: str) -> torch.device:
    """`auto` -> cuda when available, else cpu; asking for cuda without one is a one-line error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise InputError(f"params.yaml: '{key}' is 'cuda' but torch sees no CUDA device; use auto or cpu")
    return torch.device(name)


def wav_path(wav_dir: str | Path, file: str) -> Path:
    """Path of clip `file` (with or without its .wav suffix) under data/corpus/wav."""
    return Path(wav_dir) / (file if file.endswith(".wav") else f"{file}.wav")


def check_wavs(wav_dir: str | Path, files) -> np.ndarray:
    """Number of samples of every clip, checking each is a 16 kHz mono file, from headers only.

    Runs before any model work so a bad corpus costs one line, not an hour.
    """
    lengths = np.empty(len(files), dtype=np.int64)
    for i, file in enumerate(files):
        path = wav_path(wav_dir, file)
        if not path.is_file():
            raise InputError(f"{path}: clip listed in clips.csv is missing")
        try:
            info = sf.info(str(path))
        except RuntimeError as err:
            raise InputError(f"{path}: unreadable audio ({err})") from None
        if info.samplerate != SAMPLE_RATE or info.channels != 1:
            raise InputError(f"{path}: expected {SAMPLE_RATE} Hz mono, found {info.samplerate} Hz, "
                             f"{info.channels} channel(s)")
        if info.frames == 0:
            raise InputError(f"{path}: empty clip")
        lengths[i] = info.frames
    return lengths


def read_wav(path: str | Path) -> np.ndarray:
    """A 16 kHz mono clip as float32 in [-1, 1]."""
    wave, sr = sf.read(str(path), dtype="float32", always_2d=False)
    if sr != SAMPLE_RATE or wave.ndim != 1:
        raise InputError(f"{path}: expected {SAMPLE_RATE} Hz mono audio")
    return wave


def pad_to(wave: np.ndarray, n: int) -> np.ndarray:
    """Zero-pad `wave` at the end to at least `n` samples (clips shorter than a receptive field)."""
    return wave if len(wave) >= n else np.pad(wave, (0, n - len(wave)))


def length_batches(lengths, max_samples: float, *, allow_padding: bool = True) -> list[list[int]]:
    """Group clip indices into batches by length so that little compute goes to padding.

    Clips are sorted by length (ties by index, so the plan is deterministic) and added greedily
    while batch_size * longest_length <= max_samples; a clip longer than the budget runs alone.
    With allow_padding=False a batch only holds clips of exactly equal length (upstreams whose
    output would change under zero-padding, see HFUpstream).
    """
    order = sorted(range(len(lengths)), key=lambda i: (int(lengths[i]), i))
    batches: list[list[int]] = []
    for i in order:
        n = int(lengths[i])
        if batches:
            last = batches[-1]
            same = int(lengths[last[-1]]) == n
            if (allow_padding or same) and (len(last) + 1) * n <= max_samples:
                last.append(i)
                continue
        batches.append([i])
    return batches


class FbankUpstream:
    """Offline upstream: Kaldi-style 40-bin log-mel (25 ms window, 10 ms hop, no dither).

    One layer (FBANK_LAYERS) of 80 values per frame, [x_t, (x_t - mean_t x_t)^2], so after mean
    pooling the cache holds each bin's mean over the clip and, apart from it, its variance.
    """

    name = FBANK
    layers = len(FBANK_LAYERS)
    dim = 2 * N_MELS
    min_samples = 400  # one 25 ms window at 16 kHz
    allow_padding = True  # clips are processed one by one; batching only groups the work

    def __init__(self, device: torch.device = torch.device("cpu")):
        self.device = device

    def frames(self, wave: np.ndarray) -> torch.Tensor:
        """(T, N_MELS) log-mel frames of one clip (int16 scale, as Kaldi expects)."""
        import torchaudio

        x = torch.from_numpy(pad_to(wave, self.min_samples)).to(self.device) * 32768.0
        return torchaudio.compliance.kaldi.fbank(
            x[None], num_mel_bins=N_MELS, sample_frequency=SAMPLE_RATE, dither=0.0).double()

    def frame_vectors(self, wave: np.ndarray) -> torch.Tensor:
        """(T, 2 N_MELS) frame vectors [x_t, (x_t - clip mean)^2] of the one layer."""
        x = self.frames(wave)
        return torch.cat([x, (x - x.mean(0)) ** 2], 1)

    @torch.inference_mode()
    def pooled(self, waves: list[np.ndarray]) -> np.ndarray:
        out = np.empty((len(waves), self.layers, self.dim), dtype=np.float32)
        for b, wave in enumerate(waves):
            out[b, 0] = self.frame_vectors(wave).mean(0).cpu().numpy()
        return out


class PerClipConv(torch.nn.Module):
    """Wraps a wav2vec 2.0-style conv encoder: each clip runs alone on its first n_samples samples
    (so GroupNorm's statistics over time see no padding), outputs zero-padded to a common length.
    The caller sets `n_samples` before each forward; the model's own forward does the rest."""

    def __init__(self, conv: torch.nn.Module):
        super().__init__()
        self.conv = conv
        self.n_samples: list[int] | None = None

    def forward(self, values: torch.Tensor) -> torch.Tensor:
        n_samples = self.n_samples or [values.shape[1]] * len(values)
        outs = [self.conv(values[b:b + 1, :n]) for b, n in enumerate(n_samples)]  # (1, C, T_b)
        t = max(o.shape[-1] for o in outs)
        return torch.cat([torch.nn.functional.pad(o, (0, t - o.shape[-1])) for o in outs])


class HFUpstream:
    """A frozen Hugging Face speech SSL model (AutoModel); hidden states mean-pooled per layer.

    Length-aware: the pooled mean of clip b covers only its first n_b frames, with n_b from the
    model's own conv arithmetic (`_get_feat_extract_output_lengths`) applied to its sample count.
    Padding is only safe when the conv encoder normalises per frame (`feat_extract_norm` "layer":
    wav2vec2-large-lv60, HuBERT large); an attention mask then keeps padded frames out of
    self-attention. With "group" norm (WavLM Base+, wav2vec2-base, HuBERT base) the first conv's
    GroupNorm takes statistics over time, so zero-padding would change every frame. There the
    conv encoder (`model.feature_extractor`, wrapped in PerClipConv) runs on each clip's own
    samples, and only its frame features are padded and batched through the projection and the
    transformer under the attention mask (`split`); a model without that part gets batches of
    equal-length clips only. Either way pooled features equal one-clip-at-a-time runs
    (tests/test_features.py).
    """

    def __init__(self, model, extractor, name: str, device: torch.device = torch.device("cpu")):
        self.name = name
        self.device = device
        self.model = model
        self.extractor = extractor
        if getattr(self.extractor, "sampling_rate", SAMPLE_RATE) != SAMPLE_RATE:
            raise InputError(f"features.upstream '{name}' expects {self.extractor.sampling_rate} Hz "
                             f"audio; the corpus is {SAMPLE_RATE} Hz")
        self.model.eval().to(device)
        cfg = self.model.config
        self.layers = cfg.num_hidden_layers + 1
        self.dim = cfg.hidden_size
        self._lengths = getattr(self.model, "_get_feat_extract_output_lengths", None)
        per_frame_norm = getattr(cfg, "feat_extract_norm", None) == "layer"
        self.split = (not per_frame_norm and self._lengths is not None
                      and isinstance(getattr(model, "feature_extractor", None), torch.nn.Module))
        if self.split:
            self.model.feature_extractor = PerClipConv(self.model.feature_extractor)
        self.allow_padding = self._lengths is not None and (per_frame_norm or self.split)
        self.min_samples = self._min_samples(cfg)

    @classmethod
    def load(cls, name: str, device: torch.device = torch.device("cpu"),
             revision: str | None = None) -> "HFUpstream":
        """From a hub id at `revision` or a local folder (save_pretrained layout), exactly as for
        the paper's model; never runs code shipped with the model (fairser.provenance.load_hf)."""
        from transformers import AutoFeatureExtractor, AutoModel

        extractor, model = load_hf("features.upstream", name, revision, AutoFeatureExtractor, AutoModel)
        return cls(model, extractor, name, device)

    @staticmethod
    def _min_samples(cfg) -> int:
        """Fewest samples that give one output frame: invert each conv (n -> (n-1)*stride + kernel)."""
        n = 1
        for k, s in reversed(list(zip(getattr(cfg, "conv_kernel", ()), getattr(cfg, "conv_stride", ())))):
            n = (n - 1) * s + k
        return n

    def frame_counts(self, n_samples: torch.Tensor) -> torch.Tensor:
        return self._lengths(n_samples).long()

    @torch.inference_mode()
    def pooled(self, waves: list[np.ndarray]) -> np.ndarray:
        waves = [pad_to(w, self.min_samples) for w in waves]
        if not self.allow_padding and len({len(w) for w in waves}) > 1:
            raise ValueError(f"{self.name}: a batch of unequal lengths would be zero-padded")
        if self._lengths is None and len(waves) > 1:
            raise ValueError(f"{self.name}: no frame-length arithmetic; run clips one at a time")
        inputs = self.extractor(waves, sampling_rate=SAMPLE_RATE, padding=True,
                                return_attention_mask=True, return_tensors="pt")
        values = inputs["input_values"].to(self.device)
        mask = inputs["attention_mask"].to(self.device)
        kwargs = {"attention_mask": mask} if self.allow_padding else {}
        if self.split:
            self.model.feature_extractor.n_samples = mask.sum(1).tolist()
        try:
            out = self.model(values, output_hidden_states=True, **kwargs)
        finally:
            if self.split:  # a later plain call of the model must not reuse these lengths
                self.model.feature_extractor.n_samples = None
        hidden = torch.stack(out.hidden_states, dim=1)  # (B, layers, T, D)
        t = hidden.shape[2]
        if self._lengths is None:
            counts = torch.full((len(waves),), t, device=hidden.device)
        else:
            counts = self.frame_counts(mask.sum(1)).clamp(1, t)
        valid = (torch.arange(t, device=hidden.device)[None] < counts[:, None]).to(hidden.dtype)
        sums = (hidden * valid[:, None, :, None]).sum(2)
        return (sums / counts[:, None, None].to(hidden.dtype)).float().cpu().numpy()


def load_upstream(name: str, device: torch.device = torch.device("cpu"), revision: str | None = None):
    """`fbank` or a Hugging Face id (at `revision`) / folder."""
    return FbankUpstream(device) if name == FBANK else HFUpstream.load(name, device, revision)


def partial_key(upstream: str, files, lengths, model: dict | None = None) -> str:
    """Checkpoint folder name: changes with the upstream (and its revision or content hash,
    `model`), the corpus clips or the format."""
    ident = upstream
    if Path(upstream).is_dir():
        ident = str(Path(upstream).resolve())
    payload = json.dumps({"upstream": ident, "version": FORMAT_VERSION,
                          **({"model": model} if model else {}),
                          "clips": [[str(f), int(n)] for f, n in zip(files, lengths)]})
    digest = hashlib.sha256(payload.encode()).hexdigest()[:16]
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in upstream.strip("/"))[-40:]
    return f"{safe}-{digest}"


def pooled_batch(upstream, waves: list[np.ndarray], batch_seconds: float):
    """fairser.engine's batched pass: pooled features of `waves` through `upstream`, in
    length-bucketed forward passes that respect its padding rule (length_batches); every clip
    gets a row (no per-clip failure mode here)."""
    padded = [max(len(w), upstream.min_samples) for w in waves]
    rows: list = [None] * len(waves)
    for batch in length_batches(padded, batch_seconds * SAMPLE_RATE,
                                allow_padding=upstream.allow_padding):
        for i, row in zip(batch, upstream.pooled([waves[i] for i in batch])):
            rows[i] = row
    return rows, [None] * len(waves)


def clip_blocks(lengths, batch_seconds: float) -> list[list[int]]:
    """The engine's blocks (checkpoint chunks, Ray items): clips bucketed by length within the
    audio budget, planned without the model so that every engine gets the same blocks."""
    return length_batches([int(n) for n in lengths], batch_seconds * SAMPLE_RATE)


class ClipJob:
    """What every per-clip job of fairser.engine shares (features, speaker, pseudo): its items
    are clips, read from their WAV paths (read_wav); a subclass adds name, device, load and
    process."""

    def read(self, source: str) -> np.ndarray:
        return read_wav(source)


def run_clips(job: ClipJob, files, wav_dir: str | Path, blocks: list[list[int]], **options) -> np.ndarray:
    """`job`'s rows for the clips `files` under `wav_dir`, stacked in `files` order
    (fairser.engine.run with `options`); a clip without a row is one InputError naming its path
    and why, after every other clip is done (and checkpointed, with a partial_dir)."""
    return engine.run(job, files, [wav_path(wav_dir, f) for f in files], blocks,
                      **options).stacked(files)


@dataclass(frozen=True)
class FeaturesJob(ClipJob):
    """fairser.engine's job for the features stage: the upstream's name, device (params value,
    resolved where the model loads), hub revision and the padded-audio budget of one forward
    pass; plain values, so Ray can send it to its actors."""

    upstream: str
    device: str = "auto"
    batch_seconds: float = 64.0
    revision: str | None = None
    name = "features"

    def load(self):
        return load_upstream(self.upstream, resolve_device(self.device, key="features.device"),
                             self.revision)

    def process(self, upstream, waves: list[np.ndarray]):
        return pooled_batch(upstream, waves, self.batch_seconds)


def extract(files, wav_dir: str | Path, upstream=None, *, batch_seconds: float,
            partial_dir: str | Path, lengths=None, progress: bool = True, job=None,
            compute: dict | None = None) -> np.ndarray:
    """(N, layers, dim) float32 pooled features in `files` order, resumable through `partial_dir`.

    Every finished block is saved as one chunk in `partial_dir`; a rerun loads the chunks and
    computes only the clips they lack. The caller removes `partial_dir` once the output is final.
    `upstream` is a loaded model (local engine); with `job` (a FeaturesJob) and `compute` the
    engine params choose local or Ray. A clip that cannot be decoded is one InputError naming
    it, after the others are done.
    """
    files = list(files)
    if lengths is None:
        lengths = check_wavs(wav_dir, files)
    if job is None:
        job = FeaturesJob(getattr(upstream, "name", "upstream"), "cpu", batch_seconds)
    return run_clips(job, files, wav_dir, clip_blocks(lengths, batch_seconds), compute=compute,
                     model=upstream, partial_dir=partial_dir, weights=lengths, progress=progress,
                     unit="sample", desc=f"features ({job.upstream})").astype(np.float32)


def to_float16(feats: np.ndarray, upstream: str) -> np.ndarray:
    """Cast for the cache; values beyond float16's range would silently become inf, so refuse."""
    out = feats.astype(np.float16)
    if not np.isfinite(out).all():
        raise InputError(f"features.upstream '{upstream}': pooled features are not finite in float16 "
                         f"(max |x| = {np.nanmax(np.abs(feats)):.3g})")
    return out


def clear_stale_partials(root: str | Path, keep: str | Path | None = None) -> None:
    """Remove every checkpoint folder under `root` but `keep` (the run's own, still resumable);
    with no `keep`, `root` itself. `root` holds checkpoint folders only (`.features-partial`).

    Other keys are runs of another model or corpus that failed or were superseded (e.g. by a
    DVC run-cache restore); nothing will resume them with the current inputs.
    """
    root = Path(root)
    if keep is None:
        shutil.rmtree(root, ignore_errors=True)
        return
    for folder in root.iterdir() if root.is_dir() else ():
        if folder.resolve() != Path(keep).resolve():
            shutil.rmtree(folder, ignore_errors=True)


def clip_error(path: str | Path, err: Exception, what: str) -> InputError:
    """An error from per-clip work, as one line naming the clip (InputErrors already do)."""
    if isinstance(err, InputError) and str(path) in str(err):
        return err
    first = str(err).strip().splitlines()[0][:200] if str(err).strip() else ""
    return InputError(f"{path}: {what} failed ({type(err).__name__}{': ' + first if first else ''})")


def usable_clips(corpus: str | Path) -> list[str]:
    """clips.csv `file` column minus skipped.csv (clips left out by policy have no wav)."""
    import pandas as pd

    corpus = Path(corpus)
    clips_csv = corpus / "clips.csv"
    if not clips_csv.is_file():
        raise InputError(f"{clips_csv}: missing (run the download stage first)")
    clips = pd.read_csv(clips_csv, dtype={"file": str})
    if "file" not in clips.columns:
        raise InputError(f"{clips_csv}: no 'file' column")
    skipped_csv = corpus / "skipped.csv"
    skipped = set()
    if skipped_csv.is_file():
        skipped = set(pd.read_csv(skipped_csv, dtype={"file": str})["file"])
    files = [f for f in clips["file"] if f not in skipped]
    if len(set(files)) != len(files):
        raise InputError(f"{clips_csv}: duplicate file names")
    if not files:
        raise InputError(f"{clips_csv}: no usable clips")
    return files


def run(corpus: str | Path, out: str | Path, *, upstream: str, batch_seconds: float,
        device: str = "auto", partial_root: str | Path | None = None, progress: bool = True,
        revision: str | None = None, fingerprint: dict | None = None,
        compute: dict | None = None) -> None:
    """Stage `features`: data/corpus -> data/features/{features.npy, index.csv, info.json}.

    Checkpoints go to `partial_root` (default: `.features-partial` beside `out`), keyed by
    upstream and corpus, and are removed once the output has been renamed into place.
    A hub upstream loads the commit of `fingerprint` (the inputs stage's data/inputs/upstream.json)
    or `revision`; info.json's `model` records it, or a local folder's content hash.
    `compute` (params.yaml's section) picks the engine (fairser.engine); the local one loads
    the model here, before any clip is read, the Ray one in each actor.
    """
    import pandas as pd

    from fairser.io import atomic_dir

    out = Path(out)
    files = usable_clips(corpus)
    wav_dir = Path(corpus) / "wav"
    lengths = check_wavs(wav_dir, files)
    load_rev, model_info = model_for_stage("features.upstream", upstream, revision, fingerprint)
    job = FeaturesJob(upstream, device, batch_seconds, load_rev)
    local = (compute or {}).get("engine", "local") == "local"
    model = job.load() if local else None
    root = Path(partial_root) if partial_root is not None else out.parent / ".features-partial"
    partial = root / partial_key(upstream, files, lengths, model_info)
    clear_stale_partials(root, keep=partial)
    feats = to_float16(extract(files, wav_dir, model, batch_seconds=batch_seconds,
                               partial_dir=partial, lengths=lengths, progress=progress,
                               job=job, compute=compute), upstream)
    info = {"upstream": upstream, "layers": int(feats.shape[1]), "dim": int(feats.shape[2]),
            "clips": int(feats.shape[0]), "dtype": "float16",
            "pooling": "per-layer mean over each clip's valid frames", "model": model_info}
    if upstream == FBANK:
        info["layer_names"] = {str(i): name for i, name in enumerate(FBANK_LAYERS)}
    with atomic_dir(out) as tmp:
        np.save(tmp / "features.npy", feats)
        pd.DataFrame({"file": files}).to_csv(tmp / "index.csv", index=False)
        (tmp / "info.json").write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")
    clear_stale_partials(root)  # the output is final: no checkpoint is needed any more
