"""Small test-data makers shared by several test modules."""

import numpy as np

from fairser.constants import SAMPLE_RATE


def tone(seconds, f0, seed=0):
    """A harmonic tone plus a little noise: speech-like enough for shapes and pitch."""
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    wave = sum(np.sin(2 * np.pi * f0 * h * t) / h for h in range(1, 6))
    wave = wave + 0.01 * np.random.default_rng(seed).standard_normal(len(t))
    return (0.3 * wave / np.abs(wave).max()).astype(np.float32)
