"""The two parts of a pyramid that tn_export.runtime.exact runs for exact tiles: the coarse part
(the input average-pooled by SPLIT -> features at ratio SPLIT) and the fine part (those features
and the full-resolution input -> clamped RGB), exported beside the whole model as
NAME.coarse.onnx and NAME.fine.onnx and checked against PyTorch like it.

The fine part of a circular model pads with zeros inside its convolutions (onnx.lean): its
windows always carry their wrap-around halo (exact.Reach.keeps_halo), so its own padding never
reaches a tile, and no Pad node copies each 3x3 convolution's input (tn-bench at 1024x1024: the
tiles in 1.01x the whole image's time, against 1.27x with the Pads). It is checked as the tiler
runs it: on inputs extended by wrap-around, against PyTorch's circular run inside.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ..budget import MAX_TILED_SIDE
from ..contract import PREFIX, ModelContract
from ..generator import PyramidGenerator
from ..runtime.exact import FEATURES, SPLIT, reaches
from ..runtime.tiling import round_up
from .graph import example_input

PART_KEY = PREFIX + "part"
# Sizes (height, width) the parts are checked at: non-square, small, with every scale present.
CHECK_SIZES = ((64, 96), (160, 128))


class CoarsePart(nn.Module):
    """The scales of ratio >= SPLIT, on the input already pooled by SPLIT."""

    def __init__(self, generator: PyramidGenerator) -> None:
        super().__init__()
        self.generator = generator

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.generator.head(x, SPLIT, given=SPLIT)


class FinePart(nn.Module):
    """The scales of ratio < SPLIT joined onto the coarse part's features, clamped as deployed."""

    def __init__(self, generator: PyramidGenerator) -> None:
        super().__init__()
        self.generator = generator

    def forward(self, features: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return self.generator.tail(features, x, SPLIT).clamp(0.0, 1.0)


def part_paths(path: str | os.PathLike, contract: ModelContract) -> dict[str, Path]:
    """{"coarse": .., "fine": ..}: where the parts of the model at `path` lie (none: untileable)."""
    suffixes = {k: contract.tiling[k] for k in ("coarse", "fine") if k in contract.tiling}
    return {k: Path(path).with_suffix(suffix) for k, suffix in suffixes.items()}


def _examples(contract: ModelContract, height: int, width: int) -> tuple[torch.Tensor, ...]:
    """(the input pooled by SPLIT, the input) at a size, from the contract's example input."""
    x = example_input(contract, height, width)
    return F.avg_pool2d(x, SPLIT), x


def export_parts(
    generator: PyramidGenerator, path: str | os.PathLike, contract: ModelContract
) -> None:
    """Write the coarse and fine parts beside the whole model at `path`, through the same
    export_onnx as the whole model."""
    from .onnx import export_onnx

    paths = part_paths(path, contract)
    coarse, fine = CoarsePart(generator).eval(), FinePart(generator).eval()
    pooled, x = _examples(contract, 256, 256)
    with torch.no_grad():
        features = coarse(pooled)
    m, most = contract.size_multiple, MAX_TILED_SIDE // contract.size_multiple
    batch = torch.export.Dim("batch", min=1, max=64)
    # Coarse windows are multiples of the coarsest ratio m: m // SPLIT cells of the pooled input.
    rows, cols = (torch.export.Dim(name, min=2, max=most) for name in ("rows", "cols"))
    coarse_dims = {"x": {0: batch, 2: m // SPLIT * rows, 3: m // SPLIT * cols}}
    export_onnx(
        coarse,
        paths["coarse"],
        contract,
        inputs={contract.input_name: pooled},
        shapes=coarse_dims,
        outputs=[FEATURES],
        metadata={PART_KEY: "coarse"},
    )
    # Fine windows are multiples of SPLIT: one feature cell per SPLIT x SPLIT input pixels.
    h, w = (torch.export.Dim(n, min=2, max=MAX_TILED_SIDE // SPLIT) for n in ("cells_h", "cells_w"))
    fine_dims = {
        "features": {0: batch, 2: h, 3: w},
        "x": {0: batch, 2: SPLIT * h, 3: SPLIT * w},
    }
    export_onnx(
        fine,
        paths["fine"],
        contract,
        inputs={FEATURES: features, contract.input_name: x},
        shapes=fine_dims,
        outputs=[contract.output_name],
        metadata={PART_KEY: "fine"},
        circular="zeros" if contract.padding == "circular" else "wrap",
    )


def _halo(contract: ModelContract) -> int:
    """Pixels of wrap-around around the fine part's checked inputs: its reach, on its grid."""
    if contract.padding != "circular":
        return 0
    fine = reaches(contract.size_multiple.bit_length())[1]
    return round_up(max(fine.before, fine.after), fine.align)


def _wrapped(x: np.ndarray, cells: int) -> np.ndarray:
    """(N, C, H, W) `x` extended by `cells` of wrap-around on each side of H and W."""
    return np.pad(x, ((0, 0), (0, 0), (cells, cells), (cells, cells)), mode="wrap")


def validate_parts(
    path: str | os.PathLike, generator: PyramidGenerator, contract: ModelContract
) -> dict:
    """Each part in onnxruntime against PyTorch at CHECK_SIZES, the fine part as the tiler runs
    it (module docstring): {"coarse": max |err|, ..}."""
    paths = part_paths(path, contract)
    coarse, fine = CoarsePart(generator).eval(), FinePart(generator).eval()
    from .validate import session

    sessions = {k: session(p) for k, p in paths.items()}
    halo = _halo(contract)
    errors = {"coarse": 0.0, "fine": 0.0}
    for h, w in CHECK_SIZES:
        pooled, x = _examples(contract, h, w)
        with torch.no_grad():
            features = coarse(pooled)
            rgb = fine(features, x)
        feeds = {
            "coarse": ({contract.input_name: pooled.numpy()}, features.numpy()),
            "fine": (
                {
                    FEATURES: _wrapped(features.numpy(), halo // SPLIT),
                    contract.input_name: _wrapped(x.numpy(), halo),
                },
                rgb.numpy(),
            ),
        }
        for part, (feed, expected) in feeds.items():
            got = sessions[part].run(None, feed)[0]
            if part == "fine" and halo:
                got = got[:, :, halo:-halo, halo:-halo]
            # Another shape than PyTorch's (not this model's part) is as wrong as can be.
            error = np.abs(got - expected).max() if got.shape == expected.shape else np.inf
            errors[part] = max(errors[part], float(error))
    return errors
