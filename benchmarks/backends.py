"""The generator's backends, each timed in its own interpreter with a fixed thread count.

The functions named in BACKENDS run inside the child (see isolated.py): they load the model (timed
apart), warm up, time `runs` calls, and save the output for one fixed input so the parent can
compare backends. Only the libraries a backend needs are imported, so its memory is its own.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

from .isolated import Unavailable

# onnxruntime's settings for every ONNX variant: all graph optimisations; the arena on but memory
# patterns off (design.md: same speed, about half the peak memory at 1024x1024).
ORT_SETTINGS = {
    "graph_optimization_level": "ORT_ENABLE_ALL",
    "enable_cpu_mem_arena": True,
    "enable_mem_pattern": False,
    "execution_mode": "ORT_SEQUENTIAL",
    "inter_op_num_threads": 1,
}


# What an idle interpreter imports for each runtime's memory baseline: what its child imports.
LIBRARIES = {
    "torch": (
        "torch",
        "tn_export.checkpoint",
        "tn_export.export.graph",
        "tn_export.descriptor",
        "tn_export.losses",
    ),
    "onnxruntime": ("numpy", "onnxruntime"),
    "coreml": ("numpy", "coremltools"),
}


@dataclass(frozen=True)
class Backend:
    """One way to run the generator: which child function, which model file, which runtime."""

    name: str
    function: str  # "module:function" run in the child
    model_key: str  # which artifact it needs: "checkpoint", "onnx-fp32", ...
    runtime: str  # key of LIBRARIES


BACKENDS = {
    b.name: b
    for b in (
        Backend("torch", "benchmarks.backends:run_torch", "checkpoint", "torch"),
        Backend(
            "onnxruntime-fp32", "benchmarks.backends:run_onnxruntime", "onnx-fp32", "onnxruntime"
        ),
        Backend(
            "onnxruntime-fp16", "benchmarks.backends:run_onnxruntime", "onnx-fp16", "onnxruntime"
        ),
        Backend(
            "onnxruntime-int8", "benchmarks.backends:run_onnxruntime", "onnx-int8", "onnxruntime"
        ),
        Backend("coreml", "benchmarks.backends:run_coreml", "coreml", "coreml"),
    )
}
# Names users type: a family expands to its variants.
GROUPS = {
    "torch": ["torch"],
    "onnxruntime": ["onnxruntime-fp32", "onnxruntime-fp16", "onnxruntime-int8"],
    "coreml": ["coreml"],
}


@dataclass(frozen=True)
class Cell:
    """One measurement: a backend's model file at one size, sent to the child as a dict."""

    model: str  # checkpoint, .onnx or .mlpackage path
    mode: str  # "texture" | "style"
    channels: int
    height: int
    width: int
    runs: int
    warmup: int
    threads: int
    output: str  # .npy path for the output of the fixed input


def model_input(c: Cell, seed: int = 0):
    """The fixed input every backend gets: N(0,1) noise (texture) or a uniform image (style)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    shape = (1, c.channels, c.height, c.width)
    if c.mode == "texture":
        return rng.standard_normal(shape, dtype=np.float32)
    return rng.random(shape, dtype=np.float32)


def time_runs(call: Callable[[], object], runs: int, warmup: int) -> tuple[list[float], object]:
    """Seconds per call over `runs` timed calls after `warmup` untimed ones; the last output."""
    out = None
    for _ in range(warmup):
        out = call()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        out = call()
        times.append(time.perf_counter() - start)
    return times, out


def run_onnxruntime(cell: dict) -> dict:
    c = Cell(**cell)
    import numpy as np
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = c.threads
    options.inter_op_num_threads = ORT_SETTINGS["inter_op_num_threads"]
    options.execution_mode = getattr(ort.ExecutionMode, ORT_SETTINGS["execution_mode"])
    level = ORT_SETTINGS["graph_optimization_level"]
    options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, level)
    options.enable_cpu_mem_arena = ORT_SETTINGS["enable_cpu_mem_arena"]
    options.enable_mem_pattern = ORT_SETTINGS["enable_mem_pattern"]
    start = time.perf_counter()
    session = ort.InferenceSession(c.model, options, providers=["CPUExecutionProvider"])
    load_s = time.perf_counter() - start
    feed = {session.get_inputs()[0].name: model_input(c)}
    times, out = time_runs(lambda: session.run(None, feed)[0], c.runs, c.warmup)
    np.save(c.output, np.asarray(out, dtype=np.float32))
    return {"load_s": load_s, "times_s": times, "settings": {**ORT_SETTINGS, "threads": c.threads}}


def run_torch(cell: dict) -> dict:
    c = Cell(**cell)
    import numpy as np
    import torch

    from tn_export.checkpoint import load_checkpoint
    from tn_export.export.graph import Deployable

    torch.set_num_threads(c.threads)
    start = time.perf_counter()
    deployable = Deployable(load_checkpoint(c.model).generator).eval()
    load_s = time.perf_counter() - start
    x = torch.from_numpy(model_input(c))
    with torch.inference_mode():
        times, out = time_runs(lambda: deployable(x), c.runs, c.warmup)
    np.save(c.output, out.numpy())
    return {"load_s": load_s, "times_s": times, "settings": {"eager": True, "threads": c.threads}}


def run_coreml(cell: dict) -> dict:
    c = Cell(**cell)
    if sys.platform != "darwin":
        raise Unavailable(coreml_unavailable_reason())
    import coremltools as ct
    import numpy as np

    start = time.perf_counter()
    mlmodel = ct.models.MLModel(c.model, compute_units=ct.ComputeUnit.ALL)
    load_s = time.perf_counter() - start
    spec = mlmodel.get_spec().description
    feed = {spec.input[0].name: model_input(c)}
    output_name = spec.output[0].name
    times, out = time_runs(lambda: mlmodel.predict(feed)[output_name], c.runs, c.warmup)
    np.save(c.output, np.asarray(out, dtype=np.float32))
    # Core ML picks its own threads and compute units; `threads` does not apply.
    return {"load_s": load_s, "times_s": times, "settings": {"compute_units": "ALL"}}


def coreml_unavailable_reason() -> str:
    return (
        f"Core ML prediction runs only on macOS (this is {sys.platform}); "
        "run tn-bench on a Mac to measure it"
    )
