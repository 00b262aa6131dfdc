"""Exact tiles (tn_export.runtime.exact): tiled output equals the whole-image run to fp32
rounding, for textures (circular padding) and style models (reflection), at awkward sizes;
counter-based noise; instance norm falls back with its reason; the memory bound."""

from __future__ import annotations

import collections
import dataclasses
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import onnx
import pytest
from conftest import settle
from PIL import Image

from tn_export import runtime
from tn_export.errors import UserError
from tn_export.runtime.exact import Plan, Reach, reaches
from tn_export.runtime.model import FIXED_BYTES
from tn_export.runtime.noise import gaussian

SCALES = 4  # pooling ratios 8, 4, 2, 1: the coarse part holds two scales, the fine part two
M = 2 ** (SCALES - 1)
SMALL_BOUND = FIXED_BYTES + 4 * 10**6  # a few tiles of the tiny model at the sizes below
TN_RUN = [sys.executable, "-c", "from tn_export.runtime.cli import main; raise SystemExit(main())"]


def export_tiny(directory: Path, mode: str, norm: str = "batch") -> Path:
    """A 4-scale, 3-channel generator with calibrated batch norm (non-trivial running
    statistics), exported whole and in its two tiling parts."""
    path = directory / f"tiny_{mode}_{norm}.onnx"
    if path.is_file():
        return path
    import torch

    from tn_export.contract import ModelContract
    from tn_export.export.graph import Deployable
    from tn_export.export.onnx import export_onnx
    from tn_export.export.parts import export_parts
    from tn_export.export.pipeline import tiling
    from tn_export.generator import PyramidGenerator

    padding = "circular" if mode == "texture" else "reflect"
    torch.manual_seed(1)
    g = PyramidGenerator(mode=mode, scales=SCALES, channels=3, padding=padding, norm=norm)
    settle(g, 3)
    contract = ModelContract(
        mode=mode, size_multiple=M, min_size=2 * M, max_size=512, padding=padding, norm=norm,
        channels=3, name=path.stem, tiling=tiling(g.config),
    )  # fmt: skip
    directory.mkdir(parents=True, exist_ok=True)
    export_onnx(Deployable(g), path, contract)
    if "coarse" in contract.tiling:
        export_parts(g.eval(), path, contract)
    return path


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.getbasetemp() / "exact-models"


@pytest.fixture(scope="module", params=["texture", "style"])
def model(request, tiny_dir: Path) -> runtime.Model:
    return runtime.load(export_tiny(tiny_dir, request.param))


