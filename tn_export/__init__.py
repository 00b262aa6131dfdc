"""tn-export: Texture Networks from training to ONNX / Core ML models that run in apps.

The top level imports nothing heavy: `tn_export.runtime` must work with numpy, onnxruntime and
Pillow alone, so the torch-based names below are loaded on first use.
"""

from __future__ import annotations

import importlib
from importlib import metadata
from typing import Any

try:
    __version__ = metadata.version("tn-export")
except metadata.PackageNotFoundError:  # a source tree used without installing it
    __version__ = "0+unknown"

_LAZY = {
    "PyramidGenerator": "generator",
    "GeneratorConfig": "generator",
    "VGGDescriptor": "descriptor",
    "load_descriptor": "descriptor",
    "gram_matrix": "losses",
    "texture_loss": "losses",
    "content_loss": "losses",
    "tv_loss": "losses",
    "diversity_loss": "losses",
    "Checkpoint": "checkpoint",
    "save_checkpoint": "checkpoint",
    "load_checkpoint": "checkpoint",
    "UserError": "errors",
}

__all__ = ["__version__", "export", *_LAZY]


def __getattr__(name: str) -> Any:
    if name == "export":  # the callable package: tn_export.export(model, formats=...)
        return importlib.import_module(".export", __name__)
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
