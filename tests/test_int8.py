"""int8 on a trained generator: the equalization is exact, the bundled red-peppers model passes its
PSNR rule, and a broken quantization is refused with nothing written."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from conftest import onnx_copier
from onnx import numpy_helper

import tn_export
from tn_export.export import onnx as onnx_format
from tn_export.export import precision
from tn_export.export.equalize import equalize
from tn_export.export.reference import MIN_PSNR_DB
from tn_export.export.validate import session

SIZES = (64, 128)  # validated at 64x64, 96x96 and 64x128: seconds, not minutes


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The bundled red-peppers model exported once, fp32 and int8 (each validated)."""
    out = tmp_path_factory.mktemp("int8")
    results = tn_export.export(
        "red_peppers", [("onnx", "fp32"), ("onnx", "int8")], out, sizes=SIZES, tiling_parts=False
    )
    return out, {r.precision: r for r in results}


def test_int8_of_the_trained_bundled_model_reaches_its_psnr_rule(trained):
    out, results = trained
    assert MIN_PSNR_DB["int8"] >= 35
    int8 = results["int8"]
    assert int8.accepted, int8.validation.summary
    assert min(int8.validation.details["psnr_db"].values()) >= MIN_PSNR_DB["int8"]
    record = json.loads((out / "red_peppers.export.json").read_text())
    (details,) = [
        a["validation"]["details"] for a in record["artifacts"] if a["precision"] == "int8"
    ]
    assert details["int8"]["quantized_convs"] == 2 and details["int8"]["convs"] == 34
    ops = {n.op_type for n in onnx.load(int8.path).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops


def test_equalization_keeps_the_function_and_narrows_the_spread(trained):
    out, _ = trained
    model = onnx.load(out / "red_peppers.fp32.onnx")
    name = model.graph.input[0].name
    x = np.random.default_rng(5).standard_normal((1, 3, 64, 96)).astype(np.float32)
    equalized, producers = equalize(model, [{name: x}], alpha=1.0)
    convs = sum(node.op_type == "Conv" for node in model.graph.node)
    assert producers >= 0.75 * convs  # most outputs can be rescaled (not to_rgb's, not pads')
    before = session(out / "red_peppers.fp32.onnx").run(None, {name: x})[0]
    after_path = out / "equalized.onnx"
    onnx.save(equalized, after_path)
    assert np.abs(session(after_path).run(None, {name: x})[0] - before).max() < 1e-4
    before_weights = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    changed = sum(
        not np.array_equal(numpy_helper.to_array(t), before_weights[t.name])
        for t in equalized.graph.initializer
        if t.name in before_weights
    )
    assert changed > 30  # weights really moved, yet the output did not
    after_path.unlink()


def test_a_broken_int8_is_refused_and_nothing_is_written(trained, tmp_path, monkeypatch):
    source, _ = trained
    monkeypatch.setattr(onnx_format, "export_onnx", onnx_copier(source / "red_peppers.fp32.onnx"))
    quantize = precision.to_int8

    def wrong_scale(src, dst, contract, **kwargs):
        details = quantize(src, dst, contract, **kwargs)
        model = onnx.load(dst)
        weights = {t.name: t for t in model.graph.initializer}
        # The first quantized weight read back 4x too large: the scale a wrong axis would give.
        node = next(
            n
            for n in model.graph.node
            if n.op_type == "DequantizeLinear"
            and n.input[0] in weights
            and weights[n.input[0]].data_type == onnx.TensorProto.INT8
        )
        scale = weights[node.input[1]]
        scale.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(scale) * 4, scale.name))
        onnx.save(model, dst)
        return details

    monkeypatch.setattr(onnx_format, "to_int8", wrong_scale)
    out = tmp_path / "out"
    (result,) = tn_export.export("red_peppers", [("onnx", "int8")], out, sizes=SIZES)
    assert result.validation.ok is False and "PSNR" in result.validation.summary
    assert not result.installed
    assert not out.exists() or not any(out.iterdir())
