"""Core ML export: an ML program (.mlpackage) with flexible H/W, and what its description says.

Conversion goes through torch.export (batch fixed to 1, H/W symbolic), so the circular padding
the generator builds from slices and concatenation reaches Core ML as slices and concats: Core
ML's pad op has no circular mode. The check against PyTorch is validate.validate_coreml.
"""

from __future__ import annotations

import os
from pathlib import Path

import coremltools as ct
import numpy as np
import torch
from torch import nn

from .. import __version__
from ..contract import ModelContract
from ..errors import UserError
from ..sizes import default_size
from .formats import Job
from .graph import dynamic_shapes, example_inputs

PRECISIONS = {"fp16": ct.precision.FLOAT16, "fp32": ct.precision.FLOAT32}
MAX_ENUMERATED_SHAPES = 128  # Core ML's limit for EnumeratedShapes
AUTHOR = "tn-export (Texture Networks, Ulyanov et al. 2016)"
LICENSE = "Apache-2.0"


class PixelOutput(nn.Module):
    """Core ML image outputs read 0..255 values: scale the deployable's [0, 1] output inside."""

    def __init__(self, deployable: nn.Module) -> None:
        super().__init__()
        self.deployable = deployable

    def forward(self, x: torch.Tensor, style: torch.Tensor | None = None) -> torch.Tensor:
        return self.deployable(x, style) * 255.0


def _check_options(
    contract: ModelContract, shapes: list[tuple[int, int]] | None, precision: str
) -> None:
    if precision not in PRECISIONS:
        raise UserError(
            f"precision {precision} is not available for Core ML; use fp16 or fp32", "precision"
        )
    if shapes is None:
        return
    if not 1 <= len(shapes) <= MAX_ENUMERATED_SHAPES:
        raise UserError(
            f"shapes needs 1 to {MAX_ENUMERATED_SHAPES} sizes, got {len(shapes)}", "shapes"
        )
    m, lo, hi = contract.size_multiple, contract.min_size, contract.max_size
    for h, w in shapes:
        if h % m or w % m or not (lo <= h <= hi and lo <= w <= hi):
            raise UserError(
                f"shapes {w}x{h}: width and height must be multiples of {m} within "
                f"[{lo}, {hi}] (e.g. {lo}x{lo})",
                "shapes",
            )


def _flexible_shape(contract: ModelContract, shapes: list[tuple[int, int]] | None):
    c = contract.input_channels
    if shapes:
        return ct.EnumeratedShapes(
            shapes=[(1, c, h, w) for h, w in shapes], default=(1, c, *shapes[0])
        )
    d = default_size(contract)
    return (
        1,
        c,
        ct.RangeDim(contract.min_size, contract.max_size, default=d),
        ct.RangeDim(contract.min_size, contract.max_size, default=d),
    )


def image_input(contract: ModelContract, image_io: bool) -> bool:
    """Whether the package takes an image: style models exported with image I/O."""
    return image_io and contract.mode == "style"


def _sizes_text(contract: ModelContract, shapes: list[tuple[int, int]] | None) -> str:
    if shapes:
        return "W x H one of " + ", ".join(f"{w}x{h}" for h, w in shapes)
    return (
        f"W and H multiples of {contract.size_multiple} "
        f"within [{contract.min_size}, {contract.max_size}]"
    )


def export_coreml(
    deployable: nn.Module,
    path: str | os.PathLike,
    contract: ModelContract,
    *,
    shapes: list[tuple[int, int]] | None = None,
    precision: str = "fp16",
    image_io: bool = False,
) -> None:
    """Write the ML program of `deployable` (Reference.deployable) to exactly `path` (an
    .mlpackage folder), contract in its metadata.

    `shapes` (height, width) gives enumerated shapes (best for the Neural Engine) instead of the
    contract's min..max range; `image_io` makes a style model's input and every model's output
    Core ML images (needs iOS 16), so a Swift app passes and gets CVPixelBuffers.
    """
    _check_options(contract, shapes, precision)
    model = PixelOutput(deployable) if image_io else deployable
    d = default_size(contract)
    program = torch.export.export(
        model,
        tuple(example_inputs(contract, d, d).values()),
        dynamic_shapes=dynamic_shapes(contract, dynamic_batch=False),
    ).run_decompositions({})
    given, made = _io_types(contract, shapes, image_io)
    mlmodel = ct.convert(
        program,
        convert_to="mlprogram",
        inputs=given,
        outputs=[made],
        compute_precision=PRECISIONS[precision],
        # iOS 15 brought ML programs; image outputs need iOS 16. The lowest that works wins.
        minimum_deployment_target=ct.target.iOS16 if image_io else ct.target.iOS15,
        skip_model_load=True,
    )
    _describe(mlmodel, contract, shapes, image_io)
    mlmodel.save(os.fspath(path))


