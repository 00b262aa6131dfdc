"""The Gatys et al. (2015) baseline: optimise one image from noise to match the Gram statistics of
the texture, judged on the image a user would receive.

At every loss evaluation the current image is clamped to [0, 1], rounded to 8 bits (as the
generator's images are delivered) and scored with the quality yardstick, the absolute Gram
distance (benchmarks/quality.py); parity is the first moment that delivered image reaches the
generator's mean sample loss. The optimiser minimises that same absolute Gram loss (on the
pixels it optimises): on red peppers at 256x256 L-BFGS reached the bundled model's level in 32
evaluations and the paper's model's in 39, against 59 and 85 when minimising the per-layer
relative loss. Two parametrisations:

- "unbounded": the pixels themselves (torch's L-BFGS has no bounds; clamped only on delivery);
- "sigmoid": pixels = sigmoid(z) with z optimised, so the image is always in range.

Runs in its own interpreter (isolated.py) so its peak memory is the optimisation's alone; all
seeds of one parametrisation run in that interpreter, one after the other. The clock starts at a
run's first loss evaluation and stands still while the delivered image is scored (that is the
benchmark measuring, not Gatys working). Loading the descriptor, the texture's Grams and one
warm-up evaluation at the run's size are timed apart, as the generator's load and warm-up are.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

    from tn_export.descriptor import VGGDescriptor

LBFGS_HISTORY = 10  # scipy's L-BFGS-B default (maxcor), the optimiser of Gatys et al.'s code
LBFGS_STEP = 20  # iterations per optimizer.step call (torch's default); the history carries over
ADAM_LR = 0.02
MAX_CURVE_POINTS = 400
PIXELS = ("sigmoid", "unbounded")
SIGMOID_EPS = 1e-3  # the starting noise's logit is clipped here: sigmoid(z) never reaches 0 or 1


@dataclass(frozen=True)
class GatysRun:
    """The runs of one parametrisation, one per seed, sent to the child as a dict."""

    texture: str
    descriptor: str
    descriptor_weights: str | None
    layers: list[str]
    height: int
    width: int
    optimizer: str  # "lbfgs" | "adam"
    pixels: str  # one of PIXELS
    iterations: int
    seconds: float  # wall-time budget of each seed's run
    threads: int
    target_loss: float | None  # stop when the delivered image reaches it; None: whole budget
    seeds: list[int]
    image_dir: str | None  # writes image_name(...): the image at parity (or the last)
    min_iterations: int = 0  # go on past parity until then (a memory run fills L-BFGS's history)


class _Stop(Exception):
    """Raised inside the loss closure to end the optimisation (parity, time budget, divergence)."""


def time_to_parity(times: list[float], losses: list[float], target: float) -> float | None:
    """Wall time at which the loss first reaches `target`; None if it never does."""
    for t, loss in zip(times, losses, strict=True):
        if loss <= target:
            return t
    return None


def thin(curve: Mapping[str, list[float]], points: int = MAX_CURVE_POINTS) -> dict:
    """At most `points` evenly spaced samples of each of the curve's series, first and last kept."""
    n = len(curve["t_s"])
    keep = np.unique(np.linspace(0, n - 1, min(points, n)).round().astype(int))
    return {k: [v[i] for i in keep] for k, v in curve.items()}


def image_name(pixels: str, seed: int, size: int) -> str:
    return f"gatys_{pixels}_{size}_{seed}.png"


def optimise(
    objective: Callable[[torch.Tensor], torch.Tensor], r: GatysRun, start: torch.Tensor
) -> tuple[dict, torch.Tensor]:
    """One run from the (1, 3, H, W) image `start` minimising `objective` (an image's loss): its
    record and the delivered image at parity (or at the last evaluation when parity was not
    reached within the budget)."""
    import torch

    from .quality import delivered

    sigmoid = r.pixels == "sigmoid"
    z = torch.logit(start, eps=SIGMOID_EPS) if sigmoid else start.clone()
    z = z.contiguous().requires_grad_(True)  # L-BFGS flattens it with view()
    if r.optimizer == "lbfgs":
        opt = torch.optim.LBFGS(
            [z], max_iter=LBFGS_STEP, history_size=LBFGS_HISTORY, line_search_fn="strong_wolfe"
        )
        steps = math.ceil(r.iterations / LBFGS_STEP)
    else:
        opt = torch.optim.Adam([z], lr=ADAM_LR)
        steps = r.iterations

    def iterations() -> int:
        return opt.state[z].get("n_iter", 0) if r.optimizer == "lbfgs" else len(curve["t_s"])

    curve: dict[str, list[float]] = {"t_s": [], "loss": [], "optimiser_loss": []}
    shown = delivered(start)
    kept: tuple[torch.Tensor, float] | None = None  # the delivered image at parity, its loss
    paused = 0.0  # seconds spent scoring delivered images, off the clock

    def clock() -> float:
        return time.perf_counter() - t0 - paused

    def closure() -> torch.Tensor:
        nonlocal shown, kept, paused
        if clock() > r.seconds:
            raise _Stop
        opt.zero_grad()
        image = torch.sigmoid(z) if sigmoid else z
        loss = objective(image)
        loss.backward()
        curve["t_s"].append(clock())
        scoring = time.perf_counter()
        shown = delivered(image.detach())
        with torch.no_grad():
            curve["loss"].append(float(objective(shown)))
        curve["optimiser_loss"].append(loss.item())
        paused += time.perf_counter() - scoring
        if kept is None and r.target_loss is not None and curve["loss"][-1] <= r.target_loss:
            kept = (shown, curve["loss"][-1])
        if kept is not None and iterations() >= r.min_iterations:
            raise _Stop
        if not math.isfinite(curve["optimiser_loss"][-1]):
            raise _Stop
        return loss

    t0 = time.perf_counter()
    try:
        for _ in range(steps):
            opt.step(closure)
    except _Stop:
        pass
    target = r.target_loss
    image, loss = kept or (shown, curve["loss"][-1])
    record = {
        "elapsed_s": clock(),
        "iterations": iterations(),
        "evaluations": len(curve["t_s"]),
        "parity_s": None if target is None else time_to_parity(curve["t_s"], curve["loss"], target),
        "loss": loss,  # of the image returned
        "best_loss": min(curve["loss"]),
        "curve": thin(curve),
    }
    return record, image


