"""Reduced-precision variants of an fp32 ONNX export: fp16 weights+activations, and int8 QDQ.

Both keep float32 inputs and outputs and the contract in `metadata_props`, so the runtime feeds and
reads every variant the same way.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx
import onnx_ir
import onnxruntime as ort
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_static,
)
from onnxruntime.quantization.shape_inference import quant_pre_process
from onnxruntime.transformers.float16 import convert_float_to_float16

from ..contract import ModelContract
from ..runtime.session import session_options
from ..sizes import calibration_sizes
from .equalize import equalize
from .graph import example_inputs
from .reference import MIN_PSNR_DB, psnr


def to_fp16(src: Path, dst: Path) -> None:
    """fp16 weights and activations; inputs and outputs stay float32 (casts at the edges)."""
    half = convert_float_to_float16(onnx.load_model(str(src)), keep_io_types=True)
    # The converter appends its input casts at the end of the graph and leaves some stale float32
    # value_info; the checker wants topological order and consistent types, so sort and drop them.
    ir_model = onnx_ir.from_proto(half)
    ir_model.graph.sort()
    half = onnx_ir.to_proto(ir_model)
    del half.graph.value_info[:]
    onnx.checker.check_model(half, full_check=True)
    onnx.save_model(half, str(dst))


class _Calibration(CalibrationDataReader):
    """The calibration inputs as onnxruntime's quantizer reads them, once."""

    def __init__(self, feeds: list[dict]) -> None:
        self._inputs: Iterator = iter(feeds)

    def get_next(self) -> dict | None:
        return next(self._inputs, None)


def calibration_feeds(contract: ModelContract, samples: int, first_seed: int = 0) -> list[dict]:
    """`samples` generated inputs, cycling through `calibration_sizes`."""
    sizes = calibration_sizes(contract)
    return [
        {
            name: x.numpy()
            for name, x in example_inputs(
                contract, *sizes[i % len(sizes)], seed=first_seed + i
            ).items()
        }
        for i in range(samples)
    ]


def wide_convs(model: onnx.ModelProto, widths: int, spatial_only: bool) -> list[str]:
    """The convolutions whose output is among the `widths` widest (only those with a kernel over
    1x1 where `spatial_only`). In the pyramid the width grows scale by scale to the finest join
    (48 channels for six scales), so the widest convolutions are the finest scales' joins."""
    weights = {t.name: t.dims for t in model.graph.initializer}
    convs = [n for n in model.graph.node if n.op_type == "Conv" and n.input[1] in weights]
    if spatial_only:
        convs = [n for n in convs if list(weights[n.input[1]][2:]) != [1, 1]]
    wide = sorted({weights[n.input[1]][0] for n in convs})[-widths:]
    return [n.name for n in convs if weights[n.input[1]][0] in wide]


# Which convolutions each int8 setting quantizes, most arithmetic first (docs/int8.md has the
# measurements): "fine", the joins of the two finest scales (3x3 and 1x1, about 95 % of the
# pyramid's arithmetic); "heavy", the finest join's two 3x3 (about 77 %); "all". The coarse
# scales, the branches (their first convolution reads the input) and to_rgb cost little and
# amplify their error most, scale after scale.
INT8_LAYERS = {"fine": (2, False), "heavy": (1, True), "all": None}
# "auto" takes the first of these whose int8 model is this far above the PSNR rule on held-out
# inputs: the validation sizes are other inputs, and the margin keeps a model that only just
# passes here from failing there.
AUTO_LAYERS = ("fine", "heavy")
AUTO_MARGIN_DB = 1.0
# Shrinks of a calibrated range tried per activation, best first kept: a handful of
# quantizations per activation, and it raised the bundled models' worst PSNR from 33 to 38 dB
# where plain MinMax ranges happened to fall badly (heavy convs).
RANGE_SHRINKS = (0.8, 0.6)


