"""The download stage's corpus: the generated surrogate or the real CREMA-D, in one file layout.

Output folder (docs/DESIGN.md): wav/<file>.wav (16 kHz mono PCM16) for every usable clip,
clips.csv (file, actor, sentence, emotion, level, the vote distribution in EMOTIONS order,
split_1..split_5) for every labelled clip, usable or not, actors.csv (actor, sex, age, race),
skipped.csv (file, reason: the clips of clips.csv without a wav) and corpus.json.

CREMA-D comes from its public repository (audio through Git LFS, see fairser.download) or from
local folders; labels and folds from EMO-SUPERB's labels_consensus_{1..5}.csv (SPEC section 1).
"""

from __future__ import annotations

import io
import json
import math
import re
import struct
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf
from scipy import signal
from tqdm import tqdm

from fairser import schema as corpus_schema
from fairser import surrogate
from fairser.cli import InputError
from fairser.constants import (EMOTION_CODES, EMOTIONS, GENDERS, N_FOLDS, SAMPLE_RATE,
                               SURROGATE_NOTICE)
from fairser.download import NotFound, check_url, fetch, parse_lfs_pointer, sha256_file
from fairser.io import atomic_dir

MIN_SECONDS = 0.1  # shorter clips are skipped by policy
# Clips with no signal are skipped too: speaker models and pitch trackers normalise by the
# level and return NaN on them. -80 dBFS peak is about 3 PCM16 steps; a spread (RMS about the
# mean) under -100 dBFS is a constant clip, DC offset or not.
SILENT_PEAK_DBFS = -80.0
CONSTANT_RMS_DBFS = -100.0

# Metadata files: path in the local metadata folder (laid out like ../shared/data), the URL
# parameter and path upstream, and the sha256 pinned from ../shared/data/*/SOURCES.md.
METADATA = {
    "crema-d/VideoDemographics.csv": (
        "crema_d_raw", "VideoDemographics.csv",
        "e33ddc8b60bedf98541735801127cbb67098b5957271adbdd5dea8a44294eec3"),
    "emo-superb/CREMA-D/Primary/labels_consensus_1.csv": (
        "emo_superb_raw", "data/CREMA-D/Primary/labels_consensus_1.csv",
        "f64ba9c1cf6534991f381d0e8f3f79aafefc13ddca7655cefd50a3ef84aed3ec"),
    "emo-superb/CREMA-D/Primary/labels_consensus_2.csv": (
        "emo_superb_raw", "data/CREMA-D/Primary/labels_consensus_2.csv",
        "87baf1146a99d7a8465f836fc83195d5b3520338495d101133e5eeac3c283fc8"),
    "emo-superb/CREMA-D/Primary/labels_consensus_3.csv": (
        "emo_superb_raw", "data/CREMA-D/Primary/labels_consensus_3.csv",
        "1249a6d99a67c3985aaf7d738e0dcfb904221920056a417a245cfbca0aa9428a"),
    "emo-superb/CREMA-D/Primary/labels_consensus_4.csv": (
        "emo_superb_raw", "data/CREMA-D/Primary/labels_consensus_4.csv",
        "accc29884a85342d7b2d7f06c6a970337a35c93cf5d4aacbff81fbece08e494e"),
    "emo-superb/CREMA-D/Primary/labels_consensus_5.csv": (
        "emo_superb_raw", "data/CREMA-D/Primary/labels_consensus_5.csv",
        "740039d2a3a7134efcc6ec3a0b91a280cef447185ec1bbd32db6a3dfac6bb09f"),
}
DEMOGRAPHICS = "crema-d/VideoDemographics.csv"
LABELS = "emo-superb/CREMA-D/Primary/labels_consensus_{}.csv"
AUDIO_PATH = "AudioWAV/{}"  # path of a clip in the CREMA-D repository
EMO_SUPERB_SPLITS = {"Train": "train", "Development": "dev", "Test": "test"}


