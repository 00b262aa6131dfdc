"""Core ML export: an ML program (.mlpackage) with flexible H/W, and its check against PyTorch.

Conversion goes through torch.export (batch fixed to 1, H/W symbolic), so the circular padding
the generator builds from slices and concatenation reaches Core ML as slices and concats: Core
ML's pad op has no circular mode. On Linux, where Core ML cannot predict, the saved program is
evaluated with the numpy reference evaluator in mil_eval.
"""

from __future__ import annotations

import copy
import os
import sys
from collections import Counter

import coremltools as ct
import numpy as np
import torch
from torch import nn

from .. import __version__
from ..contract import ModelContract
from ..errors import UserError
from ..generator import PyramidGenerator
from .graph import Deployable, Validation, dynamic_shapes, example_input, judge, psnr
from .mil_eval import UnsupportedOpError, evaluate, load_program

PRECISIONS = {"fp16": ct.precision.FLOAT16, "fp32": ct.precision.FLOAT32}
MAX_ENUMERATED_SHAPES = 128  # Core ML's limit for EnumeratedShapes
DEFAULT_SIZE = 256
AUTHOR = "tn-export (Texture Networks, Ulyanov et al. 2016)"
LICENSE = "Apache-2.0"


class PixelOutput(nn.Module):
    """Core ML image outputs read 0..255 values: scale the deployable's [0, 1] output inside."""

    def __init__(self, generator: PyramidGenerator) -> None:
        super().__init__()
        self.deployable = Deployable(generator)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.deployable(x) * 255.0


def _check_options(
    contract: ModelContract, shapes: list[tuple[int, int]] | None, precision: str
) -> None:
    if precision not in PRECISIONS:
        raise UserError(f"--precision {precision} is not available for Core ML; use fp16 or fp32")
    if shapes is None:
        return
    if not 1 <= len(shapes) <= MAX_ENUMERATED_SHAPES:
        raise UserError(f"--shapes needs 1 to {MAX_ENUMERATED_SHAPES} sizes, got {len(shapes)}")
    m, lo, hi = contract.size_multiple, contract.min_size, contract.max_size
    for h, w in shapes:
        if h % m or w % m or not (lo <= h <= hi and lo <= w <= hi):
            raise UserError(
                f"--shapes {h}x{w}: height and width must be multiples of {m} within "
                f"[{lo}, {hi}] (e.g. {lo}x{lo})"
            )


