"""Shared fixtures: where ../shared is, the real VGG-16 weights, a clean onnxruntime cache and
one torch export per distinct graph."""

from __future__ import annotations

import dataclasses
import hashlib
import marshal
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


# Contract fields that only go into the metadata; the rest (the signature) shapes the graph.
METADATA_ONLY = {
    "min_size",
    "max_size",
    "name",
    "description",
    "tool_version",
    "training",
    "tiling",
}


def graph_key(deployable, contract, *signature) -> str:
    """What a torch export depends on: the module's weights, structure and forward code, the
    contract's signature, and export_onnx's arguments."""
    h = hashlib.sha256(repr(deployable).encode())
    for name, tensor in deployable.state_dict().items():
        h.update(name.encode() + tensor.detach().cpu().contiguous().numpy().tobytes())
    for module in deployable.modules():
        forward = module.__dict__.get("forward", type(module).forward)
        code = getattr(forward, "__code__", None)
        h.update(marshal.dumps(code) if code else repr(forward).encode())
        h.update(repr(module.training).encode())
    fields = {k: v for k, v in dataclasses.asdict(contract).items() if k not in METADATA_ONLY}
    h.update(repr(sorted(fields.items())).encode())
    for arg in signature:
        tensors = arg.items() if isinstance(arg, dict) else ()
        h.update(repr(arg).encode())
        for name, x in tensors:
            if hasattr(x, "numpy"):  # example inputs: their values too
                h.update(name.encode() + x.contiguous().numpy().tobytes())
    return h.hexdigest()


@pytest.fixture(autouse=True, scope="session")
def _one_trace_per_graph():
    """torch.export of the same graph runs once per session (16-35 s each on 2 cores; the same
    inputs give the same graph): later exports of it get a copy and their own metadata, so
    everything but the trace itself stays real."""
    import onnx

    from tn_export.export import onnx as onnx_format

    real, graphs = onnx_format.trace, {}

    def trace(deployable, contract, *signature):
        key = graph_key(deployable, contract, *signature)
        if key not in graphs:
            graphs[key] = real(deployable, contract, *signature)
        copy = onnx.ModelProto()
        copy.CopyFrom(graphs[key])
        return copy

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(onnx_format, "trace", trace)
        yield


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