def to_int8(
    src: Path,
    dst: Path,
    contract: ModelContract,
    samples: int = 16,
    layers: str = "auto",
    equalize_alpha: float = 0.5,
    search: bool = True,
) -> dict:
    """Static QDQ quantization: per-channel s8 weights, u8 activations, of the convolutions of
    `layers` (INT8_LAYERS; "auto": the first of AUTO_LAYERS that keeps the picture), after
    equalizing the channel ranges (equalize_alpha 0: not). Activation ranges: MinMax over
    `samples` generated inputs, then (`search`, not with "all") each narrowed where that brings
    the int8 model closer to fp32 on other inputs. Norms and activations stay float; padding and
    concatenation copy int8 where they feed a quantized convolution. Returns what was done, for
    the export's record.

    Every convolution in int8 costs the trained bundled models 15 dB more than the finest
    scales' alone (about 20 dB against fp32 vs 38 to 42 dB): this network amplifies
    quantization error scale after scale, so the coarse scales, cheap anyway, stay in float32
    (docs/int8.md)."""
    if layers not in (*INT8_LAYERS, "auto"):
        raise ValueError(f"layers must be 'auto' or one of {tuple(INT8_LAYERS)}, not {layers!r}")
    feeds = calibration_feeds(contract, samples)
    held_out = calibration_feeds(contract, 6, first_seed=1000)
    with tempfile.TemporaryDirectory(prefix="tn-export-int8-") as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        # auto_merge: without it symbolic shape inference stops at the dynamic H/W dims.
        quant_pre_process(str(src), str(prepared), auto_merge=True)
        expected = _run(src, held_out)  # the fp32 model itself, not its equalized copy
        model = onnx.load_model(str(prepared))
        rescaled = 0
        if equalize_alpha > 0:
            model, rescaled = equalize(model, feeds, equalize_alpha)
            onnx.save_model(model, str(prepared))
        convs = [n for n in model.graph.node if n.op_type == "Conv"]

        def closeness(chosen: list[str], ranges: dict, trial: dict[str, float]) -> float:
            _quantize(prepared, dst, chosen, ranges, trial, feeds[:1])
            return min(map(psnr, _run(dst, held_out), expected))

        tried = []
        for setting in AUTO_LAYERS if layers == "auto" else (layers,):
            wide = INT8_LAYERS[setting]
            chosen = [n.name for n in convs] if wide is None else wide_convs(model, *wide)
            activations = list(
                dict.fromkeys(
                    t for n in convs if n.name in chosen for t in (n.input[0], n.output[0])
                )
            )
            ranges = _ranges(prepared, activations, feeds)
            shrinks = dict.fromkeys(activations, 1.0)
            best = closeness(chosen, ranges, shrinks)
            for tensor in activations if search and wide is not None else []:
                for shrink in RANGE_SHRINKS:
                    trial = shrinks | {tensor: shrink}
                    if (score := closeness(chosen, ranges, trial)) > best:
                        best, shrinks = score, trial
            tried.append((best, setting, chosen, ranges, shrinks, activations))
            if best >= MIN_PSNR_DB["int8"] + AUTO_MARGIN_DB:
                break
        best, setting, chosen, ranges, shrinks, activations = max(tried, key=lambda t: t[0])
        closeness(chosen, ranges, shrinks)
    _copy_metadata(src, dst)
    return {
        "int8": {
            "layers": setting,
            "tried": {t[1]: round(t[0], 2) for t in tried},
            "quantized_convs": len(chosen),
            "convs": len(convs),
            "equalized_producers": rescaled,
            "calibration_inputs": samples,
            "range_shrinks": [shrinks[t] for t in activations],
            "held_out_psnr_db": round(best, 2),
        }
    }


def _quantize(
    prepared: Path,
    dst: Path,
    chosen: list[str],
    ranges: dict[str, tuple[float, float]],
    shrinks: dict[str, float],
    feeds: list[dict],
) -> None:
    """quantize_static with every activation's range given (`ranges` times `shrinks`), so its
    own calibration pass (on `feeds`) decides nothing."""
    overrides = {
        t: [{"rmin": np.float32(lo * shrinks[t]), "rmax": np.float32(hi * shrinks[t])}]
        for t, (lo, hi) in ranges.items()
    }
    quantize_static(
        str(prepared),
        str(dst),
        _Calibration(feeds),
        quant_format=QuantFormat.QDQ,
        op_types_to_quantize=["Conv"],
        nodes_to_quantize=chosen,
        per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        calibrate_method=CalibrationMethod.MinMax,
        extra_options={"TensorQuantOverrides": overrides},
    )
    onnx.save_model(_copies_in_int8(onnx.load_model(str(dst))), str(dst))


