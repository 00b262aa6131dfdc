"""Counter-based Gaussian noise: the value at (seed, channel, y, x) is a pure function of them.

A texture of any size, made whole or tile by tile, then gets the same noise at every pixel
without a full-resolution noise array ever existing: each tile asks for its own positions.
Two 32-bit hashes per value (murmur3's fmix32 finaliser, uint32 arithmetic only, so a browser
reproduces them with Math.imul) give two uniforms in (0, 1), Box-Muller turns them into one
N(0, 1) value. Torch-free, vectorised numpy.
"""

from __future__ import annotations

import numpy as np

_GOLDEN = np.uint32(0x9E3779B9)  # 2**32 / golden ratio: spreads consecutive counters apart
_SECOND = np.uint32(0x85EBCA6B)  # offsets the second hash of a value from the first
_ROWS = 256  # rows generated at once: bounds the uint32 temporaries


def fmix32(h: np.ndarray) -> np.ndarray:
    """murmur3's 32-bit finaliser, in place on a uint32 array (and returned)."""
    h ^= h >> np.uint32(16)
    h *= np.uint32(0x85EBCA6B)
    h ^= h >> np.uint32(13)
    h *= np.uint32(0xC2B2AE35)
    h ^= h >> np.uint32(16)
    return h


def _keys(seed: int, depth: int, ys: np.ndarray, index: int) -> np.ndarray:
    """(depth, len(ys)) uint32: one key per channel and row, from the seed and the index."""
    with np.errstate(over="ignore"):
        key = fmix32(np.array([seed & 0xFFFFFFFF], np.uint32))
        counters = np.arange(index * depth, (index + 1) * depth, dtype=np.int64).astype(np.uint32)
        channels = fmix32(key ^ (counters * _GOLDEN))
        rows = np.asarray(ys, np.uint32) * _GOLDEN
        return fmix32(channels[:, None] + fmix32(rows.copy())[None, :])


def gaussian(seed: int, depth: int, ys: np.ndarray, xs: np.ndarray, index: int = 0) -> np.ndarray:
    """(depth, len(ys), len(xs)) float32 N(0, 1) noise at rows `ys` and columns `xs` (absolute
    positions, >= 0) of the `index`-th noise image of `seed`, the same values wherever a
    position is asked for."""
    ys, xs = np.asarray(ys, np.int64), np.asarray(xs, np.int64)
    out = np.empty((depth, len(ys), len(xs)), np.float32)
    with np.errstate(over="ignore"):
        cols = np.asarray(xs, np.uint32) * _GOLDEN
        for top in range(0, len(ys), _ROWS):
            keys = _keys(seed, depth, ys[top : top + _ROWS], index)
            h = fmix32(keys[:, :, None] ^ cols[None, None, :])
            # 24 high bits + 1/2: uniforms strictly inside (0, 1), exact in float32.
            u1 = ((h >> np.uint32(8)).astype(np.float32) + 0.5) * np.float32(2.0**-24)
            fmix32(h.__iadd__(_SECOND))
            u2 = ((h >> np.uint32(8)).astype(np.float32) + 0.5) * np.float32(2.0**-24)
            del h
            np.log(u1, out=u1)
            u1 *= np.float32(-2.0)
            np.sqrt(u1, out=u1)
            u2 *= np.float32(2.0 * np.pi)
            np.cos(u2, out=u2)
            np.multiply(u1, u2, out=out[:, top : top + _ROWS])
    return out
