"""Sizes: how every command reads them (WIDTHxHEIGHT, or N for N x N), and the sizes a model is
traced, validated, calibrated and probed at: one policy for every format, the export's validation
and the runtime's load check. Torch-free, for the runtime.

Sizes given and printed are (width, height); the policies below return tensor shapes, (height,
width), as NCHW orders them.
"""

from __future__ import annotations

import argparse
import math
import re

from .contract import ModelContract

DEFAULT_SIZE = 256
# Validating at the upper bound of a 2048 model in PyTorch needs gigabytes; a tall size at the
# bound with at most this many pixels exercises the same symbolic dimension.
MAX_VALIDATED_PIXELS = 1024 * 1024
_SIZE = re.compile(r"\s*(\d{1,9})\s*(?:[xX]\s*(\d{1,9})\s*)?")


def parse_size(text: str) -> tuple[int, int]:
    """'768x512' -> (768, 512) and '256' -> (256, 256), as (width, height); an argparse `type`."""
    match = _SIZE.fullmatch(text)
    if not match:
        raise argparse.ArgumentTypeError(
            f"{text.strip()!r} is not WIDTHxHEIGHT or N; use e.g. 768x512 or 256"
        )
    width = int(match[1])
    return width, int(match[2] or width)


def parse_sizes(text: str) -> list[tuple[int, int]]:
    """'256,768x512' -> [(256, 256), (768, 512)], repeats dropped; an argparse `type`."""
    sizes = [parse_size(part) for part in text.split(",") if part.strip()]
    if not sizes:
        raise argparse.ArgumentTypeError("no sizes given; use e.g. 256,512,768x512")
    return list(dict.fromkeys(sizes))


def format_sizes(sizes: list[tuple[int, int]]) -> str:
    """[(256, 256), (768, 512)] -> '256,768x512', as parse_sizes reads it."""
    return ",".join(str(w) if w == h else f"{w}x{h}" for w, h in sizes)


def default_size(contract: ModelContract) -> int:
    """The side exporters trace at and Core ML reports as its default: 256 where allowed."""
    m = contract.size_multiple
    return min(max(DEFAULT_SIZE // m * m, contract.min_size), contract.max_size)


def validation_sizes(
    contract: ModelContract, shapes: list[tuple[int, int]] | None = None
) -> list[tuple[int, int]]:
    """The (height, width) every export is compared with PyTorch at.

    Enumerated `shapes`: the three smallest. A range: the lower bound; the default size (where
    it is a bound, the geometric middle; with no size between the bounds, lower x upper); and
    the upper bound, tall, its width below it and within MAX_VALIDATED_PIXELS, so that every
    check sees a non-square size.
    """
    if shapes:
        return sorted(set(shapes), key=lambda s: (s[0] * s[1], s))[:3]
    m, lo, hi = contract.size_multiple, contract.min_size, contract.max_size
    side = default_size(contract)
    if not lo < side < hi:
        side = min(hi, max(lo, round(math.sqrt(lo * hi) / m) * m))
    middle = (side, side) if lo < side < hi else (lo, hi)
    other = max(lo, min(hi - m, MAX_VALIDATED_PIXELS // hi // m * m))
    return list(dict.fromkeys([(lo, lo), middle, (hi, other)]))


def calibration_sizes(contract: ModelContract) -> list[tuple[int, int]]:
    """Small (height, width) for int8 calibration: the lower bound, non-square, the default."""
    d, hi = default_size(contract), contract.max_size
    return [
        (contract.min_size, contract.min_size),
        (d, min(d + contract.size_multiple, hi)),
        (d, d),
    ]


def probe_size(contract: ModelContract) -> tuple[int, int]:
    """The (height, width) the runtime checks a model at when it loads it. The height is a
    multiple of size_multiple but not of min_size: a graph that truly needs a coarser multiple
    than its metadata claims fails there, not in the middle of a user's run. The width differs
    where the bounds allow, so that an output transposed shows."""
    return min(contract.min_size + contract.size_multiple, contract.max_size), contract.min_size
