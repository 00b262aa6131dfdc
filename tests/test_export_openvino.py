"""OpenVINO IR: the bundled model exported, run with OpenVINO's CPU plugin at a size it was not
validated at, and a broken conversion caught before anything is written."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
from conftest import onnx_copier

import tn_export
from tn_export.checkpoint import load_model
from tn_export.export import cli
from tn_export.export import onnx as onnx_format
from tn_export.export.graph import Deployable
from tn_export.export.reference import psnr

ov = pytest.importorskip("openvino", reason="openvino is not installed (pip install openvino)")
from tn_export.export import openvino as openvino_format  # noqa: E402 - needs openvino

SIZES = (64, 256)  # validated at 64x64, 256x256 and 128x256


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """The bundled red-peppers model as IR with fp16 and with fp32 weights, one export (and its
    ONNX model, which later conversions copy instead of tracing the module again; without its
    exact-tiling parts, which OpenVINO does not use)."""
    out = tmp_path_factory.mktemp("openvino")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("xdg-cache")))
        results = tn_export.export(
            None,
            ["onnx", ("openvino", "fp16"), ("openvino", "fp32")],
            out,
            sizes=SIZES,
            tiling_parts=False,
        )
    return out, {r.precision: r for r in results if r.format == "openvino"}


def test_both_precisions_pass_and_are_written_with_their_weights(exported):
    out, results = exported
    assert sorted(os.listdir(out)) == [
        "red_peppers.export.json",
        "red_peppers.fp16.bin",
        "red_peppers.fp16.xml",
        "red_peppers.fp32.bin",
        "red_peppers.fp32.xml",
        "red_peppers.onnx",
    ]
    fp16, fp32 = results["fp16"], results["fp32"]
    assert fp16.accepted and fp32.accepted
    assert fp16.side_files == [out / "red_peppers.fp16.bin"]
    # fp16 weights take half the bytes; each is judged by its own rule.
    assert fp16.side_files[0].stat().st_size < 0.6 * fp32.side_files[0].stat().st_size
    assert "PSNR" in fp16.validation.summary and "max |err|" in fp32.validation.summary
    assert max(fp32.validation.details["max_abs_error"].values()) <= 1e-4
    assert min(fp16.validation.details["psnr_db"].values()) >= 40
    assert fp32.io == {
        "noise": ["?", "3", "64..256", "64..256"],
        "image": ["?", "3", "64..256", "64..256"],
    }
    record = json.loads((out / "red_peppers.export.json").read_text())
    checks = [a["validation"]["details"] for a in record["artifacts"] if a["format"] == "openvino"]
    assert [c["compile_config"] for c in checks] == [{"INFERENCE_PRECISION_HINT": "f32"}] * 2


def test_the_ir_runs_a_non_square_size_as_pytorch_does(exported):
    out, _ = exported
    generator = Deployable(load_model(None)[0].generator)
    noise = torch.randn(2, 3, 96, 160, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        expected = generator(noise).numpy()
    fp32 = openvino_format.compile_cpu(out / "red_peppers.fp32.xml", threads=2)(noise.numpy())[0]
    fp16 = openvino_format.compile_cpu(out / "red_peppers.fp16.xml")(noise.numpy())[0]
    assert fp32.shape == (2, 3, 96, 160) and expected.std() > 0.05
    assert float(np.abs(fp32 - expected).max()) <= 1e-4
    assert psnr(fp16, expected) >= 40


def test_the_contract_is_read_back_from_the_ir(exported):
    out, _ = exported
    model = ov.Core().read_model(out / "red_peppers.fp16.xml")
    contract = openvino_format.contract_of(model, "red_peppers.fp16.xml")
    assert (contract.name, contract.min_size, contract.max_size) == ("red_peppers", 64, 256)


def _drop_an_activation(model):
    """Bypass the first LeakyReLU (OpenVINO's PRelu; the batch norms are folded into the convs):
    the graph still runs, its numbers are wrong."""
    for node in model.get_ordered_ops():
        if node.get_type_name() == "PRelu":
            node.output(0).replace(node.input_value(0))
            return model
    raise AssertionError("no PRelu in the graph")


def test_a_dropped_activation_is_caught_and_nothing_is_written(
    exported, tmp_path, monkeypatch, capsys
):
    out, _ = exported
    monkeypatch.setattr(onnx_format, "export_onnx", onnx_copier(out / "red_peppers.onnx"))
    convert = ov.convert_model
    monkeypatch.setattr(ov, "convert_model", lambda *a, **k: _drop_an_activation(convert(*a, **k)))
    folder = tmp_path / "out"
    argv = ["--format", "openvino", "--precision", "fp32", "-o", str(folder)]
    assert cli.main([*argv, "--min-size", "64", "--max-size", "128"]) == 1
    captured = capsys.readouterr()
    assert "FAILED: max |err|" in captured.out and "failed: OpenVINO" in captured.err
    assert not folder.exists() or os.listdir(folder) == []  # no scratch folder either


def test_slice_padding_rewrites_every_wrap_with_the_same_numbers(exported):
    """OpenVINO reads no Pad(wrap): its source has slices instead, computing the same in
    onnxruntime as the ONNX file with wrap padding."""
    import onnx
    import onnxruntime as ort

    out, _ = exported
    wrapped = onnx.load(out / "red_peppers.onnx")
    pads = sum(n.op_type == "Pad" for n in wrapped.graph.node)
    sliced = openvino_format.slice_padding(onnx.load(out / "red_peppers.onnx"))
    onnx.checker.check_model(sliced, full_check=True)
    ops = [n.op_type for n in sliced.graph.node]
    assert pads > 0 and "Pad" not in ops and ops.count("Slice") == 4 * pads
    noise = np.random.default_rng(3).standard_normal((2, 3, 64, 96), dtype=np.float32)
    run = [
        ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
        for m in (wrapped, sliced)
    ]
    a, b = (s.run(None, {"noise": noise})[0] for s in run)
    assert float(np.abs(a - b).max()) <= 1e-6
