"""The Gatys et al. (2015) baseline: optimise the pixels of one image from noise to match the Gram
statistics of the texture, with the same descriptor, layers and loss the generator was trained on.

Runs in its own interpreter (isolated.py) so its peak memory is the optimisation's alone. The clock
starts at the first loss evaluation: loading the descriptor and computing the texture's Grams are
timed apart, just as the generator's model load is.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np

LBFGS_HISTORY = 10  # scipy's L-BFGS-B default (maxcor), the optimiser of Gatys et al.'s code
ADAM_LR = 0.02
MAX_CURVE_POINTS = 400


@dataclass(frozen=True)
class GatysRun:
    """One optimisation run, sent to the child as a dict."""

    texture: str
    descriptor: str
    descriptor_weights: str | None
    layers: list[str]
    height: int
    width: int
    optimizer: str  # "lbfgs" | "adam"
    iterations: int
    seconds: float
    threads: int
    target_loss: float | None  # stop when reached; None: run the whole budget (memory run)
    image_out: str | None  # .npy of the image at parity (or at the end)
    seed: int = 0


class _Stop(Exception):
    """Raised inside the loss closure to end the optimisation (parity, time budget, divergence)."""


def time_to_parity(times: list[float], losses: list[float], target: float) -> float | None:
    """Wall time at which the loss first reaches `target`; None if it never does."""
    for t, loss in zip(times, losses, strict=True):
        if loss <= target:
            return t
    return None


def speedup(parity_s: float | None, budget_s: float, latency_s: float) -> dict:
    """Time to parity over the generator's latency; a lower bound when parity was not reached."""
    if parity_s is None:
        return {"value": budget_s / latency_s, "bound": True}
    return {"value": parity_s / latency_s, "bound": False}


def thin(times: list[float], losses: list[float], points: int = MAX_CURVE_POINTS) -> dict:
    """At most `points` evenly spaced samples of the loss curve, keeping the first and last."""
    keep = np.unique(np.linspace(0, len(times) - 1, min(points, len(times))).round().astype(int))
    return {"t_s": [times[i] for i in keep], "loss": [losses[i] for i in keep]}


def synthesize(run: dict) -> dict:
    """Run Gatys et al.'s synthesis; returns the loss curve, time to parity and budget spent."""
    import torch

    from tn_export.descriptor import load_descriptor
    from tn_export.images import load_image, to_array
    from tn_export.losses import gram_matrix, texture_loss

    r = GatysRun(**run)
    torch.set_num_threads(r.threads)
    start = time.perf_counter()
    descriptor = load_descriptor(r.descriptor, r.layers, r.descriptor_weights)
    texture = torch.from_numpy(to_array(load_image(r.texture))).unsqueeze(0)
    with torch.no_grad():
        targets = {k: gram_matrix(v) for k, v in descriptor(texture).items()}
    setup_s = time.perf_counter() - start

    g = torch.Generator().manual_seed(r.seed)
    x = torch.rand(1, 3, r.height, r.width, generator=g).requires_grad_(True)
    if r.optimizer == "lbfgs":
        opt = torch.optim.LBFGS(
            [x],
            max_iter=r.iterations,
            max_eval=4 * r.iterations,
            history_size=LBFGS_HISTORY,
            line_search_fn="strong_wolfe",
        )
    else:
        opt = torch.optim.Adam([x], lr=ADAM_LR)
    times: list[float] = []
    losses: list[float] = []
    at_parity: np.ndarray | None = None

    def closure() -> torch.Tensor:
        nonlocal at_parity
        if time.perf_counter() - t0 > r.seconds:
            raise _Stop
        opt.zero_grad()
        # Unbounded pixels (torch's L-BFGS has no bounds; a clamp inside the loss stalls it): the
        # optimiser's own loss is the lowest it sees, so parity comes early if anything.
        loss = texture_loss(descriptor(x), targets, r.layers)
        loss.backward()
        times.append(time.perf_counter() - t0)
        losses.append(loss.item())
        if r.target_loss is not None and losses[-1] <= r.target_loss:
            at_parity = x.detach().clamp(0, 1).numpy()[0].copy()
            raise _Stop
        if not math.isfinite(losses[-1]):
            raise _Stop
        return loss

    t0 = time.perf_counter()
    try:
        if r.optimizer == "lbfgs":
            opt.step(closure)  # one call runs all iterations; the closure stops it early
        else:
            for _ in range(r.iterations):
                opt.step(closure)
    except _Stop:
        pass
    elapsed_s = time.perf_counter() - t0
    parity_s = time_to_parity(times, losses, r.target_loss) if r.target_loss is not None else None
    if r.image_out:
        image = at_parity if at_parity is not None else x.detach().clamp(0, 1).numpy()[0]
        np.save(r.image_out, image)
    return {
        "setup_s": setup_s,
        "elapsed_s": elapsed_s,
        "iterations": opt.state[x]["n_iter"] if r.optimizer == "lbfgs" else len(losses),
        "evaluations": len(losses),
        "final_loss": losses[-1],
        "best_loss": min(losses),
        "parity_s": parity_s,
        "curve": thin(times, losses),
    }
