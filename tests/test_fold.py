"""Batch norms folded into the convolutions (tn_export/export/fold.py): exact on the bundled trained
models, left alone where folding is not exact, and gone from the exported ONNX graph."""

from __future__ import annotations

import collections

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn

from tn_export.checkpoint import load_model
from tn_export.export.fold import fold_batch_norms
from tn_export.export.onnx import WrapPad, lean
from tn_export.generator import PyramidGenerator

H, W = 96, 160  # non-square, and not the size anything was traced at


def norms(module: nn.Module, kind: type = nn.BatchNorm2d) -> int:
    return sum(isinstance(m, kind) for m in module.modules())


def noise(generator: PyramidGenerator, batch: int = 2, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    shape = (batch, generator.config.input_channels, H, W)
    x = torch.randn(shape, generator=g)
    return x if generator.config.mode == "texture" else torch.sigmoid(x)


@pytest.mark.parametrize("name", ["red_peppers", "starry_bn"])  # circular, reflect padding
def test_folding_is_exact_on_the_bundled_trained_models(name):
    generator = load_model(name)[0].generator.eval()
    before = norms(generator)
    folded = fold_batch_norms(generator)
    assert norms(folded) == 0 and norms(generator) == before > 0  # the original is untouched
    x = noise(generator)
    with torch.no_grad():
        # float64: the maths alone, which folding must not change (a border error would be 1e-2)
        exact = fold_batch_norms(generator.double())(x.double()) - generator(x.double())
        generator.float()
        rounding = folded(x) - generator(x)
    assert float(exact.abs().max()) <= 1e-10
    # float32: only rounding differs; the outputs span about [-0.3, 1.5]
    assert float(rounding.abs().max()) <= 1e-4


def settled(generator: PyramidGenerator) -> PyramidGenerator:
    """Running statistics away from (0, 1), so that a wrong fold shows."""
    torch.manual_seed(0)
    generator.train()
    with torch.no_grad():
        for _ in range(2):
            generator(torch.randn(2, generator.config.input_channels, 32, 32) * 3 + 1)
    return generator.eval()


def test_zero_padding_keeps_the_join_norms_and_instance_norms_stay():
    zero = settled(PyramidGenerator(scales=3, channels=4, padding="zero"))
    folded = fold_batch_norms(zero)
    # the joins' norms sit before a zero-padded conv, where t would be added to the border zeros
    assert norms(folded) == 2 * (zero.config.scales - 1)
    x = noise(zero)
    with torch.no_grad():
        exact = fold_batch_norms(zero.double())(x.double()) - zero(x.double())
        zero.float()
        assert float(exact.abs().max()) <= 1e-10
        assert float((folded(x) - zero(x)).abs().max()) <= 1e-5
    instance = PyramidGenerator(scales=3, channels=4, norm="instance").eval()
    kept = fold_batch_norms(instance)
    assert norms(kept, nn.InstanceNorm2d) == norms(instance, nn.InstanceNorm2d) > 0


def test_pad_wrap_matches_the_slices_in_onnxruntime_on_trained_weights(tmp_path):
    """The finest join of the bundled red_peppers model (its widest circular convolutions),
    exported with slice padding and with Pad(wrap), run by onnxruntime."""
    block = load_model("red_peppers")[0].generator.joins[-1].block.eval()
    x = torch.randn(2, block[1].in_channels, H, W)
    feed = torch.randn(3, block[1].in_channels, 40, 72)  # another size and batch
    with torch.no_grad():
        expected = block(feed).numpy()
    dims = {0: torch.export.Dim("n", min=2, max=8), 2: torch.export.Dim("h", min=4, max=512)}
    dims[3] = torch.export.Dim("w", min=4, max=512)
    results, ops = {}, {}
    # the same folded weights both ways: only the padding differs
    for name, module in {"slices": lean(block, "slices"), "wrap": lean(block)}.items():
        path = tmp_path / f"{name}.onnx"
        torch.onnx.export(
            module, (x,), path, dynamo=True, dynamic_shapes=({**dims},), verbose=False
        )
        model = onnx.load(path)
        ops[name] = collections.Counter(n.op_type for n in model.graph.node)
        session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        results[name] = session.run(None, {session.get_inputs()[0].name: feed.numpy()})[0]
        assert np.abs(results[name] - expected).max() <= 1e-5  # outputs within about [-0.1, 1]
    assert ops["wrap"]["Pad"] == 2 and not ops["wrap"]["Slice"] and ops["slices"]["Slice"] == 8
    assert np.abs(results["wrap"] - results["slices"]).max() <= 1e-6
    assert any(isinstance(m, WrapPad) for m in lean(block).modules())
