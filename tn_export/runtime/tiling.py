"""Large photos in overlapping tiles: where tiles start, how they are blended, and the band by
band assembly that bounds `Model.stylize`'s memory.

The stated bound: one tile of at most `tile_pixels` runs at a time, so peak RSS <= (peak of a run
on one tile-sized image) + IMAGE_BYTES_PER_PIXEL per image pixel (the RGB input and output
images) + 16 bytes x tile height x image width (the float32 band being blended) + 64 MB of
allocator slack. The model's working set never scales with the image: with the default 6-scale
model and 512x512 tiles a 4096x4096 photo peaks at 0.52 GB where one tile alone takes 0.35 GB
(1024x1024 tiles: 1.39 GB and 1.16 GB).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image

from ..contract import ModelContract
from ..images import from_array

DEFAULT_TILE_PIXELS = 512 * 512  # same speed as 1024 x 1024 tiles on 2 cores, 1/3 the memory
DEFAULT_OVERLAP = 128
IMAGE_BYTES_PER_PIXEL = 8  # stylize: the RGB input and output images, beside the tiles' runs
BAND_BYTES_PER_PIXEL = 16  # the float32 band being blended, per pixel of tile height x width
_PASTE_ROWS = 128

# progress(tiles done, tiles in all), called after each tile.
Progress = Callable[[int, int], None]


def round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def tile_starts(length: int, tile: int, overlap: int, multiple: int) -> list[int]:
    """Starts (multiples of `multiple`, so pooling grids align) of tiles covering `length`.

    Consecutive tiles share at least `overlap` pixels; both are multiples of `multiple`.
    """
    if length <= tile:
        return [0]
    span, size, stride = length // multiple, tile // multiple, (tile - overlap) // multiple
    count = -(-(span - size) // stride) + 1
    return [multiple * (i * (span - size) // (count - 1)) for i in range(count)]


def blend_weights(starts: list[int], tile: int, overlap: int, length: int) -> list[np.ndarray]:
    """1-D weights of each tile over its part of [0, length), summing to exactly 1 everywhere.

    A tile's outer quarter of each shared strip gets no weight (padding effects live near its
    interior edges); across the middle half of the strip the two tiles cross-fade linearly.
    Edges on the image border keep full weight.
    """
    raw = []
    for i, start in enumerate(starts):
        pos = np.arange(start, min(start + tile, length), dtype=np.float32)
        inside = np.full(pos.shape, np.inf, np.float32)  # distance to the nearest interior edge
        if i > 0:
            inside = np.minimum(inside, pos - start + 0.5)
        if i < len(starts) - 1:
            inside = np.minimum(inside, start + tile - pos - 0.5)
        raw.append(np.clip(inside - overlap / 4, 1e-6, max(overlap / 2, 1.0)))
    total = np.zeros(length, np.float32)
    for start, weight in zip(starts, raw, strict=True):
        total[start : start + len(weight)] += weight
    return [
        weight / total[start : start + len(weight)]
        for start, weight in zip(starts, raw, strict=True)
    ]


def tile_shape(
    contract: ModelContract, tile_pixels: int, padded_h: int, padded_w: int
) -> tuple[int, int]:
    """(height, width) of the largest tile within `tile_pixels` and the model's bounds; the
    padded image itself if it fits."""
    c = contract

    def fit(pixels: float, padded: int) -> int:
        side = int(pixels) // c.size_multiple * c.size_multiple
        return min(padded, max(c.min_size, min(side, c.max_size)))

    tile_h = fit(math.sqrt(tile_pixels), padded_h)
    return tile_h, fit(tile_pixels / tile_h, padded_w)


@dataclass(frozen=True)
class Tiling:
    """The tiles covering a width x height image padded to padded_w x padded_h, and their
    blend weights along each axis."""

    width: int
    height: int
    tile_w: int
    tile_h: int
    xs: list[int]
    ys: list[int]
    wx: list[np.ndarray]
    wy: list[np.ndarray]

    @classmethod
    def cover(
        cls,
        size: tuple[int, int],
        padded: tuple[int, int],
        tile: tuple[int, int],
        overlap: int,
        multiple: int,
    ) -> Tiling:
        """Tiles of `tile` (width, height) sharing `overlap` pixels (at most half a tile), over
        an image of `size` run at `padded` (both width, height)."""
        (width, height), (padded_w, padded_h), (tile_w, tile_h) = size, padded, tile
        overlap_h = min(overlap, tile_h // 2 // multiple * multiple)
        overlap_w = min(overlap, tile_w // 2 // multiple * multiple)
        ys = tile_starts(padded_h, tile_h, overlap_h, multiple)
        xs = tile_starts(padded_w, tile_w, overlap_w, multiple)
        wy = blend_weights(ys, tile_h, overlap_h, height)
        wx = blend_weights(xs, tile_w, overlap_w, width)
        return cls(width, height, tile_w, tile_h, xs, ys, wx, wy)

    @property
    def count(self) -> int:
        return len(self.xs) * len(self.ys)

    def assemble(
        self, run: Callable[[int, int], np.ndarray], progress: Progress | None = None
    ) -> Image.Image:
        """The image from `run(x, y)`, the (3, tile_h, tile_w) output of the tile at (x, y),
        blended band by band: only one band of tile height is held in float32."""
        out = Image.new("RGB", (self.width, self.height))
        carry = np.zeros((3, 0, self.width), np.float32)  # rows shared with the next band
        done_tiles = 0
        for i, y in enumerate(self.ys):
            rows = len(self.wy[i])
            band = np.zeros((3, rows, self.width), np.float32)
            band[:, : carry.shape[1]] = carry
            for j, x in enumerate(self.xs):
                cols = len(self.wx[j])
                tile = run(x, y)[:, :rows, :cols]
                band[:, :, x : x + cols] += tile * self.wy[i][:, None] * self.wx[j][None, :]
                done_tiles += 1
                if progress is not None:
                    progress(done_tiles, self.count)
            done = self.ys[i + 1] - y if i + 1 < len(self.ys) else rows
            for top in range(0, done, _PASTE_ROWS):  # in strips: small conversion temporaries
                out.paste(from_array(band[:, top : min(top + _PASTE_ROWS, done)]), (0, y + top))
            carry = band[:, done:].copy()
            del band  # before the next band is allocated
        return out
