"""Reduced-precision variants of an fp32 ONNX export: fp16 weights+activations, and int8 QDQ.

Both keep float32 inputs and outputs and the contract in `metadata_props`, so the runtime feeds and
reads every variant the same way.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import onnx
import onnx_ir
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
from ..sizes import calibration_sizes
from .graph import example_input


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
    """`samples` generated inputs, cycling through `calibration_sizes`."""

    def __init__(self, contract: ModelContract, samples: int) -> None:
        sizes = calibration_sizes(contract)
        self._inputs: Iterator = (
            {contract.input_name: example_input(contract, *sizes[i % len(sizes)], seed=i).numpy()}
            for i in range(samples)
        )

    def get_next(self) -> dict | None:
        return next(self._inputs, None)


def to_int8(src: Path, dst: Path, contract: ModelContract, samples: int = 16) -> None:
    """Static QDQ quantization of the convolutions: per-channel s8 weights, u8 activations, MinMax
    calibration. Norms, activations, resizes and concats stay float: quantizing the standalone
    batch norms before each concat (onnxruntime also misreads their per-channel axis) took the
    bundled model from 21 to 13 dB PSNR."""
    with tempfile.TemporaryDirectory(prefix="tn-export-int8-") as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        # auto_merge: without it symbolic shape inference stops at the dynamic H/W dims.
        quant_pre_process(str(src), str(prepared), auto_merge=True)
        quantize_static(
            str(prepared),
            str(dst),
            _Calibration(contract, samples),
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=["Conv"],
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
        )
    _copy_metadata(src, dst)


def _copy_metadata(src: Path, dst: Path) -> None:
    """Put the source's contract back into `dst` if a tool dropped it."""
    source, model = onnx.load_model(str(src)), onnx.load_model(str(dst))
    have = {p.key for p in model.metadata_props}
    missing = [p for p in source.metadata_props if p.key not in have]
    if missing or model.doc_string != source.doc_string:
        model.metadata_props.extend(missing)
        model.doc_string = source.doc_string
        onnx.save_model(model, str(dst))