def _io_types(contract: ModelContract, shapes: list[tuple[int, int]] | None, image_io: bool):
    """Core ML's input types and output type: float32 arrays, or RGB images with 0..255 pixels;
    the style weights of several styles are a (1, styles) array."""
    shape = _flexible_shape(contract, shapes)
    if image_input(contract, image_io):
        given = ct.ImageType(
            name=contract.input_name,
            shape=shape,
            scale=1.0 / 255.0,
            color_layout=ct.colorlayout.RGB,
        )
    else:
        given = ct.TensorType(name=contract.input_name, shape=shape, dtype=np.float32)
    if image_io:
        made = ct.ImageType(name=contract.output_name, color_layout=ct.colorlayout.RGB)
    else:
        made = ct.TensorType(name=contract.output_name, dtype=np.float32)
    weights = [(contract.style_input, (1, len(contract.styles)))] if contract.styles else []
    return [given, *(ct.TensorType(n, shape, dtype=np.float32) for n, shape in weights)], made


def _describe(
    mlmodel: ct.models.MLModel,
    contract: ModelContract,
    shapes: list[tuple[int, int]] | None,
    image_io: bool,
) -> None:
    """Author, license, description, version, the contract and what the input and output are."""
    mlmodel.author = AUTHOR
    mlmodel.license = LICENSE
    mlmodel.short_description = contract.description or f"Texture Networks {contract.mode} model"
    mlmodel.version = contract.tool_version or __version__
    mlmodel.user_defined_metadata.update(contract.to_metadata())
    sizes = _sizes_text(contract, shapes)
    if contract.mode == "texture":
        given = f"unit Gaussian noise N(0, 1), shape (1, {contract.noise_depth}, H, W); {sizes}"
    elif image_io:
        given = f"RGB image to stylize; {sizes}"
    else:
        given = f"RGB image in [0, 1], shape (1, 3, H, W); {sizes}"
    made = "RGB image, same size as the input" if image_io else "RGB in [0, 1], shape (1, 3, H, W)"
    mlmodel.input_description[contract.input_name] = given
    if contract.styles:
        mlmodel.input_description[contract.style_input] = (
            f"style weights, shape (1, {len(contract.styles)}), in the order "
            f"{', '.join(contract.styles)}: one-hot picks a style, weights summing to 1 mix them"
        )
    mlmodel.output_description[contract.output_name] = made


def build(job: Job) -> dict:
    """The ML program of the job's precision, enumerated shapes or a range as the export asks."""
    reference = job.reference
    export_coreml(
        reference.deployable,
        job.path,
        reference.contract,
        shapes=reference.shapes,
        precision=job.precision,
        image_io=job.options.image_io,
    )
    return {}


def signature(path: Path) -> dict[str, list[str]]:
    """Names and dims of a saved ML program's input and output, ranges as lo..hi."""
    desc = ct.models.MLModel(os.fspath(path), skip_model_load=True).get_spec().description
    io = {}
    for feature in (*desc.input, *desc.output):
        kind = feature.type.WhichOneof("Type")
        if kind == "imageType":
            io[feature.name] = ["image", "H", "W"]
            continue
        array = feature.type.multiArrayType
        if array.WhichOneof("ShapeFlexibility") == "shapeRange":
            dims = [
                r.lowerBound if r.lowerBound == r.upperBound else f"{r.lowerBound}..{r.upperBound}"
                for r in array.shapeRange.sizeRanges
            ]
        elif array.WhichOneof("ShapeFlexibility") == "enumeratedShapes":
            shapes = array.enumeratedShapes.shapes
            sizes = "|".join(f"{s.shape[3]}x{s.shape[2]}" for s in shapes)
            dims = [*array.shape[:2], f"WxH {sizes}"]
        else:
            dims = list(array.shape)  # empty for outputs: the size follows the input
        io[feature.name] = [str(d) for d in dims]
    return io
