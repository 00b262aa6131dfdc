"""tn-export: turn a generator into ONNX, ORT and Core ML files, each validated against PyTorch.

The package is callable: `tn_export.export(model, formats=...)` is `pipeline.export`, the Python
API of the tn-export command. Nothing heavy is imported until it is called.
"""

from __future__ import annotations

import sys
import types
from typing import Any


class _ExportPackage(types.ModuleType):
    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        from .pipeline import export

        return export(*args, **kwargs)


def __getattr__(name: str) -> Any:
    if name in ("export", "ExportResult"):
        from . import pipeline

        return getattr(pipeline, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


sys.modules[__name__].__class__ = _ExportPackage
