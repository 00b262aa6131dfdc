"""ExecuTorch `.pte` lowered to XNNPACK, for Android and iOS apps, checked with its runtime.

XNNPACK takes no nearest resize and, with dynamic H/W, no slice, so the program is lowered from a
copy of the deployed network in which both have exact forms it does take (xnnpack_form): nearest
x2 upsampling as a transposed convolution, circular padding as masks, sums and concatenation.
Then the whole generator is one delegated graph; `delegation` records what XNNPACK runs. The batch
is 1; H and W are dynamic within the contract's bounds; the contract is a constant method,
`tn_export_contract`, returning its metadata as JSON.
"""

from __future__ import annotations

import copy
import json
import os
from collections import Counter
from importlib.metadata import version
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
from executorch.exir import (
    EdgeProgramManager,
    ExecutorchProgramManager,
    to_edge_transform_and_lower,
)
from executorch.runtime import Runtime
from torch import nn
from torch.fx.experimental.symbolic_shapes import optimization_hint
from torch.utils.flop_counter import conv_flop_count

from ..contract import ModelContract, contract_problem
from ..generator import CircularPad, PyramidGenerator
from ..sizes import default_size
from .graph import example_inputs

if TYPE_CHECKING:
    from .formats import Job, Options
    from .reference import Reference, Validation

CONTRACT_METHOD = "tn_export_contract"  # the .pte method that returns the contract's metadata
BACKEND = "XNNPACK"


class NearestUp2(nn.Module):
    """Nearest x2 upsampling as a depthwise transposed convolution with stride 2 and a 2x2 kernel
    of ones: every output pixel is one input pixel times 1, so it is exact, and XNNPACK runs it."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.up = _fixed(nn.ConvTranspose2d(channels, channels, 2, 2, groups=channels, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up(x)


class Wrap(nn.Module):
    """One axis of CircularPad for XNNPACK, which with dynamic H/W takes no slice: the first and
    the last line along `dim` are picked by one-hot masks (made from the input's shape by
    convolutions) and summed out by strided convolutions of ones, then concatenated around the
    input as CircularPad does. Each sum has one nonzero term, so the result is exact. Batch 1.

    `multiple` divides every length this axis has and `longest` bounds them: the first sum tiles
    a line by `multiple`, the second covers the at most longest / multiple tiles left in one window.
    """

    def __init__(self, channels: int, dim: int, multiple: int, longest: int) -> None:
        super().__init__()
        self.dim = dim
        tiles = longest // multiple

        def along(k: int, rest: int = 1) -> tuple[int, int]:
            return (k, rest) if dim == 2 else (rest, k)

        self.ones = _fixed(nn.Conv2d(channels, 1, 1), 0.0)  # 0 * x + 1: the input's shape
        self.previous = _fixed(nn.Conv2d(1, 1, along(3), padding=along(1, 0), bias=False))
        self.next = _fixed(nn.Conv2d(1, 1, along(3), padding=along(1, 0), bias=False))
        self.previous.weight.view(-1)[1:] = 0  # the line before: [1, 0, 0]
        self.next.weight.view(-1)[:2] = 0  # the line after: [0, 0, 1]
        self.tile = _sum(channels, along(multiple)) if multiple > 1 else nn.Identity()
        self.gather = _sum(channels, along(2 * tiles - 1), along(tiles - 1, 0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ones = self.ones(x)
        first = self._line(x * (ones - self.previous(ones)))
        last = self._line(x * (ones - self.next(ones)))
        return torch.cat([last, x, first], dim=self.dim)

    def _line(self, masked: torch.Tensor) -> torch.Tensor:
        """The sum along `dim` of `masked` (batch 1). The gather's length is 1 at every size, but
        to torch.export a floor division, which would spread through every later shape; the mean
        over it and the batch's 1 (divided by 1: exact) gives a static 1 instead."""
        line = self.gather(self.tile(masked))
        aside, back = (
            ((1, 3, 2, 0), (3, 0, 2, 1)) if self.dim == 2 else ((1, 2, 3, 0), (3, 0, 1, 2))
        )
        return line.permute(aside).mean((2, 3), keepdim=True).permute(back)