def block_folds(actor_ids) -> dict[int, list[str]]:
    """EMO-SUPERB's speaker-independent folds: actor -> [split in fold 1, ..., fold 5].

    The sorted ids form five blocks A..E of consecutive ids; the first blocks hold n // 5 actors and
    the last n % 5 blocks one more (CREMA-D: A = 1001-1018, ..., E = 1073-1091). Fold f tests on
    block f, develops on block f + 1 (fold 5: block A) and trains on the other three
    (../shared/data/emo-superb/SOURCES.md).
    """
    ids = sorted(int(a) for a in set(actor_ids))
    n = len(ids)
    if n < N_FOLDS:
        raise ValueError(f"{n} actors cannot form {N_FOLDS} speaker-independent blocks")
    sizes = [n // N_FOLDS + (b >= N_FOLDS - n % N_FOLDS) for b in range(N_FOLDS)]
    block = np.repeat(np.arange(N_FOLDS), sizes)
    out = {}
    for actor, b in zip(ids, block):
        out[actor] = ["test" if b == f else "dev" if b == (f + 1) % N_FOLDS else "train"
                      for f in range(N_FOLDS)]
    return out


def reason_kind(reason: str) -> str:
    """The reason's kind, without its per-clip detail: 'truncated (12 bytes ...)' -> 'truncated'."""
    return reason.split(" (", 1)[0]


def skip_summary(n_clips: int, skipped: list[tuple[str, str]]) -> tuple[dict[str, int], str]:
    """({kind: count}, one line) for corpus.json: how many clips were skipped and why."""
    by_kind: dict[str, int] = {}
    for _, reason in skipped:
        by_kind[reason_kind(reason)] = by_kind.get(reason_kind(reason), 0) + 1
    by_kind = dict(sorted(by_kind.items(), key=lambda kv: (-kv[1], kv[0])))
    why = "; ".join(f"{kind}: {n}" for kind, n in by_kind.items())
    line = (f"{n_clips - len(skipped)} of {n_clips} labelled clips usable, {len(skipped)} skipped"
            + (f" ({why}; see skipped.csv)" if skipped else ""))
    return by_kind, line


def _write_tables(out: Path, name: str, notice: str | None, clips: pd.DataFrame,
                  people: pd.DataFrame, skipped: list[tuple[str, str]],
                  provenance: dict | None = None, schema: corpus_schema.Schema | None = None) -> None:
    corpus_schema.save(schema or corpus_schema.crema_d(), out)
    clips.to_csv(out / "clips.csv", index=False)
    people[["actor", "sex", "age", "race"]].to_csv(out / "actors.csv", index=False)
    pd.DataFrame(skipped, columns=["file", "reason"]).to_csv(out / "skipped.csv", index=False)
    by_kind, line = skip_summary(len(clips), skipped)
    # `coverage` is the line a report prints under its title; `skipped_by_reason` its numbers.
    info = {"corpus": name, "notice": notice, "clips": len(clips), "skipped": len(skipped),
            "actors": len(people), "skipped_by_reason": by_kind, "coverage": line}
    # Coverage (what every report title quotes) and what made the corpus (fairser.provenance).
    skipped_files = {f for f, _ in skipped}
    used = clips[~clips["file"].isin(skipped_files)]
    info.update(clips_used=len(used), actors_used=int(used["actor"].nunique()),
                provenance=provenance or {})
    (out / "corpus.json").write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")


def _with_folds(clips: pd.DataFrame, folds: dict) -> pd.DataFrame:
    clips = clips.copy()
    for f in range(N_FOLDS):
        clips[f"split_{f + 1}"] = clips["actor"].map(lambda a: folds[int(a)][f])
    return clips


def build_surrogate(out: str | Path, *, n_actors: int = 91, n_sentences: int = 12,
                    seconds: float = 1.6, seed: int = 0, provenance: dict | None = None,
                    bins: dict | None = None) -> Path:
    """Generate the surrogate corpus (fairser.surrogate) into `out`, atomically. Returns `out`.

    A tiny one for tests: build_surrogate(tmp_path / "corpus", n_actors=10, n_sentences=2,
    seconds=0.6) takes about a second.
    """
    if not 1 <= n_sentences <= len(surrogate.SENTENCES):
        raise InputError(f"corpus.surrogate.n_sentences: {n_sentences}; CREMA-D has "
                         f"{len(surrogate.SENTENCES)} sentences")
    if n_actors < 2 * N_FOLDS:
        raise InputError(f"corpus.surrogate.n_actors: {n_actors}; 5 folds need at least 10 actors")
    people, clips, audio = surrogate.generate(n_actors=n_actors, n_sentences=n_sentences,
                                              seconds=seconds, seed=seed)
    clips = _with_folds(clips, block_folds(people["actor"]))
    with atomic_dir(out) as tmp:
        (tmp / "wav").mkdir()
        for file, x in tqdm(zip(clips["file"], audio), total=len(clips), unit="clip",
                            desc="surrogate (generate)"):
            sf.write(tmp / "wav" / file, x, SAMPLE_RATE, subtype="PCM_16")
        _write_tables(tmp, "surrogate", SURROGATE_NOTICE, clips, people, [], provenance,
                      corpus_schema.crema_d(bins))
    return Path(out)


# --- CREMA-D ---------------------------------------------------------------------------------

CREMA_D_NOTICE = ("CREMA-D (Cao et al. 2014; ODbL 1.0 / DbCL 1.0) with EMO-SUPERB labels and folds "
                  "(Wu, Chou et al. 2024; MIT)")
FILE_NAME = re.compile(r"^(\d+)_([A-Z]{3})_([A-Z]{3})_([A-Z]{2})\.wav$")


class ClipSkipped(Exception):
    """A clip left out by policy; the message is the reason written to skipped.csv."""


def _wav_data_shortfall(raw: bytes) -> int | None:
    """Bytes the RIFF/WAVE `data` chunk declares beyond the end of `raw`; None if not a RIFF WAVE."""
    if raw[:4] != b"RIFF" or raw[8:12] != b"WAVE":
        return None
    pos = 12
    while pos + 8 <= len(raw):
        chunk, n = raw[pos:pos + 4], struct.unpack("<I", raw[pos + 4:pos + 8])[0]
        if chunk == b"data":
            # 0 and 0xFFFFFFFF are written by streaming encoders that never patched the size.
            return 0 if n in (0, 0xFFFFFFFF) else n - (len(raw) - pos - 8)
        pos += 8 + n + (n & 1)
    return 0


def _decode_error(err: Exception) -> str:
    """The decoder's own message, without the object repr (a memory address) soundfile adds."""
    text = getattr(err, "error_string", None)  # soundfile.LibsndfileError: libsndfile's message
    if not isinstance(text, str) or not text.strip():
        text = type(err).__name__
    return " ".join(text.split()).rstrip(".")


def _dbfs(x: float) -> float:
    return 20 * math.log10(x) if x > 0 else -math.inf


def load_clip(path: str | Path) -> np.ndarray:
    """Decode a clip to float32 mono at SAMPLE_RATE, or raise ClipSkipped with the reason.

    Any format soundfile reads (e.g. 16/24-bit PCM, stereo, 44.1 kHz); channels are averaged and
    the rate converted with a polyphase filter. Skipped: missing, empty, truncated (the WAV header
    promises more data than the file holds), undecodable, non-finite samples (NaN or inf in a
    float WAV), shorter than MIN_SECONDS, silent (peak under SILENT_PEAK_DBFS) or constant (RMS
    about the mean under CONSTANT_RMS_DBFS). The reason depends only on the file's bytes (no
    paths, object reprs or addresses), so the same input gives the same skipped.csv.
    """
    path = Path(path)
    if not path.is_file():
        raise ClipSkipped("missing")
    raw = path.read_bytes()
    if not raw:
        raise ClipSkipped("empty file")
    shortfall = _wav_data_shortfall(raw)
    if shortfall:
        raise ClipSkipped(f"truncated ({shortfall} bytes of audio data missing)")
    try:
        x, sr = sf.read(io.BytesIO(raw), dtype="float32", always_2d=True)
    except Exception as err:  # noqa: BLE001 (any decoder failure is a corrupt clip)
        raise ClipSkipped(f"corrupt ({_decode_error(err)})") from None
    if len(x) == 0:
        raise ClipSkipped("empty (no samples)")
    if not np.isfinite(x).all():
        raise ClipSkipped("non-finite samples (NaN or inf)")
    x = x.mean(1)
    if sr != SAMPLE_RATE:
        g = math.gcd(int(sr), SAMPLE_RATE)
        x = signal.resample_poly(x, SAMPLE_RATE // g, int(sr) // g).astype(np.float32)
    if len(x) < MIN_SECONDS * SAMPLE_RATE:
        raise ClipSkipped(f"too short ({len(x) / SAMPLE_RATE:.3f} s < {MIN_SECONDS} s)")
    peak = float(np.max(np.abs(x)))
    if peak == 0:
        raise ClipSkipped("silent (every sample is zero)")
    if _dbfs(peak) < SILENT_PEAK_DBFS:
        raise ClipSkipped(f"silent (peak {_dbfs(peak):.0f} dBFS < {SILENT_PEAK_DBFS:.0f} dBFS)")
    spread = float(np.std(x.astype(np.float64)))
    if spread == 0:
        raise ClipSkipped("constant (every sample is equal)")
    if _dbfs(spread) < CONSTANT_RMS_DBFS:
        raise ClipSkipped(f"constant (RMS about the mean {_dbfs(spread):.0f} dBFS < "
                          f"{CONSTANT_RMS_DBFS:.0f} dBFS)")
    return x


def read_labels(paths: list[Path]) -> pd.DataFrame:
    """clips.csv rows (without skips) from EMO-SUPERB's labels_consensus_{1..5}.csv, in fold order.

    Labels come from fold 1's file; every fold must list the same clips with the same labels.
    """
    need = ["FileName", *EMOTIONS, "SpkrID", "Split_Set"]
    folds = []
    for path in paths:
        df = pd.read_csv(path)
        missing = [c for c in need if c not in df.columns]
        if missing:
            raise InputError(f"{path}: missing columns {missing}")
        bad = sorted(set(df["Split_Set"]) - set(EMO_SUPERB_SPLITS))
        if bad:
            raise InputError(f"{path}: unknown Split_Set values {bad}")
        folds.append(df.set_index("FileName").sort_index())
    first = folds[0]
    for path, df in zip(paths[1:], folds[1:]):
        if not df.index.equals(first.index) or not np.allclose(df[list(EMOTIONS)], first[list(EMOTIONS)]):
            raise InputError(f"{path}: clips or labels differ from {paths[0].name}")
    rows = []
    for file, speaker in zip(first.index, first["SpkrID"]):
        m = FILE_NAME.match(file)
        if not m or m.group(3) not in EMOTION_CODES or int(m.group(1)) != int(speaker):
            raise InputError(f"{paths[0]}: unexpected clip name or speaker {file!r} / {speaker!r}")
        rows.append((file, int(m.group(1)), m.group(2), EMOTION_CODES[m.group(3)], m.group(4)))
    clips = pd.DataFrame(rows, columns=["file", "actor", "sentence", "emotion", "level"])
    clips[list(EMOTIONS)] = first[list(EMOTIONS)].to_numpy()
    for f, df in enumerate(folds):
        clips[f"split_{f + 1}"] = df["Split_Set"].map(EMO_SUPERB_SPLITS).to_numpy()
    return clips


def read_demographics(path: Path, actor_ids) -> pd.DataFrame:
    """actors.csv rows (actor, sex, age, race) from CREMA-D's VideoDemographics.csv."""
    df = pd.read_csv(path)
    missing = [c for c in ("ActorID", "Age", "Sex", "Race") if c not in df.columns]
    if missing:
        raise InputError(f"{path}: missing columns {missing}")
    people = pd.DataFrame({"actor": df["ActorID"].astype(int), "sex": df["Sex"],
                           "age": df["Age"].astype(int), "race": df["Race"]})
    bad = sorted(set(people["sex"]) - set(GENDERS))
    if bad:
        raise InputError(f"{path}: unknown Sex values {bad}")
    absent = sorted(set(int(a) for a in actor_ids) - set(people["actor"]))
    if absent:
        raise InputError(f"{path}: no demographics for actors {absent[:5]}")
    return people.sort_values("actor").reset_index(drop=True)


def _local_metadata(folder: Path, checksums: dict) -> dict[str, Path]:
    out = {}
    for key in METADATA:
        path = folder / key
        if not path.is_file():
            raise InputError(f"corpus.metadata_dir: {path} is missing")
        got = sha256_file(path)
        if got != checksums[key]:
            raise InputError(f"{path}: sha256 {got} does not match the pinned {checksums[key]}")
        out[key] = path
    return out


def _remote_metadata(urls: dict, cache: Path, checksums: dict) -> dict[str, Path]:
    return {key: fetch(f"{urls[param]}/{path}", cache / "metadata" / key, sha256=checksums[key])
            for key, (param, path, _) in METADATA.items()}


def _remote_clip(file: str, urls: dict, cache: Path) -> Path | None:
    """Fetch one clip through its Git LFS pointer into the cache; None if upstream has no such file."""
    try:
        pointer_path = fetch(f"{urls['crema_d_raw']}/{AUDIO_PATH.format(file)}",
                             cache / "pointers" / file)
    except NotFound:
        return None
    pointer = parse_lfs_pointer(pointer_path.read_bytes())
    if pointer is None:
        return pointer_path  # stored in git itself, not in LFS (e.g. an empty file)
    sha, size = pointer
    return fetch(f"{urls['crema_d_lfs']}/{AUDIO_PATH.format(file)}", cache / "AudioWAV" / file,
                 sha256=sha, size=size)


def build_crema_d(out: str | Path, *, urls: dict, audio_dir: str | Path | None = None,
                  metadata_dir: str | Path | None = None,
                  cache: str | Path = "data/.download-cache", checksums: dict | None = None,
                  workers: int = 8, provenance: dict | None = None, bins: dict | None = None) -> Path:
    """Write the real corpus into `out`, atomically. Returns `out`.

    Metadata come from `metadata_dir` (laid out like ../shared/data) or are downloaded from
    `urls` ({crema_d_raw, crema_d_lfs, emo_superb_raw}); either way each file must match its
    pinned sha256 (`checksums`: METADATA key -> sha256; injectable for tests). Audio comes from
    `audio_dir` or through Git LFS into `cache`, `workers` clips at a time. Clips that cannot be
    used (load_clip) are listed in skipped.csv with the reason.
    """
    checksums = {k: v[2] for k, v in METADATA.items()} if checksums is None else checksums
    cache = Path(cache)
    for key, folder in (("corpus.audio_dir", audio_dir), ("corpus.metadata_dir", metadata_dir)):
        if folder is not None and not Path(folder).is_dir():
            raise InputError(f"{key}: {folder} is not a folder")
    if audio_dir is not None and not any(Path(audio_dir).glob("*.[wW][aA][vV]")):
        raise InputError(f"corpus.audio_dir: {audio_dir} holds no .wav file (expected CREMA-D's "
                         f"AudioWAV clips, e.g. 1001_DFA_ANG_XX.wav)")
    needed = [] if metadata_dir is not None else ["crema_d_raw", "emo_superb_raw"]
    needed += [] if audio_dir is not None else ["crema_d_raw", "crema_d_lfs"]
    for key in dict.fromkeys(needed):
        if not isinstance(urls.get(key), str):
            raise InputError(f"params.yaml: corpus.urls.{key} is missing")
        check_url(urls[key], f"corpus.urls.{key}")
    urls = {k: v.rstrip("/") for k, v in urls.items() if isinstance(v, str)}

    meta = (_local_metadata(Path(metadata_dir), checksums) if metadata_dir is not None
            else _remote_metadata(urls, cache, checksums))
    clips = read_labels([meta[LABELS.format(f)] for f in range(1, N_FOLDS + 1)])
    people = read_demographics(meta[DEMOGRAPHICS], clips["actor"])

    if audio_dir is not None:
        if not any((Path(audio_dir) / file).is_file() for file in clips["file"]):
            raise InputError(f"corpus.audio_dir: {audio_dir} holds none of the {len(clips)} "
                             f"labelled clips (names like {clips['file'].iloc[0]})")
        sources = (Path(audio_dir) / file for file in clips["file"])
        pool = None
    else:
        pool = ThreadPoolExecutor(max_workers=workers)
        sources = pool.map(lambda file: _remote_clip(file, urls, cache), clips["file"])
    skipped = []
    try:
        with atomic_dir(out) as tmp:
            (tmp / "wav").mkdir()
            for file, source in tqdm(zip(clips["file"], sources), total=len(clips), unit="clip",
                                     desc="crema-d", mininterval=2.0):
                try:
                    if source is None:
                        raise ClipSkipped("not found upstream")
                    x = load_clip(source)
                except ClipSkipped as why:
                    skipped.append((file, str(why)))
                    continue
                sf.write(tmp / "wav" / file, np.clip(x, -1, 1), SAMPLE_RATE, subtype="PCM_16")
            if len(skipped) == len(clips):
                by_kind, _ = skip_summary(len(clips), skipped)
                raise InputError(f"{'corpus.audio_dir' if audio_dir is not None else 'corpus.urls'}: "
                                 f"no usable clip among {len(clips)} ("
                                 + "; ".join(f"{k}: {n}" for k, n in by_kind.items()) + ")")
            # clips.csv keeps every labelled clip, skipped or not: the corpus-wide majority gender
            # per emotion (SPEC section 2) counts all 7,442, and the split stage reports the
            # skipped clips per fold. Later stages read audio only for clips not in skipped.csv.
            _write_tables(tmp, "crema-d", CREMA_D_NOTICE, clips, people, skipped, provenance,
                          corpus_schema.crema_d(bins))
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    return Path(out)


def build(out: str | Path, params: dict, *, cache: str | Path = "data/.download-cache",
          inputs: dict | None = None) -> Path:
    """The download stage: the corpus named by params corpus.name, written to `out`.

    corpus.json records the preset, the seed and `inputs` (the inputs stage's fingerprint of the
    local audio and metadata folders, fairser.provenance).
    """
    corpus = params["corpus"]
    provenance = {"preset": params.get("preset"), "seed": params.get("seed"),
                  "audio_dir": (inputs or {}).get("audio_dir"),
                  "metadata_dir": (inputs or {}).get("metadata_dir")}
    name = corpus["name"]
    if name == "surrogate":
        s = corpus["surrogate"]
        return build_surrogate(out, n_actors=s["n_actors"], n_sentences=s["n_sentences"],
                               seconds=s["seconds"], seed=params["seed"], provenance=provenance,
                               bins=corpus.get("bins"))
    if name == "crema-d":
        return build_crema_d(out, urls=corpus.get("urls") or {}, audio_dir=corpus["audio_dir"],
                             metadata_dir=corpus["metadata_dir"], cache=cache, provenance=provenance,
                             bins=corpus.get("bins"))
    raise InputError(f"params.yaml: corpus.name {name!r} is not one of 'surrogate', 'crema-d'")
