"""Silence the converters while they work: coremltools' progress bars, torch.onnx's banners, and
the warnings and log records of both (and of onnxruntime's quantizer), which say nothing a user
of tn-export can act on. `verbose` lets them all through, for debugging a conversion."""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from collections.abc import Iterator

# Loggers that set their own level, so that the root logger's does not reach them.
_LOGGERS = ("coremltools", "torch.onnx", "torch.export", "onnxscript")


@contextlib.contextmanager
def converters(verbose: bool = False) -> Iterator[None]:
    """Within: Python's stdout and stderr are swallowed, warnings ignored, logs above ERROR only.
    An exception still propagates, and says what failed."""
    if verbose:
        yield
        return
    loggers = [logging.getLogger(), *map(logging.getLogger, _LOGGERS)]
    levels = [logger.level for logger in loggers]
    sink = io.StringIO()
    try:
        for logger in loggers:
            logger.setLevel(logging.ERROR)
        with (
            warnings.catch_warnings(),
            contextlib.redirect_stdout(sink),
            contextlib.redirect_stderr(sink),
        ):
            warnings.simplefilter("ignore")
            yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)
