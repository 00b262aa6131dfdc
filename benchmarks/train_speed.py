"""Training throughput: tn-train iterations per second (texture mode, VGG-16) per precision setting.

Settings are measured in rounds that interleave them inside one process, so a machine that other
work slows down slows every setting alike and the ratios stay meaningful.
"""

from __future__ import annotations

import json
import statistics
import tempfile
from pathlib import Path

# Settings compared; "fp32" is the foundation's default, the other two what this CPU offers.
SETTINGS: dict[str, dict[str, str]] = {
    "fp32": {"descriptor_precision": "fp32", "generator_precision": "fp32"},
    "bf16 descriptor": {"descriptor_precision": "bf16", "generator_precision": "fp32"},
    "bf16": {"descriptor_precision": "bf16", "generator_precision": "bf16"},
}


def train_speed(
    weights: str,
    texture: str,
    settings: dict[str, dict[str, str]] | None = None,
    image_size: int = 256,
    batch_size: int = 4,
    iterations: int = 4,
    warmup: int = 2,
    rounds: int = 3,
) -> dict:
    """Iterations per second of the real training loop for each setting (TrainConfig fields).

    Each round trains every setting for `warmup + iterations` steps; a setting's speed is the
    median over rounds of its steps after the warmup. `weights` is a torchvision-layout VGG-16
    state dict, `texture` any image of at least 64 px. Returns a JSON-ready dict.
    """
    from training.train import TrainConfig, train

    settings = settings or SETTINGS
    steps: dict[str, list[float]] = {name: [] for name in settings}
    with tempfile.TemporaryDirectory(prefix="tn-train-speed-") as tmp:
        for r in range(rounds):
            for i, (name, fields) in enumerate(settings.items()):
                out = Path(tmp) / f"{r}-{i}"
                total = warmup + iterations
                cfg = TrainConfig(
                    mode="texture", exemplar=Path(texture), out=out, image_size=image_size,
                    batch_size=batch_size, iterations=total, descriptor="vgg16",
                    descriptor_weights=weights, log_every=1, sample_every=total,
                    checkpoint_every=total, **fields,
                )  # fmt: skip
                train(cfg)
                rows = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
                ends = [row["seconds"] for row in rows]  # since the loop started
                durations = [b - a for a, b in zip([0.0, *ends], ends, strict=False)]
                steps[name].append(statistics.median(durations[warmup:]))
    first = next(iter(settings))
    per_step = {name: statistics.median(values) for name, values in steps.items()}
    return {
        "image_size": image_size,
        "batch_size": batch_size,
        "descriptor": "vgg16",
        "rounds": rounds,
        "settings": {
            name: {
                "config": settings[name],
                "seconds_per_iteration_by_round": [round(v, 4) for v in steps[name]],
                "iterations_per_second": 1 / per_step[name],
                "speedup": per_step[first] / per_step[name],
            }
            for name in settings
        },
    }
