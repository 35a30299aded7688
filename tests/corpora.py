"""Tiny corpora that are not CREMA-D-shaped, in the two user formats (EMO-SUPERB labels, a manifest).

Speaker s (1..n_speakers) is in session s % n_folds; fold f (1..n_folds) tests on session f - 1,
develops on session f % n_folds and trains on the others. Labels are soft (summing to 1, the
majority class cycles over the classes), gender (alternating Male/Female) is the only attribute,
and every WAV is a 16 kHz mono PCM16 tone plus noise of a length drawn from `seconds`, so the
download stage's skip policy keeps all of them.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import soundfile as sf

CLASSES = ("calm", "joy", "anger", "grief")
SAMPLE_RATE = 16000


def _rows(classes, n_speakers, n_folds, clips_per_speaker, seconds, seed):
    """One dict per clip: file, speaker, gender, labels (tuple), splits (per fold), samples."""
    rng = np.random.default_rng(seed)
    rows = []
    k = len(classes)
    for s in range(1, n_speakers + 1):
        session = s % n_folds
        splits = ["test" if session == f else "dev" if session == (f + 1) % n_folds else "train"
                  for f in range(n_folds)]
        for c in range(clips_per_speaker):
            major = (s + c) % k
            raw = rng.uniform(0.0, 0.3, k)
            raw[major] = 1.0
            labels = np.round(raw / raw.sum(), 3)
            labels[major] = round(1.0 - float(labels.sum() - labels[major]), 3)
            n = int(rng.uniform(*seconds) * SAMPLE_RATE)
            t = np.arange(n) / SAMPLE_RATE
            wave = 0.3 * np.sin(2 * np.pi * (120 + 40 * s + 25 * c) * t) + 0.05 * rng.standard_normal(n)
            rows.append(dict(file=f"spk{s:02d}_utt{c + 1}.wav", speaker=f"spk{s:02d}",
                             gender="Male" if s % 2 else "Female",
                             labels=tuple(float(x) for x in labels), splits=splits,
                             samples=np.clip(wave, -1, 1).astype(np.float32)))
    return rows


def _write_audio(rows, audio_dir: Path) -> None:
    audio_dir.mkdir(parents=True, exist_ok=True)
    for r in rows:
        sf.write(audio_dir / r["file"], r["samples"], SAMPLE_RATE, subtype="PCM_16")


def emo_superb(folder, *, classes=CLASSES, n_speakers=10, n_folds=5, clips_per_speaker=4,
               seconds=(1.0, 12.0), seed=0) -> dict:
    """Write labels/ (labels_consensus_<f>.csv, config.json) and audio/ under `folder`."""
    folder = Path(folder)
    labels_dir, audio_dir = folder / "labels", folder / "audio"
    labels_dir.mkdir(parents=True, exist_ok=True)
    rows = _rows(classes, n_speakers, n_folds, clips_per_speaker, seconds, seed)
    names = {"train": "Train", "dev": "Development", "test": "Test"}
    for f in range(n_folds):
        lines = [",".join(["FileName", *classes, "SpkrID", "Gender", "Split_Set"])]
        for r in rows:
            lines.append(",".join([r["file"], *(f"{x:g}" for x in r["labels"]), r["speaker"],
                                   r["gender"], names[r["splits"][f]]]))
        (labels_dir / f"labels_consensus_{f + 1}.csv").write_text("\n".join(lines) + "\n")
    config = {"data_split_type": names, "categorical": {"emo_type": list(classes)},
              "description": f"generated test corpus - {len(classes)} classes"}
    (labels_dir / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    _write_audio(rows, audio_dir)
    return dict(labels_dir=labels_dir, audio_dir=audio_dir)


def manifest(folder, *, fmt="csv", classes=CLASSES, n_speakers=10, n_folds=5,
             clips_per_speaker=4, seconds=(1.0, 12.0), seed=0) -> dict:
    """Write manifest.<fmt> (path, speaker, gender, label_<class>..., split_1..split_F) and audio/."""
    if fmt not in ("csv", "jsonl"):
        raise ValueError(f"fmt must be csv or jsonl, not {fmt!r}")
    folder = Path(folder)
    audio_dir = folder / "audio"
    folder.mkdir(parents=True, exist_ok=True)
    rows = _rows(classes, n_speakers, n_folds, clips_per_speaker, seconds, seed)
    records = []
    for r in rows:
        rec = {"path": r["file"], "speaker": r["speaker"], "gender": r["gender"]}
        rec.update({f"label_{c}": x for c, x in zip(classes, r["labels"])})
        rec.update({f"split_{f + 1}": s for f, s in enumerate(r["splits"])})
        records.append(rec)
    path = folder / f"manifest.{fmt}"
    if fmt == "csv":
        cols = list(records[0])
        lines = [",".join(cols)] + [",".join(f"{rec[c]:g}" if isinstance(rec[c], float)
                                             else str(rec[c]) for c in cols) for rec in records]
        path.write_text("\n".join(lines) + "\n")
    else:
        path.write_text("".join(json.dumps(rec) + "\n" for rec in records))
    _write_audio(rows, audio_dir)
    return dict(manifest=path, audio_dir=audio_dir)
