"""Core ML export: the saved package's description, and its numbers against PyTorch.

On Linux the numbers come from the numpy reference evaluator (mil_eval); its ops are checked
one family at a time against PyTorch on small MIL programs built with coremltools' builder.
"""

from __future__ import annotations

import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.nn import functional as F

ct = pytest.importorskip("coremltools")
from coremltools.converters.mil import Builder as mb  # noqa: E402

from tn_export.contract import ModelContract  # noqa: E402
from tn_export.errors import UserError  # noqa: E402
from tn_export.export import mil_eval  # noqa: E402
from tn_export.export.coreml import export_coreml  # noqa: E402
from tn_export.export.formats import Options  # noqa: E402
from tn_export.export.graph import Deployable, example_input  # noqa: E402
from tn_export.export.mil_eval import UnsupportedOpError, evaluate, load_program  # noqa: E402
from tn_export.export.reference import Reference  # noqa: E402
from tn_export.export.validate import spec_problems, validate_coreml  # noqa: E402
from tn_export.generator import PyramidGenerator  # noqa: E402
from tn_export.sizes import validation_sizes  # noqa: E402

SIZE_MULTIPLE = 4  # of a 3-scale generator
MIN_SIZE, MAX_SIZE = 32, 128


def small_generator(mode: str, norm: str, padding: str, seed: int = 0) -> PyramidGenerator:
    """A 3-scale generator whose norms are not the identity and whose output sits inside (0, 1),
    so the final clamp hides no error."""
    torch.manual_seed(seed)
    g = PyramidGenerator(mode=mode, scales=3, channels=4, norm=norm, padding=padding)
    for m in g.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 2.0)
        if isinstance(m, torch.nn.BatchNorm2d | torch.nn.InstanceNorm2d):
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)
    g.to_rgb.bias.data.fill_(0.5)
    return g.eval()


@dataclass
class Exported:
    path: Path
    generator: PyramidGenerator
    contract: ModelContract
    options: dict = field(default_factory=dict)

    def validate(self, generator: PyramidGenerator | None = None):
        shapes, image_io = self.options.get("shapes"), self.options.get("image_io", False)
        reference = Reference(generator or self.generator, self.contract, shapes)
        return validate_coreml(self.path, reference, self.options["precision"], Options(image_io))


CONFIGS = {
    "texture_fp16": ("texture", "batch", "circular", {"precision": "fp16"}),
    "texture_fp32": ("texture", "batch", "circular", {"precision": "fp32"}),
    "style_image_enum": (
        "style",
        "batch",
        "reflect",
        {"precision": "fp16", "image_io": True, "shapes": [(32, 32), (32, 64)]},
    ),
    "texture_instance_enum_fp32": (
        "texture",
        "instance",
        "zero",
        {"precision": "fp32", "shapes": [(64, 32), (32, 32)]},
    ),
}


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory):
    """Converts each configuration once per module, on first use (conversion takes seconds)."""
    cache: dict[str, Exported] = {}

    def get(name: str) -> Exported:
        if name not in cache:
            mode, norm, padding, options = CONFIGS[name]
            g = small_generator(mode, norm, padding)
            contract = ModelContract(
                mode=mode,
                size_multiple=SIZE_MULTIPLE,
                min_size=MIN_SIZE,
                max_size=MAX_SIZE,
                padding=padding,
                norm=norm,
                name=name,
                description=f"test model {name}",
                training={"iterations": 3},
            )
            path = tmp_path_factory.mktemp(name) / f"{name}.mlpackage"
            export_coreml(Deployable(g), path, contract, **options)
            cache[name] = Exported(path, g, contract, options)
        return cache[name]

    return get


def spec_of(path: Path):
    return ct.models.MLModel(str(path), skip_model_load=True).get_spec()


# --- the saved package's description --------------------------------------------------------


def test_writes_exactly_the_given_path(exported):
    e = exported("texture_fp16")
    assert e.path.is_dir()
    assert [p.name for p in e.path.parent.iterdir()] == [e.path.name]


