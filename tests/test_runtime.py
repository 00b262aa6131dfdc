"""tn_export.runtime: torch-free loading, exact sizes, seeds, tiled stylization, bad models."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import textwrap
import tracemalloc
from pathlib import Path

import numpy as np
import onnx
import onnx.numpy_helper
import pytest
from conftest import settle
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper
from PIL import Image

from tn_export import runtime
from tn_export.contract import ModelContract
from tn_export.errors import UserError
from tn_export.images import load_image
from tn_export.runtime import model as model_module
from tn_export.runtime import tiling

MULTIPLE = 4  # PyramidGenerator(scales=3): pooling ratios 4, 2, 1
TN_RUN = [sys.executable, "-c", "from tn_export.runtime.cli import main; raise SystemExit(main())"]


def export_small(directory: Path, mode: str) -> Path:
    """A 3-scale, 4-channel generator with calibrated batch norm, exported once per session.

    Fresh batch-norm running statistics make a random generator's output nearly constant;
    a few training-mode passes give it real spatial variation, so pixel comparisons mean something.
    """
    path = directory / f"small_{mode}.onnx"
    if path.is_file():
        return path
    import torch

    from tn_export.contract import ModelContract
    from tn_export.export.graph import Deployable
    from tn_export.export.onnx import export_onnx
    from tn_export.generator import PyramidGenerator

    padding = "circular" if mode == "texture" else "reflect"
    torch.manual_seed(0)
    g = PyramidGenerator(mode=mode, scales=3, channels=4, padding=padding)
    settle(g, 4)
    contract = ModelContract(
        mode=mode, size_multiple=MULTIPLE, min_size=8, max_size=4096, padding=padding,
        name=f"small_{mode}",
    )  # fmt: skip
    directory.mkdir(parents=True, exist_ok=True)
    export_onnx(Deployable(g), path, contract)
    return path


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.getbasetemp() / "runtime-models"


@pytest.fixture(scope="session")
def texture_path(models_dir: Path) -> Path:
    return export_small(models_dir, "texture")


@pytest.fixture(scope="session")
def style_path(models_dir: Path) -> Path:
    return export_small(models_dir, "style")


@pytest.fixture(scope="module")
def texture(texture_path: Path) -> runtime.Model:
    return runtime.load(texture_path)


@pytest.fixture(scope="module")
def style(style_path: Path) -> runtime.Model:
    return runtime.load(style_path)


def photo(width: int, height: int, seed: int = 0) -> Image.Image:
    """A smooth random picture with some fine detail: what a photo looks like to a network."""
    rng = np.random.default_rng(seed)
    low = Image.fromarray((rng.random((12, 16, 3)) * 255).astype(np.uint8))
    smooth = np.asarray(low.resize((width, height), Image.BICUBIC), np.int16)
    grain = rng.integers(-24, 25, (height, width, 1), dtype=np.int16)
    return Image.fromarray(np.clip(smooth + grain, 0, 255).astype(np.uint8))


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image, np.float32)


def test_importing_and_running_the_runtime_does_not_import_torch(texture_path):
    code = textwrap.dedent(f"""
        import sys
        import tn_export.runtime, tn_export.runtime.cli
        model = tn_export.runtime.load({str(texture_path)!r})
        model.synthesize(40, 40, seed=1)
        heavy = sorted(m for m in ("torch", "onnx", "torchvision") if m in sys.modules)
        print(",".join(heavy) or "none")
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "none"


@pytest.mark.parametrize("size", [(33, 65), (1000, 744), (16, 16), (4096, 17)])
def test_textures_have_exactly_the_requested_size(texture, size):
    (image,) = texture.synthesize(*size, seed=0)
    assert image.size == size and image.mode == "RGB"


@pytest.mark.parametrize("size", [(33, 65), (1000, 744), (4097, 31)])
def test_stylized_images_keep_their_exact_size(style, size):
    # 4097 is over the model's max_size (4096): stylize handles it in tiles.
    assert style.stylize(photo(*size)).size == size


@settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(width=st.integers(16, 200), height=st.integers(16, 200))
def test_any_size_within_bounds_is_exact(texture, style, width, height):
    assert texture.synthesize(width, height, seed=0)[0].size == (width, height)
    assert style.stylize(photo(width, height)).size == (width, height)


