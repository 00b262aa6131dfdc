"""ONNX export via torch.export (dynamo): one self-contained file, symbolic batch, height, width."""

from __future__ import annotations

import os
from typing import Literal

import onnx
import torch
from torch import nn
from torch.nn import functional as F

from ..contract import ModelContract
from ..generator import CircularPad, ConditionalInstanceNorm2d
from ..sizes import default_size
from .fold import fold_batch_norms
from .formats import Job
from .graph import dynamic_shapes, example_inputs
from .parts import export_parts
from .precision import to_fp16, to_int8

OPSET = 20
Circular = Literal["wrap", "slices", "zeros"]  # how lean() exports circular padding


class WrapPad(nn.Module):
    """CircularPad as ONNX's own Pad(mode="wrap") (opset 19): one node and one tensor where the
    slices and concatenations make six nodes and an extra full-size tensor."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.pad(x, (1, 1, 1, 1), mode="circular")


def two_pass_instance_norm(x: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Each sample's channels normalised by their own mean and variance, in ReduceMean, Sub and
    Mul. onnxruntime's InstanceNormalization, like one ReduceMean over the whole map, sums a
    million float32 values at 512x2048 and put the trained starry model 5e-3 off (15x PyTorch's
    own error); means over rows, then columns, and the variance of the deviations keep it 1.2x."""
    centred = x - _mean(x)
    return centred * torch.rsqrt(_mean(centred.square()) + eps)


def _mean(x: torch.Tensor) -> torch.Tensor:
    """The mean over height, then width: two short float32 sums instead of one long one."""
    return x.mean(dim=2, keepdim=True).mean(dim=3, keepdim=True)


class StableInstanceNorm(nn.Module):
    """nn.InstanceNorm2d (affine, no running statistics) by `two_pass_instance_norm`."""

    def __init__(self, norm: nn.InstanceNorm2d) -> None:
        super().__init__()
        self.eps, self.weight, self.bias = norm.eps, norm.weight, norm.bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = two_pass_instance_norm(x, self.eps)
        return y * self.weight[:, None, None] + self.bias[:, None, None]


class StableConditionalNorm(ConditionalInstanceNorm2d):
    """ConditionalInstanceNorm2d by `two_pass_instance_norm` (the same parameters)."""

    def forward(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        scale = (style @ self.weight)[:, :, None, None]
        shift = (style @ self.bias)[:, :, None, None]
        return two_pass_instance_norm(x) * scale + shift


def _stable(norm: nn.Module) -> nn.Module | None:
    """The instance norm `norm` computed in two passes; None for any other module."""
    if isinstance(norm, nn.InstanceNorm2d) and norm.affine and not norm.track_running_stats:
        return StableInstanceNorm(norm)
    if type(norm) is ConditionalInstanceNorm2d:
        stable = StableConditionalNorm(norm.num_features, norm.weight.shape[0])
        stable.weight, stable.bias = norm.weight, norm.bias
        return stable
    return None


def lean(deployable: nn.Module, circular: Circular = "wrap", joins: bool = True) -> nn.Module:
    """What the ONNX file holds: `deployable` with its batch norms folded (the Join's with
    `joins`), its instance norms in two passes (`two_pass_instance_norm`) and its circular
    padding as `circular` says: Pad(wrap), the generator's slices, or zeros inside the next
    convolution (the fine tiling part, parts.py: only its border changes, which no tile keeps).
    The same numbers within float32 rounding (tests/test_fold.py); `deployable` is untouched:
    validation runs it."""
    folded = fold_batch_norms(deployable, joins)  # before unpadding: the joins fold as circular
    for module in list(folded.modules()):
        children = list(module.named_children())
        for i, (name, child) in enumerate(children):
            if isinstance(child, CircularPad) and circular == "wrap":
                setattr(module, name, WrapPad())
            elif isinstance(child, CircularPad) and circular == "zeros":
                conv = children[i + 1][1]
                conv.padding = (conv.kernel_size[0] // 2, conv.kernel_size[1] // 2)
                setattr(module, name, nn.Identity())
            elif (stable := _stable(child)) is not None:
                setattr(module, name, stable)
    return folded


def export_onnx(
    deployable: torch.nn.Module,
    path: str | os.PathLike,
    contract: ModelContract,
    dynamic_batch: bool = True,
    fold_joins: bool = True,
    *,
    inputs: dict[str, torch.Tensor] | None = None,
    shapes: dict | None = None,
    outputs: list[str] | None = None,
    metadata: dict[str, str] | None = None,
    circular: Circular = "wrap",
) -> None:
    """Write `path` (fp32) with the contract (and `metadata`) in `metadata_props`;
    checker-validated. `deployable`: what runs, output clamped (Reference.deployable), taking
    and giving NCHW; the file holds it `lean`: batch norms folded (the Join's with `fold_joins`),
    circular padding as `circular` (lean). `inputs` (name: example), `shapes` and `outputs` give
    another signature than the contract's one input and output (the tiling parts, parts.py)."""
    proto = trace(
        deployable, contract, dynamic_batch, fold_joins, inputs, shapes, outputs, circular
    )
    for key, value in (contract.to_metadata() | (metadata or {})).items():
        proto.metadata_props.add(key=key, value=value)
    proto.doc_string = contract.description
    onnx.checker.check_model(proto, full_check=True)
    onnx.save_model(proto, os.fspath(path))


def trace(
    deployable: torch.nn.Module,
    contract: ModelContract,
    dynamic_batch: bool,
    fold_joins: bool,
    inputs: dict[str, torch.Tensor] | None,
    shapes: dict | None,
    outputs: list[str] | None,
    circular: Circular = "wrap",
) -> onnx.ModelProto:
    """The graph of export_onnx, before its metadata: torch.export of the lean `deployable`. Of
    the contract only the signature counts (any size inside the bounds traces the same graph)."""
    if inputs is None:
        side = default_size(contract)
        inputs = example_inputs(contract, side, side)
        shapes = dynamic_shapes(contract, dynamic_batch)
        outputs = [contract.output_name]
    if dynamic_batch:  # a batch of 1 would be traced as a constant by the wrap padding
        inputs = {name: x.repeat(2, *[1] * (x.dim() - 1)) for name, x in inputs.items()}
    program = torch.onnx.export(
        lean(deployable, circular, joins=fold_joins),
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
    return program.model_proto


def build(job: Job) -> dict:
    """The ONNX model of the job's precision: fp32 from torch.export, fp16 converted from the
    fp32 one, int8 from an fp32 export that keeps the Join's norms (fold_batch_norms says why)."""
    contract = job.reference.contract
    deployable, batch = job.reference.deployable, job.options.dynamic_batch
    if job.precision == "int8":
        source = job.path.with_suffix(".joins.onnx")  # in the scratch folder, never installed
        export_onnx(deployable, source, contract, batch, fold_joins=False)
        return to_int8(source, job.path, contract)
    if job.precision == "fp32":
        export_onnx(deployable, job.path, contract, batch)
        if "coarse" in contract.tiling and job.options.tiling_parts:
            export_parts(deployable.generator, job.path, contract)
    else:
        to_fp16(job.artifact("onnx", "fp32"), job.path)
    return {}
