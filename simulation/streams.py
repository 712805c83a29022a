"""Randomness: one seeded numpy Generator per named part of the world, a fixed hash of
uint64 values, and how many campaigns an attack intensity makes."""

from __future__ import annotations

import math
import zlib

import numpy as np

_U64 = np.uint64


def _stream(seed: int, name: str) -> np.random.Generator:
    """An independent Generator for one named part of the world."""
    return np.random.default_rng(
        np.random.SeedSequence([seed & 0xFFFFFFFF, seed >> 32, zlib.crc32(name.encode())])
    )


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser: a fixed, well-spread hash of uint64 values."""
    with np.errstate(over="ignore"):  # wrapping arithmetic is the point
        x = np.asarray(x, dtype=_U64) + _U64(0x9E3779B97F4A7C15)
        x = (x ^ (x >> _U64(30))) * _U64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> _U64(27))) * _U64(0x94D049BB133111EB)
        return x ^ (x >> _U64(31))


def _u64(rng: np.random.Generator, n: int | tuple[int, ...]) -> np.ndarray:
    return rng.integers(0, np.iinfo(np.uint64).max, size=n, dtype=np.uint64, endpoint=True)


def _campaigns(intensity: float, base: float, halls: int) -> tuple[int, float]:
    """Number of campaigns and a size factor (total volume ~ intensity * base * halls / 3)."""
    if intensity <= 0:
        return 0, 0.0
    x = intensity * base * halls / 3
    n = max(1, math.floor(x + 0.5))
    return n, x / n