@pytest.mark.parametrize(
    ("size", "match"),
    [
        ((1, 1), "at least 16 pixels"),
        ((15, 100), "at least 16 pixels"),
        ((4097, 31), "maximum of 4096"),
        ((31, 4097), "maximum of 4096"),
        ((10**9, 10**9), "maximum of 4096"),
        ((100.5, 64), "whole number"),
        (("64", 64), "whole number"),
    ],
)
def test_sizes_outside_the_bounds_are_refused_before_allocating(texture, size, match):
    tracemalloc.start()
    try:
        with pytest.raises(UserError, match=match):
            texture.synthesize(*size)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20


def test_absurd_pixel_counts_are_refused_even_within_a_lying_max_size(texture):
    with pytest.raises(UserError, match="over the limit"):
        texture._check_size(9000, 9000, "texture size", 10**6)


@pytest.mark.parametrize("bad", [0, -1, 2.0, True])
def test_bad_counts_and_seeds_are_refused(texture, bad):
    with pytest.raises(UserError, match="count"):
        texture.synthesize(32, 32, count=bad)
    if bad != 0:
        with pytest.raises(UserError, match="seed"):
            texture.synthesize(32, 32, seed=bad)


def test_the_same_seed_gives_the_same_texture_and_other_seeds_others(texture):
    first = pixels(texture.synthesize(96, 80, seed=3)[0])
    again = [pixels(im) for im in texture.synthesize(96, 80, seed=3, count=3)]
    other = pixels(texture.synthesize(96, 80, seed=4)[0])
    unseeded = [pixels(texture.synthesize(96, 80)[0]) for _ in range(2)]
    assert first.std() > 5  # a real texture, not a flat image
    np.testing.assert_array_equal(first, again[0])  # sample i does not depend on count
    assert np.abs(again[0] - again[1]).mean() > 5
    assert np.abs(first - other).mean() > 5
    assert np.abs(unseeded[0] - unseeded[1]).mean() > 5


def test_textures_iterate_lazily_one_at_a_time(texture, monkeypatch):
    calls = []
    run = texture.run
    monkeypatch.setattr(texture, "run", lambda x: calls.append(x.shape) or run(x))
    stream = texture.textures(40, 24, seed=0)
    assert calls == []
    next(stream)
    next(stream)
    assert calls == [(1, 3, 24, 40), (1, 3, 24, 40)]  # padded to multiples of 4, batch 1


def test_wrong_mode_calls_are_clear_errors(texture, style):
    with pytest.raises(UserError, match=r"texture model: it synthesizes textures \(tn-run synth"):
        texture.stylize(photo(64, 64))
    with pytest.raises(UserError, match="style model: it stylizes images .* only texture models"):
        style.synthesize(64, 64)
    with pytest.raises(UserError, match="Pillow image"):
        style.stylize(np.zeros((64, 64, 3), np.uint8))


def count_runs(model: runtime.Model, monkeypatch: pytest.MonkeyPatch) -> list:
    calls: list = []
    run = model.run
    monkeypatch.setattr(model, "run", lambda x, style=None: calls.append(x.shape) or run(x, style))
    return calls


def test_tiles_agree_with_the_whole_image(style_path, monkeypatch):
    image = photo(500, 300)
    whole = runtime.load(style_path, tile_pixels=10**7)
    tiled = runtime.load(style_path, tile_pixels=128 * 128, overlap=64)
    calls = count_runs(tiled, monkeypatch)
    a, b = pixels(whole.stylize(image)), pixels(tiled.stylize(image))
    assert len(calls) > 6 and all(shape == (1, 3, 128, 128) for shape in calls)
    assert a.std() > 5
    # An overlap wider than four times the receptive field of this 3-scale model: the same
    # pixels up to 8-bit rounding of the blend.
    assert np.abs(a - b).max() <= 1


def seam_ratio(tiled: np.ndarray, whole: np.ndarray, columns: np.ndarray) -> float:
    """Mean horizontal gradient of `tiled` over `columns`, relative to the whole-image run's."""

    def gradient(a: np.ndarray) -> np.ndarray:
        return np.abs(np.diff(a, axis=1)).mean(axis=(0, 2))

    return float(gradient(tiled)[columns].mean() / gradient(whole)[columns].mean())