def _sum(channels: int, window: tuple[int, int], padding: tuple[int, int] = (0, 0)) -> nn.Module:
    """Per channel, the sum of each `window` (the stride), zero-padded by `padding`."""
    conv = nn.Conv2d(channels, channels, window, window, padding, groups=channels, bias=False)
    return _fixed(conv)


def _fixed(conv: nn.Module, weight: float = 1.0) -> nn.Module:
    """A convolution of constants, no gradient: weights `weight`, bias (if any) 1."""
    conv.requires_grad_(False)
    nn.init.constant_(conv.weight, weight)
    if conv.bias is not None:
        nn.init.ones_(conv.bias)
    return conv


def wrap_pad(channels: int, multiple: int, longest: int) -> nn.Sequential:
    """CircularPad's XNNPACK form: the rows wrapped, then the columns, as CircularPad does."""
    return nn.Sequential(*(Wrap(channels, dim, multiple, longest) for dim in (2, 3)))


def xnnpack_form(deployable: nn.Module, longest: int) -> nn.Module:
    """A copy of `deployable` (a PyramidGenerator's; another network is copied as it is) whose
    joins upsample with NearestUp2 and whose circular pads are wrap_pads, for sides up to
    `longest`. The original is untouched."""
    form = copy.deepcopy(deployable).eval()
    generator = form.generator
    if not isinstance(generator, PyramidGenerator):
        return form
    multiple = generator.config.size_multiple
    blocks = zip(generator.ratios, generator.branches, (None, *generator.joins), strict=True)
    for ratio, branch, join in blocks:
        for block in (branch, join.block if join else None):
            for i, layer in enumerate(block or ()):
                if isinstance(layer, CircularPad):
                    block[i] = wrap_pad(
                        block[i + 1].in_channels, multiple // ratio, longest // ratio
                    )
        if join is not None:
            # The Join normalises before it upsamples: XNNPACK's batch-norm fusion breaks on a
            # batch norm after a grouped transposed convolution.
            join.upsample = NearestUp2(join.coarse_norm.num_features)
    return form


