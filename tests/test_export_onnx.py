"""ONNX, fp16, int8 and ORT-format exports: round trips against PyTorch, metadata, validation."""

from __future__ import annotations

import math

import numpy as np
import onnx
import pytest
import torch

from tn_export.contract import ModelContract
from tn_export.export.graph import Deployable, example_input
from tn_export.export.onnx import export_onnx
from tn_export.export.ort import to_ort, usability_report
from tn_export.export.precision import to_fp16, to_int8
from tn_export.export.reference import MIN_PSNR_DB, Reference, psnr
from tn_export.export.validate import session, validate_onnx
from tn_export.generator import CircularPad, PyramidGenerator
from tn_export.sizes import MAX_VALIDATED_PIXELS as MAX_PIXELS
from tn_export.sizes import validation_sizes

# Both bounds, non-square both ways, and a size the exporter never traced.
SIZES = [(32, 32), (128, 128), (32, 128), (96, 64), (72, 40)]


def settled(generator: PyramidGenerator) -> PyramidGenerator:
    """Running statistics from a few batches, as training leaves them. A fresh generator's
    statistics (mean 0, var 1) flatten its output; settled, the output varies and errors show."""
    for m in generator.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.momentum = None  # a plain average over the batches below
    generator.train()
    with torch.no_grad():
        for _ in range(3):
            generator(torch.randn(2, generator.config.input_channels, 64, 64))
    return generator.eval()


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """One small generator exported once (fp32), with its fp16 and int8 variants, and the
    reference they are all validated against."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("XDG_CACHE_HOME", str(tmp_path_factory.getbasetemp() / "xdg-cache"))
        torch.manual_seed(0)
        generator = settled(PyramidGenerator(scales=3, channels=4))
        contract = ModelContract(
            mode="texture", size_multiple=4, min_size=32, max_size=128, name="small"
        )
        folder = tmp_path_factory.mktemp("onnx")
        paths = {p: folder / f"small-{p}.onnx" for p in ("fp32", "fp16", "int8")}
        reference = Reference(generator, contract)
        export_onnx(reference.deployable, paths["fp32"], contract)
        to_fp16(paths["fp32"], paths["fp16"])
        joins = folder / "small-joins.onnx"  # int8's source, as onnx.build makes it
        export_onnx(reference.deployable, joins, contract, fold_joins=False)
        to_int8(joins, paths["int8"], contract)
        yield generator, contract, paths, reference


def outputs(path, generator, contract, h, w, batch=1, seed=3):
    x = torch.cat([example_input(contract, h, w, seed=seed + i) for i in range(batch)])
    with torch.no_grad():
        expected = Deployable(generator)(x).numpy()
    got = session(path).run(None, {contract.input_name: x.numpy()})[0]
    return got, expected


def test_fp32_matches_pytorch_at_both_bounds_non_square_and_batch_two(exported):
    generator, contract, paths, _ = exported
    for h, w in SIZES:
        got, expected = outputs(paths["fp32"], generator, contract, h, w, batch=2)
        assert got.shape == expected.shape == (2, 3, h, w)
        assert np.abs(got - expected).max() <= 1e-4, (h, w)
    assert expected.std() > 0.01  # a varying image, not a flat one the check would pass anyway


def test_fp32_graph_is_lean_batch_norms_folded_and_padding_wrapped(exported):
    """A circular generator's graph: no batch norm left (conv ones and the joins'), every
    CircularPad one Pad(wrap), and no slices."""
    generator, _, paths, _ = exported
    nodes = onnx.load(paths["fp32"]).graph.node
    ops = [n.op_type for n in nodes]
    pads = [n for n in nodes if n.op_type == "Pad"]
    assert "BatchNormalization" not in ops and "Slice" not in ops
    assert len(pads) == sum(isinstance(m, CircularPad) for m in generator.modules()) > 0
    assert all(onnx.helper.get_node_attr_value(n, "mode") == b"wrap" for n in pads)


def test_metadata_and_symbolic_dims_read_back(exported):
    _, contract, paths, _ = exported
    model = onnx.load(paths["fp32"])
    onnx.checker.check_model(model, full_check=True)
    assert model.opset_import[0].version >= 18
    meta = {p.key: p.value for p in model.metadata_props}
    assert ModelContract.from_metadata(meta) == contract
    sess = session(paths["fp32"])
    assert [i.name for i in sess.get_inputs()] == ["noise"]
    assert [o.name for o in sess.get_outputs()] == ["image"]
    batch, channels, h, w = sess.get_inputs()[0].shape
    assert channels == 3 and all(isinstance(d, str) for d in (batch, h, w))


@pytest.mark.parametrize(
    "bounds",
    [(4, 32, 128), (32, 64, 2048), (32, 32, 128), (32, 256, 512), (8, 16, 24)],
)
def test_validation_sizes_cover_both_bounds_and_a_non_square_size(bounds):
    m, lo, hi = bounds
    sizes = validation_sizes(
        ModelContract(mode="texture", size_multiple=m, min_size=lo, max_size=hi)
    )
    assert len(sizes) == 3
    assert all(h % m == 0 and w % m == 0 and lo <= min(h, w) and max(h, w) <= hi for h, w in sizes)
    assert (lo, lo) in sizes
    assert any(h == hi for h, _ in sizes)
    assert any(h != w for h, w in sizes)
    assert all(h * w <= max(MAX_PIXELS, hi * lo) for h, w in sizes)


def test_validate_onnx_passes_fp32_and_says_where_it_looked(exported):
    _, contract, paths, reference = exported
    v = validate_onnx(paths["fp32"], reference, "fp32")
    assert v.ok is True and v.summary.startswith("ok")
    assert set(v.details["max_abs_error"]) == {f"{w}x{h}" for h, w in validation_sizes(contract)}
    assert max(v.details["max_abs_error"].values()) <= 1e-4


def test_fp16_keeps_float32_io_and_stays_within_its_tolerance(exported):
    generator, contract, paths, reference = exported
    model = onnx.load(paths["fp16"])
    onnx.checker.check_model(model, full_check=True)
    weights = {n.input[1] for n in model.graph.node if n.op_type == "Conv"}
    types = {t.data_type for t in model.graph.initializer if t.name in weights}
    assert weights and types == {onnx.TensorProto.FLOAT16}
    sess = session(paths["fp16"])
    assert sess.get_inputs()[0].type == sess.get_outputs()[0].type == "tensor(float)"
    meta = sess.get_modelmeta().custom_metadata_map
    assert ModelContract.from_metadata(meta) == contract
    for h, w in SIZES:
        got, expected = outputs(paths["fp16"], generator, contract, h, w, batch=2)
        x = torch.cat([example_input(contract, h, w, seed=3 + i) for i in range(2)])
        with torch.no_grad():
            floor = np.abs(Deployable(generator)(x.half().float()).numpy() - expected).max()
        # Really fp16 arithmetic, and no worse than a few times what fp16 rounding of the
        # input alone costs: the conversion adds nothing beyond fp16's own precision.
        assert 0 < floor < np.abs(got - expected).max() <= 5 * floor, (h, w)
    v = validate_onnx(paths["fp16"], reference, "fp16")
    assert v.ok is (min(v.details["psnr_db"].values()) >= 40)
    assert set(v.details["input_rounding_error"]) == set(v.details["max_abs_error"])


def test_int8_is_quantized_and_judged_by_psnr(exported):
    generator, contract, paths, reference = exported
    model = onnx.load(paths["int8"])
    ops = {n.op_type for n in model.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    weights = [t for t in model.graph.initializer if t.data_type == onnx.TensorProto.INT8]
    assert len(weights) >= 2  # per-channel s8 weights of the heavy convs (the finest join's)
    meta = {p.key: p.value for p in model.metadata_props}
    assert ModelContract.from_metadata(meta) == contract
    v = validate_onnx(paths["int8"], reference, "int8")
    for i, (h, w) in enumerate(validation_sizes(contract)):
        got, expected = outputs(paths["int8"], generator, contract, h, w, seed=i)
        assert v.details["psnr_db"][f"{w}x{h}"] == pytest.approx(psnr(got, expected))
    worst = min(v.details["psnr_db"].values())
    assert 20 < worst < 100  # quantized for real, not broken
    assert v.ok is (worst >= MIN_PSNR_DB["int8"])


def test_psnr_is_infinite_for_identical_images_and_40_db_for_a_1_percent_error():
    a = np.full((1, 3, 8, 8), 0.5, np.float32)
    assert psnr(a, a) == math.inf
    assert psnr(a, a + 0.01) == pytest.approx(40.0, abs=1e-3)


@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_ort_format_keeps_the_contract_and_matches_its_onnx(exported, tmp_path, precision):
    _, contract, paths, reference = exported
    ort_file = tmp_path / "small.ort"
    to_ort(paths[precision], ort_file)
    assert ort_file.read_bytes()[4:8] == b"ORTM"  # the ORT flatbuffer, not an ONNX protobuf
    meta = session(ort_file).get_modelmeta().custom_metadata_map
    assert ModelContract.from_metadata(meta) == contract
    from_ort = validate_onnx(ort_file, reference, precision)
    from_onnx = validate_onnx(paths[precision], reference, precision)
    assert from_ort.ok is from_onnx.ok
    assert from_ort.ok or precision != "fp32"
    if precision == "int8":
        worst = min(from_ort.details["psnr_db"].values())
        assert worst == pytest.approx(min(from_onnx.details["psnr_db"].values()), abs=3)
    else:
        worst = max(from_ort.details["max_abs_error"].values())
        assert worst <= 2 * max(from_onnx.details["max_abs_error"].values()) + 1e-6


def test_mobile_usability_report_names_both_mobile_providers(exported):
    _, _, paths, _ = exported
    text, worth_trying = usability_report(paths["fp32"])
    assert "NNAPI" in text and "CoreML" in text
    assert str(paths["fp32"].parent) not in text  # the report names the file, not a scratch path
    assert isinstance(worth_trying, bool)


def test_a_tampered_model_fails_validation(exported, tmp_path):
    _, _, paths, reference = exported
    model = onnx.load(paths["fp32"])
    conv = next(n for n in model.graph.node if n.op_type == "Conv")
    weight = next(t for t in model.graph.initializer if t.name == conv.input[1])
    values = onnx.numpy_helper.to_array(weight) * 1.05
    weight.CopyFrom(onnx.numpy_helper.from_array(values, weight.name))
    onnx.save(model, tmp_path / "tampered.onnx")
    v = validate_onnx(tmp_path / "tampered.onnx", reference, "fp32")
    assert v.ok is False and v.summary.startswith("FAILED")


def test_a_model_whose_contract_differs_fails_validation(exported, tmp_path):
    _, _, paths, reference = exported
    model = onnx.load(paths["fp32"])
    for p in model.metadata_props:
        if p.key == "tn_export.max_size":
            p.value = "256"
    onnx.save(model, tmp_path / "other.onnx")
    v = validate_onnx(tmp_path / "other.onnx", reference, "fp32")
    assert v.ok is False and "metadata" in v.summary


class Cancelling(torch.nn.Module):
    """0.5 + x / 10 computed as (x K + 1) - x K - 1 + ...: in float32 the big terms round away
    about 1e-3, in float64 nothing. Stands in for a network whose fp32 result is itself inexact."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        big = x * 2e4
        return 0.5 + 0.1 * x + ((big + 1.0) - big - 1.0)


