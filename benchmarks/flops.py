"""The roofline: the generator's arithmetic counted from its graph, and the machine's fp32 peak."""

from __future__ import annotations

import statistics
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from tn_export.export.graph import Deployable
from tn_export.generator import GeneratorConfig, PyramidGenerator


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


def matmul_peak(n: int = 4096, reps: int = 7, threads: int = 1) -> dict:
    """The machine's fp32 peak as torch's n x n matmul rate (run in its own interpreter)."""
    torch.set_num_threads(threads)
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)  # warm-up: thread pool, packing buffers
    rates = []
    for _ in range(reps):
        start = time.perf_counter()
        torch.mm(a, b)
        rates.append(2 * n**3 / (time.perf_counter() - start) / 1e9)
    return {
        "n": n,
        "reps": reps,
        "gflops_best": max(rates),
        "gflops_median": statistics.median(rates),
        "threads": threads,
    }