def default_size(contract: ModelContract) -> int:
    """The size Core ML reports as the default: 256 where the bounds allow it."""
    m = contract.size_multiple
    return min(max(DEFAULT_SIZE // m * m, contract.min_size), contract.max_size)


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


def _image_input(contract: ModelContract, image_io: bool) -> bool:
    return image_io and contract.mode == "style"


def _sizes_text(contract: ModelContract, shapes: list[tuple[int, int]] | None) -> str:
    if shapes:
        return "H x W one of " + ", ".join(f"{h}x{w}" for h, w in shapes)
    return (
        f"H and W multiples of {contract.size_multiple} "
        f"within [{contract.min_size}, {contract.max_size}]"
    )


def export_coreml(
    generator: PyramidGenerator,
    path: str | os.PathLike,
    contract: ModelContract,
    *,
    shapes: list[tuple[int, int]] | None = None,
    precision: str = "fp16",
    image_io: bool = False,
) -> None:
    """Write the ML program to exactly `path` (an .mlpackage folder), contract in its metadata.

    `shapes` (height, width) gives enumerated shapes (best for the Neural Engine) instead of the
    contract's min..max range; `image_io` makes a style model's input and every model's output
    Core ML images (needs iOS 16), so a Swift app passes and gets CVPixelBuffers.
    """
    _check_options(contract, shapes, precision)
    model = PixelOutput(generator) if image_io else Deployable(generator)
    d = default_size(contract)
    program = torch.export.export(
        model,
        (example_input(contract, d, d),),
        dynamic_shapes=dynamic_shapes(contract, dynamic_batch=False),
    ).run_decompositions({})
    given, made = _io_types(contract, shapes, image_io)
    mlmodel = ct.convert(
        program,
        convert_to="mlprogram",
        inputs=[given],
        outputs=[made],
        compute_precision=PRECISIONS[precision],
        # iOS 15 brought ML programs; image outputs need iOS 16. The lowest that works wins.
        minimum_deployment_target=ct.target.iOS16 if image_io else ct.target.iOS15,
        skip_model_load=True,
    )
    _describe(mlmodel, contract, shapes, image_io)
    mlmodel.save(os.fspath(path))


def _io_types(contract: ModelContract, shapes: list[tuple[int, int]] | None, image_io: bool):
    """Core ML's input and output types: float32 arrays, or RGB images with 0..255 pixels."""
    shape = _flexible_shape(contract, shapes)
    if _image_input(contract, image_io):
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
    return given, made


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
    mlmodel.output_description[contract.output_name] = made


# --- validation -----------------------------------------------------------------------------


def _flexible_sizes(feature_type) -> dict:
    """The sizes a saved input accepts: enumerated (h, w), or (min, max) of H and W; for arrays
    also the (min, max) of batch and channels."""
    if feature_type.WhichOneof("Type") == "imageType":
        image = feature_type.imageType
        flexibility = image.WhichOneof("SizeFlexibility")
        if flexibility == "imageSizeRange":
            r = image.imageSizeRange
            return {
                "height": (r.heightRange.lowerBound, r.heightRange.upperBound),
                "width": (r.widthRange.lowerBound, r.widthRange.upperBound),
            }
        sizes = image.enumeratedSizes.sizes if flexibility else [image]
        return {"shapes": sorted({(s.height, s.width) for s in sizes})}
    array = feature_type.multiArrayType
    if array.WhichOneof("ShapeFlexibility") == "shapeRange":
        ranges = [(r.lowerBound, r.upperBound) for r in array.shapeRange.sizeRanges]
        return {"leading": ranges[:2], "height": ranges[2], "width": ranges[3]}
    shapes = [tuple(s.shape) for s in array.enumeratedShapes.shapes] or [tuple(array.shape)]
    leading = [(min(s[i] for s in shapes), max(s[i] for s in shapes)) for i in (0, 1)]
    return {"leading": leading, "shapes": sorted({(s[2], s[3]) for s in shapes})}


def _expected_sizes(
    contract: ModelContract, shapes: list[tuple[int, int]] | None, image_input: bool
) -> dict:
    c = contract.input_channels
    expected = {} if image_input else {"leading": [(1, 1), (c, c)]}
    if shapes:
        return expected | {"shapes": sorted(set(shapes))}
    bounds = (contract.min_size, contract.max_size)
    return expected | {"height": bounds, "width": bounds}


def spec_problems(
    path: str | os.PathLike,
    contract: ModelContract,
    *,
    shapes: list[tuple[int, int]] | None = None,
    image_io: bool = False,
) -> list[str]:
    """What in the saved package's description differs from what was asked (empty: none)."""
    spec = ct.models.MLModel(os.fspath(path), skip_model_load=True).get_spec()
    desc = spec.description
    problems = []
    inputs, outputs = [i.name for i in desc.input], [o.name for o in desc.output]
    if inputs != [contract.input_name] or outputs != [contract.output_name]:
        return [
            f"inputs {inputs} / outputs {outputs}, expected "
            f"[{contract.input_name!r}] / [{contract.output_name!r}]"
        ]
    image_input = _image_input(contract, image_io)
    in_kind = desc.input[0].type.WhichOneof("Type")
    out_kind = desc.output[0].type.WhichOneof("Type")
    if in_kind != ("imageType" if image_input else "multiArrayType"):
        problems.append(f"input is a {in_kind}")
    if out_kind != ("imageType" if image_io else "multiArrayType"):
        problems.append(f"output is a {out_kind}")
    rgb = ct.proto.FeatureTypes_pb2.ImageFeatureType.RGB
    for feature in (desc.input[0], desc.output[0]):
        is_image = feature.type.WhichOneof("Type") == "imageType"
        if is_image and feature.type.imageType.colorSpace != rgb:
            problems.append(f"{feature.name} is not an RGB image")
    sizes = _flexible_sizes(desc.input[0].type)
    expected = _expected_sizes(contract, shapes, image_input)
    if sizes != expected:
        problems.append(f"input sizes {sizes}, expected {expected}")
    try:
        stored = ModelContract.from_metadata(dict(desc.metadata.userDefined), os.fspath(path))
    except UserError as e:
        stored = e
    if stored != contract:
        problems.append(f"metadata contract differs: {stored}")
    return problems


def validation_sizes(
    contract: ModelContract, shapes: list[tuple[int, int]] | None
) -> list[tuple[int, int]]:
    """Two or three (height, width) to compare at, one non-square where the bounds allow it."""
    if shapes:
        return sorted(set(shapes), key=lambda s: (s[0] * s[1], s))[:3]
    m, lo, hi = contract.size_multiple, contract.min_size, contract.max_size
    d = default_size(contract)
    candidates = [(d, d), (lo, lo), (min(lo + m, hi), min(2 * lo, hi))]
    return list(dict.fromkeys(candidates))


def _validation_input(contract: ModelContract, h: int, w: int, image_input: bool):
    """(what the Core ML model is fed, what PyTorch is fed); images as whole 0..255 pixels."""
    x = example_input(contract, h, w, seed=1)
    if not image_input:
        return x.numpy(), x
    pixels = (x * 255.0).round()
    return pixels.numpy(), pixels / 255.0


def _coreml_predictor(path: str | os.PathLike, contract: ModelContract, image_io: bool):
    from PIL import Image

    model = ct.models.MLModel(os.fspath(path))

    def predict(x: np.ndarray) -> np.ndarray:
        feed = x
        if _image_input(contract, image_io):
            feed = Image.fromarray(x[0].transpose(1, 2, 0).astype(np.uint8), "RGB")
        out = model.predict({contract.input_name: feed})[contract.output_name]
        if image_io:
            return np.asarray(out.convert("RGB"), np.float32).transpose(2, 0, 1)[None]
        return np.asarray(out, np.float32)

    return predict


def validate_coreml(
    path: str | os.PathLike,
    generator: PyramidGenerator,
    contract: ModelContract,
    *,
    shapes: list[tuple[int, int]] | None = None,
    precision: str = "fp16",
    image_io: bool = False,
) -> Validation:
    """Check the saved package's description and its numbers against PyTorch.

    On macOS the numbers come from Core ML itself; elsewhere from the reference evaluator run on
    the saved program. An op the evaluator lacks gives ok=None ("not verified"), never a pass.
    """
    problems = spec_problems(path, contract, shapes=shapes, image_io=image_io)
    if problems:
        return Validation(False, "spec: " + "; ".join(problems), {"spec": problems})
    details: dict = {"precision": precision}
    slack = 0.0
    if sys.platform == "darwin":
        backend, predict = "Core ML", _coreml_predictor(path, contract, image_io)
        if image_io:
            slack = 0.5 / 255.0  # the output image holds whole 0..255 pixels
    else:
        program = load_program(path)
        details["ops"] = dict(Counter(op.op_type for op in program.functions["main"].operations))
        backend = "MIL reference evaluator"

        def predict(x: np.ndarray) -> np.ndarray:
            return evaluate(program, {contract.input_name: x})[contract.output_name]

    details["backend"] = backend
    reference = Deployable(generator)
    errors, psnrs = {}, {}
    try:
        for h, w in validation_sizes(contract, shapes):
            fed, x = _validation_input(contract, h, w, _image_input(contract, image_io))
            with torch.no_grad():
                expected = reference(x).numpy()
            got = predict(fed).astype(np.float32) / (255.0 if image_io else 1.0)
            errors[f"{h}x{w}"] = float(np.abs(got - expected).max())
            psnrs[f"{h}x{w}"] = psnr(got, expected)
    except UnsupportedOpError as e:
        summary = f"not verified: {e}; the Core ML model's numbers were NOT checked"
        return Validation(None, summary, details)
    details |= {"max_abs_error": errors, "psnr_db": psnrs}
    ok, verdict, bound = judge(precision, errors, psnrs, slack)
    details |= bound
    summary = (
        f"{'ok' if ok else 'FAILED'}: {verdict} vs PyTorch ({precision}, {backend}) "
        f"at {', '.join(errors)}"
    )
    if not ok and precision == "fp16":
        own = _pytorch_fp16_psnr(generator, contract, validation_sizes(contract, shapes)[0])
        details["pytorch_fp16_psnr_db"] = own
        summary += f"; PyTorch itself in fp16 reaches {own:.1f} dB" + (
            ", so this model needs --precision fp32" if own < bound["min_psnr_db"] + 3 else ""
        )
    return Validation(ok, summary, details)


def _pytorch_fp16_psnr(
    generator: PyramidGenerator, contract: ModelContract, size: tuple[int, int]
) -> float:
    """What fp16 itself costs this model: PyTorch in float16 against float32, PSNR in dB.

    Tells a model that is sensitive to fp16 (a trained one with large activations and norm
    gains) from a faulty conversion."""
    x = example_input(contract, *size, seed=1)
    with torch.no_grad():
        expected = Deployable(generator)(x)
        half = Deployable(copy.deepcopy(generator).half())(x.half()).float()
    return psnr(half.numpy(), expected.numpy())
