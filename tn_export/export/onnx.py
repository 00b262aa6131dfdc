"""ONNX export via torch.export (dynamo): one self-contained file, symbolic batch, height, width."""

from __future__ import annotations

import os

import onnx
import torch

from ..contract import ModelContract
from ..sizes import default_size
from .formats import Job
from .graph import dynamic_shapes, example_input
from .parts import export_parts
from .precision import to_fp16, to_int8

OPSET = 20


def export_onnx(
    deployable: torch.nn.Module,
    path: str | os.PathLike,
    contract: ModelContract,
    dynamic_batch: bool = True,
    *,
    inputs: dict[str, torch.Tensor] | None = None,
    shapes: dict | None = None,
    outputs: list[str] | None = None,
    metadata: dict[str, str] | None = None,
) -> None:
    """Write `path` (fp32) with the contract (and `metadata`) in `metadata_props`;
    checker-validated. `deployable`: what runs, output clamped (Reference.deployable), taking
    and giving NCHW. `inputs` (name: example), `shapes` and `outputs` give another signature than
    the contract's one input and output (the exact-tiling parts, parts.py)."""
    if inputs is None:
        side = default_size(contract)  # any size inside the bounds traces the same graph
        inputs = {contract.input_name: example_input(contract, side, side)}
        shapes = dynamic_shapes(contract, dynamic_batch)
        outputs = [contract.output_name]
    program = torch.onnx.export(
        deployable,
        tuple(inputs.values()),
        dynamo=True,
        external_data=False,
        opset_version=OPSET,
        input_names=list(inputs),
        output_names=outputs,
        dynamic_shapes=shapes,
        optimize=True,
        verbose=False,
    )
    proto = program.model_proto
    for key, value in (contract.to_metadata() | (metadata or {})).items():
        proto.metadata_props.add(key=key, value=value)
    proto.doc_string = contract.description
    onnx.checker.check_model(proto, full_check=True)
    onnx.save_model(proto, os.fspath(path))


def build(job: Job) -> dict:
    """The ONNX model of the job's precision: fp32 from torch.export, fp16 and int8 converted
    from the fp32 one."""
    contract = job.reference.contract
    if job.precision == "fp32":
        export_onnx(job.reference.deployable, job.path, contract, job.options.dynamic_batch)
        if "coarse" in contract.tiling:
            export_parts(job.reference.deployable.generator, job.path, contract)
    elif job.precision == "fp16":
        to_fp16(job.artifact("onnx", "fp32"), job.path)
    else:
        to_int8(job.artifact("onnx", "fp32"), job.path, contract)
    return {}