def test_range_spec_names_bounds_and_metadata(exported):
    e = exported("texture_fp16")
    spec = spec_of(e.path)
    (given,), (made,) = spec.description.input, spec.description.output
    assert (given.name, made.name) == ("noise", "image")
    array = given.type.multiArrayType
    ranges = [(r.lowerBound, r.upperBound) for r in array.shapeRange.sizeRanges]
    assert ranges == [(1, 1), (3, 3), (MIN_SIZE, MAX_SIZE), (MIN_SIZE, MAX_SIZE)]
    assert array.dataType == ct.proto.FeatureTypes_pb2.ArrayFeatureType.FLOAT32
    assert made.type.WhichOneof("Type") == "multiArrayType"
    assert "Gaussian" in given.shortDescription and "[0, 1]" in made.shortDescription
    meta = spec.description.metadata
    assert meta.author and meta.license and meta.versionString
    assert meta.shortDescription == "test model texture_fp16"
    assert ModelContract.from_metadata(dict(meta.userDefined)) == e.contract
    assert spec_problems(e.path, e.contract) == []


def test_enumerated_image_io_spec(exported):
    e = exported("style_image_enum")
    spec = spec_of(e.path)
    assert spec.specificationVersion >= 7  # iOS 16: image outputs
    given, made = spec.description.input[0], spec.description.output[0]
    rgb = ct.proto.FeatureTypes_pb2.ImageFeatureType.RGB
    assert given.name == "content" and given.type.imageType.colorSpace == rgb
    sizes = {(s.height, s.width) for s in given.type.imageType.enumeratedSizes.sizes}
    assert sizes == {(32, 32), (32, 64)}
    assert made.type.WhichOneof("Type") == "imageType" and made.type.imageType.colorSpace == rgb
    assert spec_problems(e.path, e.contract, **_spec_options(e)) == []
    # The image input's 0..255 pixels are scaled to the model's [0, 1] inside the program.
    ops = load_program(e.path).functions["main"].operations
    first_mul = next(op for op in ops if op.op_type == "mul")
    assert first_mul.inputs["y"].val == pytest.approx(1 / 255)


def _spec_options(e: Exported) -> dict:
    return {k: v for k, v in e.options.items() if k in ("shapes", "image_io")}


def test_enumerated_tensor_spec(exported):
    e = exported("texture_instance_enum_fp32")
    array = spec_of(e.path).description.input[0].type.multiArrayType
    assert {tuple(s.shape) for s in array.enumeratedShapes.shapes} == {
        (1, 3, 64, 32),
        (1, 3, 32, 32),
    }
    assert tuple(array.shape) == (1, 3, 64, 32)  # the default is the first shape given
    assert spec_problems(e.path, e.contract, **_spec_options(e)) == []


def test_spec_problems_named(exported):
    e = exported("texture_fp16")
    wider = ModelContract(
        mode="texture", size_multiple=SIZE_MULTIPLE, min_size=MIN_SIZE, max_size=2 * MAX_SIZE
    )
    problems = spec_problems(e.path, wider)
    assert any("input sizes" in p for p in problems)
    assert any("metadata contract differs" in p for p in problems)
    assert spec_problems(e.path, e.contract, shapes=[(32, 32)])
    assert spec_problems(e.path, e.contract, image_io=True)
    v = validate_coreml(e.path, Reference(e.generator, wider), "fp16")
    assert v.ok is False and v.summary.startswith("spec:")


def test_circular_padding_survives_as_slices(exported):
    ops = Counter(
        op.op_type
        for op in load_program(exported("texture_fp16").path).functions["main"].operations
    )
    assert "pad" not in ops
    # Three scales: 3 branches + 2 joins, two 3x3 convs each, 4 slices per wrap-around pad.
    assert ops["slice_by_index"] == 4 * 2 * 5
    assert ops["concat"] >= 2 * 2 * 5


# --- its numbers ----------------------------------------------------------------------------


def test_fp16_and_fp32_validate(exported):
    v16, v32 = exported("texture_fp16").validate(), exported("texture_fp32").validate()
    assert v16.ok is True and v32.ok is True, (v16.summary, v32.summary)
    assert min(v16.details["psnr_db"].values()) >= 40
    e16, e32 = (
        max(v16.details["max_abs_error"].values()),
        max(v32.details["max_abs_error"].values()),
    )
    assert e32 <= 1e-4
    # The fp16 program is evaluated with its fp16 weights and activations: the error shows it.
    assert e16 > 10 * e32
    assert len(v16.details["max_abs_error"]) >= 2
    assert any(int(h) != int(w) for h, w in (s.split("x") for s in v16.details["max_abs_error"]))


