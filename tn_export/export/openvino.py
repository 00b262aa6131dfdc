"""OpenVINO IR (.xml graph + .bin weights) for Intel edge boxes, checked with OpenVINO's CPU plugin.

The IR is converted from the export's fp32 ONNX model, not from the module: read with its dynamic
dims in about 1 s, against about 20 s and nearly twice the ops (764 against 409) through OpenVINO's
PyTorch frontend, with the same numbers. OpenVINO's ONNX reader has no Pad(mode="wrap")
("Unsupported padding mode: [wrap]"), so circular padding goes back to slices first.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import onnx
import openvino as ov
from onnx import helper, numpy_helper

from ..contract import ModelContract, contract_problem

if TYPE_CHECKING:  # kept out at run time: tn-bench's OpenVINO child compiles without torch
    from .formats import Job, Options
    from .reference import Reference, Validation

SECTION = "tn_export"  # the contract's keys live under this rt_info section
# The CPU plugin computes in bf16 by default where the CPU has it (AVX512-BF16, AMX): 38 dB on
# the bundled model, under the fp16 rule's 40 dB. Apps must compile with this, as the check does.
CONFIG = {"INFERENCE_PRECISION_HINT": "f32"}


def to_openvino(src: Path, dst: Path, contract: ModelContract, compress_to_fp16: bool) -> None:
    """Convert ONNX `src` to IR `dst` (the .bin beside it), H/W bounded by the contract."""
    model = ov.convert_model(os.fspath(src))
    given = model.inputs[0]  # then the style weights, whose shape the ONNX model fixes
    batch = given.get_partial_shape()[0]  # ? where the ONNX model has a dynamic batch, else 1
    side = ov.Dimension(contract.min_size, contract.max_size)
    channels = contract.input_channels
    model.reshape({given: ov.PartialShape([batch, ov.Dimension(channels), side, side])})
    for key, value in contract.to_metadata().items():
        model.set_rt_info(value, [SECTION, key])
    ov.save_model(model, os.fspath(dst), compress_to_fp16=compress_to_fp16)


def slice_padding(model: onnx.ModelProto) -> onnx.ModelProto:
    """`model` with every one-pixel Pad(mode="wrap") of H and W as the slices and concatenations
    CircularPad is made of; a wrap of other widths is refused (ValueError)."""
    graph = model.graph
    initializers = {i.name: i for i in graph.initializer}
    ends = {f"tn_slice_{k}": v for k, v in {"first": 0, "one": 1, "last": -1, "end": 2**62}.items()}
    nodes = []
    for node in graph.node:
        if node.op_type != "Pad" or helper.get_node_attr_value(node, "mode") != b"wrap":
            nodes.append(node)
            continue
        pads = initializers.get(node.input[1])
        if pads is None or numpy_helper.to_array(pads).tolist() != [0, 0, 1, 1, 0, 0, 1, 1]:
            raise ValueError(f"{node.name}: only a one-pixel wrap of H and W is rewritten")
        x, y = node.input[0], node.output[0]
        for axis in (2, 3):
            out = y if axis == 3 else f"{y}_rows"
            head, tail = f"{y}_head{axis}", f"{y}_tail{axis}"
            a = f"tn_slice_axis{axis}"
            nodes += [
                helper.make_node("Slice", [x, "tn_slice_last", "tn_slice_end", a], [tail]),
                helper.make_node("Slice", [x, "tn_slice_first", "tn_slice_one", a], [head]),
                helper.make_node("Concat", [tail, x, head], [out], axis=axis),
            ]
            x = out
    if len(nodes) > len(graph.node):
        constants = {**ends, "tn_slice_axis2": 2, "tn_slice_axis3": 3}
        for name, value in constants.items():
            graph.initializer.append(numpy_helper.from_array(np.array([value], np.int64), name))
    used = {name for node in nodes for name in node.input}
    kept = [i for i in graph.initializer if i.name in used]  # the wrap's pads go
    del graph.node[:], graph.initializer[:]
    graph.node.extend(nodes)
    graph.initializer.extend(kept)
    return model


def build(job: Job) -> dict:
    """The IR of the job's precision (weights in fp16 or fp32), from the fp32 ONNX model with its
    circular padding as slices."""
    source = job.path.with_suffix(".slices.onnx")
    onnx.save_model(slice_padding(onnx.load_model(job.artifact("onnx", "fp32"))), source)
    to_openvino(source, job.path, job.reference.contract, job.precision == "fp16")
    return {"converted_from": "onnx fp32, padding as slices", "compile_config": CONFIG}


def contract_of(model: ov.Model, source: str) -> ModelContract:
    """The contract written into the IR's rt_info; UserError where it is missing or wrong."""
    stored = model.get_rt_info([SECTION]).astype(dict) if model.has_rt_info([SECTION]) else {}
    return ModelContract.from_metadata({k: v.astype(str) for k, v in stored.items()}, source)


def signature(path: Path) -> dict[str, list[str]]:
    """Names and dims of the IR's input and output, ranges as lo..hi and ? for unbounded."""
    model = ov.Core().read_model(os.fspath(path))
    return {
        port.get_any_name(): [str(d) for d in port.get_partial_shape()]
        for port in (*model.inputs, *model.outputs)
    }


def validate(
    path: str | os.PathLike,
    reference: Reference,
    precision: str,
    options: Options | None = None,
) -> Validation:
    """Run the IR with OpenVINO's CPU plugin (float32 compute) at the reference's sizes and judge
    it by its precision's rule: fp32 by max abs error, fp16 weights by PSNR."""
    from .reference import Validation

    model = ov.Core().read_model(os.fspath(path))
    details: dict = {
        "precision": precision,
        "backend": f"OpenVINO {ov.__version__.split('-')[0]} CPU",
        "compile_config": CONFIG,
    }
    problem = contract_problem(
        reference.contract,
        lambda: contract_of(model, os.fspath(path)),
        [p.get_any_name() for p in model.inputs],
        [p.get_any_name() for p in model.outputs],
    )
    if problem:
        return Validation(False, f"metadata: {problem}", details)
    compiled = compile_cpu(model)
    return reference.validation(lambda feed: compiled(feed)[0], precision, details)


def compile_cpu(model: ov.Model | str | os.PathLike, threads: int | None = None):
    """The model compiled for the CPU as apps should compile it (CONFIG); `threads` pins them."""
    config = CONFIG | ({"INFERENCE_NUM_THREADS": threads} if threads else {})
    source = model if isinstance(model, ov.Model) else os.fspath(model)
    return ov.Core().compile_model(source, "CPU", config)
