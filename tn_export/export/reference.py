"""What every export is checked against: the network as deployed, PyTorch's outputs at the sizes
validated, and the tolerances. Built once per export and handed to each format's validation."""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import torch
from torch import nn

from ..contract import ModelContract
from ..sizes import validation_sizes
from .graph import Deployable, delivered, example_inputs

# How an export must match PyTorch fp32 on [0, 1] outputs, the same for every format.
# fp32: max abs error, since only the order of float32 sums differs. PyTorch's own float32 result
# is not exact either (the bundled red-peppers model at 480x512 is 1.1e-4 from its float64
# result), so a model further than 1e-4 from PyTorch still passes where it is no more than
# EXACT_FACTOR times as far from the float64 result as PyTorch fp32 is. fp16 and int8: PSNR, since
# they move every pixel a little. fp16's 40 dB is an RMS error of 1e-2: a max abs error of 1e-2
# is out of reach for this architecture, whose six chained scales amplify fp16 rounding: the
# paper's own red-peppers generator, run by PyTorch in float16, is off by 0.07 on its worst pixel
# but by 59 dB overall; a faulty conversion (wrong padding, a dropped norm) falls below 30 dB.
# int8's 35 dB (an RMS error of 0.018) is what the trained bundled models keep with their finest
# scales' joins in int8 (precision.to_int8: 39-44 dB); every convolution in int8 gives about 20.
MAX_ABS_ERROR = {"fp32": 1e-4}
# Another order of float32 sums is as exact as PyTorch's, not the same: twice its distance.
EXACT_FACTOR = 2.0
MIN_PSNR_DB = {"fp16": 40.0, "int8": 35.0}

# An artifact run on the model's inputs by name (float32 arrays): its NCHW output.
Predict = Callable[[dict[str, np.ndarray]], np.ndarray]


@dataclass
class Validation:
    """The outcome of checking an exported artifact against PyTorch, one row of tn-export's table.

    `ok` is None when the numbers could not be checked ("not verified"), which is never a pass.
    """

    ok: bool | None
    summary: str
    details: dict = field(default_factory=dict)


