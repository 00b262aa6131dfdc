"""Training speed settings: bf16 autocast stays close to fp32; the throughput benchmark reports."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from benchmarks.cli import main as bench_main
from benchmarks.train_speed import SETTINGS
from tn_export.checkpoint import load_checkpoint
from training.cli import main


@pytest.fixture(scope="module")
def texture(tmp_path_factory) -> Path:
    y, x = np.mgrid[0:96, 0:96]
    image = (np.sin(x / 3.0 + y / 5.0) * 0.5 + 0.5)[..., None] * np.array([1.0, 0.5, 0.2])
    path = tmp_path_factory.mktemp("tex") / "waves.png"
    Image.fromarray((image * 255).astype(np.uint8)).save(path)
    return path


def first_loss(texture: Path, out: Path, precision: str) -> float:
    argv = [
        "texture", "--texture", str(texture), "-o", str(out), "--descriptor", "random",
        "--image-size", "64", "--batch-size", "2", "--iterations", "1",
        "--descriptor-precision", precision, "--generator-precision", precision,
    ]  # fmt: skip
    assert main(argv) == 0
    return json.loads((out / "log.jsonl").read_text().splitlines()[0])["loss"]


def test_bf16_autocast_changes_the_loss_only_at_bf16_rounding(texture, tmp_path):
    fp32 = first_loss(texture, tmp_path / "fp32", "fp32")
    bf16 = first_loss(texture, tmp_path / "bf16", "bf16")
    # Same weights, same noise: bf16 really ran (the loss moved) and only by its rounding.
    assert 0 < abs(bf16 - fp32) / fp32 < 2e-2
    state = load_checkpoint(tmp_path / "bf16" / "model.pt").generator.state_dict()
    assert all(v.dtype in (torch.float32, torch.int64) for v in state.values())


def test_train_speed_command_reports_every_setting(vgg16_weights, texture, tmp_path, capsys):
    argv = [
        "train-speed", "-o", str(tmp_path), "--texture", str(texture), "--descriptor-weights",
        str(vgg16_weights), "--image-size", "64", "--batch-size", "2", "--iterations", "1",
        "--rounds", "1",
    ]  # fmt: skip
    assert bench_main(argv) == 0
    result = json.loads((tmp_path / "train_speed.json").read_text())
    assert result["image_size"] == 64 and result["batch_size"] == 2
    assert list(result["settings"]) == list(SETTINGS)
    for name, entry in result["settings"].items():
        assert entry["config"] == SETTINGS[name]
        assert len(entry["seconds_per_iteration_by_round"]) == 1
        assert entry["iterations_per_second"] > 0
    assert result["settings"]["fp32"]["speedup"] == 1
    table = (tmp_path / "train_speed.md").read_text()
    assert table.strip() in capsys.readouterr().out and "| bf16 |" in table
