"""Cost of the `inputs` stage's content fingerprint on a CREMA-D-size audio folder.

python benchmarks/inputs_fingerprint.py [--folder /tmp/fairser-crema-size] [--clips 7442] [--mb 600]

Writes (once; reused when already there) --clips WAV files of seeded noise, 16 kHz mono PCM16,
lengths drawn so the folder holds about --mb megabytes (CREMA-D: 7,442 clips, ~600 MB), then
times fairser.provenance.fingerprint_corpus over it REPEATS times. Every run reads and hashes every
byte (no size/mtime shortcut), so the time is dominated by SHA-256 and by reading the files: the
first pass after writing finds them in the page cache, as a rerun of the stage on an unchanged
folder usually does; a cold cache adds the disk's read time for the folder.
"""

from __future__ import annotations

import argparse
import hashlib
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from fairser.constants import SAMPLE_RATE
from fairser.provenance import fingerprint_corpus

REPEATS = 3


def make_folder(folder: Path, n: int, megabytes: float, seed: int = 0) -> None:
    if folder.is_dir() and len(list(folder.glob("*.wav"))) == n:
        return
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    mean_samples = megabytes * 1e6 / n / 2  # PCM16: 2 bytes per sample
    for i in range(n):
        samples = int(mean_samples * rng.uniform(0.5, 1.5))
        wave = (0.1 * rng.standard_normal(samples)).astype(np.float32)
        sf.write(folder / f"{1001 + i // 82:04d}_C{i:05d}_ANG_XX.wav", wave, SAMPLE_RATE, subtype="PCM_16")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--folder", type=Path, default=Path("/tmp/fairser-crema-size"))
    p.add_argument("--clips", type=int, default=7442)
    p.add_argument("--mb", type=float, default=600.0)
    args = p.parse_args()
    make_folder(args.folder, args.clips, args.mb)
    spec = {"name": "crema-d", "audio_dir": str(args.folder), "metadata_dir": None}
    times = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        fp = fingerprint_corpus(spec)
        times.append(time.perf_counter() - start)
    # Raw SHA-256 speed on bytes already in memory, for scale.
    block = np.random.default_rng(1).bytes(64 << 20)
    start = time.perf_counter()
    hashlib.sha256(block).hexdigest()
    rate = len(block) / (time.perf_counter() - start) / 1e6
    a = fp["audio_dir"]
    print(f"{a['files']} files, {a['bytes'] / 1e6:.0f} MB: fingerprint {min(times):.2f} s best, "
          f"{max(times):.2f} s worst of {REPEATS} ({a['bytes'] / 1e6 / min(times):.0f} MB/s); "
          f"sha256 in memory {rate:.0f} MB/s")


if __name__ == "__main__":
    main()
