"""Check an exported ONNX or ORT-format file with onnxruntime against PyTorch before it ships.

fp32 must match PyTorch within a maximum absolute error, fp16 and int8 within a PSNR (graph.judge).
The contract read back from the file must equal the one that was written.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from ..contract import ModelContract
from ..errors import UserError
from ..generator import PyramidGenerator
from .graph import Deployable, Validation, example_input, judge, psnr

# Validating at the upper bound of a 2048 model in PyTorch needs gigabytes; a tall or wide size
# at the bound with at most this many pixels exercises the same symbolic dimension.
MAX_PIXELS = 1024 * 1024


def validation_sizes(contract: ModelContract) -> list[tuple[int, int]]:
    """Three (height, width): the lower bound, a non-square one, and one at the upper bound."""
    m, lo, hi = contract.size_multiple, contract.min_size, contract.max_size
    other = max(lo, min(hi, MAX_PIXELS // hi // m * m))
    mid = min(hi, max(lo, round(math.sqrt(lo * hi) / m) * m))
    sizes = [(lo, lo), (mid, min(hi, mid + m)), (hi, other)]
    return list(dict.fromkeys(sizes))


def session(path: str | os.PathLike) -> ort.InferenceSession:
    """A CPU session for an .onnx or .ort file (bytes: ORT format is then recognised by content)."""
    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(
        Path(path).read_bytes(), options, providers=["CPUExecutionProvider"]
    )


def io_signature(sess: ort.InferenceSession) -> dict[str, list[str]]:
    """Input and output names with their dims, e.g. {"noise": ["batch", "3", "32*h", "32*w"]}."""
    return {v.name: [str(d) for d in v.shape] for v in (*sess.get_inputs(), *sess.get_outputs())}


def _contract_problem(sess: ort.InferenceSession, contract: ModelContract, source: str) -> str:
    try:
        stored = ModelContract.from_metadata(sess.get_modelmeta().custom_metadata_map, source)
    except UserError as e:
        return str(e)
    if stored != contract:
        return "the contract read back from the file differs from the one written"
    names = ([i.name for i in sess.get_inputs()], [o.name for o in sess.get_outputs()])
    if names != ([contract.input_name], [contract.output_name]):
        return (
            f"inputs/outputs are {names}, the contract says "
            f"{contract.input_name}/{contract.output_name}"
        )
    return ""


def validate_onnx(
    path: str | os.PathLike,
    generator: PyramidGenerator,
    contract: ModelContract,
    precision: str,
    sizes: list[tuple[int, int]] | None = None,
) -> Validation:
    """Run `path` with onnxruntime at `sizes` (default: `validation_sizes`) and compare with
    PyTorch's Deployable(generator) on the same inputs."""
    sess = session(path)
    details: dict = {"precision": precision, "backend": "onnxruntime " + ort.__version__}
    problem = _contract_problem(sess, contract, os.fspath(path))
    if problem:
        return Validation(False, f"metadata: {problem}", details)
    reference = Deployable(generator).eval()
    sizes = sizes or validation_sizes(contract)
    errors, psnrs, floors = {}, {}, {}
    for i, (h, w) in enumerate(sizes):
        x = example_input(contract, h, w, seed=i)
        with torch.no_grad():
            expected = reference(x).numpy()
            if precision == "fp16":
                # How far fp16 rounding of the input alone moves PyTorch's output: the floor
                # no fp16 model of this generator can beat, reported to tell sensitivity from bugs.
                rounded = reference(x.half().float()).numpy()
                floors[f"{h}x{w}"] = float(np.abs(rounded - expected).max())
        got = sess.run(None, {contract.input_name: x.numpy()})[0]
        if got.shape != expected.shape:
            return Validation(
                False, f"output shape {got.shape} at {h}x{w}, expected {expected.shape}", details
            )
        errors[f"{h}x{w}"] = float(np.abs(got - expected).max())
        psnrs[f"{h}x{w}"] = psnr(got, expected)
    details |= {"max_abs_error": errors, "psnr_db": psnrs}
    where = ", ".join(errors)
    ok, verdict, bound = judge(precision, errors, psnrs)
    details |= bound
    summary = f"{'ok' if ok else 'FAILED'}: {verdict} at {where}"
    if floors:
        details["input_rounding_error"] = floors
        summary += f" (fp16 rounding of the input alone: {max(floors.values()):.1e})"
    return Validation(ok, summary, details)
