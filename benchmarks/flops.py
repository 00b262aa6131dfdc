"""The roofline: the generator's arithmetic counted from its graph, and the machine's fp32 peak."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import numpy as np
import onnxruntime as ort
import torch
from onnx import TensorProto, helper
from torch.utils.flop_counter import FlopCounterMode

from tn_export.export.graph import Deployable
from tn_export.generator import GeneratorConfig, PyramidGenerator
from tn_export.runtime.session import session_options


def count_flops(model: torch.nn.Module, shape: tuple[int, ...]) -> int:
    """FLOPs of one forward pass (a multiply-add counts 2), counted by torch's FlopCounterMode on
    the meta device: the graph is walked with shapes only, so even 4096x4096 costs nothing."""
    meta = model.to("meta").eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        meta(torch.empty(shape, device="meta"))
    return int(counter.get_total_flops())


def generator_flops(config: GeneratorConfig, height: int, width: int) -> int:
    """FLOPs of the deployed generator (what every exporter traces) for one image."""
    model = Deployable(PyramidGenerator.from_config(config))
    return count_flops(model, (1, config.input_channels, height, width))


def conv_flops(cin: int, cout: int, kernel: int, out_h: int, out_w: int, batch: int = 1) -> int:
    """Hand count for one convolution: every output value is a kernel*kernel*cin dot product."""
    return 2 * batch * cout * out_h * out_w * cin * kernel * kernel


def _rates(matmul: Callable[[], object], n: int, reps: int) -> list[float]:
    """GFLOP/s of `reps` timed n x n matmuls after one warm-up (thread pool, packing buffers)."""
    matmul()
    rates = []
    for _ in range(reps):
        start = time.perf_counter()
        matmul()
        rates.append(2 * n**3 / (time.perf_counter() - start) / 1e9)
    return rates


def _onnxruntime_matmul(a: np.ndarray, b: np.ndarray, threads: int) -> Callable[[], object]:
    """One ONNX MatMul node in onnxruntime: MLAS, the sgemm the exported generator runs on."""
    shape = list(a.shape)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["a", "b"], ["c"])],
        "matmul",
        [helper.make_tensor_value_info(x, TensorProto.FLOAT, shape) for x in "ab"],
        [helper.make_tensor_value_info("c", TensorProto.FLOAT, shape)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)
    options = session_options(threads)
    session = ort.InferenceSession(model.SerializeToString(), options, ["CPUExecutionProvider"])
    return lambda: session.run(None, {"a": a, "b": b})


def matmul_peak(n: int = 4096, reps: int = 7, threads: int = 1) -> dict:
    """The machine's fp32 peak: the best n x n matmul rate of torch, numpy and onnxruntime (run
    in its own interpreter). One library alone can be far from the others on a CPU (on this
    project's AMD EPYC VM: torch 179, numpy 217, onnxruntime 334 GFLOP/s), and a roof below
    what the convolutions reach would flatter every share of it."""
    torch.set_num_threads(threads)
    a, b = torch.randn(n, n), torch.randn(n, n)
    x, y = a.numpy(), b.numpy()
    matmuls = {
        "torch": lambda: torch.mm(a, b),
        "numpy": lambda: x @ y,
        "onnxruntime": _onnxruntime_matmul(x, y, threads),
    }
    libraries = {}
    for name, matmul in matmuls.items():
        rates = _rates(matmul, n, reps)
        libraries[name] = {"gflops_best": max(rates), "gflops_median": statistics.median(rates)}
    best = max(libraries, key=lambda k: libraries[k]["gflops_best"])
    return {
        "n": n,
        "reps": reps,
        "threads": threads,
        "library": best,
        **libraries[best],
        "libraries": libraries,
    }
