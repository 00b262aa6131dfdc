"""tn-bench's tiling step (issue 12): exact tiles against whole-image runs of what `tn-run
synthesize` / `stylize` do, through tn_export.runtime with its tiling parts, each run in a fresh
process (isolated.py) for its peak RSS. A curve of memory bounds at the Gatys memory size, tiled
against whole latency at a middle size, and a large texture and photo under the runtime's bound;
every tiled image is compared, 8-bit pixel for pixel, with the whole-image run where one fits."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tn_export.runtime.model import FIXED_BYTES, TEXTURE_IMAGE_BYTES
from tn_export.runtime.tiling import IMAGE_BYTES_PER_PIXEL

from .backends import time_runs
from .config import BenchConfig

# A whole large run is attempted only where this many times the runtime's estimate of it is
# available: a swapping or killed machine measures nothing.
WHOLE_MARGIN = 1.25


@dataclass
class TiledRun:
    """One measurement: `input` "noise" (the benchmarked texture model) or "photo" (a style
    model), size x size, under `max_memory_mb` (None: the whole image, no bound)."""

    role: str  # "bounds" (the curve), "latency" (tiled against whole), "large"
    input: str
    size: int
    max_memory_mb: float | None
    runs: int
    warmup: int

    @property
    def image_bytes(self) -> int:
        """Bytes per pixel of the 8-bit images beside the run, as the runtime counts them."""
        return IMAGE_BYTES_PER_PIXEL if self.input == "photo" else TEXTURE_IMAGE_BYTES

    @property
    def label(self) -> str:
        bound = "whole" if self.max_memory_mb is None else f"{self.max_memory_mb:g} MB"
        return f"tiles {self.input} {self.size}x{self.size} {bound}"


def plan(cfg: BenchConfig, texture_model: bool) -> list[TiledRun]:
    """The runs of the step in order; each size's whole run comes after its tiled ones, whose
    images are compared with it once it is made. A style model has no noise runs: its photo
    takes their place."""
    main = "noise" if texture_model else "photo"
    runs, warmup = cfg.runs, cfg.warmup
    bounds = [*cfg.tiling_bounds, None] if cfg.tiling_bounds else []
    out = [TiledRun("bounds", main, cfg.gatys_memory_size, mb, runs, warmup) for mb in bounds]
    bound, middle = cfg.tiling_max_memory, cfg.tiling_latency_size
    out += [TiledRun("latency", main, middle, mb, runs, warmup) for mb in (bound, None)]
    inputs = ["noise", "photo"] if texture_model else ["photo"]
    for kind in inputs:  # one run each: a 4096x4096 image takes tens of seconds
        out += [TiledRun("large", kind, cfg.tiling_size, mb, 1, 0) for mb in (bound, None)]
    return out


def run(model: str, run: dict, photo: str | None, threads: int, output: str) -> dict:
    """In the child: load `model` under the run's bound, make its image `warmup + runs` times
    as tn-run does (seed 1, or `photo` resized to the size), save the last one to `output`."""
    from PIL import Image

    from tn_export.images import MAX_PIXELS, load_image
    from tn_export.runtime import load

    r = TiledRun(**run)
    if r.max_memory_mb is None:  # one run of the whole image, not even cross-faded tiles
        m = load(model, threads=threads, tile_pixels=MAX_PIXELS, max_memory=math.inf)
    else:
        m = load(model, threads=threads, max_memory=r.max_memory_mb * 1e6)
    image = None
    if r.input == "photo":
        image = load_image(photo).resize((r.size, r.size), Image.BICUBIC)
    layout = m.layout(r.size, r.size, r.image_bytes)

    def make():
        return m.synthesize(r.size, r.size, seed=1)[0] if image is None else m.stylize(image)

    times, made = time_runs(make, r.runs, r.warmup)
    made.save(output)
    tiles = None
    if layout is not None:
        tiles = f"{layout.tile_w}x{layout.tile_h} in blocks of {layout.block_w}x{layout.block_h}"
    return {"times_s": times, "tiles": tiles}


def vs_whole(tiled: Path, whole: Path) -> dict:
    """How the tiled image differs from the whole one, in 8-bit levels and the share of
    pixels (any channel) that differ."""
    from tn_export.images import load_image

    a = np.asarray(load_image(tiled), dtype=np.int16)
    b = np.asarray(load_image(whole), dtype=np.int16)
    diff = np.abs(a - b)
    return {
        "max_level_diff": int(diff.max()),
        "differing_pixels": float(np.mean(diff.max(axis=-1) > 0)),
    }


def whole_refusal(model: str, r: TiledRun) -> str | None:
    """Why the whole-image run `r` is not attempted (None: it is): the runtime's estimate of
    its memory (at least 18 % above measured peaks) against what this machine has available."""
    from tn_export.runtime import load

    need = load(model, threads=1).whole_bytes(r.size, r.size, r.image_bytes) + FIXED_BYTES
    available = available_bytes()
    if available is None:
        return "this system does not say how much memory is available (/proc/meminfo)"
    if need * WHOLE_MARGIN > available:
        return (
            f"the whole {r.size}x{r.size} image would take up to {need / 1e9:.1f} GB; "
            f"{available / 1e9:.1f} GB is available"
        )
    return None


def available_bytes() -> int | None:
    meminfo = Path("/proc/meminfo")
    if not meminfo.is_file():
        return None
    for line in meminfo.read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    return None
