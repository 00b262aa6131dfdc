"""Shared fixtures: where ../shared is, the real VGG-16 weights, and a clean onnxruntime cache."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("TN_SHARED", REPO.parent / "shared")).resolve()


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """../shared (or $TN_SHARED): real images, VGG-16 weights, the paper's models. Never copied."""
    if not SHARED.is_dir():
        pytest.skip(f"shared data folder {SHARED} is absent (set TN_SHARED to ../shared)")
    return SHARED


@pytest.fixture(scope="session")
def vgg16_weights(shared_dir: Path) -> Path:
    path = shared_dir / "descriptors" / "vgg16_imagenet_features.pth"
    if not path.is_file():
        pytest.skip(f"{path} is absent: the real VGG-16 weights are needed for this quality test")
    return path


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch):
    # onnxruntime writes a device id under ~/.cache; keep tests out of the home directory.
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.getbasetemp() / "xdg-cache"))


def settle(generator, passes: int) -> None:
    """Give a random generator real batch-norm statistics (the plain average over `passes`
    training-mode passes, so they vary over space) and an output near [0, 1], so that pixel
    comparisons of its exports mean something."""
    import torch

    for m in generator.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.momentum = None
    texture = generator.config.mode == "texture"
    with torch.no_grad():
        for _ in range(passes):
            generator(torch.randn(2, 3, 64, 64) if texture else torch.rand(2, 3, 64, 64))
        generator.to_rgb.weight.mul_(0.25)
        generator.to_rgb.bias.fill_(0.5)


def onnx_copier(source: Path):
    """A stand-in for tn-export's (slow) torch.export step: it writes the ONNX graph at `source`
    with the contract the run asks for, so everything after it runs for real. (The exact-tiling
    parts, exported through the same function, are copied from beside `source` where they are,
    else get its graph: only their names matter then.)"""
    import onnx

    def export_onnx(generator, path, contract, dynamic_batch=True, *_, metadata=None, **__):
        part = (metadata or {}).get("tn_export.part")
        beside = source.with_suffix(f".{part}.onnx") if part else source
        model = onnx.load(beside if beside.is_file() else source)
        del model.metadata_props[:]
        for key, value in (contract.to_metadata() | (metadata or {})).items():
            model.metadata_props.add(key=key, value=value)
        onnx.save(model, path)

    return export_onnx
