"""What every exporter traces: the generator with its output clamped to the contract's [0, 1]."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from ..contract import ModelContract


class Deployable(nn.Module):
    """The eval-mode generator (or tn-bench's peer network) plus the final clamp, so every
    backend returns valid RGB."""

    def __init__(self, generator: nn.Module) -> None:
        super().__init__()
        self.generator = generator
        self.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.generator(x).clamp(0.0, 1.0)


def delivered(images: torch.Tensor) -> torch.Tensor:
    """What a user receives: clamped to [0, 1] and rounded to 8 bits, as every runtime saves it."""
    return (images.clamp(0, 1) * 255).round() / 255


def example_input(contract: ModelContract, height: int, width: int, seed: int = 0) -> torch.Tensor:
    """A valid input at the given size: noise for texture models, a smooth image for style."""
    g = torch.Generator().manual_seed(seed)
    if contract.mode == "texture":
        return torch.randn(1, contract.noise_depth, height, width, generator=g)
    low = torch.rand(1, 3, max(height // 16, 1), max(width // 16, 1), generator=g)
    return torch.nn.functional.interpolate(low, size=(height, width), mode="bilinear")


def dynamic_shapes(contract: ModelContract, dynamic_batch: bool) -> dict:
    """torch.export dims: H and W are multiples of size_multiple within the contract's bounds."""
    m = contract.size_multiple
    h = m * torch.export.Dim("h", min=contract.min_size // m, max=contract.max_size // m)
    w = m * torch.export.Dim("w", min=contract.min_size // m, max=contract.max_size // m)
    spec = {2: h, 3: w}
    if dynamic_batch:
        spec[0] = torch.export.Dim("batch", min=1, max=64)
    return {"x": spec}


# How an export must match PyTorch fp32 on [0, 1] outputs, the same for every format.
# fp32: max abs error, since only the order of float32 sums differs. fp16 and int8: PSNR, since
# they move every pixel a little. fp16's 40 dB is an RMS error of 1e-2: a max abs error of 1e-2
# is out of reach for this architecture, whose six chained scales amplify fp16 rounding: the
# paper's own red-peppers generator, run by PyTorch in float16, is off by 0.07 on its worst pixel
# but by 59 dB overall; a faulty conversion (wrong padding, a dropped norm) falls below 30 dB.
MAX_ABS_ERROR = {"fp32": 1e-4}
MIN_PSNR_DB = {"fp16": 40.0, "int8": 30.0}


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB for images in [0, 1] (inf when identical)."""
    mse = float(np.mean((a.astype(np.float64) - b) ** 2))
    return math.inf if mse == 0 else 10.0 * math.log10(1.0 / mse)


def judge(
    precision: str, errors: dict[str, float], psnrs: dict[str, float], slack: float = 0.0
) -> tuple[bool, str, dict]:
    """Apply the precision's criterion to per-size max abs errors and PSNRs: (ok, verdict text,
    details). `slack` widens the max abs bound (Core ML image outputs hold whole 0..255 values)."""
    if precision in MIN_PSNR_DB:
        worst, bound = min(psnrs.values()), MIN_PSNR_DB[precision]
        ok = worst >= bound
        text = f"PSNR {worst:.1f} dB {'>=' if ok else '<'} {bound:g} dB"
        return ok, f"{text} (max |err| {max(errors.values()):.1e})", {"min_psnr_db": bound}
    worst, bound = max(errors.values()), MAX_ABS_ERROR[precision] + slack
    ok = worst <= bound
    return ok, f"max |err| {worst:.1e} {'<=' if ok else '>'} {bound:.0e}", {"tolerance": bound}


@dataclass
class Validation:
    """The outcome of checking an exported artifact against PyTorch, one row of tn-export's table.

    `ok` is None when the numbers could not be checked ("not verified"), which is never a pass.
    """

    ok: bool | None
    summary: str
    details: dict = field(default_factory=dict)