def test_image_io_and_instance_norm_validate(exported):
    for name in ("style_image_enum", "texture_instance_enum_fp32"):
        v = exported(name).validate()
        assert v.ok is True, v.summary


def test_validation_catches_wrong_numbers(exported):
    e = exported("texture_fp16")
    other = small_generator("texture", "batch", "circular", seed=1)
    v = e.validate(other)
    assert v.ok is False and v.summary.startswith("FAILED")
    # A faulty result is told apart from a model that fp16 itself cannot hold.
    assert v.details["pytorch_fp16_psnr_db"] > 50 and "needs --precision fp32" not in v.summary


def test_fp16_sensitivity_is_measured():
    def contract(mode):
        return ModelContract(mode=mode, size_multiple=SIZE_MULTIPLE, min_size=32, max_size=128)

    robust = small_generator("texture", "batch", "circular")
    # Instance norm over smooth content: tiny channel variances amplify fp16 rounding.
    sensitive = small_generator("style", "instance", "reflect")
    robust_ref = Reference(robust, contract("texture"))
    sensitive_ref = Reference(sensitive, contract("style"))
    assert robust_ref.sizes[1] == sensitive_ref.sizes[1] == (64, 64)  # the size it is measured at
    assert robust_ref.fp16_psnr > 70
    assert sensitive_ref.fp16_psnr < 55


def test_unknown_op_is_not_verified(exported, monkeypatch):
    e = exported("texture_fp32")
    monkeypatch.delitem(mil_eval.OPS, "leaky_relu")
    v = e.validate()
    assert v.ok is None
    assert v.summary.startswith("not verified: unknown op(s) leaky_relu")


def test_validation_sizes_cover_a_non_square_size():
    contract = ModelContract(mode="texture")
    sizes = validation_sizes(contract, None)
    assert (256, 256) in sizes and any(h != w for h, w in sizes)
    assert all(h % 32 == 0 and w % 32 == 0 and min(h, w) >= 64 for h, w in sizes)
    assert validation_sizes(contract, [(512, 512), (64, 96), (64, 64), (96, 64)]) == [
        (64, 64),
        (64, 96),
        (96, 64),
    ]


@pytest.mark.parametrize(
    "options, message",
    [
        ({"precision": "int8"}, "fp16 or fp32"),
        ({"shapes": [(30, 32)]}, "multiples of 4"),
        ({"shapes": [(32, 256)]}, "within [32, 128]"),
        ({"shapes": []}, "1 to 128"),
    ],
)
def test_bad_options_are_user_errors(tmp_path, options, message):
    contract = ModelContract(
        mode="texture", size_multiple=SIZE_MULTIPLE, min_size=MIN_SIZE, max_size=MAX_SIZE
    )
    g = small_generator("texture", "batch", "circular")
    with pytest.raises(UserError, match=message.replace("[", r"\[")):
        export_coreml(Deployable(g), tmp_path / "m.mlpackage", contract, **options)
    assert not any(tmp_path.iterdir())


@pytest.mark.skipif(sys.platform != "darwin", reason="Core ML prediction only runs on macOS")
def test_coreml_prediction_matches_pytorch_and_evaluator(exported):
    e = exported("texture_fp16")
    model = ct.models.MLModel(str(e.path))
    x = example_input(e.contract, 64, 96, seed=3)
    got = model.predict({"noise": x.numpy()})["image"]
    with torch.no_grad():
        expected = Deployable(e.generator)(x).numpy()
    assert np.abs(got - expected).max() <= 1e-2
    mine = evaluate(load_program(e.path), {"noise": x.numpy()})["image"]
    assert np.abs(got - mine).max() <= 1e-2


# --- the reference evaluator, one op family at a time ---------------------------------------


def run(build, *inputs: np.ndarray) -> np.ndarray:
    """Build a one-function MIL program over fp32 inputs x (and y) and evaluate it."""
    specs = [mb.TensorSpec(shape=a.shape) for a in inputs]
    if len(inputs) == 1:
        program = mb.program(input_specs=specs)(lambda x: build(x))
    else:
        program = mb.program(input_specs=specs)(lambda x, y: build(x, y))
    names = list(program.functions["main"].inputs)
    (out,) = evaluate(program, dict(zip(names, inputs, strict=True))).values()
    return out