def test_fp32_further_than_1e4_from_pytorch_passes_only_near_the_float64_result():
    contract = ModelContract(mode="texture", size_multiple=4, min_size=32, max_size=64)
    reference = Reference(Cancelling(), contract)
    pairs = list(zip(reference.inputs, reference.outputs, reference.exact_outputs, strict=True))
    torch32 = max(float(np.abs(y - exact).max()) for _, y, exact in pairs)
    assert torch32 > 1e-4  # PyTorch fp32 itself misses the 1e-4 bound here
    exact_of = {feed["noise"].numpy().tobytes(): exact for feed, _, exact in pairs}

    def answers(offset: float):
        """A model that gives the float64 result (rounded to float32), moved by `offset`."""
        return lambda feed: (exact_of[feed["noise"].tobytes()] + offset).astype(np.float32)

    ok, verdict, details = reference.compare(answers(0.0), "fp32")
    assert ok and "from the float64 result, within 2x PyTorch fp32's own" in verdict
    assert max(details["max_abs_error"].values()) > 1e-4
    assert max(details["float64_max_abs_error"].values()) < 1e-6
    ok, verdict, _ = reference.compare(answers(3 * torch32), "fp32")  # 3x as far as PyTorch
    assert not ok and "beyond 2x" in verdict
    assert not reference.compare(answers(0.05), "fp32")[0]  # a broken conversion


