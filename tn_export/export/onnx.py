"""ONNX export via torch.export (dynamo): one self-contained file, symbolic batch, height, width."""

from __future__ import annotations

import os

import onnx
import torch

from ..contract import ModelContract
from ..sizes import default_size
from .formats import Job
from .graph import dynamic_shapes, example_input
from .precision import to_fp16, to_int8

OPSET = 20


def export_onnx(
    deployable: torch.nn.Module,
    path: str | os.PathLike,
    contract: ModelContract,
    dynamic_batch: bool = True,
) -> None:
    """Write `path` (fp32) with the contract in `metadata_props`; checker-validated.
    `deployable`: what runs, output clamped (Reference.deployable), taking and giving NCHW."""
    side = default_size(contract)  # any size inside the bounds traces the same graph
    program = torch.onnx.export(
        deployable,
        (example_input(contract, side, side),),
        dynamo=True,
        external_data=False,
        opset_version=OPSET,
        input_names=[contract.input_name],
        output_names=[contract.output_name],
        dynamic_shapes=dynamic_shapes(contract, dynamic_batch),
        optimize=True,
        verbose=False,
    )
    proto = program.model_proto
    for key, value in contract.to_metadata().items():
        proto.metadata_props.add(key=key, value=value)
    proto.doc_string = contract.description
    onnx.checker.check_model(proto, full_check=True)
    onnx.save_model(proto, os.fspath(path))


def build(job: Job) -> dict:
    """The ONNX model of the job's precision: fp32 from torch.export, fp16 and int8 converted
    from the fp32 one."""
    contract = job.reference.contract
    if job.precision == "int8":
        return to_int8(job.artifact("onnx", "fp32"), job.path, contract)
    if job.precision == "fp32":
        export_onnx(job.reference.deployable, job.path, contract, job.options.dynamic_batch)
    else:
        to_fp16(job.artifact("onnx", "fp32"), job.path)
    return {}