def test_tile_borders_show_no_seam(style_path):
    """With an overlap too narrow to be exact, borders must still not show as edges."""
    image = photo(512, 128)
    whole = pixels(runtime.load(style_path, tile_pixels=10**7).stylize(image))

    hard = pixels(runtime.load(style_path, tile_pixels=128 * 128, overlap=0).stylize(image))
    cuts = np.array(tiling.tile_starts(512, 128, 0, MULTIPLE)[1:]) - 1  # between c and c + 1
    # The measure sees a seam where tiles are simply butted together ...
    assert seam_ratio(hard, whole, cuts) > 1.3

    blended = pixels(runtime.load(style_path, tile_pixels=128 * 128, overlap=16).stylize(image))
    starts = tiling.tile_starts(512, 128, 16, MULTIPLE)
    shared = np.concatenate(
        [np.arange(b - 1, a + 128) for a, b in zip(starts, starts[1:], strict=False)]
    )
    interior = np.setdiff1d(np.arange(whole.shape[1] - 1), shared)
    assert np.abs(blended - whole).max() > 2  # not exact: the blend is what hides the borders
    # ... and none where they overlap and blend: gradients there as in the whole-image run.
    assert 0.9 < seam_ratio(blended, whole, shared) < 1.1
    assert 0.97 < seam_ratio(blended, whole, interior) < 1.03


@settings(max_examples=200, deadline=None)
@given(
    length=st.integers(1, 400),
    tile=st.integers(2, 40),
    overlap=st.integers(0, 20),
    multiple=st.sampled_from([1, 4, 32]),
)
def test_tiles_cover_the_image_and_their_weights_sum_to_one(length, tile, overlap, multiple):
    tile *= multiple
    overlap = min(overlap * multiple, tile // 2 // multiple * multiple)
    padded = -(-length // multiple) * multiple
    starts = tiling.tile_starts(padded, tile, overlap, multiple)
    tile = min(tile, padded)
    assert starts[0] == 0 and starts[-1] + tile >= padded
    assert all(s % multiple == 0 for s in starts)
    assert all(b - a <= tile - overlap for a, b in zip(starts, starts[1:], strict=False))
    total = np.zeros(length)
    weights = tiling.blend_weights(starts, tile, overlap, length)
    for start, weight in zip(starts, weights, strict=True):
        assert len(weight) == min(start + tile, length) - start and (weight >= 0).all()
        total[start : start + len(weight)] += weight
    np.testing.assert_allclose(total, 1, atol=1e-5)


def conv_style_onnx(path: Path) -> Path:
    """A one-convolution "style" model with our contract: memory mechanics without the cost."""
    weight = np.random.default_rng(0).normal(0, 0.3, (3, 3, 3, 3)).astype(np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("Conv", ["content", "w"], ["y"], pads=[1, 1, 1, 1]),
            helper.make_node("Sigmoid", ["y"], ["image"]),
        ],
        "conv_style",
        [helper.make_tensor_value_info("content", TensorProto.FLOAT, ["n", 3, "h", "w"])],
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["n", 3, "h", "w"])],
        [onnx.numpy_helper.from_array(weight, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)])
    helper.set_model_props(model, ModelContract(mode="style", padding="zero").to_metadata())
    onnx.save(model, path)
    return path


def test_whole_model_sessions_share_one_arena_sized_by_max_memory(texture_path):
    """Low-memory loads run in the process's shared arena (session.share_arena), whose first
    region holds the largest whole run `max_memory` allows, at most the default bound's."""
    assert model_module.arena_region(model_module.DEFAULT_MAX_MEMORY) == 216 * 10**6
    assert model_module.arena_region(math.inf) == 216 * 10**6
    assert model_module.arena_region(64 * 10**6) == 24 * 10**6
    assert model_module.arena_region(model_module.FIXED_BYTES) is None
    shared = runtime.load(texture_path).session.get_session_options()
    assert shared.get_session_config_entry("session.use_env_allocators") == "1"
    own = runtime.load(texture_path, low_memory=False).session.get_session_options()
    with pytest.raises(Exception, match="does not have configuration"):
        own.get_session_config_entry("session.use_env_allocators")
    with pytest.raises(UserError, match="max_memory must be a positive number of bytes"):
        runtime.load(texture_path, max_memory="lots")


@pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="the peak is Linux's VmHWM, measured with glibc"
)
def test_the_shared_arena_lowers_a_whole_image_peak_in_a_real_process(texture_path):
    """A 1024x1024 texture made whole peaks lower in the shared arena than in onnxruntime's own
    (which grows from 1 MiB in doubling regions the full-size maps cannot reuse); each in a
    fresh process, over its memory after the imports."""

    def peak(shared: bool) -> int:
        code = textwrap.dedent(f"""
            import math
            from benchmarks.isolated import peak_rss_bytes
            from tn_export import runtime
            from tn_export.runtime import model

            if not {shared}:
                model.arena_region = lambda max_memory: None
            before = peak_rss_bytes()
            texture = runtime.load({str(texture_path)!r}, threads=2, max_memory=math.inf)
            texture.synthesize(1024, 1024, seed=0)
            print(peak_rss_bytes() - before)
        """)
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
        return int(out.stdout.split()[-1])

    shared, own = peak(True), peak(False)
    print(f"peak over imports at 1024x1024: shared arena {shared >> 20} MiB, own {own >> 20} MiB")
    assert shared <= 0.9 * own