def rand(*shape: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def torch_ref(fn, *arrays: np.ndarray) -> np.ndarray:
    return fn(*(torch.from_numpy(a) for a in arrays)).numpy()


@pytest.mark.parametrize(
    "pad_type, pad, strides, dilations, groups, torch_padding",
    [
        ("valid", None, (1, 1), (1, 1), 1, 0),
        ("custom", (1, 2, 0, 1), (2, 1), (1, 2), 2, None),
        ("same", None, (1, 1), (1, 1), 1, "same"),
    ],
)
def test_conv(pad_type, pad, strides, dilations, groups, torch_padding):
    x, w, b = rand(1, 4, 9, 11), rand(6, 4 // groups, 3, 3, seed=1), rand(6, seed=2)
    kw = {"pad": np.array(pad, np.int32)} if pad else {}
    got = run(
        lambda x: mb.conv(
            x=x,
            weight=w,
            bias=b,
            strides=strides,
            pad_type=pad_type,
            dilations=dilations,
            groups=groups,
            **kw,
        ),
        x,
    )
    xt = torch.from_numpy(x)
    if torch_padding is None:  # (top, bottom, left, right) -> F.pad's (left, right, top, bottom)
        xt, torch_padding = F.pad(xt, (pad[2], pad[3], pad[0], pad[1])), 0
    expected = F.conv2d(
        xt, torch.from_numpy(w), torch.from_numpy(b), strides, torch_padding, dilations, groups
    ).numpy()
    np.testing.assert_allclose(got, expected, atol=1e-5)


@pytest.mark.parametrize("exclude_padding", [False, True])
def test_avg_pool(exclude_padding):
    x = rand(1, 3, 8, 10)
    got = run(lambda x: mb.avg_pool(x=x, kernel_sizes=[2, 2], strides=[2, 2], pad_type="valid"), x)
    np.testing.assert_allclose(got, torch_ref(lambda t: F.avg_pool2d(t, 2), x), atol=1e-6)
    padded = run(
        lambda x: mb.avg_pool(
            x=x,
            kernel_sizes=[3, 3],
            strides=[2, 2],
            pad_type="custom",
            pad=[1, 1, 1, 1],
            exclude_padding_from_average=exclude_padding,
        ),
        x,
    )
    expected = torch_ref(
        lambda t: F.avg_pool2d(t, 3, 2, padding=1, count_include_pad=not exclude_padding), x
    )
    np.testing.assert_allclose(padded, expected, atol=1e-6)


def test_upsample_nearest_neighbor():
    x = rand(1, 2, 3, 5)
    got = run(
        lambda x: mb.upsample_nearest_neighbor(x=x, scale_factor_height=2, scale_factor_width=2),
        x,
    )
    expected = torch_ref(lambda t: F.interpolate(t, scale_factor=2.0, mode="nearest"), x)
    np.testing.assert_array_equal(got, expected)


def test_concat():
    x, y = rand(1, 2, 3, 4), rand(1, 3, 3, 4, seed=1)
    got = run(lambda x, y: mb.concat(values=[y, x, y], axis=1), x, y)
    np.testing.assert_array_equal(got, torch_ref(lambda a, b: torch.cat([b, a, b], 1), x, y))


def test_shape_gather_fill_concat_scalars():
    # What style models use to make their zero noise channels: shape -> gather -> concat -> fill.
    x = rand(1, 3, 5, 7)

    def build(x):
        shape = mb.shape(x=x)
        h = mb.gather(x=shape, indices=-2, axis=0)
        w = mb.gather(x=shape, indices=3, axis=0)
        return mb.fill(shape=mb.concat(values=[w, h], axis=0), value=0.25)

    got = run(build, x)
    np.testing.assert_array_equal(got, np.full((7, 5), 0.25, np.float32))


def test_batch_norm():
    x, mean, var, gamma, beta = (
        rand(1, 3, 4, 5),
        rand(3, seed=1),
        rand(3, seed=2) ** 2,
        rand(3, seed=3),
        rand(3, seed=4),
    )
    got = run(
        lambda x: mb.batch_norm(x=x, mean=mean, variance=var, gamma=gamma, beta=beta, epsilon=1e-3),
        x,
    )
    expected = torch_ref(
        lambda t, m, v, g, b: F.batch_norm(t, m, v, g, b, training=False, eps=1e-3),
        x,
        mean,
        var,
        gamma,
        beta,
    )
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_instance_norm():
    x, gamma, beta = rand(2, 3, 6, 5) * 3 + 1, rand(3, seed=1), rand(3, seed=2)
    got = run(lambda x: mb.instance_norm(x=x, gamma=gamma, beta=beta, epsilon=1e-5), x)
    expected = torch_ref(
        lambda t, g, b: F.instance_norm(t, weight=g, bias=b, eps=1e-5), x, gamma, beta
    )
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_leaky_relu_and_clip():
    x = rand(1, 2, 3, 4)
    got = run(lambda x: mb.clip(x=mb.leaky_relu(x=x, alpha=0.01), alpha=-0.005, beta=0.5), x)
    expected = torch_ref(lambda t: F.leaky_relu(t, 0.01).clamp(-0.005, 0.5), x)
    np.testing.assert_allclose(got, expected, atol=1e-7)


@pytest.mark.parametrize(
    "mode, torch_mode",
    [("constant", "constant"), ("reflect", "reflect"), ("replicate", "replicate")],
)
def test_pad(mode, torch_mode):
    x = rand(1, 2, 4, 5)
    got = run(lambda x: mb.pad(x=x, pad=[1, 2, 2, 1], mode=mode, constant_val=0.5), x)
    kw = {"value": 0.5} if mode == "constant" else {}
    expected = torch_ref(lambda t: F.pad(t, (2, 1, 1, 2), mode=torch_mode, **kw), x)
    np.testing.assert_array_equal(got, expected)


def test_slice_by_index():
    x = rand(1, 3, 6, 7)
    t = torch.from_numpy(x)
    wrap = run(
        lambda x: mb.slice_by_index(
            x=x, begin=[0, 0, -1, 0], end=[1, 3, 1, 0], end_mask=[True, True, True, True]
        ),
        x,
    )
    np.testing.assert_array_equal(wrap, t[:, :, -1:, :].numpy())
    strided = run(
        lambda x: mb.slice_by_index(
            x=x,
            begin=[0, 1, 0, 5],
            end=[1, 3, 5, 1],
            stride=[1, 1, 2, -2],
            begin_mask=[False, False, True, False],
            squeeze_mask=[True, False, False, False],
        ),
        x,
    )
    np.testing.assert_array_equal(strided, x[0, 1:3, 0:5:2, 5:1:-2])


def test_slice_by_size():
    x = rand(1, 3, 6, 7)
    got = run(lambda x: mb.slice_by_size(x=x, begin=[0, 1, 2, 3], size=[1, -1, 2, 3]), x)
    np.testing.assert_array_equal(got, torch.from_numpy(x)[:, 1:, 2:4, 3:6].numpy())


def test_arithmetic():
    x, y = rand(1, 2, 3, 4), rand(1, 2, 3, 4, seed=1) ** 2 + 0.5
    got = run(lambda x, y: mb.real_div(x=mb.sub(x=mb.mul(x=mb.add(x=x, y=y), y=y), y=x), y=y), x, y)
    np.testing.assert_allclose(got, torch_ref(lambda a, b: ((a + b) * b - a) / b, x, y), atol=1e-5)


def test_fp16_program_rounds_every_op_output():
    x = rand(1, 2, 3, 4) * 10

    def build(x):
        half = mb.cast(x=x, dtype="fp16")
        third = mb.mul(x=half, y=np.float16(1 / 3))
        return mb.cast(x=mb.add(x=third, y=np.float16(0.1)), dtype="fp32")

    got = run(build, x)
    f16 = np.float16
    third = (x.astype(f16).astype(np.float32) * np.float32(f16(1 / 3))).astype(f16)
    expected = (third.astype(np.float32) + np.float32(f16(0.1))).astype(f16).astype(np.float32)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, expected)
    assert np.abs(got - (x / 3 + 0.1)).max() > 1e-4  # fp16 rounding is visible, not hidden


def test_unsupported_op_and_option_raise():
    x = rand(1, 2, 3, 4)
    with pytest.raises(UnsupportedOpError, match=r"unknown op\(s\) relu, sigmoid") as info:
        run(lambda x: mb.sigmoid(x=mb.relu(x=x)), x)
    assert info.value.ops == ["relu", "sigmoid"]
    with pytest.raises(UnsupportedOpError, match="interleave"):
        run(lambda x: mb.concat(values=[x, x], axis=1, interleave=True), x)
