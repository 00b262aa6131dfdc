"""Training throughput: tn-train iterations per second (texture mode, VGG-16) per precision setting.

Each run is the real `tn-train` command in its own process; its log's per-iteration wall times
(counted from the start of the loop, so start-up is excluded) give the speed. Settings are
measured in rounds that interleave them, so a machine that other work slows down slows every
setting alike and the ratios stay meaningful.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from tqdm import tqdm

from tn_export.errors import UserError

# Settings compared; "fp32" is the foundation's default, the other two what this CPU offers.
SETTINGS: dict[str, dict[str, str]] = {
    "fp32": {"descriptor_precision": "fp32", "generator_precision": "fp32"},
    "bf16 descriptor": {"descriptor_precision": "bf16", "generator_precision": "fp32"},
    "bf16": {"descriptor_precision": "bf16", "generator_precision": "bf16"},
}


def _seconds_per_step(argv: list[str], out: Path, warmup: int) -> float:
    """Run tn-train (the console script of this environment) and time its steps after warmup."""
    script = Path(sys.executable).with_name("tn-train")
    if not script.exists():
        raise UserError(f"{script} not found; install tn-export with its train extra")
    done = subprocess.run([str(script), *argv], capture_output=True, text=True)
    if done.returncode:
        last = (done.stderr.strip().splitlines() or ["(no message)"])[-1]
        raise RuntimeError(f"tn-train failed during the speed benchmark: {last}")
    ends = [json.loads(line)["seconds"] for line in (out / "log.jsonl").read_text().splitlines()]
    durations = [b - a for a, b in zip([0.0, *ends], ends, strict=False)]
    return statistics.median(durations[warmup:])


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
    settings = settings or SETTINGS
    steps: dict[str, list[float]] = {name: [] for name in settings}
    total = warmup + iterations
    with tempfile.TemporaryDirectory(prefix="tn-train-speed-") as tmp:
        runs = [(r, name) for r in range(rounds) for name in settings]
        for r, name in tqdm(runs, desc="tn-bench train-speed", unit="run"):
            out = Path(tmp) / f"{r}-{len(steps[name])}-{name.replace(' ', '_')}"
            argv = [
                "texture", "--texture", texture, "-o", str(out), "--descriptor", "vgg16",
                "--descriptor-weights", weights, "--image-size", str(image_size),
                "--batch-size", str(batch_size), "--iterations", str(total), "--log-every", "1",
                "--sample-every", str(total), "--checkpoint-every", str(total),
            ]  # fmt: skip
            for field, value in settings[name].items():
                argv += [f"--{field.replace('_', '-')}", value]
            steps[name].append(_seconds_per_step(argv, out, warmup))
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


def speed_table(result: dict) -> str:
    """A markdown table of one train_speed result."""
    rows = [
        f"Training throughput, {result['image_size']}x{result['image_size']}, batch "
        f"{result['batch_size']}, VGG-16, median of {result['rounds']} rounds:",
        "",
        "| setting | iterations/s | speedup |",
        "| --- | --- | --- |",
    ]
    for name, entry in result["settings"].items():
        rows.append(f"| {name} | {entry['iterations_per_second']:.3f} | {entry['speedup']:.2f}x |")
    return "\n".join(rows)