def test_tiled_4096_photo_stays_within_the_stated_memory_bound(tmp_path):
    """Peak RSS of a tiled 4096x4096 run within the bound stated in tn_export.runtime's docstring.

    Both are whole `tn-run` processes; the one-tile run measures the fixed part (Python,
    onnxruntime, the session's arena for one tile). A one-convolution model keeps it fast: the
    bound is about the runtime's own buffers, which do not depend on the model.
    """
    model, tile = conv_style_onnx(tmp_path / "conv.onnx"), 1024
    big, small = tmp_path / "big.jpg", tmp_path / "tile.jpg"
    photo(4096, 4096).save(big, quality=90)
    photo(tile, tile).save(small, quality=90)

    def peak_rss(image: Path) -> int:
        # Measured in a fresh parent: a child forked from pytest inherits pytest's peak RSS.
        args = ["stylize", str(model), str(image), "-o", f"{image}.out.jpg"]
        code = textwrap.dedent(f"""
            import resource, subprocess
            subprocess.run({[*TN_RUN, *args, "--tile-pixels", str(tile * tile)]!r}, check=True)
            print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024)
        """)
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
        return int(out.stdout.split()[-1])

    one_tile, tiled = peak_rss(small), peak_rss(big)
    assert Image.open(f"{big}.out.jpg").size == (4096, 4096)
    bound = one_tile + 8 * 4096 * 4096 + 16 * tile * 4096 + (64 << 20)
    mb = {
        k: round(v / 2**20) for k, v in [("one_tile", one_tile), ("tiled", tiled), ("bound", bound)]
    }
    print(f"peak RSS MB: {json.dumps(mb)}")
    assert tiled <= bound


MODES = ["RGBA", "LA", "L", "P", "I;16", "I", "F", "1", "CMYK", "YCbCr", "RGB"]


@pytest.mark.parametrize("mode", MODES)
def test_every_image_mode_can_be_stylized(style, tmp_path, mode):
    base = photo(48, 40)
    if mode == "I;16":
        image = Image.fromarray((pixels(base.convert("L")) * 257).astype(np.uint16))
    elif mode == "I":
        image = Image.fromarray(pixels(base.convert("L")).astype(np.int32))
    elif mode == "F":
        image = Image.fromarray(pixels(base.convert("L")) / 255.0)
    else:
        image = base.convert(mode)
    assert image.mode == mode
    suffix = {"CMYK": ".jpg", "YCbCr": ".jpg", "F": ".tif", "I": ".tif"}.get(mode, ".png")
    path = tmp_path / f"in{suffix}"
    image.save(path)
    for source in (load_image(path), image):  # from a file, and an app's own Pillow image
        out = style.stylize(source)
        assert out.size == (48, 40) and out.mode == "RGB"


def test_exif_orientation_is_applied_before_stylizing(style, tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise when shown
    path = tmp_path / "rotated.jpg"
    photo(64, 32).save(path, exif=exif)
    assert style.stylize(load_image(path)).size == (32, 64)


def tiny_onnx(path: Path, rank: int, metadata: dict[str, str]) -> Path:
    """A valid one-node (Identity) ONNX graph: a foreign model, or ours when given our metadata."""
    dims = ["n", 3, "h", "w"][:rank]
    graph = helper.make_graph(
        [helper.make_node("Identity", ["noise"], ["image"])],
        "foreign",
        [helper.make_tensor_value_info("noise", TensorProto.FLOAT, dims)],
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, dims)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)])
    helper.set_model_props(model, metadata)
    onnx.save(model, path)
    return path


def with_metadata(source: Path, target: Path, **changes: str) -> Path:
    model = onnx.load(source)
    for prop in model.metadata_props:
        key = prop.key.removeprefix("tn_export.")
        if key in changes:
            prop.value = changes[key]
    onnx.save(model, target)
    return target