def lower(deployable: nn.Module, contract: ModelContract) -> tuple[ExecutorchProgramManager, dict]:
    """The XNNPACK-lowered program of `deployable`'s XNNPACK form and its `delegation`: batch 1,
    dynamic H and W within the contract's bounds, the contract as a constant method."""
    m, side = contract.size_multiple, default_size(contract)
    dims = [
        m * torch.export.Dim(axis, min=contract.min_size // m, max=contract.max_size // m)
        for axis in ("h", "w")
    ]
    inputs = tuple(example_inputs(contract, side, side).values())
    program = torch.export.export(
        xnnpack_form(deployable, contract.max_size),
        inputs,
        dynamic_shapes=({2: dims[0], 3: dims[1]}, *[{}] * (len(inputs) - 1)),
    )
    edge = to_edge_transform_and_lower(
        program,
        partitioner=[XnnpackPartitioner()],
        constant_methods={CONTRACT_METHOD: json.dumps(contract.to_metadata())},
    )
    share = delegation(edge)  # before to_executorch, which adds its memory allocations
    return edge.to_executorch(), share


def delegation(edge: EdgeProgramManager) -> dict:
    """What XNNPACK runs of the lowered program: its share of the work (FLOPs: 2 per multiply-add
    of a convolution, 1 per output value of every other op, at the size traced) and of the ops,
    the delegated subgraphs, and the ops left to ExecuTorch's portable kernels, by name."""
    graph = edge.exported_program().graph_module.graph
    delegated, portable, subgraphs = 0, 0, 0
    ops: Counter = Counter()
    work = {"delegated": 0, "portable": 0}
    for node in graph.nodes:
        if node.op != "call_function" or node.target.__name__ == "getitem":
            continue
        if node.target.__name__ == "executorch_call_delegate":
            subgraphs += 1
            lowered = getattr(edge.exported_program().graph_module, node.args[0].target)
            for inner in lowered.original_module.graph.nodes:
                if inner.op == "call_function" and inner.target.__name__ != "getitem":
                    delegated += 1
                    work["delegated"] += _flops(inner)
            continue
        portable += 1
        ops[node.target.__name__] += 1
        work["portable"] += _flops(node)
    return {
        "flops_delegated": round(work["delegated"] / sum(work.values()), 4),
        "ops_delegated": delegated,
        "ops_portable": portable,
        "subgraphs": subgraphs,
        "portable_ops": dict(ops.most_common()),
    }


def _flops(node: torch.fx.Node) -> int:
    """One op's work at the traced size (see `delegation`)."""
    value = node.meta.get("val")
    if not isinstance(value, torch.Tensor):
        return 0
    out = [optimization_hint(d) for d in value.shape]
    if node.target.__name__.startswith("convolution"):
        x, weight = (node.args[0].meta["val"], node.args[1].meta["val"])
        transposed = bool(node.args[6])
        x_shape = [optimization_hint(d) for d in x.shape]
        return conv_flop_count(x_shape, list(weight.shape), out, transposed)
    numel = 1
    for d in out:
        numel *= d
    return numel


def build(job: Job) -> dict:
    """The fp32 program, lowered to XNNPACK; its delegation and planned memory for the record."""
    program, share = lower(job.reference.deployable, job.reference.contract)
    job.path.write_bytes(program.buffer)
    plan = program.executorch_program.execution_plan[0]
    return {
        "delegate": BACKEND,
        "delegation": share,
        "planned_memory_bytes": sum(plan.non_const_buffer_sizes),
    }


def contract_of(program, source: str) -> ModelContract:
    """The contract the program's constant method returns; UserError where it is missing."""
    metadata = {}
    if CONTRACT_METHOD in program.method_names:
        (text,) = program.load_method(CONTRACT_METHOD).execute([])
        metadata = json.loads(text)
    return ModelContract.from_metadata(metadata, source)


def load(path: str | os.PathLike):
    """The program at `path`, loaded by ExecuTorch's runtime."""
    return Runtime.get().load_program(Path(path))


def signature(path: Path) -> dict[str, list[str]]:
    """The forward method's inputs and output, named by the program's contract, with their dims:
    batch 1, channels (or styles), and H/W as lo..hi."""
    program = load(path)
    contract = contract_of(program, os.fspath(path))
    meta = program.metadata("forward")
    side = f"{contract.min_size}..{contract.max_size}"
    inputs = [meta.input_tensor_meta(i) for i in range(meta.num_inputs())]
    tensors = [*inputs, meta.output_tensor_meta(0)]
    names = [*contract.input_names, contract.output_name]
    return {
        name: [str(d) for d in t.sizes()[:2]] + ([side, side] if len(t.sizes()) == 4 else [])
        for name, t in zip(names, tensors, strict=True)
    }


def validate(
    path: str | os.PathLike,
    reference: Reference,
    precision: str,
    options: Options | None = None,
) -> Validation:
    """Run the program with ExecuTorch's runtime (XNNPACK on the CPU) at the reference's sizes,
    judged by max abs error."""
    from .reference import Validation

    program = load(path)
    details: dict = {
        "precision": precision,
        "backend": f"ExecuTorch {version('executorch')} XNNPACK",
    }
    meta = program.metadata("forward")
    names = reference.contract.input_names
    arity = (names * meta.num_inputs())[: meta.num_inputs()]  # as many names as it has inputs
    problem = contract_problem(
        reference.contract,
        lambda: contract_of(program, os.fspath(path)),
        arity,
        [reference.contract.output_name] * meta.num_outputs(),
    )
    if problem:
        return Validation(False, f"metadata: {problem}", details)
    forward = program.load_method("forward")

    def predict(feed: dict[str, np.ndarray]) -> np.ndarray:
        return forward.execute([torch.from_numpy(x) for x in feed.values()])[0].numpy()

    return reference.validation(predict, precision, details)
