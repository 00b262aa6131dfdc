"""Exact tiled execution of a pyramid: the whole-image result, tile by tile, in bounded memory.

In eval mode with batch norm's running statistics every layer is local, and shifting the input
by a multiple of the coarsest pooling ratio shifts every scale's maps by whole cells. A tile's
output is therefore exact when it is computed on a window holding everything the tile reads
(its reach), starting on the pooling grid: the window's own padding then never reaches the tile.
Circular padding takes the window with wrap-around (positions modulo the image size), reflection
and zero padding clip it at the image border, where the window's padding is the image's.

The whole net reads about 250 pixels around a pixel (the coarse scales), so it runs in two
exported parts split at pooling ratio SPLIT: the coarse part (the input pooled by SPLIT ->
features at ratio SPLIT, a few % of the arithmetic) on large blocks, and the fine part (those
features + the full-resolution input -> RGB) on small tiles with a reach of about ten pixels.
Instance norm's statistics are global: such models are not exactly tileable. Torch-free.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace

import numpy as np
import onnxruntime as ort

from .tiling import round_up

SPLIT = 4  # the pooling ratio of the features the coarse part hands to the fine part
BLOCK_RADIUS = 2  # a conv block (3x3, 3x3, 1x1) reads 2 cells around each of its outputs
FEATURES = "features"  # the coarse part's output, the fine part's first input
# The coarse part's time per pixel of its window (its run on the pooled input, and the noise
# generated and pooled for it) over the fine part's per pixel of its window: 0.06 + 0.08 s
# against 1.6 s for the bundled texture model's 1024x1024 in one block and one tile.
COARSE_WORK = 0.1
PART_SUFFIXES = (".coarse.onnx", ".fine.onnx")  # beside NAME.onnx, as its contract names them

# source(ys, xs): the (channels, len(ys), len(xs)) float32 model input at absolute positions of
# the padded image.
Source = Callable[[np.ndarray, np.ndarray], np.ndarray]


@dataclass(frozen=True)
class Reach:
    """How far a part reads before and after a tile, in full-resolution pixels, and the grid
    (`align` pixels) its windows start and end on. A wrap-around window that would cover its
    axis is the axis itself, unless it `keeps_halo`: the part's own padding is then not the
    image's (the zero-padded fine part of a circular model, export/parts.py)."""

    before: int
    after: int
    align: int
    keeps_halo: bool = False

    def window(self, start: int, stop: int, length: int, wrap: bool) -> tuple[int, int]:
        """The window [w0, w1) of positions a tile [start, stop) of an axis of `length` reads:
        the whole axis where it would cover it (unless it keeps its halo), else clipped at the
        border, or (`wrap`) taken modulo `length`."""
        a = self.align
        w0 = (start - self.before) // a * a
        w1 = round_up(stop + self.after, a)
        if wrap and self.keeps_halo:
            return w0, w1
        if w1 - w0 >= length:
            return 0, length
        return (w0, w1) if wrap else (max(w0, 0), min(w1, length))


def _span(lo: int, hi: int, ratio: int) -> tuple[int, int]:
    """The full-resolution pixels of cells [lo, hi] at pooling `ratio`."""
    return lo * ratio, hi * ratio + ratio - 1


def _fine_reads(lo: int, hi: int, split: int) -> tuple[int, int]:
    """The pixels (of the input and of the features) output pixels [lo, hi] of the fine part
    read: each join's block, each branch's block on its pooled input, nearest upsampling."""
    first, last, ratio = math.inf, -math.inf, 1
    while ratio < split:
        lo, hi = lo - BLOCK_RADIUS, hi + BLOCK_RADIUS  # the join's block, over the concat
        a, b = _span(lo - BLOCK_RADIUS, hi + BLOCK_RADIUS, ratio)  # the branch's block
        first, last = min(first, a), max(last, b)
        lo, hi, ratio = lo // 2, hi // 2, ratio * 2  # the coarser path, upsampled x2
    a, b = _span(lo, hi, split)  # the features
    return min(first, a), max(last, b)


def _coarse_reads(lo: int, hi: int, split: int, coarsest: int) -> tuple[int, int]:
    """The input pixels feature cells [lo, hi] (at ratio `split`) of the coarse part read."""
    first, last, ratio = math.inf, -math.inf, split
    while ratio < coarsest:
        lo, hi = lo - BLOCK_RADIUS, hi + BLOCK_RADIUS
        a, b = _span(lo - BLOCK_RADIUS, hi + BLOCK_RADIUS, ratio)
        first, last = min(first, a), max(last, b)
        lo, hi, ratio = lo // 2, hi // 2, ratio * 2
    a, b = _span(lo - BLOCK_RADIUS, hi + BLOCK_RADIUS, coarsest)  # the coarsest branch
    return min(first, a), max(last, b)


