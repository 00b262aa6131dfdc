"""Check an exported artifact against the export's Reference before it ships.

ONNX and ORT files run in onnxruntime with the runtime's own session options; Core ML packages
run in Core ML on macOS and, elsewhere, in the numpy reference evaluator (mil_eval) on the saved
program. Every format is judged by the same inputs, PyTorch outputs and tolerances (Reference).
The contract read back from the file must equal the one that was written.
"""

from __future__ import annotations

import os
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import onnxruntime as ort

from ..contract import ModelContract, contract_problem
from ..errors import UserError
from ..runtime.session import session_options
from .formats import Options
from .parts import part_paths, validate_parts
from .reference import MAX_ABS_ERROR, OutputMismatch, Reference, Validation


def session(path: str | os.PathLike) -> ort.InferenceSession:
    """A CPU session for an .onnx or .ort file (bytes: ORT format is then recognised by content)."""
    options = session_options()
    return ort.InferenceSession(
        Path(path).read_bytes(), options, providers=["CPUExecutionProvider"]
    )


def onnx_io(path: str | os.PathLike) -> dict[str, list[str]]:
    """Input and output names with their dims, e.g. {"noise": ["batch", "3", "32*h", "32*w"]}."""
    sess = session(path)
    return {v.name: [str(d) for d in v.shape] for v in (*sess.get_inputs(), *sess.get_outputs())}


def validate_onnx(
    path: str | os.PathLike,
    reference: Reference,
    precision: str,
    options: Options | None = None,
) -> Validation:
    """Run `path` with onnxruntime at the reference's sizes and compare with PyTorch.
    (`options` do not change an ONNX file's check.)"""
    sess = session(path)
    contract = reference.contract
    details: dict = {"precision": precision, "backend": "onnxruntime " + ort.__version__}
    problem = contract_problem(
        contract,
        lambda: ModelContract.from_metadata(sess.get_modelmeta().custom_metadata_map, str(path)),
        [i.name for i in sess.get_inputs()],
        [o.name for o in sess.get_outputs()],
    )
    if problem:
        return Validation(False, f"metadata: {problem}", details)
    result = reference.validation(lambda feed: sess.run(None, feed)[0], precision, details)
    parts = part_paths(path, contract)
    if result.ok and parts and all(p.is_file() for p in parts.values()):
        errors = validate_parts(path, reference.deployable.generator, contract)
        result.details["parts_max_abs_error"] = errors
        ok = max(errors.values()) <= MAX_ABS_ERROR["fp32"]
        worst = max(errors.values())
        result.summary += f"; tiling parts max |err| {worst:.1e}"
        if not ok:
            result.ok = False
            result.summary = f"FAILED: tiling parts max |err| {worst:.1e} > 1e-4"
    if precision == "fp16" and "max_abs_error" in result.details:  # compared, not mismatched
        floors = reference.fp16_input_error
        result.details["input_rounding_error"] = floors
        result.summary += f" (fp16 rounding of the input alone: {max(floors.values()):.1e})"
    return result


# --- Core ML ----------------------------------------------------------------------------------


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
    import coremltools as ct

    from .coreml import image_input

    desc = ct.models.MLModel(os.fspath(path), skip_model_load=True).get_spec().description
    problems = []
    inputs, outputs = [i.name for i in desc.input], [o.name for o in desc.output]
    if inputs != contract.input_names or outputs != [contract.output_name]:
        return [
            f"inputs {inputs} / outputs {outputs}, expected "
            f"{contract.input_names} / [{contract.output_name!r}]"
        ]
    takes_image = image_input(contract, image_io)
    in_kind = desc.input[0].type.WhichOneof("Type")
    out_kind = desc.output[0].type.WhichOneof("Type")
    if in_kind != ("imageType" if takes_image else "multiArrayType"):
        problems.append(f"input is a {in_kind}")
    if out_kind != ("imageType" if image_io else "multiArrayType"):
        problems.append(f"output is a {out_kind}")
    rgb = ct.proto.FeatureTypes_pb2.ImageFeatureType.RGB
    for feature in (desc.input[0], desc.output[0]):
        is_image = feature.type.WhichOneof("Type") == "imageType"
        if is_image and feature.type.imageType.colorSpace != rgb:
            problems.append(f"{feature.name} is not an RGB image")
    sizes = _flexible_sizes(desc.input[0].type)
    expected = _expected_sizes(contract, shapes, takes_image)
    if sizes != expected:
        problems.append(f"input sizes {sizes}, expected {expected}")
    try:
        stored = ModelContract.from_metadata(dict(desc.metadata.userDefined), os.fspath(path))
    except UserError as e:
        stored = e
    if stored != contract:
        problems.append(f"metadata contract differs: {stored}")
    return problems