def synthesize(run: dict) -> dict:
    """Run Gatys et al.'s synthesis once per seed (in the child); the runs' records."""
    import torch

    from tn_export.descriptor import load_descriptor
    from tn_export.images import from_array, load_image, save_image, to_array
    from tn_export.losses import gram_matrix, texture_loss

    r = GatysRun(**run)
    torch.set_num_threads(r.threads)
    begin = time.perf_counter()
    descriptor = load_descriptor(r.descriptor, r.layers, r.descriptor_weights)
    texture = torch.from_numpy(to_array(load_image(r.texture))).unsqueeze(0)
    with torch.no_grad():
        targets = {k: gram_matrix(v) for k, v in descriptor(texture).items()}
    warm = torch.rand(1, 3, r.height, r.width).requires_grad_(True)
    texture_loss(descriptor(warm), targets, r.layers).backward()
    setup_s = time.perf_counter() - begin

    runs = []
    for seed in r.seeds:
        start = torch.rand(1, 3, r.height, r.width, generator=torch.Generator().manual_seed(seed))
        record, image = optimise(
            lambda image: texture_loss(descriptor(image), targets, r.layers), r, start
        )
        record["seed"] = seed
        if r.image_dir:
            save_image(
                from_array(image[0].numpy()),
                Path(r.image_dir) / image_name(r.pixels, seed, r.height),
            )
        runs.append(record)
    return {"pixels": r.pixels, "setup_s": setup_s, "runs": runs}


def style_objective(
    descriptor: VGGDescriptor, train: Mapping, style: torch.Tensor, photo: torch.Tensor
) -> Callable[[torch.Tensor], torch.Tensor]:
    """The loss a style generator was trained on (its checkpoint's `train_config`: layers, weights,
    relative or absolute Gram errors), for one photo, as a function of the stylized image: what
    Gatys et al.'s style transfer minimises directly."""
    import torch

    from tn_export.descriptor import CONTENT_LAYER, STYLE_LAYERS
    from tn_export.losses import content_loss, gram_matrix, texture_loss

    layers = list(train.get("layers") or STYLE_LAYERS)
    content_layer = train.get("content_layer", CONTENT_LAYER)
    relative = train.get("relative_loss")
    relative = True if relative is None else relative  # TrainConfig's default for style
    style_weight, content_weight = train.get("style_weight", 1.0), train.get("content_weight", 1.0)
    with torch.no_grad():
        grams = {k: gram_matrix(v) for k, v in descriptor(style).items() if k in layers}
        content = descriptor(photo)[content_layer]

    def objective(image: torch.Tensor) -> torch.Tensor:
        features = descriptor(image)
        return style_weight * texture_loss(
            features, grams, layers, relative
        ) + content_weight * content_loss(features[content_layer], content)

    return objective


def stylize(
    objective: Callable[[torch.Tensor], torch.Tensor], photo: torch.Tensor, run: GatysRun
) -> tuple[dict, torch.Tensor]:
    """Gatys et al.'s style transfer of the (1, 3, H, W) `photo`, started from the photo, on
    each parametrisation in turn (`run` with its `pixels` replaced), until the delivered image
    reaches `run.target_loss`: the record of each, the fastest one's name under "baseline", and
    that one's image."""
    records, images = {}, {}
    for pixels in PIXELS:
        records[pixels], images[pixels] = optimise(objective, replace(run, pixels=pixels), photo)
        del records[pixels]["curve"]

    def speed(pixels: str) -> tuple:
        parity = records[pixels]["parity_s"]
        return (parity is None, parity or 0.0, records[pixels]["loss"])

    best = min(PIXELS, key=speed)
    return {"variants": records, "baseline": best}, images[best]