def reaches(scales: int, split: int = SPLIT) -> tuple[Reach, Reach]:
    """(coarse, fine) reach of a pyramid of `scales` split at `split`, from its layers: the
    worst case over every position a tile may start or end at."""
    coarsest = 2 ** (scales - 1)
    if not 1 < split <= coarsest:
        raise ValueError(f"split {split} must be a pooling ratio of the pyramid above 1")
    fine_before = -_fine_reads(0, 0, split)[0]
    fine_after = _fine_reads(split - 1, split - 1, split)[1] - (split - 1)
    # Coarse tiles (fine windows) start and end on the split grid, anywhere on the coarsest one.
    starts = range(0, coarsest, split)
    coarse_before = max(
        t - _coarse_reads(t // split, t // split, split, coarsest)[0] for t in starts
    )
    coarse_after = max(
        _coarse_reads(t // split - 1, t // split - 1, split, coarsest)[1] - (t - 1)
        for t in range(split, coarsest + 1, split)
    )
    return (
        Reach(coarse_before, coarse_after, coarsest),
        Reach(fine_before, fine_after, split),
    )


@dataclass(frozen=True)
class Plan:
    """Blocks (coarse part) and tiles (fine part) over a padded_h x padded_w image, sides in
    pixels, multiples of the coarsest ratio."""

    padded_h: int
    padded_w: int
    block_h: int
    block_w: int
    tile_h: int
    tile_w: int

    def tiles_inside(self, height: int, width: int) -> int:
        """How many tiles cover the top-left height x width (the others are not run)."""
        return math.ceil(height / self.tile_h) * math.ceil(width / self.tile_w)


@dataclass(frozen=True)
class Costs:
    """Bytes per window pixel: `held` (a block's input and features, alive while its tiles run),
    `coarse` (the coarse part's run, beside them) and `fine` (the fine part's run and its
    inputs); the model's contract estimates them (model.py)."""

    held: float
    coarse: float
    fine: float


def _side(inner: int, reach: Reach, length: int) -> int:
    """The longest window a run of `inner` pixels of an axis of `length` can read."""
    a = reach.align
    side = inner + round_up(reach.before, a) + round_up(reach.after, a) + a
    return side if reach.keeps_halo else min(length, side)


def _covered(length: int, step: int, side: Callable[[int], int]) -> int:
    """The summed window sides of the runs of `step` pixels that cover an axis of `length`."""
    return sum(side(min(step, length - start)) for start in range(0, length, step))


def _tile_bytes(
    tile_h: int, tile_w: int, padded_h: int, padded_w: int, fine: Reach, costs: Costs
) -> float:
    """The fine part's run on the window of one tile."""
    return _side(tile_h, fine, padded_h) * _side(tile_w, fine, padded_w) * costs.fine


def _block_bytes(
    block_h: int,
    block_w: int,
    padded_h: int,
    padded_w: int,
    reach: tuple[Reach, Reach],
    costs: Costs,
) -> float:
    """A block's held arrays and its coarse run, whose arena is not given back: it stays
    beside the held arrays while the block's tiles run."""
    coarse, fine = reach
    rows = _side(_side(block_h, fine, padded_h), coarse, padded_h)
    cols = _side(_side(block_w, fine, padded_w), coarse, padded_w)
    return rows * cols * (costs.held + costs.coarse)


def plan(
    padded_h: int,
    padded_w: int,
    multiple: int,
    reach: tuple[Reach, Reach],
    costs: Costs,
    budget: float,
) -> Plan | None:
    """The plan of the least work (window pixels of the fine part's runs, plus COARSE_WORK per
    window pixel of the coarse part's) whose peak (a block's held arrays and its coarse run's
    memory, plus a tile's run) fits `budget` bytes; None when not even one coarsest-ratio tile
    fits. Few large blocks matter as much as large tiles: each block recomputes the coarse
    part's reach of about 150 pixels, and generates and pools its noise again."""
    coarse, fine = reach
    longest = max(padded_h, padded_w)
    best: tuple[float, Plan] | None = None
    for t in range(longest // multiple * multiple, 0, -multiple):
        tile_h, tile_w = min(t, padded_h), min(t, padded_w)
        tile = _tile_bytes(tile_h, tile_w, padded_h, padded_w, fine, costs)
        if tile > budget:
            continue
        fine_work = _covered(padded_h, t, lambda n: _side(n, fine, padded_h)) * _covered(
            padded_w, t, lambda n: _side(n, fine, padded_w)
        )
        for k in range(-(-longest // t), 0, -1):  # the largest blocks that fit: the fewest
            block_h, block_w = min(k * t, padded_h), min(k * t, padded_w)
            if _block_bytes(block_h, block_w, padded_h, padded_w, reach, costs) + tile > budget:
                continue
            coarse_work = _covered(
                padded_h, block_h, lambda n: _side(_side(n, fine, padded_h), coarse, padded_h)
            ) * _covered(
                padded_w, block_w, lambda n: _side(_side(n, fine, padded_w), coarse, padded_w)
            )
            work = fine_work + COARSE_WORK * coarse_work
            if best is None or work < best[0]:
                best = (work, Plan(padded_h, padded_w, block_h, block_w, tile_h, tile_w))
            break
    return None if best is None else best[1]


def least_budget(
    padded_h: int, padded_w: int, multiple: int, reach: tuple[Reach, Reach], costs: Costs
) -> float:
    """The smallest budget `plan` accepts: one coarsest-ratio tile in a block of its size."""
    t_h, t_w = min(multiple, padded_h), min(multiple, padded_w)
    tile = _tile_bytes(t_h, t_w, padded_h, padded_w, reach[1], costs)
    return _block_bytes(t_h, t_w, padded_h, padded_w, reach, costs) + tile


class ExactTiler:
    """The two exported parts of a model in onnxruntime sessions, with their reaches (the fine
    part's keeps its halo where the image wraps around: Reach). The fine part's arena is kept
    from tile to tile: giving it back after each run (arena shrinkage) made a 4096x4096 texture
    both slower (68 s against 52) and higher (260 MiB peak against 233)."""

    def __init__(
        self,
        coarse: ort.InferenceSession,
        fine: ort.InferenceSession,
        scales: int,
        input_name: str,
        wrap: bool,
        split: int = SPLIT,
    ) -> None:
        self.coarse, self.fine = coarse, fine
        self.split, self.wrap, self.input_name = split, wrap, input_name
        self.coarse_reach, fine = reaches(scales, split)
        self.fine_reach = replace(fine, keeps_halo=wrap)

    @property
    def reaches(self) -> tuple[Reach, Reach]:
        return self.coarse_reach, self.fine_reach

    def windows(self, plan: Plan, by: int, bx: int) -> tuple[tuple[int, int], tuple[int, int]]:
        """The coarse window (rows, columns) of the block at (by, bx): what its tiles' windows
        read, plus the coarse part's reach."""
        out = []
        for start, side, length in (
            (by, plan.block_h, plan.padded_h),
            (bx, plan.block_w, plan.padded_w),
        ):
            f0, f1 = self.fine_reach.window(start, min(start + side, length), length, self.wrap)
            out.append(self.coarse_reach.window(f0, f1, length, self.wrap))
        return out[0], out[1]

    def tiles(
        self, source: Source, plan: Plan, height: int, width: int, fine: Reach | None = None
    ) -> Iterator[tuple[int, int, np.ndarray]]:
        """(y, x, rgb) for every tile inside the top-left height x width of the padded image:
        the model's float32 (3, h, w) output there, exactly the whole image's. `fine` replaces
        the fine reach (tests: too small a reach must show)."""
        fine = fine or self.fine_reach
        s, hp, wp = self.split, plan.padded_h, plan.padded_w
        for by in range(0, height, plan.block_h):
            for bx in range(0, width, plan.block_w):
                (cy0, cy1), (cx0, cx1) = self.windows(plan, by, bx)
                x = source(np.arange(cy0, cy1) % hp, np.arange(cx0, cx1) % wp)
                c = x.shape[0]
                pooled = x.reshape(c, (cy1 - cy0) // s, s, (cx1 - cx0) // s, s).mean((2, 4))
                feed = {self.input_name: pooled[None]}
                features = self.coarse.run([FEATURES], feed)[0]
                del pooled, feed
                for ty in range(by, min(by + plan.block_h, hp, height), plan.tile_h):
                    for tx in range(bx, min(bx + plan.block_w, wp, width), plan.tile_w):
                        ty1, tx1 = min(ty + plan.tile_h, hp), min(tx + plan.tile_w, wp)
                        wy, wx = (
                            fine.window(ty, ty1, hp, self.wrap),
                            fine.window(tx, tx1, wp, self.wrap),
                        )
                        # Window positions in the block's arrays (modulo: wrap-around).
                        ry, rx = (np.arange(*wy) - cy0) % hp, (np.arange(*wx) - cx0) % wp
                        feed = {
                            FEATURES: features[:, :, ry[::s] // s][:, :, :, rx[::s] // s],
                            self.input_name: x[:, ry][:, :, rx][None],
                        }
                        rgb = self.fine.run(None, feed)[0][0]
                        oy, ox = ty - wy[0], tx - wx[0]
                        h, w = min(ty1, height) - ty, min(tx1, width) - tx
                        yield ty, tx, rgb[:, oy : oy + h, ox : ox + w]
                del x, features

    def run(self, source: Source, plan: Plan, height: int, width: int, **kwargs) -> np.ndarray:
        """The float32 (3, height, width) output, assembled from `tiles` (tests, checks)."""
        out = np.empty((3, height, width), np.float32)
        for y, x, rgb in self.tiles(source, plan, height, width, **kwargs):
            out[:, y : y + rgb.shape[1], x : x + rgb.shape[2]] = rgb
        return out
