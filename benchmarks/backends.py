"""The networks' backends, each timed in its own interpreter with a fixed thread count.

The functions named in BACKENDS run inside the child (see isolated.py): they load the model (timed
apart), warm up, time `runs` calls, and save the output for one fixed input so the parent can
compare backends. onnxruntime runs through `tn_export.runtime`, the code apps run (its session
options, padding, cropping and 8-bit image included); PyTorch eager is the reference. Only the
libraries a backend needs are imported, so its memory is its own.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

from .isolated import Unavailable

# What an idle interpreter imports for each runtime's memory baseline: what its child imports.
LIBRARIES = {
    "torch": (
        "torch",
        "tn_export.checkpoint",
        "tn_export.export.graph",
        "tn_export.descriptor",
        "tn_export.losses",
        "benchmarks.peers",
    ),
    "onnxruntime": ("tn_export.runtime",),
    "coreml": ("numpy", "coremltools"),
    "openvino": ("numpy", "tn_export.export.openvino"),
    "executorch": ("numpy", "torch", "executorch.runtime"),
}


@dataclass(frozen=True)
class Backend:
    """One way to run a network: which child function, which model file, which runtime."""

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
        Backend("openvino", "benchmarks.backends:run_openvino", "openvino", "openvino"),
        Backend("executorch", "benchmarks.backends:run_executorch", "executorch", "executorch"),
    )
}
# Names users type: a family expands to its variants.
GROUPS = {
    "torch": ["torch"],
    "onnxruntime": ["onnxruntime-fp32", "onnxruntime-fp16", "onnxruntime-int8"],
    "coreml": ["coreml"],
    "openvino": ["openvino"],
    "executorch": ["executorch"],
}
PEER_BACKENDS = ("torch", "onnxruntime-fp32")  # the peer runs on these (when chosen) only


@dataclass(frozen=True)
class Cell:
    """One measurement: a backend's model file at one size, sent to the child as a dict."""

    model: str  # checkpoint (the peer's: a state dict), .onnx or .mlpackage path
    mode: str  # "texture" | "style"
    channels: int
    height: int
    width: int
    runs: int
    warmup: int
    threads: int
    output: str  # .npy path for the output of the fixed input
    network: str = "pyramid"  # or a peer's name (benchmarks/peers.py)


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
    """Time what an app calls: `synthesize` (noise drawn, run, cropped, made 8-bit) for texture
    models, `stylize` of an 8-bit photo for style models."""
    c = Cell(**cell)
    import numpy as np

    from tn_export.images import MAX_PIXELS, from_array
    from tn_export.runtime import load

    start = time.perf_counter()
    # One tile, the whole image: a cell measures one pass of the network, so that its latency,
    # memory and FLOPs belong together (by default the runtime tiles images over 256 MB;
    # benchmarks/tiling.py measures the tiles).
    model = load(c.model, threads=c.threads, tile_pixels=MAX_PIXELS, max_memory=math.inf)
    load_s = time.perf_counter() - start
    x = model_input(c)
    if model.contract.mode == "texture":
        times, _ = time_runs(lambda: model.synthesize(c.width, c.height, seed=0), c.runs, c.warmup)
    else:
        photo = from_array(x[0])
        times, _ = time_runs(lambda: model.stylize(photo), c.runs, c.warmup)
    # Backends are compared on float outputs: the 8-bit image would hide errors below 1/255.
    np.save(c.output, model.run(x))
    return {"load_s": load_s, "times_s": times, "settings": session_settings(model.session)}


def session_settings(session) -> dict:
    """The options the runtime's session really runs with, read back from it."""
    o = session.get_session_options()
    return {
        "graph_optimization_level": o.graph_optimization_level.name,
        "enable_cpu_mem_arena": o.enable_cpu_mem_arena,
        "enable_mem_pattern": o.enable_mem_pattern,
        "execution_mode": o.execution_mode.name,
        "threads": o.intra_op_num_threads,
        "inter_op_num_threads": o.inter_op_num_threads,
        "providers": session.get_providers(),
        "via": "tn_export.runtime",
    }


def run_torch(cell: dict) -> dict:
    c = Cell(**cell)
    import numpy as np
    import torch

    from tn_export.export.graph import Deployable

    torch.set_num_threads(c.threads)
    start = time.perf_counter()
    if c.network == "pyramid":
        from tn_export.checkpoint import load_checkpoint

        network = load_checkpoint(c.model).generator
    else:
        from . import peers

        network = peers.load(c.model)
    deployable = Deployable(network).eval()
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


def run_openvino(cell: dict) -> dict:
    """The IR (fp16 weights) on OpenVINO's CPU plugin, compiled as tn-export validated it."""
    c = Cell(**cell)
    import numpy as np

    from tn_export.export.openvino import CONFIG, compile_cpu

    start = time.perf_counter()
    compiled = compile_cpu(c.model, threads=c.threads)
    load_s = time.perf_counter() - start
    x = model_input(c)
    times, out = time_runs(lambda: compiled(x)[0], c.runs, c.warmup)
    np.save(c.output, np.asarray(out, dtype=np.float32))
    return {"load_s": load_s, "times_s": times, "settings": {**CONFIG, "threads": c.threads}}


def run_executorch(cell: dict) -> dict:
    """The .pte (fp32, XNNPACK delegate) run by ExecuTorch's runtime, on a thread pool of
    `threads`. Its Python runtime takes torch tensors, hence torch among its imports."""
    c = Cell(**cell)
    import numpy as np
    import torch
    from executorch.extension.pybindings.portable_lib import _unsafe_reset_threadpool
    from executorch.runtime import Runtime

    _unsafe_reset_threadpool(c.threads)
    start = time.perf_counter()
    forward = Runtime.get().load_program(c.model).load_method("forward")
    load_s = time.perf_counter() - start
    x = torch.from_numpy(model_input(c))
    times, out = time_runs(lambda: forward.execute([x])[0], c.runs, c.warmup)
    np.save(c.output, out.numpy())
    return {
        "load_s": load_s,
        "times_s": times,
        "settings": {"delegate": "XNNPACK", "threads": c.threads},
    }


def coreml_unavailable_reason() -> str:
    return (
        f"Core ML prediction runs only on macOS (this is {sys.platform}); "
        "run tn-bench on a Mac to measure it"
    )
