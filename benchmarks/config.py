"""What one `tn-bench` run and one `tn-bench quality` run are given: the fields are the
command's options and their defaults its defaults. Light to import (no torch), so that the
command line reads them before anything heavy loads."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from .backends import BACKENDS
from .gatys import PIXELS


@dataclass
class BenchConfig:
    """One tn-bench run. Sizes are (width, height)."""

    out: Path
    model: Path
    texture: Path | None = None
    descriptor_weights: str | None = None
    sizes: list[tuple[int, int]] = field(
        default_factory=lambda: [(256, 256), (512, 512), (1024, 1024), (768, 512)]
    )
    backends: list[str] = field(default_factory=lambda: list(BACKENDS))
    peer: bool = True  # also measure Johnson et al.'s transformer (benchmarks/peers.py)
    runs: int = 20
    warmup: int = 3
    threads: int = field(default_factory=lambda: os.cpu_count() or 1)
    cell_budget_s: float = 150.0
    gatys: bool = True
    gatys_optimizer: str = "lbfgs"
    gatys_pixels: list[str] = field(default_factory=lambda: list(PIXELS))
    gatys_seeds: int = 3
    gatys_iterations: int = 1000
    gatys_seconds: float = 300.0
    gatys_size: int = 256
    gatys_memory_size: int = 512
    samples: int = 8
    peak_n: int = 4096
    # The tiling step (benchmarks/tiling.py): memory bounds in MB at gatys_memory_size, the
    # runtime's bound for the middle size (tiled against whole latency) and the large texture
    # and photo, the photo stylized (None: the photo runs are skipped).
    tiling: bool = True
    tiling_bounds: list[float] = field(default_factory=lambda: [64.0, 128.0, 256.0])
    tiling_max_memory: float = 256.0
    tiling_latency_size: int = 1024
    tiling_size: int = 4096
    tiling_photo: Path | None = None
    command: str = ""


# tn-bench --quick: small sizes and budgets, about three minutes on 2 cores.
QUICK = {
    "sizes": [(128, 128), (256, 128)],
    "gatys_size": 128,
    "gatys_memory_size": 128,
    "gatys_iterations": 40,
    "gatys_seconds": 8.0,
    "samples": 4,
    "warmup": 2,
    "peak_n": 2048,
    "tiling_bounds": [],
    "tiling_max_memory": 64.0,
    "tiling_latency_size": 256,
    "tiling_size": 512,
}


@dataclass
class QualityConfig:
    """One `tn-bench quality` run. Sizes are (width, height)."""

    model: str
    out: Path
    exemplar: Path
    descriptor_weights: str | None
    against: list[Path] = field(default_factory=list)
    photos: list[Path] = field(default_factory=list)  # style models: photos to stylize
    style: str | None = None  # models of several styles: the one scored (None: the first)
    # Style models: Gatys et al.'s transfer of each photo to the generator's training loss, each
    # parametrisation within this many seconds (0: not run).
    gatys_seconds: float = 0.0
    size: tuple[int, int] = (256, 256)
    samples: int = 8
    seed: int = 1
    descriptor: str = "vgg16"  # "random" in tests of the mechanics