def _core_ml_predictor(path: str | os.PathLike, contract: ModelContract, image_io: bool):
    """Core ML itself (macOS): [0, 1] arrays in and out, whatever the package's I/O types."""
    import coremltools as ct
    from PIL import Image

    from .coreml import image_input

    model = ct.models.MLModel(os.fspath(path))

    def predict(feed: dict[str, np.ndarray]) -> np.ndarray:
        if image_input(contract, image_io):
            pixels = (feed[contract.input_name][0] * 255.0).round().astype(np.uint8)
            feed = feed | {contract.input_name: Image.fromarray(pixels.transpose(1, 2, 0), "RGB")}
        out = model.predict(feed)[contract.output_name]
        if image_io:
            return np.asarray(out.convert("RGB"), np.float32).transpose(2, 0, 1)[None] / 255.0
        return np.asarray(out, np.float32)

    return predict


def _evaluator_predictor(path: str | os.PathLike, contract: ModelContract, image_io: bool):
    """The saved program in the reference evaluator; (predict, op counts)."""
    from .coreml import image_input
    from .mil_eval import evaluate, load_program

    program = load_program(path)
    ops = dict(Counter(op.op_type for op in program.functions["main"].operations))
    scale_in = 255.0 if image_input(contract, image_io) else 1.0  # image inputs take 0..255
    scale_out = 255.0 if image_io else 1.0

    def predict(feed: dict[str, np.ndarray]) -> np.ndarray:
        feed = feed | {contract.input_name: feed[contract.input_name] * scale_in}
        return evaluate(program, feed)[contract.output_name].astype(np.float32) / scale_out

    return predict, ops


def validate_coreml(
    path: str | os.PathLike,
    reference: Reference,
    precision: str,
    options: Options | None = None,
) -> Validation:
    """Check the saved package's description and its numbers against PyTorch.

    On macOS the numbers come from Core ML itself; elsewhere from the reference evaluator run on
    the saved program. An op the evaluator lacks gives ok=None ("not verified"), never a pass.
    """
    from .mil_eval import UnsupportedOpError

    contract, image_io = reference.contract, (options or Options()).image_io
    problems = spec_problems(path, contract, shapes=reference.shapes, image_io=image_io)
    if problems:
        return Validation(False, "spec: " + "; ".join(problems), {"spec": problems})
    details: dict = {"precision": precision}
    slack = 0.0
    if sys.platform == "darwin":
        backend, predict = "Core ML", _core_ml_predictor(path, contract, image_io)
        if image_io:
            slack = 0.5 / 255.0  # the output image holds whole 0..255 pixels
    else:
        backend = "MIL reference evaluator"
        predict, details["ops"] = _evaluator_predictor(path, contract, image_io)
    details["backend"] = backend
    try:
        ok, verdict, found = reference.compare(predict, precision, slack)
    except UnsupportedOpError as e:
        summary = f"not verified: {e}; the Core ML model's numbers were NOT checked"
        return Validation(None, summary, details)
    except OutputMismatch as e:
        return Validation(False, str(e), details)
    details |= found
    summary = (
        f"{'ok' if ok else 'FAILED'}: {verdict} vs PyTorch ({precision}, {backend}) "
        f"at {', '.join(found['max_abs_error'])}"
    )
    if not ok and precision == "fp16":
        own = reference.fp16_psnr
        details["pytorch_fp16_psnr_db"] = own
        summary += f"; PyTorch itself in fp16 reaches {own:.1f} dB" + (
            ", so this model needs --precision fp32" if own < found["min_psnr_db"] + 3 else ""
        )
    return Validation(ok, summary, details)
