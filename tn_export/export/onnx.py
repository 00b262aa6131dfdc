"""ONNX export via torch.export (dynamo): one self-contained file, symbolic batch, height, width."""

from __future__ import annotations

import os

import onnx
import torch

from ..contract import ModelContract
from .graph import Deployable, dynamic_shapes, example_input

OPSET = 20


def export_onnx(
    generator: torch.nn.Module,
    path: str | os.PathLike,
    contract: ModelContract,
    dynamic_batch: bool = True,
) -> None:
    """Write `path` (fp32) with the contract in `metadata_props`; checker-validated. `generator`:
    the pyramid, or any network taking and giving (N, C, H, W) (tn-bench's peer)."""
    model = Deployable(generator).eval()
    # Any size inside the bounds traces the same graph; a small one traces fastest. Two or more
    # pixels at the coarsest scale keep torch.export from specialising a dimension of size 1.
    side = min(max(contract.min_size, 2 * contract.size_multiple), contract.max_size)
    x = example_input(contract, side, side)
    program = torch.onnx.export(
        model,
        (x,),
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