def test_instance_norms_keep_float32_precision_on_large_maps(tmp_path):
    """A map with a large mean and a small spread, at 512x2048: the lean graph's instance norm
    (plain and conditional) stays within 2x PyTorch float32's distance from float64."""
    from tn_export.export.onnx import lean
    from tn_export.generator import ConditionalInstanceNorm2d

    torch.manual_seed(0)
    plain = torch.nn.InstanceNorm2d(4, affine=True)
    conditional = ConditionalInstanceNorm2d(4, 2)
    with torch.no_grad():
        for p in [*plain.parameters(), *conditional.parameters()]:
            p.normal_()

    class Norms(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.plain, self.conditional = plain, conditional

        def forward(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
            return self.conditional(self.plain(x), style)

    model = Norms().eval()
    x = 50 + 0.01 * torch.randn(1, 4, 512, 2048)
    style = torch.tensor([[0.3, 0.7]])
    path = tmp_path / "norms.onnx"
    program = torch.onnx.export(lean(model), (x, style), dynamo=True, verbose=False)
    program.save(str(path))
    import onnxruntime as ort

    got = ort.InferenceSession(str(path)).run(None, {"x": x.numpy(), "style": style.numpy()})[0]
    with torch.no_grad():
        ours = model(x, style).numpy()
        exact = model.double()(x.double(), style.double()).numpy()
    assert np.abs(got - exact).max() <= 2 * np.abs(ours - exact).max()