class OutputMismatch(Exception):
    """An artifact's output has another shape than PyTorch's."""


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB for images in [0, 1] (inf when identical)."""
    mse = float(np.mean((a.astype(np.float64) - b) ** 2))
    return math.inf if mse == 0 else 10.0 * math.log10(1.0 / mse)


class Reference:
    """One export's network (clamped, in eval mode), its contract, the sizes it accepts
    (`shapes`, or the contract's range) and those it is validated at. Inputs and PyTorch's
    outputs are computed on first use, once for all formats."""

    def __init__(
        self,
        network: nn.Module,
        contract: ModelContract,
        shapes: list[tuple[int, int]] | None = None,
    ) -> None:
        self.deployable = Deployable(network)
        self.contract = contract
        self.shapes = shapes
        self.sizes = validation_sizes(contract, shapes)

    @cached_property
    def inputs(self) -> list[dict[str, torch.Tensor]]:
        """Every input of the model by name, one set per size; a style model's image holds whole
        8-bit pixels, as photos (and Core ML image inputs) do, so every backend is fed exactly
        what PyTorch is. A model of several styles gets one style after another, then a mix."""
        inputs = [
            example_inputs(self.contract, h, w, seed=i) for i, (h, w) in enumerate(self.sizes)
        ]
        if self.contract.mode == "style":
            name = self.contract.input_name
            inputs = [feed | {name: delivered(feed[name])} for feed in inputs]
        return inputs

    @cached_property
    def outputs(self) -> list[np.ndarray]:
        with torch.no_grad():
            return [self.deployable(*feed.values()).numpy() for feed in self.inputs]

    @cached_property
    def exact_outputs(self) -> list[np.ndarray]:
        """The network's outputs in float64: the exact result that fp32 ones round around."""
        exact = copy.deepcopy(self.deployable).double()
        with torch.no_grad():
            return [exact(*(v.double() for v in feed.values())).numpy() for feed in self.inputs]

    @cached_property
    def fp16_input_error(self) -> dict[str, float]:
        """Per size, how far fp16 rounding of the input alone moves PyTorch's output: the floor no
        fp16 model of this network can beat, reported to tell sensitivity from bugs."""
        name, errors = self.contract.input_name, {}
        with torch.no_grad():
            for (h, w), feed, y in zip(self.sizes, self.inputs, self.outputs, strict=True):
                rounded = feed | {name: feed[name].half().float()}
                errors[f"{w}x{h}"] = float(
                    np.abs(self.deployable(*rounded.values()).numpy() - y).max()
                )
        return errors

    @cached_property
    def fp16_psnr(self) -> float:
        """What fp16 itself costs this network at the middle size: PyTorch in float16 against
        float32, PSNR in dB. Tells a network sensitive to fp16 (large activations and norm gains)
        from a faulty conversion."""
        i = len(self.sizes) // 2
        half = copy.deepcopy(self.deployable).half()
        with torch.no_grad():
            got = half(*(v.half() for v in self.inputs[i].values())).float().numpy()
        return psnr(got, self.outputs[i])

    def validation(self, predict: Predict, precision: str, details: dict) -> Validation:
        """`compare` as a Validation: ok or FAILED with its verdict at every size, or the output
        mismatch; `details` (precision, backend) come first in its details."""
        try:
            ok, verdict, found = self.compare(predict, precision)
        except OutputMismatch as e:
            return Validation(False, str(e), details)
        summary = f"{'ok' if ok else 'FAILED'}: {verdict} at {', '.join(found['max_abs_error'])}"
        return Validation(ok, summary, details | found)

    def compare(
        self, predict: Predict, precision: str, slack: float = 0.0
    ) -> tuple[bool, str, dict]:
        """Run `predict` (float32 inputs by name in, NCHW out) at every size and judge it by the
        precision's criterion: (ok, verdict, details). `slack` widens the max abs bound (Core ML
        image outputs hold whole 0..255 values); beyond it, fp32 is judged against the float64
        result (`_against_exact`). A wrong output shape raises OutputMismatch."""
        errors, psnrs, results = {}, {}, []
        for (h, w), feed, expected in zip(self.sizes, self.inputs, self.outputs, strict=True):
            got = np.asarray(predict({k: v.numpy() for k, v in feed.items()}), np.float32)
            if got.shape != expected.shape:
                raise OutputMismatch(
                    f"output shape {got.shape} at {w}x{h}, expected {expected.shape}"
                )
            errors[f"{w}x{h}"] = float(np.abs(got - expected).max())
            psnrs[f"{w}x{h}"] = psnr(got, expected)
            results.append(got)
        details: dict = {"max_abs_error": errors, "psnr_db": psnrs}
        if precision in MIN_PSNR_DB:
            worst, bound = min(psnrs.values()), MIN_PSNR_DB[precision]
            ok = worst >= bound
            text = f"PSNR {worst:.1f} dB {'>=' if ok else '<'} {bound:g} dB"
            verdict = f"{text} (max |err| {max(errors.values()):.1e})"
            return ok, verdict, details | {"min_psnr_db": bound}
        worst, bound = max(errors.values()), MAX_ABS_ERROR[precision] + slack
        ok = worst <= bound
        verdict = f"max |err| {worst:.1e} {'<=' if ok else '>'} {bound:.0e}"
        details["tolerance"] = bound
        if not ok and math.isfinite(worst):
            ok, verdict = self._against_exact(results, bound, verdict, details)
        return ok, verdict, details

    def _against_exact(
        self, got: list[np.ndarray], bound: float, verdict: str, details: dict
    ) -> tuple[bool, str]:
        """The fp32 judgement beyond `bound`: at every size, no further from the float64 result
        than `bound` or EXACT_FACTOR times PyTorch fp32's own distance from it."""
        ours, torch32 = {}, {}
        for (h, w), y, expected, exact in zip(
            self.sizes, got, self.outputs, self.exact_outputs, strict=True
        ):
            ours[f"{w}x{h}"] = float(np.abs(y - exact).max())
            torch32[f"{w}x{h}"] = float(np.abs(expected - exact).max())
        ok = all(ours[k] <= max(bound, EXACT_FACTOR * torch32[k]) for k in ours)
        details |= {"float64_max_abs_error": ours, "pytorch_float64_max_abs_error": torch32}
        worst, own = max(ours.values()), max(torch32.values())
        relation = "within" if ok else "beyond"
        return ok, (
            f"{verdict}; {worst:.1e} from the float64 result, {relation} "
            f"{EXACT_FACTOR:g}x PyTorch fp32's own {own:.1e}"
        )