def source_of(model: runtime.Model, height: int, width: int):
    """The model's whole padded input and the matching source(ys, xs) of exact.py."""
    if model.contract.mode == "texture":
        whole = gaussian(5, 3, np.arange(height), np.arange(width))
    else:
        rng = np.random.default_rng(0)
        low = rng.random((3, height // 8 + 1, width // 8 + 1), dtype=np.float32)
        whole = low.repeat(8, 1).repeat(8, 2)[:, :height, :width]
        whole = whole + rng.random((3, height, width), dtype=np.float32) * 0.2
    return whole, lambda ys, xs: whole[:, ys][:, :, xs]


# Non-square, not multiples of the tiles; blocks of one and several tiles, the whole image.
PLANS = [
    (7 * M, 11 * M, 2 * M, 3 * M, M, M),
    (9 * M, 5 * M, 4 * M, 5 * M, 3 * M, 2 * M),
    (6 * M, 13 * M, 6 * M, 13 * M, 4 * M, 5 * M),
]


@pytest.mark.parametrize("sides", PLANS)
def test_tiles_equal_the_whole_image_and_a_smaller_reach_does_not(model, sides):
    height, width = sides[:2]
    whole, source = source_of(model, height, width)
    feed = {model.contract.input_name: whole[None]}
    expected = model.session.run(None, feed)[0][0]
    tiler, plan = model.tiler, Plan(*sides)
    got = tiler.run(source, plan, height - 5, width - 3)  # cropped: awkward output sizes
    assert got.shape == (3, height - 5, width - 3)
    assert np.abs(got - expected[:, : height - 5, : width - 3]).max() <= 1e-5
    fine = tiler.fine_reach
    short = dataclasses.replace(
        fine, before=fine.before - fine.align, after=fine.after - fine.align
    )
    worse = tiler.run(source, plan, height, width, fine=short)
    assert np.abs(worse - expected).max() > 1e-3


def test_a_circular_fine_part_pads_with_zeros_and_keeps_its_halo_over_the_whole_image(tiny_dir):
    """The texture model's fine part has no Pad node (export/parts.py). A tile as large as the
    image still reads its wrap-around halo: a window collapsed to the image would let the zero
    padding in at the border."""
    model = runtime.load(export_tiny(tiny_dir, "texture"))
    fine = onnx.load(Path(model.source).with_suffix(".fine.onnx"))
    ops = collections.Counter(n.op_type for n in fine.graph.node)
    assert ops["Pad"] == 0 and ops["Conv"] > 0
    height, width = 5 * M, 7 * M
    whole, source = source_of(model, height, width)
    expected = model.session.run(None, {model.contract.input_name: whole[None]})[0][0]
    plan = Plan(height, width, height, width, height, width)
    assert np.abs(model.tiler.run(source, plan, height, width) - expected).max() <= 1e-5
    collapsed = dataclasses.replace(model.tiler.fine_reach, keeps_halo=False)
    worse = model.tiler.run(source, plan, height, width, fine=collapsed)
    assert np.abs(worse - expected).max() > 1e-3


def test_reaches_come_from_the_layers():
    coarse, fine = reaches(6)
    # Fine: the ratio-1 and ratio-2 joins and branches read 10 pixels; windows start on the
    # ratio-4 grid of the features. Coarse: the ratio-4..32 scales, on the ratio-32 grid.
    assert fine == Reach(10, 10, 4)
    assert coarse.align == 32 and 120 <= coarse.before <= 160
    assert reaches(SCALES)[1] == fine  # the fine part does not depend on the coarse scales


def test_noise_is_a_function_of_the_position_alone():
    whole = gaussian(9, 3, np.arange(96), np.arange(130))
    tile = gaussian(9, 3, np.arange(40, 77), np.arange(100, 130))
    assert np.array_equal(tile, whole[:, 40:77, 100:130])
    wrapped = gaussian(9, 3, np.arange(90, 102) % 96, np.arange(8))
    assert np.array_equal(wrapped[:, 6:], whole[:, :6, :8])
    assert not np.array_equal(gaussian(10, 3, np.arange(96), np.arange(130)), whole)
    assert not np.array_equal(gaussian(9, 3, np.arange(96), np.arange(130), index=1), whole)
    big = gaussian(1, 2, np.arange(512), np.arange(512))
    assert abs(big.mean()) < 0.01 and abs(big.std() - 1) < 0.01
    assert abs(np.corrcoef(big[0, :, :-1].ravel(), big[0, :, 1:].ravel())[0, 1]) < 0.01


def test_a_texture_made_in_tiles_is_the_one_made_whole(tiny_dir):
    path = export_tiny(tiny_dir, "texture")
    whole, tiled = runtime.load(path, max_memory=10**9), runtime.load(path, max_memory=SMALL_BOUND)
    size = (203, 150)
    assert whole.layout(*size) is None
    layout = tiled.layout(*size)
    assert layout is not None and layout.tiles_inside(150, 203) > 1
    a = np.asarray(whole.synthesize(*size, seed=3)[0], np.int16)
    b = np.asarray(tiled.synthesize(*size, seed=3)[0], np.int16)
    # Equal to fp32 rounding: a value on an 8-bit rounding boundary may land either side.
    assert np.abs(a - b).max() <= 1 and np.mean(a != b) < 1e-3


def test_textures_over_the_whole_models_max_size_run_in_tiles(tiny_dir):
    model = runtime.load(export_tiny(tiny_dir, "texture"), max_memory=FIXED_BYTES + 20 * 10**6)
    assert model.contract.max_size == 512
    (image,) = model.synthesize(600, 40, seed=1)
    assert image.size == (600, 40)


def test_a_photo_stylized_in_tiles_is_the_one_stylized_whole(tiny_dir):
    path = export_tiny(tiny_dir, "style")
    rng = np.random.default_rng(2)
    photo = Image.fromarray(rng.integers(0, 256, (141, 190, 3), dtype=np.uint8))
    whole, tiled = runtime.load(path, max_memory=10**9), runtime.load(path, max_memory=SMALL_BOUND)
    assert whole.layout(190, 141) is None and tiled.layout(190, 141) is not None
    done = []
    a = np.asarray(whole.stylize(photo, keep_colors=True), np.int16)
    b = np.asarray(
        tiled.stylize(photo, lambda d, t: done.append((d, t)), keep_colors=True), np.int16
    )
    assert np.abs(a - b).max() <= 1 and np.mean(a != b) < 1e-3
    assert done[-1][0] == done[-1][1] == len(done) > 1


def test_instance_norm_falls_back_to_cross_faded_tiles_and_says_why(tiny_dir):
    model = runtime.load(export_tiny(tiny_dir, "style", "instance"), max_memory=SMALL_BOUND)
    assert model.tiler is None
    assert "instance norm's statistics are global" in model.tiling_note
    assert "instance norm" in model.contract.tiling["reason"]
    photo = Image.new("RGB", (300, 200), (120, 80, 40))
    assert model.stylize(photo).size == (300, 200)


def test_a_missing_part_is_named_and_the_model_still_runs_whole(tiny_dir, tmp_path):
    source = export_tiny(tiny_dir, "texture")
    path = tmp_path / source.name
    path.write_bytes(source.read_bytes())
    model = runtime.load(path)
    assert model.tiler is None and "tiny_texture_batch.coarse.onnx is missing" in model.tiling_note
    assert model.synthesize(64, 64, seed=0)[0].size == (64, 64)


def test_too_small_a_memory_bound_is_one_clear_error(tiny_dir):
    model = runtime.load(export_tiny(tiny_dir, "texture"), max_memory=10**5)
    with pytest.raises(UserError, match="raise max_memory to at least") as e:
        model.synthesize(400, 400, seed=0)
    assert e.value.params == ("max_memory",)
    # The bound it names is enough, and a megabyte less is refused again.
    asked = float(str(e.value).split("at least ")[1].removesuffix(" MB"))
    path = model.source
    assert runtime.load(path, max_memory=asked * 1e6).layout(400, 400, 4) is not None
    with pytest.raises(UserError, match="raise max_memory"):
        runtime.load(path, max_memory=(asked - 1) * 1e6).layout(400, 400, 4)


def test_tn_run_uses_exact_tiles_under_max_memory(tiny_dir, tmp_path):
    path = export_tiny(tiny_dir, "texture")
    out = tmp_path / "t.png"
    args = ["synthesize", str(path), "--size", "300x200", "--seed", "4", "-o", str(out)]
    bound = str(SMALL_BOUND / 1e6)
    run = subprocess.run([*TN_RUN, *args, "--max-memory", bound], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert "exact tiles" in run.stdout
    whole = runtime.load(path, max_memory=10**9).synthesize(300, 200, seed=4)[0]
    diff = np.abs(np.asarray(Image.open(out), np.int16) - np.asarray(whole, np.int16))
    assert diff.max() <= 1


def test_a_4096_texture_stays_within_max_memory_in_a_real_process(tiny_dir, tmp_path):
    """Peak RSS of `tn-run synthesize` at 4096x4096 over the same process at 64x64, measured in
    a fresh parent (a child forked from pytest inherits pytest's peak)."""
    path = export_tiny(tiny_dir, "texture")

    def peak(size: str) -> int:
        args = [
            "synthesize",
            str(path),
            "--size",
            size,
            "--seed",
            "1",
            "-o",
            str(tmp_path / "o.png"),
        ]
        code = textwrap.dedent(f"""
            import resource, subprocess
            subprocess.run({[*TN_RUN, *args, "--max-memory", "256"]!r}, check=True)
            print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024)
        """)
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
        return int(out.stdout.split()[-1])

    increase = peak("4096") - peak("64")
    print(f"peak RSS over a 64x64 run at 4096x4096 under --max-memory 256: {increase >> 20} MiB")
    assert increase <= 256 * 10**6
