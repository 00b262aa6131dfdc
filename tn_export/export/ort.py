"""ORT format for onnxruntime's mobile builds, and the report of the ops NNAPI / Core ML can take.

The conversion is what onnxruntime's `convert_onnx_models_to_ort` tool does with its defaults for
the "Fixed" style: load the ONNX model in a CPU session with every graph optimisation except the
x86-only NCHWc layout, and let the session save the optimised graph in ORT format. Calling the
session directly writes exactly the file asked for, without the tool's printing and side files.
"""

from __future__ import annotations

import io
import logging
from pathlib import Path

import onnxruntime as ort
from onnxruntime.tools.mobile_helpers.usability_checker import analyze_model

from ..runtime.session import session_options
from .formats import FORMATS, Job


def to_ort(src: Path, dst: Path) -> None:
    """Convert ONNX `src` to ORT format `dst`; metadata (the contract) is kept."""
    options = session_options()  # every graph optimisation, as apps run
    options.optimized_model_filepath = str(dst)
    options.add_session_config_entry("session.save_model_format", "ORT")
    # The tool's setting for targets other than "arm": keep QDQ int8 nodes portable.
    options.add_session_config_entry("session.qdqisint8allowed", "0")
    ort.InferenceSession(
        str(src),
        options,
        providers=["CPUExecutionProvider"],
        disabled_optimizers=["NchwcTransformer"],
    )


def usability_report(src: Path) -> tuple[str, bool]:
    """onnxruntime's mobile usability check of ONNX `src`: (report text, whether NNAPI or Core ML
    may speed it up). Dynamic H/W keep both off as the model stands; the report says so."""
    text = io.StringIO()
    logger = logging.getLogger("tn_export.mobile_usability")
    logger.setLevel(logging.INFO)
    logger.propagate = False
    handler = logging.StreamHandler(text)
    logger.addHandler(handler)
    try:
        worth_trying = bool(analyze_model(src, skip_optimize=False, logger=logger))
    finally:
        logger.removeHandler(handler)
    return text.getvalue().replace(str(src), src.name), worth_trying


def build(job: Job) -> dict:
    """The ORT file converted from the ONNX model of the same precision, with the usability
    report of that model beside it."""
    source = job.artifact("onnx", job.precision)
    to_ort(source, job.path)
    report, worth_trying = usability_report(source)
    (report_suffix,) = FORMATS["ort"].side_files
    job.path.with_suffix(report_suffix).write_text(report)
    return {"nnapi_or_coreml_ep_worth_trying": worth_trying}
