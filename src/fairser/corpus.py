"""The download stage's corpus: the generated surrogate, the real CREMA-D, or a user corpus in
EMO-SUPERB's label format or a manifest (README "Bring your own corpus"), in one file layout.

Output folder (docs/DESIGN.md): wav/<file>.wav (16 kHz mono PCM16) for every usable clip,
clips.csv (file, actor, sentence, emotion, level, the vote distribution in EMOTIONS order,
split_1..split_5) for every labelled clip, usable or not, actors.csv (actor, sex, age, race),
skipped.csv (file, reason: the clips of clips.csv without a wav), corpus.json and schema.json.
User corpora: clips.csv (file, actor, their classes, split_1..split_F), actors.csv (actor,
speaker, their attributes).

CREMA-D comes from its public repository (audio through Git LFS, see fairser.download) or from
local folders; labels and folds from EMO-SUPERB's labels_consensus_{1..5}.csv (PROTOCOL section 1).
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
from fairser import surrogate, values
from fairser.errors import InputError
from fairser.constants import EMOTION_CODES, SAMPLE_RATE, SURROGATE_NOTICE
from fairser.download import NotFound, check_url, fetch, parse_lfs_pointer, sha256_file
from fairser.io import atomic_dir, read_csv, read_text

EMOTIONS = corpus_schema.CREMA_D_CLASSES
GENDERS = corpus_schema.GENDER_GROUPS
N_FOLDS = 5  # CREMA-D's and the surrogate's folds (EMO-SUPERB's block folds)
MIN_SECONDS = 0.1  # shorter clips are skipped by policy
# Clips with no signal are skipped too: speaker models and pitch trackers normalise by the
# level and return NaN on them. -80 dBFS peak is about 3 PCM16 steps; a spread (RMS about the
# mean) under -100 dBFS is a constant clip, DC offset or not.
SILENT_PEAK_DBFS = -80.0
CONSTANT_RMS_DBFS = -100.0

# Metadata files: path in the local metadata folder (crema-d/..., emo-superb/...), the URL
# parameter and path upstream, and the sha256 of the file at the pinned commit (docs/PROTOCOL.md).
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
    (docs/PROTOCOL.md section 1).
    """
    ids = sorted(int(a) for a in set(actor_ids))
    n = len(ids)
    if n < N_FOLDS:
        raise ValueError(f"{n} actors cannot form {N_FOLDS} speaker-independent blocks")
    sizes = [n // N_FOLDS + (b >= N_FOLDS - n % N_FOLDS) for b in range(N_FOLDS)]
    block = np.repeat(np.arange(N_FOLDS), sizes)
    return {actor: fold_roles(int(b), N_FOLDS) for actor, b in zip(ids, block)}


def fold_roles(block: int, n_folds: int) -> list[str]:
    """Split of a clip of block (session) `block` in each fold: fold f tests on block f, develops
    on block f + 1 (the last fold on block 0) and trains on the others."""
    return ["test" if block == f else "dev" if block == (f + 1) % n_folds else "train"
            for f in range(n_folds)]


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
                  provenance: dict | None = None, schema: corpus_schema.Schema | None = None,
                  overlap: list[int] | None = None, normalised: dict | None = None) -> None:
    corpus_schema.save(schema or corpus_schema.crema_d(), out)
    clips.to_csv(out / "clips.csv", index=False)
    cols = ["actor", "sex", "age", "race"] if name in ("surrogate", "crema-d") else list(people.columns)
    people[cols].to_csv(out / "actors.csv", index=False)
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
    if schema is not None and schema.speaker_rule:
        info["speaker_rule"] = schema.speaker_rule  # who is a speaker (EMO-SUPERB: speaker_units)
    if overlap is not None:  # a corpus's own folds (build_user): speakers in train and dev per fold
        info["train_dev_overlap"] = overlap
        info["coverage"] = f"{line}; {overlap_line(overlap)}"
    if normalised is not None:  # user corpora: {attribute: {raw spelling: value}} (fairser.values)
        info["normalised"] = normalised
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

    Metadata come from `metadata_dir` (laid out as METADATA's keys) or are downloaded from
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
            # per emotion (PROTOCOL section 2) counts all 7,442, and the split stage reports the
            # skipped clips per fold. Later stages read audio only for clips not in skipped.csv.
            _write_tables(tmp, "crema-d", CREMA_D_NOTICE, clips, people, skipped, provenance,
                          corpus_schema.crema_d(bins))
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    return Path(out)


# --- user corpora: EMO-SUPERB label folders and manifests ------------------------------------------

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3")
TOLERANCE = 1e-3  # a label row sums to 1 within this


def flat_name(rel: str) -> str:
    """The flat clips.csv `file` of a clip path relative to the audio folder: its folders joined
    to the name by "__" ("Session1/a/x.wav" -> "Session1__a__x.wav"); backslashes count as "/"."""
    return "__".join(p for p in rel.replace("\\", "/").split("/") if p not in ("", "."))


def _sort_ids(ids) -> list:
    """Ids in numeric order when every one is a number, else by name."""
    ids = list(dict.fromkeys(str(i) for i in ids))
    try:
        return sorted(ids, key=lambda i: (float(i), i))
    except ValueError:
        return sorted(ids)


def _label_row(values, classes, where: str, renormalise: bool) -> list[float]:
    """Soft labels of one row checked: numbers in [0, 1] summing to 1 (or rescaled)."""
    out = []
    for c, v in zip(classes, values):
        try:
            x = float(v)
        except (TypeError, ValueError):
            raise InputError(f"{where}: class {c} is {v!r}, not a number") from None
        if not (0.0 <= x <= 1.0):
            raise InputError(f"{where}: class {c} is {v!r}, outside [0, 1]")
        out.append(x)
    total = sum(out)
    if abs(total - 1.0) > TOLERANCE:
        if not renormalise or total <= 0:
            raise InputError(f"{where}: the class shares sum to {total:g}, not 1"
                             + ("" if total <= 0 else " (set corpus.renormalise: true to rescale)"))
        out = [x / total for x in out]
    return out


def _check_folds(splits: list[list[str]], speakers: list[str], where, n_folds: int) -> None:
    """Speaker-independent folds: every fold has test clips, no speaker is in a fold's test set and
    its train/dev, and no speaker is in the test sets of two folds. where(i, f) names row i (of
    fold f's file, for formats with a file per fold); where(None, f) the file."""
    test_fold: dict[str, int] = {}
    for f in range(n_folds):
        role: dict[str, tuple[str, int]] = {}
        n_test = 0
        for i, (spk, row) in enumerate(zip(speakers, splits)):
            s = row[f]
            n_test += s == "test"
            prev = role.get(spk)
            if prev is None:
                role[spk] = (s, i)
            elif (prev[0] == "test") != (s == "test"):
                raise InputError(f"{where(i, f)}: speaker {spk} is in fold {f + 1}'s test set and in its "
                                 f"{s if s != 'test' else prev[0]} set ({where(prev[1], f)})")
            if s == "test":
                if test_fold.setdefault(spk, f) != f:
                    raise InputError(f"{where(i, f)}: speaker {spk} is in the test sets of folds "
                                     f"{test_fold[spk] + 1} and {f + 1}")
        if n_test == 0:
            raise InputError(f"{where(None, f)}: fold {f + 1} has no test clips")


def train_dev_overlap(splits: list[list[str]], speakers: list[str], n_folds: int) -> list[int]:
    """Per fold, how many speakers have clips in both its train and its dev set.

    Published splits have such speakers (they are not leakage into the test set, which
    _check_folds forbids); corpus.json reports the counts. A speaker unit of one clip (an unknown
    SpkrID, speaker_units) is in one split only, so it never counts.
    """
    out = []
    for f in range(n_folds):
        train = {spk for spk, row in zip(speakers, splits) if row[f] == "train"}
        dev = {spk for spk, row in zip(speakers, splits) if row[f] == "dev"}
        out.append(len(train & dev))
    return out


def overlap_line(counts: list[int]) -> str:
    """corpus.json's coverage clause: 'speakers in both train and dev per fold: 3, 0, 2'."""
    return f"speakers in both train and dev per fold: {', '.join(map(str, counts))}"


def _speaker_values(rows: list[tuple[str, str, int]], column: str, where) -> dict[str, str]:
    """speaker -> value of a per-speaker column given (speaker, value, row) per clip; one value each."""
    seen: dict[str, tuple[str, int]] = {}
    for spk, value, i in rows:
        if spk in seen and seen[spk][0] != value:
            raise InputError(f"{where(i)}: speaker {spk} has {column} {value!r} here and "
                             f"{seen[spk][0]!r} at {where(seen[spk][1])}")
        seen.setdefault(spk, (value, i))
    return {k: v for k, (v, _) in seen.items()}


def _attribute(column: str, cells: list[str], bins: dict | None,
               excluded=()) -> corpus_schema.Attribute:
    """A speaker column (normalised, fairser.values) as a schema attribute: `gender` (Male, Female),
    other categorical columns with their values sorted, numeric ones binned by
    corpus.bins.<column>. Empty cells and the `excluded` values (corpus.excluded.<column>) that
    occur are excluded (unknown)."""
    skip = ["", *excluded]
    present = sorted({v for v in cells if v not in skip})
    excluded = tuple(e for e in skip if e in cells)
    if column == "gender":
        return corpus_schema.Attribute("gender", "gender", GENDERS, excluded=excluded)
    if values.is_numeric(present):
        spec = (bins or {}).get(column)
        if not spec:
            raise InputError(f"params.yaml: corpus.bins.{column} is missing (speaker column {column!r} "
                             f"is numeric; give edges and names to group it)")
        return corpus_schema.Attribute(column, column, tuple(spec["names"]), excluded=excluded,
                                       edges=tuple(spec["edges"]))
    return corpus_schema.Attribute(column, column, tuple(present), excluded=excluded)


SPEAKERS_EXPECTED = "columns SpkrID (or speaker) and one column per speaker attribute"


def _read_speakers(path: Path, known: set[str]) -> tuple[dict[str, dict[str, str]], dict[str, str]]:
    """corpus.speakers: (speaker id -> {column: value as written, stripped} for the other columns,
    {raw id: id} for the ids fairser.values.speaker_id changed). `known`: the labels' speaker ids."""
    df = read_csv(path, (), expected=SPEAKERS_EXPECTED, dtype=str, keep_default_na=False)
    key = next((c for c in ("SpkrID", "speaker") if c in df.columns), None)
    if key is None:
        raise InputError(f"{path}: missing column SpkrID (or speaker)")
    if df.empty:
        raise InputError(f"{path}: a header and no rows; expected one row per speaker ({SPEAKERS_EXPECTED})")
    ids, mapping = values.speaker_ids(df[key])
    out: dict[str, dict[str, str]] = {}
    line_of: dict[str, int] = {}
    for i, (spk, (_, row)) in enumerate(zip(ids, df.iterrows())):
        if spk in out:
            raise InputError(f"{path}, line {i + 2}: speaker {row[key]!r} is listed twice "
                             f"(line {line_of[spk]}{'' if row[key] == spk else f', as speaker {spk}'})")
        line_of[spk] = i + 2
        out[spk] = {("gender" if c.lower() == "gender" else c): str(v).strip()
                    for c, v in row.items() if c != key}
    absent = sorted(known - set(out))
    if absent:
        raise InputError(f"{path}: no row for speaker {absent[0]} ({len(absent)} speakers missing)")
    return out, mapping


def _normalise(column: list[str], name: str, excluded: dict, where: str, mapping: dict) -> list[str]:
    """An attribute's values through fairser.values.normalise (corpus.excluded.<name> are unknown);
    the spellings it changed are added to mapping[name]."""
    out = values.normalise(column, name, excluded=excluded.get(name, ()), where=where,
                           hint=f"list any that mean unknown under corpus.excluded.{name}")
    if out.mapping:
        mapping.setdefault(name, {}).update(out.mapping)
    return out.values


def _unlabelled_audio(audio_dir: Path, labelled: set[Path], where: str) -> None:
    """Error when audio_dir holds audio files the labels do not list (naming one and the count)."""
    extra = sorted(p for p in audio_dir.rglob("*")
                   if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file() and p.resolve() not in labelled)
    if extra:
        raise InputError(f"{where}: {len(extra)} audio files in corpus.audio_dir are not in the labels "
                         f"(e.g. {extra[0].relative_to(audio_dir)})")


SPEAKER_RULES = ("auto", "spkrid", "spkrid_gender")  # or "regex:<pattern over FileName>"
UNKNOWN_SPEAKER = "unknown"  # SpkrID (compared folded) of a clip whose speaker is not known
UNKNOWN_GENDER = "unknown"  # a Gender cell (folded) that is no group: an excluded (empty) value


def _label_table(path: Path, need: list[str]) -> pd.DataFrame:
    """One labels_consensus file as strings. Its first column holds the file names: NTHU-NNIME's
    files leave that header cell empty (a pandas index written out), so it is named FileName.
    An empty, header-only or non-UTF-8 file, or one without a column of `need`, is one line."""
    df = read_csv(path, (), expected=f"columns {', '.join(need)}", dtype=str, keep_default_na=False)
    first = str(df.columns[0])
    if "FileName" not in df.columns and (first.strip() == "" or first.startswith("Unnamed: 0")):
        df = df.rename(columns={df.columns[0]: "FileName"})
    missing = [c for c in need if c not in df.columns]
    if missing:
        raise InputError(f"{path}: missing column {missing[0]}")
    if df.empty:
        raise InputError(f"{path}: a header and no rows; expected one row per clip")
    return df


def _shares(df: pd.DataFrame, classes, path: Path, renormalise: bool) -> np.ndarray:
    """The class columns as an (n, K) array checked like _label_row, vectorised: numbers in [0, 1]
    whose row sums to 1 (or rescaled with `renormalise`); the first bad cell is a one-line error."""
    cells = df[list(classes)]
    x = cells.apply(lambda col: pd.to_numeric(col.str.strip(), errors="coerce")).to_numpy(float)
    bad = np.isnan(x) | ~((x >= 0) & (x <= 1))
    if bad.any():
        i = int(np.flatnonzero(bad.any(1))[0])
        k = int(np.flatnonzero(bad[i])[0])
        raw = cells.iat[i, k]
        why = "not a number" if np.isnan(x[i, k]) else "outside [0, 1]"
        raise InputError(f"{path}, line {i + 2}: class {classes[k]} is {raw!r}, {why}")
    total = x.sum(1)
    off = np.abs(total - 1.0) > TOLERANCE
    if off.any():
        fail = off & (total <= 0) if renormalise else off
        if fail.any():
            i = int(np.flatnonzero(fail)[0])
            raise InputError(f"{path}, line {i + 2}: the class shares sum to {total[i]:g}, not 1"
                             + ("" if total[i] <= 0 else " (set corpus.renormalise: true to rescale)"))
        x[off] = x[off] / total[off, None]
    return x


def _map_unique(values: pd.Series, fn) -> pd.Series:
    """fn applied once per distinct value (a 150,000-row column has a few hundred)."""
    return values.map({v: fn(v) for v in values.unique()})


def speaker_units(files: pd.Series, spkr: pd.Series, gender: pd.Series, rule: str,
                  where) -> tuple[pd.Series, dict]:
    """Who is a speaker (params corpus.speaker_rule) and how that was decided.

    - `spkrid`: SpkrID, through fairser.values.speaker_id ("01", "1", " 1" are one speaker).
    - `spkrid_gender`: SpkrID + Gender: IEMOCAP and MSP-IMPROV give the session as SpkrID, each
      session holding one female and one male speaker (Ses01F_impro04_M016.wav is session 1's
      male speaker), so speakers = SpkrID x Gender (IEMOCAP 5 x 2 = 10, MSP-IMPROV 6 x 2 = 12).
    - `regex:<pattern>`: the pattern's groups joined by "_" (or its whole match) in FileName,
      e.g. `regex:^Ses(\\d+)[FM]_.*_([FM])\\d+\\.wav$` gives IEMOCAP's session_gender.
    - `auto`: spkrid_gender when every SpkrID of known gender carries more than one gender, else
      spkrid; a corpus where only some SpkrIDs do is an error naming one (a gender typo or a
      session id: say which with corpus.speaker_rule).
    Unknown speakers (SpkrID `Unknown` or empty, as MSP-Podcast marks many clips): each such clip is
    a speaker unit of its own, `unknown:<FileName>`, so thousands of clips never become one
    speaker (one unit of the speaker bootstrap); corpus.json reports how many.
    `where(i)` names row i. Returns (speaker per row, {rule, speakers, unknown_clips, description}).
    """
    ids = _map_unique(spkr, values.speaker_id)
    unknown = ids.str.casefold().isin([UNKNOWN_SPEAKER, ""])
    known_gender = gender.ne("") & ~unknown
    if rule == "auto":
        per_id = gender[known_gender].groupby(ids[known_gender]).nunique()
        if len(per_id) and (per_id > 1).all():
            rule = "spkrid_gender"
        elif (per_id > 1).any():
            spk = per_id.index[per_id.to_numpy() > 1][0]
            rows = np.flatnonzero((ids == spk).to_numpy() & known_gender.to_numpy())
            first = int(rows[0])
            other = int(rows[np.flatnonzero(gender.to_numpy()[rows] != gender.iat[first])[0]])
            raise InputError(f"{where(other)}: speaker {spk} has gender {gender.iat[other]!r} here and "
                             f"{gender.iat[first]!r} at {where(first)}; if SpkrID is a session of "
                             f"several speakers, set corpus.speaker_rule: spkrid_gender")
        else:
            rule = "spkrid"
    if rule == "spkrid":
        speakers, how = ids, "SpkrID"
    elif rule == "spkrid_gender":
        speakers = ids + "_" + gender.where(gender != "", "unknown gender")
        how = "SpkrID x Gender (SpkrID is a session of more than one speaker)"
    elif rule.startswith("regex:"):
        pattern = re.compile(rule[len("regex:"):])
        parts = files.str.extract(pattern if pattern.groups else f"({pattern.pattern})", expand=True)
        got = parts.iloc[:, 0].str.cat([parts[c] for c in parts.columns[1:]], sep="_")
        missing = parts.isna().any(axis=1) & ~unknown
        if missing.any():
            i = int(np.flatnonzero(missing.to_numpy())[0])
            raise InputError(f"{where(i)}: FileName {files.iat[i]!r} does not match corpus.speaker_rule "
                             f"'{rule}' ({int(missing.sum())} rows do not)")
        speakers, how = _map_unique(got.fillna(""), values.speaker_id), f"{rule} over FileName"
    else:
        raise InputError(f"params.yaml: corpus.speaker_rule is {rule!r}; expected one of "
                         f"{', '.join(SPEAKER_RULES)} or regex:<pattern over FileName>")
    speakers = speakers.where(~unknown, "unknown:" + files)
    n_known = int(speakers[~unknown].nunique())
    n_unknown = int(unknown.sum())
    description = f"speakers = {how} = {n_known}"
    if n_unknown:
        description += (f"; {n_unknown} clips with SpkrID Unknown are each a speaker unit of their "
                        f"own ({n_known + n_unknown} units)")
    return speakers, dict(rule=rule, speakers=n_known, unknown_clips=n_unknown,
                          description=description)


def read_emo_superb(labels_dir: str | Path, *, renormalise: bool = False,
                    speaker_rule: str = "auto") -> dict:
    """An EMO-SUPERB label folder: classes, clips (source, file, speaker, labels, splits), genders.

    labels_consensus_<fold>.csv per fold (fold ids in numeric order when numbers, else by name)
    with FileName (or an unnamed first column, as NTHU-NNIME publishes it), a column per class of
    config.json's categorical.emo_type, SpkrID, Gender and Split_Set (names from config.json's
    data_split_type, default Train/Development/Test); other columns (EmoAct, EmoVal, EmoDom) are
    not read. Every fold file lists the same clips with the same labels, speakers and genders.
    Gender `Unknown` is an unknown (excluded) value; who is a speaker: speaker_units.
    """
    folder = Path(labels_dir)
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise InputError(f"corpus.labels_dir: {config_path} is missing")
    text = read_text(config_path, "a JSON object with categorical.emo_type, the list of classes")
    try:
        cfg = json.loads(text)
        classes = tuple(str(c) for c in cfg["categorical"]["emo_type"])
    except (ValueError, KeyError, TypeError):
        raise InputError(f"{config_path}: no categorical.emo_type list of classes") from None
    names = {"train": "Train", "dev": "Development", "test": "Test"}
    names.update(cfg.get("data_split_type") or {})
    split_of = {str(v): k for k, v in names.items() if k in corpus_schema.SPLITS}
    files = {m.group(1): p for p in folder.glob("labels_consensus_*.csv")
             if (m := re.match(r"labels_consensus_(.+)\.csv$", p.name))}
    if not files:
        raise InputError(f"corpus.labels_dir: {folder} holds no labels_consensus_<fold>.csv")
    fold_ids = _sort_ids(files)
    need = ["FileName", *classes, "SpkrID", "Gender", "Split_Set"]
    first = None
    splits, fold_files, fold_lines = [], [], []
    for fid in fold_ids:
        path = files[fid]
        df = _label_table(path, need)
        name = df["FileName"].str.strip()
        dup = name.duplicated()
        if dup.any():
            i = int(np.flatnonzero(dup.to_numpy())[0])
            j = int(np.flatnonzero((name == name.iat[i]).to_numpy())[0])
            raise InputError(f"{path}, line {i + 2}: duplicate file {name.iat[i]} (also line {j + 2})")
        split = df["Split_Set"].str.strip().map(split_of)
        if split.isna().any():
            i = int(np.flatnonzero(split.isna().to_numpy())[0])
            raise InputError(f"{path}, line {i + 2}: Split_Set {df['Split_Set'].iat[i]!r} is not one of "
                             f"{sorted(split_of)}")
        labels = _shares(df, classes, path, renormalise)
        # Gender as written (build_user normalises it once, recording the mapping; `Unknown` is
        # empty, unknown) and as fairser.values folds it, for the speaker rule and the fold checks.
        raw = _map_unique(df["Gender"], lambda v: "" if values.fold(v) == UNKNOWN_GENDER else v)
        gender = _map_unique(raw, lambda v: values.normalise([v], "gender", keep_values=True).values[0])
        table = pd.DataFrame({"line": np.arange(2, len(df) + 2), "split": split.to_numpy(),
                              "speaker": df["SpkrID"].to_numpy(), "gender": gender.to_numpy(),
                              "gender_raw": raw.to_numpy()},
                             index=pd.Index(name.to_numpy(), name="FileName"))
        fold_files.append(path)
        fold_lines.append(table["line"])
        if first is None:
            first, first_path, first_labels = table, path, labels
            splits.append(table["split"].to_numpy())
            continue
        lost = ~first.index.isin(table.index)
        if lost.any():
            n = first.index[lost][0]
            raise InputError(f"{path}: no row for {n} ({first_path.name}, line {first['line'][n]})")
        extra = ~table.index.isin(first.index)
        if extra.any():
            n = table.index[extra][0]
            raise InputError(f"{path}, line {table['line'][n]}: {n} is not in {first_path.name}")
        pos = table.index.get_indexer(first.index)
        b = table.iloc[pos]
        differs = ((_map_unique(b["speaker"], values.speaker_id).to_numpy()
                    != _map_unique(first["speaker"], values.speaker_id).to_numpy())
                   | (b["gender"].to_numpy() != first["gender"].to_numpy())
                   | ~np.isclose(labels[pos], first_labels, atol=TOLERANCE).all(1))
        if differs.any():
            k = int(np.flatnonzero(differs)[0])
            n = first.index[k]
            raise InputError(f"{path}, line {b['line'].iat[k]}: {n} differs from {first_path.name}, "
                             f"line {first['line'].iat[k]} (labels, SpkrID or Gender)")
        splits.append(b["split"].to_numpy())
    order = list(first.index)

    def where(i, f=0):
        return f"{fold_files[f]}" if i is None else f"{fold_files[f]}, line {fold_lines[f][order[i]]}"

    speakers, rule = speaker_units(first.index.to_series(index=range(len(first))),
                                   first["speaker"].reset_index(drop=True),
                                   first["gender"].reset_index(drop=True), speaker_rule, where)
    return dict(classes=classes, sources=order, splits=np.column_stack(splits).tolist(), where=where,
                n_folds=len(fold_ids), speakers=speakers.tolist(), labels=first_labels.tolist(),
                attributes={"gender": first["gender_raw"].tolist()}, path=folder, speaker_rule=rule,
                speaker_ids=values.speaker_ids(first["speaker"].unique())[1])


MANIFEST_EXPECTED = ("columns path, speaker, label (or label_<class> columns), split_1.. (or split, "
                     "or fold) and any speaker attributes")
MIN_CLIPS_PER_CLASS = 2  # params corpus.min_clips_per_class: a class with fewer is taken for a typo


def _read_records(path: Path) -> tuple[list[str], list[tuple[int, dict]]]:
    """A manifest's (columns, [(line, row)]): one row per CSV line or JSONL object."""
    if path.suffix.lower() == ".jsonl":
        records = []
        text = read_text(path, "one JSON object per line with " + MANIFEST_EXPECTED[len("columns "):])
        for i, line in enumerate(text.splitlines()):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except ValueError:
                raise InputError(f"{path}, line {i + 1}: not a JSON object") from None
            if not isinstance(rec, dict):
                raise InputError(f"{path}, line {i + 1}: not a JSON object")
            records.append((i + 1, rec))
        columns = list(dict.fromkeys(k for _, r in records for k in r))
        return columns, records
    if path.suffix.lower() != ".csv":
        raise InputError(f"corpus.manifest: {path} is neither .csv nor .jsonl")
    df = read_csv(path, (), expected=MANIFEST_EXPECTED, dtype=str, keep_default_na=False)
    return list(df.columns), [(i + 2, dict(zip(df.columns, r))) for i, r in
                              enumerate(df.itertuples(index=False))]


def _has_share(x) -> bool:
    """True when a label cell gives its class a share above 0 (a cell that is no number counts:
    the row check names it)."""
    try:
        return float(x) > 0
    except (TypeError, ValueError):
        return x not in (None, "")


def _class_lines(records, soft: list[str]) -> dict[str, list[int]]:
    """Every class name a manifest uses -> the lines that give it a share above 0 (its clips):
    label_<class> columns, `label` names, or the keys of JSONL label objects."""
    out: dict[str, list[int]] = {c[len("label_"):]: [] for c in soft}
    for line, r in records:
        if soft:
            for c in soft:
                if _has_share(r.get(c)):
                    out[c[len("label_"):]].append(line)
            continue
        v = r.get("label")
        if isinstance(v, dict):
            for k, x in v.items():
                out.setdefault(str(k), [])
                if _has_share(x):
                    out[str(k)].append(line)
        elif v not in (None, "") and str(v).strip():
            out.setdefault(str(v).strip(), []).append(line)
    return out


def _lines(lines: list[int]) -> str:
    """`line 5`, `lines 2, 3, 4`, `lines 2, 3, 4, 5, 6 and 7 more`, `no clip`."""
    if not lines:
        return "no clip"
    more = f" and {len(lines) - 5} more" if len(lines) > 5 else ""
    return f"line{'s' if len(lines) > 1 else ''} {', '.join(map(str, lines[:5]))}{more}"


def manifest_classes(path: Path, class_lines: dict[str, list[int]], *, soft: bool,
                     declared=None, min_clips: int = MIN_CLIPS_PER_CLASS) -> tuple[str, ...]:
    """The classes of a manifest, in order: `declared` (params corpus.classes) when given, else
    the label_<class> column order or the sorted label names.

    Declared: a class name the manifest uses that is not declared, or (label_<class> columns) a
    declared class without its column, is one InputError naming it and its lines. Not declared:
    names that differ only by case or spacing (`Joy`, `joy`) and classes with fewer than
    `min_clips` clips (a typo such as `joyy` is a class of one clip) are an InputError naming
    every such name and its lines. `class_lines`: _class_lines.
    """
    def what(n):
        return f"column {'label_' + n!r}" if soft else f"label {n!r}"

    if declared is not None:
        declared = tuple(str(c) for c in declared)
        unknown = [n for n in class_lines if n not in declared]
        if unknown:
            raise InputError(f"{path}: " + ", ".join(f"{what(n)} ({_lines(class_lines[n])})" for n in unknown)
                             + f" not in corpus.classes {list(declared)}")
        absent = [c for c in declared if c not in class_lines]
        if soft and absent:
            raise InputError(f"{path}: missing column label_{absent[0]} (corpus.classes {list(declared)})")
        return declared
    by_key: dict[str, list[str]] = {}
    for n in class_lines:
        by_key.setdefault(values.fold(n), []).append(n)
    clash = [names for names in by_key.values() if len(names) > 1]
    if clash:
        raise InputError(f"{path}: " + "; ".join(" and ".join(f"{what(n)} ({_lines(class_lines[n])})"
                                                              for n in sorted(names)) for names in clash)
                         + " differ only by case or spacing; spell each class one way, or list the "
                         "classes in corpus.classes")
    rare = [n for n in class_lines if len(class_lines[n]) < min_clips]
    if rare:
        raise InputError(f"{path}: " + ", ".join(f"{what(n)} ({_lines(class_lines[n])})" for n in rare)
                         + f": fewer than corpus.min_clips_per_class = {min_clips} clips each (a typo?); "
                         "fix the label, or list the classes in corpus.classes")
    return tuple(class_lines) if soft else tuple(sorted(class_lines))


def read_manifest(manifest: str | Path, *, renormalise: bool = False, classes=None,
                  min_clips_per_class: int = MIN_CLIPS_PER_CLASS) -> dict:
    """A manifest: one row per clip (path, speaker, label or label_<class>..., split_<n> / split /
    fold, other columns speaker attributes); see README "Bring your own corpus". `classes`
    (params corpus.classes) declares the classes; without it they are checked (manifest_classes).
    Speaker ids and attribute values are returned as written; build_user normalises them."""
    path = Path(manifest)
    if not path.exists():
        raise InputError(f"corpus.manifest: {path} not found")
    columns, records = _read_records(path)
    if not records:
        raise InputError(f"{path}: no rows; expected one row per clip with {MANIFEST_EXPECTED}")
    for c in ("path", "speaker"):
        if c not in columns:
            raise InputError(f"{path}: missing column {c}")
    soft = [c for c in columns if c.startswith("label_")]
    if not soft and "label" not in columns:
        raise InputError(f"{path}: missing column label (or label_<class> columns)")
    split_cols = sorted((c for c in columns if re.fullmatch(r"split_\d+", c)), key=lambda c: int(c[6:]))
    if split_cols:
        mode = "split_n"
    elif "split" in columns:
        mode, split_cols = "split", ["split"]
    elif "fold" in columns:
        mode = "fold"
    else:
        raise InputError(f"{path}: missing column split_1 (or split, or fold)")
    skip = {"path", "speaker", "label", "split", "fold", *soft, *split_cols}
    attr_cols = [c for c in columns if c not in skip]
    clash = [c for c in attr_cols if c in ("actor", "file") or re.fullmatch(r"split_.*|label_?.*", c)]
    if clash:
        raise InputError(f"{path}: column {clash[0]!r} is reserved (see README \"Bring your own corpus\")")
    classes = manifest_classes(path, _class_lines(records, soft), soft=bool(soft), declared=classes,
                               min_clips=min_clips_per_class)
    lines, sources, speakers, labels, splits, folds = [], [], [], [], [], []
    attrs: dict[str, list[str]] = {("gender" if c.lower() == "gender" else c): [] for c in attr_cols}
    seen: dict[str, int] = {}
    for line, r in records:
        where = f"{path}, line {line}"
        for c in ["path", "speaker", *split_cols, *(["fold"] if mode == "fold" else [])]:
            if r.get(c) in (None, ""):
                raise InputError(f"{where}: missing {c}")
        src = str(r["path"]).strip()
        if src in seen:
            raise InputError(f"{where}: duplicate file {src} (also line {seen[src]})")
        seen[src] = line
        if soft:
            shares = [r.get(f"label_{c}", "") for c in classes]
        else:
            v = r.get("label")
            if isinstance(v, dict):
                shares = [v.get(c, 0.0) for c in classes]
            else:
                if v in (None, "") or str(v).strip() not in classes:
                    raise InputError(f"{where}: label {v!r} is not one of the classes {list(classes)}")
                shares = [1.0 if c == str(v).strip() else 0.0 for c in classes]
        labels.append(_label_row(shares, classes, where, renormalise))
        if mode == "fold":
            folds.append(str(r["fold"]).strip())
            splits.append([])
        else:
            row = []
            for c in split_cols:
                s = str(r[c]).strip().lower()
                if s not in corpus_schema.SPLITS:
                    raise InputError(f"{where}: {c} is {r[c]!r}, not one of train, dev, test")
                row.append(s)
            splits.append(row)
        lines.append(line)
        sources.append(src)
        speakers.append(str(r["speaker"]))
        for c in attr_cols:
            name = "gender" if c.lower() == "gender" else c
            attrs[name].append("" if r.get(c) is None else str(r.get(c)))
    if mode == "fold":
        ids = _sort_ids(folds)
        block = {fid: g for g, fid in enumerate(ids)}
        splits = [fold_roles(block[fid], len(ids)) for fid in folds]
        n_folds = len(ids)
    else:
        n_folds = len(split_cols)
    def where(i, f=0):
        return f"{path}" if i is None else f"{path}, line {lines[i]}"

    return dict(classes=classes, sources=sources, splits=splits, where=where, n_folds=n_folds,
                speakers=speakers, labels=labels, attributes=attrs, path=path)


def build_user(out: str | Path, *, kind: str, source: dict, audio_dir: str | Path | None,
               notice: str, speakers_csv: str | Path | None = None, bins: dict | None = None,
               provenance: dict | None = None, excluded: dict | None = None) -> Path:
    """Write a user corpus (read_emo_superb / read_manifest output) into `out`, atomically.

    Every check on the labels runs before any audio is read. `file` is flat_name() of the clip's
    path relative to audio_dir (an absolute path outside it: its name). Speaker ids and attribute
    values, of the labels and of `speakers_csv`, go through fairser.values once: ids that differ
    only by leading zeros or spaces are one speaker, gender spellings fold to Male / Female, other
    values fold case and spaces; a gender value that is neither is an error unless `excluded`
    (params corpus.excluded: {attribute: [values]}) lists it as unknown. corpus.json's
    `normalised` records every spelling changed. actors.csv: `actor` = 1..n in sorted order of the
    speaker id (numeric when all are numbers), `speaker`, and one column per attribute. Clips whose
    audio is missing or unusable go to skipped.csv.
    """
    if audio_dir is None or not Path(audio_dir).is_dir():
        raise InputError(f"corpus.audio_dir: {audio_dir} is not a folder")
    audio_dir = Path(audio_dir)
    excluded = excluded or {}
    where, n = source["where"], len(source["sources"])
    spk, speaker_map = values.speaker_ids(source["speakers"])
    # The importer may have normalised the ids already (EMO-SUPERB's speaker rule): its mapping.
    normalised = {"speaker": {**source.get("speaker_ids", {}), **speaker_map}}
    _check_folds(source["splits"], spk, where, source["n_folds"])
    paths, files, seen = [], [], {}
    for i, src in enumerate(source["sources"]):
        p = Path(src).expanduser()
        if p.is_absolute():
            try:
                flat = flat_name(p.relative_to(audio_dir.resolve()).as_posix())
            except ValueError:
                flat = p.name
        else:
            flat, p = flat_name(src), audio_dir / src
        if flat in seen:
            raise InputError(f"{where(i)}: file name {flat} clashes with {where(seen[flat])}")
        seen[flat] = i
        paths.append(p)
        files.append(flat)
    by_speaker = {}
    for c, col in source["attributes"].items():
        col = _normalise(col, c, excluded, where(None), normalised)
        by_speaker[c] = _speaker_values([(s, v, i) for i, (s, v) in enumerate(zip(spk, col))], c, where)
    ids = _sort_ids(spk)
    if speakers_csv is not None:
        extra, extra_map = _read_speakers(Path(speakers_csv), set(ids))
        normalised["speaker"].update(extra_map)
        for c in dict.fromkeys(k for d in extra.values() for k in d):
            if c in by_speaker or c in ("actor", "speaker"):
                raise InputError(f"{speakers_csv}: column {c} is already a column of the labels")
            col = _normalise([extra[s].get(c, "") for s in ids], c, excluded, str(speakers_csv), normalised)
            by_speaker[c] = dict(zip(ids, col))
    attributes = tuple(_attribute(c, [v[s] for s in ids], bins, excluded.get(c, ()))
                       for c, v in by_speaker.items())
    schema = corpus_schema.Schema(classes=source["classes"], folds=source["n_folds"],
                                  attributes=attributes, speaker_rule=source.get("speaker_rule"))
    actor_of = {s: k + 1 for k, s in enumerate(ids)}
    people = pd.DataFrame({"actor": range(1, len(ids) + 1), "speaker": ids})
    for c, v in by_speaker.items():
        people[c] = [v[s] for s in ids]
    clips = pd.DataFrame({"file": files, "actor": [actor_of[s] for s in spk]})
    clips[list(schema.classes)] = np.array(source["labels"], dtype=float)
    for f in range(source["n_folds"]):
        clips[f"split_{f + 1}"] = [row[f] for row in source["splits"]]
    _unlabelled_audio(audio_dir, {p.resolve() for p in paths}, f"{source['path']}")
    skipped = []
    with atomic_dir(out) as tmp:
        (tmp / "wav").mkdir()
        for file, p in tqdm(zip(files, paths), total=n, unit="clip", desc=kind, mininterval=2.0):
            try:
                x = load_clip(p)
            except ClipSkipped as why:
                skipped.append((file, str(why)))
                continue
            sf.write(tmp / "wav" / file, np.clip(x, -1, 1), SAMPLE_RATE, subtype="PCM_16")
        if len(skipped) == n:
            by_kind, _ = skip_summary(n, skipped)
            raise InputError(f"corpus.audio_dir: no usable clip among {n} ("
                             + "; ".join(f"{k}: {c}" for k, c in by_kind.items()) + ")")
        _write_tables(tmp, kind, notice, clips, people, skipped, provenance, schema,
                      overlap=train_dev_overlap(source["splits"], spk, source["n_folds"]),
                      normalised={k: m for k, m in normalised.items() if m})
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
    if corpus["name"] in ("emo-superb", "manifest"):
        provenance.update({k: (inputs or {}).get(k) for k in ("labels_dir", "manifest", "speakers")})
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
    common = dict(audio_dir=corpus.get("audio_dir"), speakers_csv=corpus.get("speakers"),
                  bins=corpus.get("bins"), provenance=provenance, excluded=corpus.get("excluded"))
    renormalise = bool(corpus.get("renormalise"))
    if name == "emo-superb":
        if not corpus.get("labels_dir"):
            raise InputError("params.yaml: corpus.labels_dir is missing (corpus.name emo-superb)")
        source = read_emo_superb(corpus["labels_dir"], renormalise=renormalise,
                                 speaker_rule=corpus.get("speaker_rule") or "auto")
        return build_user(out, kind="emo-superb", source=source, **common,
                          notice=f"user corpus, EMO-SUPERB format, {corpus['labels_dir']}")
    if name == "manifest":
        if not corpus.get("manifest"):
            raise InputError("params.yaml: corpus.manifest is missing (corpus.name manifest)")
        source = read_manifest(corpus["manifest"], renormalise=renormalise, classes=corpus.get("classes"),
                               min_clips_per_class=corpus.get("min_clips_per_class", MIN_CLIPS_PER_CLASS))
        return build_user(out, kind="manifest", source=source, **common,
                          notice=f"user corpus, manifest, {corpus['manifest']}")
    raise InputError(f"params.yaml: corpus.name {name!r} is not one of 'surrogate', 'crema-d', "
                     f"'emo-superb', 'manifest'")