# Ops that only copy values: a QuantizeLinear after one gives what the copy of its quantized
# input gives. Pad only in the modes that copy (constant mode would add float zeros), Resize
# only in nearest mode (the others interpolate).
_COPIES = {"Pad", "Concat", "Resize"}
_COPYING_MODES = {"Pad": {b"wrap", b"reflect", b"edge"}, "Resize": {b"nearest"}}


def _copies_in_int8(model: onnx.ModelProto) -> onnx.ModelProto:
    """`model` with each QuantizeLinear moved above the Pads, Concats and Resizes that feed it
    alone, so that they copy u8 instead of float32: 4x fewer bytes through the most memory-bound
    ops of the graph, and exactly the same numbers. Concat gets one QuantizeLinear per input,
    each with the same scale and zero point."""
    graph = model.graph
    producer = {out: node for node in graph.node for out in node.output}
    readers: dict[str, int] = {}
    for node in graph.node:
        for name in node.input:
            readers[name] = readers.get(name, 0) + 1
    moved = True
    while moved:
        moved = False
        for q in [n for n in graph.node if n.op_type == "QuantizeLinear"]:
            copy = producer.get(q.input[0])
            if copy is None or copy.op_type not in _COPIES or readers[copy.output[0]] != 1:
                continue
            mode = next((a.s for a in copy.attribute if a.name == "mode"), None)
            if copy.op_type in _COPYING_MODES and mode not in _COPYING_MODES[copy.op_type]:
                continue
            data = list(copy.input) if copy.op_type == "Concat" else copy.input[:1]
            for i, name in enumerate(data):
                new = onnx.helper.make_node(
                    "QuantizeLinear",
                    [name, *q.input[1:]],
                    [f"{q.output[0]}__{i}"],
                    f"{q.name}__{i}",
                )
                new.attribute.extend(q.attribute)
                graph.node.append(new)
                copy.input[i] = new.output[0]
                producer[new.output[0]] = new
                readers[new.output[0]] = 1
            copy.output[0] = q.output[0]
            producer[q.output[0]] = copy
            graph.node.remove(q)
            moved = True
    ir_model = onnx_ir.from_proto(model)
    ir_model.graph.sort()
    model = onnx_ir.to_proto(ir_model)
    del model.graph.value_info[:]  # the moved tensors changed type; onnxruntime infers them again
    return model


def _session(path: Path, outputs: list[str] | None = None) -> ort.InferenceSession:
    model = onnx.load_model(str(path))
    if outputs:
        model.graph.output.extend(onnx.helper.make_empty_tensor_value_info(t) for t in outputs)
    options = session_options()
    return ort.InferenceSession(model.SerializeToString(), options, ["CPUExecutionProvider"])


def _run(path: Path, feeds: list[dict]) -> list[np.ndarray]:
    session = _session(path)
    return [session.run(None, feed)[0] for feed in feeds]


def _ranges(path: Path, tensors: list[str], feeds: list[dict]) -> dict[str, tuple[float, float]]:
    """(min, max) of each tensor over `feeds`, 0 included, as MinMax calibration takes them."""
    session = _session(path, tensors)
    lo, hi = dict.fromkeys(tensors, 0.0), dict.fromkeys(tensors, 0.0)
    for feed in feeds:
        for t, value in zip(tensors, session.run(tensors, feed), strict=True):
            lo[t], hi[t] = min(lo[t], float(value.min())), max(hi[t], float(value.max()))
    return {t: (lo[t], hi[t]) for t in tensors}


def _copy_metadata(src: Path, dst: Path) -> None:
    """Put the source's contract back into `dst` if a tool dropped it."""
    source, model = onnx.load_model(str(src)), onnx.load_model(str(dst))
    have = {p.key for p in model.metadata_props}
    missing = [p for p in source.metadata_props if p.key not in have]
    if missing or model.doc_string != source.doc_string:
        model.metadata_props.extend(missing)
        model.doc_string = source.doc_string
        onnx.save_model(model, str(dst))
