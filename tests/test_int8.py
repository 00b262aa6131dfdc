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
    # The finest two scales' joins (6 convolutions, about 95 % of the arithmetic) keep 35 dB.
    assert details["int8"]["layers"] == "fine"
    assert details["int8"]["quantized_convs"] == 6 and details["int8"]["convs"] == 34
    graph = onnx.load(int8.path).graph
    assert {"QuantizeLinear", "DequantizeLinear"} <= {n.op_type for n in graph.node}
    # Every padding before a quantized convolution copies int8 (the Pad reads a QuantizeLinear
    # or a Concat of them, the upsampled coarse branch included), none float32.
    producer = {o: n for n in graph.node for o in n.output}
    int8_pads = [n for n in graph.node if n.op_type == "Pad" and _int8(n.input[0], producer)]
    assert len(int8_pads) == 4, "two 3x3 convolutions in each of the two finest joins"


def _int8(tensor: str, producer: dict) -> bool:
    node = producer.get(tensor)  # None: a graph input
    if node is None:
        return False
    if node.op_type == "Concat":
        return all(_int8(t, producer) for t in node.input)
    if node.op_type == "Resize":
        return _int8(node.input[0], producer)
    return node.op_type == "QuantizeLinear"


def test_quantizing_before_a_copy_gives_the_same_numbers(tmp_path):
    """x -> Concat -> Pad(wrap) -> QuantizeLinear -> DequantizeLinear becomes per-input
    QuantizeLinear -> Concat -> Pad on u8 -> DequantizeLinear, with identical output, and so
    does a nearest Resize; a constant-mode Pad (its zeros would be float) and a linear Resize
    (it interpolates) are left as they were."""
    h = onnx.helper
    scale, zero = (
        numpy_helper.from_array(np.float32(0.05), "s"),
        numpy_helper.from_array(np.uint8(100), "z"),
    )
    pads = numpy_helper.from_array(np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64), "pads")
    twice = numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "twice")
    nodes = [
        h.make_node("Concat", ["a", "b"], ["c"], "cat", axis=1),
        h.make_node("Pad", ["c", "pads"], ["p"], "wrap", mode="wrap"),
        h.make_node("QuantizeLinear", ["p", "s", "z"], ["q"], "q"),
        h.make_node("DequantizeLinear", ["q", "s", "z"], ["y"], "dq"),
        h.make_node("Pad", ["a", "pads"], ["p0"], "zeros", mode="constant"),
        h.make_node("QuantizeLinear", ["p0", "s", "z"], ["q0"], "q0"),
        h.make_node("DequantizeLinear", ["q0", "s", "z"], ["y0"], "dq0"),
        h.make_node("Resize", ["a", "", "twice"], ["r"], "nearest", mode="nearest"),
        h.make_node("QuantizeLinear", ["r", "s", "z"], ["qr"], "qr"),
        h.make_node("DequantizeLinear", ["qr", "s", "z"], ["yr"], "dqr"),
        h.make_node("Resize", ["a", "", "twice"], ["l"], "linear", mode="linear"),
        h.make_node("QuantizeLinear", ["l", "s", "z"], ["ql"], "ql"),
        h.make_node("DequantizeLinear", ["ql", "s", "z"], ["yl"], "dql"),
    ]
    inputs = [h.make_tensor_value_info(n, onnx.TensorProto.FLOAT, [1, 2, 5, 6]) for n in "ab"]
    outputs = [
        h.make_tensor_value_info(n, onnx.TensorProto.FLOAT, [1, c, 7, 8])
        for n, c in (("y", 4), ("y0", 2))
    ] + [h.make_tensor_value_info(n, onnx.TensorProto.FLOAT, [1, 2, 10, 12]) for n in ("yr", "yl")]
    graph = h.make_graph(nodes, "copies", inputs, outputs, [scale, zero, pads, twice])
    model = h.make_model(graph, opset_imports=[h.make_opsetid("", 21)])
    moved = precision._copies_in_int8(model)
    onnx.checker.check_model(moved, full_check=True)
    producer = {o: n for n in moved.graph.node for o in n.output}
    assert _int8(producer["q"].input[0], producer)  # the wrap Pad now reads int8
    assert producer["q0"].op_type == "QuantizeLinear"  # the constant Pad still feeds its Q
    assert producer["qr"].op_type == "Resize" and _int8(producer["qr"].input[0], producer)
    assert producer["ql"].op_type == "QuantizeLinear"  # the linear Resize still feeds its Q
    rng = np.random.default_rng(3)
    feed = {n: rng.uniform(-5, 8, (1, 2, 5, 6)).astype(np.float32) for n in "ab"}
    before, after = (tmp_path / "before.onnx", tmp_path / "after.onnx")
    onnx.save(model, before)
    onnx.save(moved, after)
    want, got = session(before).run(None, feed), session(after).run(None, feed)
    for a, b in zip(want, got, strict=True):
        np.testing.assert_array_equal(b, a)


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
