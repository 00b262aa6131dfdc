"""The export formats, one record each: what tn-export writes, at which precisions, how it is
built and checked, and what it needs installed. The CLI, the Python API, the README's format
table and the tests all read FORMATS; a new format is one record plus its module."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..runtime.exact import PART_SUFFIXES
from .reference import Reference, Validation


@dataclass(frozen=True)
class Options:
    """How an artifact is shaped beyond its contract and precision."""

    image_io: bool = False  # Core ML: image output (and image input for style models)
    dynamic_batch: bool = True  # ONNX / ORT: a symbolic batch dimension
    tiling_parts: bool = True  # ONNX fp32: the exact-tiling parts beside the model (parts.py)


@dataclass(frozen=True)
class Job:
    """One artifact to build: `path` in the export's scratch folder, side files beside it.
    `artifact(format, precision)` builds (once) another artifact it converts from."""

    reference: Reference
    precision: str
    path: Path
    options: Options
    artifact: Callable[[str, str], Path]


@dataclass(frozen=True)
class Format:
    """One export format. `build(job)` writes the artifact and returns details for its record;
    `validate(path, reference, precision, options)` checks it; `describe(path)` gives its inputs
    and outputs with their dims."""

    name: str
    label: str
    suffix: str
    precisions: tuple[str, ...]  # the first is the default
    requires: tuple[str, ...]  # modules it imports, as pip names them
    build: Callable[[Job], dict]
    validate: Callable[..., Validation]
    describe: Callable[[Path], dict[str, list[str]]]
    side_files: tuple[str, ...] = ()  # suffixes of what it writes beside the artifact
    source: str | None = None  # the format it converts from, at the same precision
    image_io: bool = False  # takes Options.image_io
    folder: bool = False  # the artifact is a folder (a Core ML package)


def _lazy(target: str) -> Callable:
    """`module:function` of this package, imported on first call, so that a format's libraries
    (coremltools, onnx) load only when that format is exported."""
    module, function = target.split(":")

    def call(*args, **kwargs):
        return getattr(importlib.import_module(f"{__package__}.{module}"), function)(
            *args, **kwargs
        )

    return call


# ORT is an ONNX model in onnxruntime's mobile container: the same precisions, needs and check.
_ONNX_FAMILY = {
    "precisions": ("fp32", "fp16", "int8"),
    "requires": ("onnx", "onnxscript", "onnxruntime"),
    "validate": _lazy("validate:validate_onnx"),
    "describe": _lazy("validate:onnx_io"),
}

FORMATS = {
    f.name: f
    for f in (
        Format(
            "onnx",
            "ONNX",
            ".onnx",
            build=_lazy("onnx:build"),
            # The exact-tiling parts (parts.py), at fp32; bare PyramidGenerators only.
            side_files=PART_SUFFIXES,
            **_ONNX_FAMILY,
        ),
        Format(
            "ort",
            "ORT",
            ".ort",
            build=_lazy("ort:build"),
            side_files=(".usability.txt",),
            source="onnx",
            **_ONNX_FAMILY,
        ),
        Format(
            "coreml",
            "Core ML",
            ".mlpackage",
            ("fp16", "fp32"),
            ("coremltools",),
            build=_lazy("coreml:build"),
            validate=_lazy("validate:validate_coreml"),
            describe=_lazy("coreml:signature"),
            image_io=True,
            folder=True,
        ),
        Format(
            "openvino",
            "OpenVINO",
            ".xml",
            ("fp16", "fp32"),  # of the weights; OpenVINO computes in float32 either way
            ("onnx", "onnxscript", "openvino"),
            build=_lazy("openvino:build"),
            validate=_lazy("openvino:validate"),
            describe=_lazy("openvino:signature"),
            side_files=(".bin",),
        ),
        Format(
            "executorch",
            "ExecuTorch",
            ".pte",
            ("fp32",),
            ("executorch",),
            build=_lazy("executorch:build"),
            validate=_lazy("executorch:validate"),
            describe=_lazy("executorch:signature"),
        ),
    )
}

# Formats asked for that tn-export will not write, with the one line that says why and what to
# use instead.
REFUSED = {
    "tflite": "format tflite is refused: LiteRT's converter freezes nearest upsampling at the "
    "size it traces, so a model with dynamic width and height gives wrong images at every other "
    "size; on Android use format ort (ONNX Runtime Mobile) or format executorch (ExecuTorch)",
}
