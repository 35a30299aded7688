"""Import a 150,000-clip label set shaped like MSP-Podcast's EMO-SUPERB labels (not a test).

    OMP_NUM_THREADS=1 PYTHONPATH=src .venv/bin/python benchmarks/import_msp_podcast.py [--rows 150000]

Generates labels_consensus_1.csv with the header of EMO-SUPERB's MSP-Podcast Primary set
(FileName, the 8 classes of its config.json, EmoAct, EmoVal, EmoDom, SpkrID, Gender, Split_Set),
ids like MSP-PODCAST_0001_0008.wav, about 1,400 numbered speakers and `unknown_share` of the clips
with SpkrID and Gender `Unknown`. Then, timing each step and the peak memory (ru_maxrss) of the
process:
1. import: fairser.corpus.build with corpus.name emo-superb, labels only: audio exists for 12
   clips, so the rest are listed in skipped.csv as missing (every label check runs in full);
2. split: fairser.split.run on the imported corpus (split.bias none);
3. groups: k-means (fairser.idi.kmeans_groups, k = 2, as the groups stage: one point per clip)
   over one random 192-d embedding per clip of clips.csv's fold-1 train set.
docs/PERFORMANCE.md records the figures.
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf

from fairser import corpus, idi, split

CLASSES = ["angry", "sad", "disgust", "contempt", "fear", "neutral", "surprise", "happy"]
SAMPLE_RATE = 16000


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def generate(folder: Path, rows: int, unknown_share: float, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    labels_dir, audio_dir = folder / "labels", folder / "audio"
    labels_dir.mkdir(parents=True)
    audio_dir.mkdir()
    (labels_dir / "config.json").write_text(json.dumps({
        "data_split_type": {"train": "Train", "dev": "Development", "test": "Test"},
        "categorical": {"emo_type": CLASSES}, "dimensional": {"max_score": 7, "min_score": 1},
        "description": "MSP-Podcast v1.10 - 8 classes"}, indent=4))
    n_speakers = 1400
    speaker = rng.integers(1, n_speakers + 1, rows)
    gender = np.where(speaker % 2 == 0, "Female", "Male").astype(object)
    role = np.array(["Train", "Development", "Test"])[speaker % 5 % 3]  # one role per speaker
    spkr = speaker.astype(str).astype(object)
    unknown = rng.random(rows) < unknown_share
    spkr[unknown] = "Unknown"
    gender[unknown & (rng.random(rows) < 0.5)] = "Unknown"
    votes = rng.dirichlet(np.full(len(CLASSES), 0.3), rows).round(6)
    votes[:, -1] = (1 - votes[:, :-1].sum(1)).clip(0, 1)
    df = pd.DataFrame(votes, columns=CLASSES)
    df.insert(0, "FileName", [f"MSP-PODCAST_{i // 100 + 1:04d}_{i % 100 + 1:04d}.wav" for i in range(rows)])
    for c in ("EmoAct", "EmoVal", "EmoDom"):
        df[c] = rng.uniform(1, 7, rows).round(6)
    df["SpkrID"], df["Gender"], df["Split_Set"] = spkr, gender, role
    df.to_csv(labels_dir / "labels_consensus_1.csv", index=False)
    t = np.arange(int(0.5 * SAMPLE_RATE)) / SAMPLE_RATE
    for name in df["FileName"].iloc[:12]:
        sf.write(audio_dir / name, 0.3 * np.sin(2 * np.pi * 180 * t), SAMPLE_RATE, subtype="PCM_16")
    return folder


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=150_000)
    ap.add_argument("--unknown-share", type=float, default=0.3)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        generate(tmp / "in", args.rows, args.unknown_share, args.seed)
        base = peak_mib()
        params = {"seed": 0, "corpus": {"name": "emo-superb", "labels_dir": str(tmp / "in" / "labels"),
                                        "audio_dir": str(tmp / "in" / "audio"), "speaker_rule": "auto"}}
        t0 = time.perf_counter()
        out = corpus.build(tmp / "corpus", params)
        t_import = time.perf_counter() - t0
        peak_import = peak_mib()
        info = json.loads((out / "corpus.json").read_text())
        t0 = time.perf_counter()
        split.run(out, tmp / "split", ratio=1.0, seed=0, bias="none")
        t_split = time.perf_counter() - t0
        # folds.csv keeps only clips with audio (12 here), so the clips are clips.csv's fold-1
        # train set, as if every clip had audio.
        clips = pd.read_csv(out / "clips.csv", usecols=["actor", "split_1"])
        units = clips.index[clips["split_1"] == "train"]
        emb = np.random.default_rng(0).standard_normal((len(units), 192))
        t0 = time.perf_counter()
        idi.kmeans_groups(emb, emb[:0], 2)
        t_groups = time.perf_counter() - t0
    print(f"rows {args.rows}, unknown share {args.unknown_share}: {info['speaker_rule']['description']}")
    print(f"import {t_import:.1f} s (peak RSS {peak_import:.0f} MiB, {peak_import - base:+.0f} MiB over "
          f"the generated input); split {t_split:.1f} s; groups (k-means over {len(units)} train "
          f"clips) {t_groups:.1f} s; overall peak RSS {peak_mib():.0f} MiB")


if __name__ == "__main__":
    main()