def bad_model(kind: str, texture_path: Path, tmp_path: Path) -> Path:
    path = tmp_path / "model.onnx"
    ours = {k.key: k.value for k in onnx.load(texture_path).metadata_props}
    if kind == "random bytes":
        path.write_bytes(np.random.default_rng(0).bytes(5000))
    elif kind == "truncated":
        path.write_bytes(texture_path.read_bytes()[:30000])
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "folder":
        path.mkdir()
    elif kind == "missing":
        pass
    elif kind == "foreign":
        tiny_onnx(path, 4, {"author": "someone else"})
    elif kind == "wrong rank":
        tiny_onnx(path, 3, ours)
    elif kind == "lying size multiple":
        # The graph needs multiples of 4; metadata claiming 2 would fail on odd multiples of 2.
        with_metadata(texture_path, path, size_multiple="2")
    elif kind == "bad metadata value":
        with_metadata(texture_path, path, noise_depth="three")
    return path


BAD_MODELS = {
    "random bytes": "cannot be loaded",
    "truncated": "cannot be loaded",
    "empty": "empty",
    "folder": "is a folder",
    "missing": "does not exist",
    "foreign": "no tn-export metadata",
    "wrong rank": r"not \(N, 3, H, W\)",
    "lying size multiple": "metadata is wrong",
    "bad metadata value": "malformed tn-export metadata",
}


@pytest.mark.parametrize("kind", BAD_MODELS)
def test_bad_models_are_one_clear_line(kind, texture_path, tmp_path):
    path = bad_model(kind, texture_path, tmp_path)
    with pytest.raises(UserError, match=BAD_MODELS[kind]) as info:
        runtime.load(path)
    message = str(info.value)
    assert "\n" not in message and str(path) in message


def test_providers_and_threads_are_selectable(texture_path):
    model = runtime.load(texture_path, providers=["CPUExecutionProvider"], threads=1)
    assert model.session.get_providers() == ["CPUExecutionProvider"]
    assert model.session.get_session_options().intra_op_num_threads == 1
    with pytest.raises(UserError, match="choose from .*CPUExecutionProvider"):
        runtime.load(texture_path, providers=["NoSuchExecutionProvider"])
    with pytest.raises(UserError, match="at least 1"):
        runtime.load(texture_path, threads=0)


def test_sessions_are_tuned_for_low_memory_unless_asked_not_to(texture_path):
    import onnxruntime as ort

    low = runtime.load(texture_path).session.get_session_options()
    fast = runtime.load(texture_path, low_memory=False).session.get_session_options()
    assert not low.enable_mem_pattern and fast.enable_mem_pattern
    levels = ort.GraphOptimizationLevel
    assert low.graph_optimization_level == levels.ORT_ENABLE_EXTENDED  # no NCHWc copies
    assert fast.graph_optimization_level == levels.ORT_ENABLE_ALL


def test_a_tile_budget_below_one_tile_is_refused(style_path):
    with pytest.raises(UserError, match="tile budget"):
        runtime.load(style_path, tile_pixels=7 * 7)


def test_library_errors_name_the_python_parameters_not_flags(texture_path, style_path):
    with pytest.raises(UserError, match="raise tile_pixels$") as below:
        runtime.load(style_path, tile_pixels=7 * 7)
    with pytest.raises(UserError, match="a larger max_size$") as over:
        runtime.load(texture_path).synthesize(4100, 64)
    for info in (below, over):
        assert "--" not in str(info.value)
    assert below.value.params == ("tile_pixels",) and over.value.params == ("max_size",)


def test_stylize_reports_progress_after_every_tile(style_path):
    calls: list = []
    model = runtime.load(style_path, tile_pixels=64 * 64, overlap=16)
    model.stylize(photo(150, 100), progress=lambda done, total: calls.append((done, total)))
    total = calls[0][1]
    assert total > 4 and calls == [(i, total) for i in range(1, total + 1)]


def test_the_runtime_package_only_exports(tmp_path):
    """Its code lives in named modules (model, session, tiling); __init__ imports from them."""
    import ast

    tree = ast.parse(Path(runtime.__file__).read_text())
    kinds = {type(node).__name__ for node in tree.body[1:]}  # after the docstring
    assert kinds <= {"ImportFrom", "Assign"}, kinds
    assert set(runtime.__all__) == {"DEFAULT_OVERLAP", "DEFAULT_TILE_PIXELS",
                                    "IMAGE_BYTES_PER_PIXEL", "MIN_SIDE", "Model", "Progress",
                                    "load", "parse_mix", "style_weights"}  # fmt: skip
