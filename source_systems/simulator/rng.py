"""Deterministic random streams: one per (seed, day, purpose).

Each day draws from its own generators, seeded from the day's index, so simulating day by day and in
one shot consume exactly the same random numbers without any generator state carried between calls.
"""

from __future__ import annotations

import zlib

import numpy as np


def stream(seed: int, day: int, purpose: str) -> np.random.Generator:
    """A generator for one purpose on one day (day -1 is the world's creation)."""
    return np.random.default_rng([seed, day + 1, zlib.crc32(purpose.encode())])
