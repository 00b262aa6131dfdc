"""Strength and colour controls of style models: the runtime, its frame batches and tn-run."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from test_run_cli import one_line_error, run
from test_runtime import export_small, photo, pixels

from tn_export import runtime
from tn_export.errors import UserError


@pytest.fixture(scope="module")
def style_path(tmp_path_factory: pytest.TempPathFactory):
    return export_small(tmp_path_factory.getbasetemp() / "runtime-models", "style")


@pytest.fixture(scope="module")
def style(style_path) -> runtime.Model:
    return runtime.load(style_path, tile_pixels=64 * 64, overlap=16)  # 150x100: 12 tiles


@pytest.fixture(scope="module")
def picture() -> Image.Image:
    return photo(150, 100, seed=3)


@pytest.fixture(scope="module")
def full(style, picture) -> np.ndarray:
    return pixels(style.stylize(picture))


def ycbcr(image: np.ndarray) -> np.ndarray:
    """Pillow's YCbCr (JPEG's BT.601 full range) of an (H, W, 3) RGB array, as float."""
    return pixels(Image.fromarray(image.astype(np.uint8)).convert("YCbCr"))


def test_strength_one_is_todays_output_exactly(style, picture, full):
    assert np.array_equal(pixels(style.stylize(picture, strength=1.0)), full)
    assert np.array_equal(pixels(style.stylize(picture, strength=1)), full)


def test_strength_zero_is_the_photo(style, picture, full):
    out = pixels(style.stylize(picture, strength=0.0))
    assert np.abs(full - pixels(picture)).mean() > 10  # the style does change the photo
    assert np.abs(out - pixels(picture)).max() <= 1  # 8-bit rounding at most


def test_half_strength_lies_between_the_photo_and_the_full_style(style, picture, full):
    out = pixels(style.stylize(picture, strength=0.5))
    photo_ = pixels(picture)
    low, high = np.minimum(full, photo_), np.maximum(full, photo_)
    assert ((out >= low - 1) & (out <= high + 1)).all()
    assert np.abs(out - (full + photo_) / 2).max() <= 1
    assert np.abs(out - full).mean() > 4 and np.abs(out - photo_).mean() > 4


def test_keep_colors_keeps_the_photos_chroma_and_the_styled_luminance(style, picture, full):
    out = pixels(style.stylize(picture, keep_colors=True))
    kept, styled, original = ycbcr(out), ycbcr(full), ycbcr(pixels(picture))
    chroma_moved = np.abs(styled[..., 1:] - original[..., 1:]).mean()
    chroma_kept = np.abs(kept[..., 1:] - original[..., 1:])
    # Y follows the stylized one except where the photo's colour cannot hold it (a channel
    # would leave 0..255): there it stops at the bound.
    free = (out.min(axis=-1) > 0) & (out.max(axis=-1) < 255)
    luma = np.abs(kept[..., 0] - styled[..., 0])
    print(
        f"Cb/Cr: photo vs stylized {chroma_moved:.2f} levels, photo vs keep_colors mean "
        f"{chroma_kept.mean():.2f} (max {chroma_kept.max():.0f}); Y vs stylized mean "
        f"{luma[free].mean():.2f} on the {free.mean():.0%} of pixels within the bounds"
    )
    assert chroma_moved > 5  # the style does recolour the photo
    assert chroma_kept.mean() < 0.5 and chroma_kept.max() <= 2  # 8-bit rounding
    assert free.mean() > 0.5 and luma[free].mean() < 1.0


def test_keep_colors_at_half_strength_moves_the_luminance_halfway(style, picture, full):
    out = pixels(style.stylize(picture, strength=0.5, keep_colors=True))
    halfway = (ycbcr(full)[..., 0] + ycbcr(pixels(picture))[..., 0]) / 2
    free = (out.min(axis=-1) > 0) & (out.max(axis=-1) < 255)
    assert free.mean() > 0.5 and np.abs(ycbcr(out)[..., 0] - halfway)[free].mean() < 1.0


@pytest.mark.parametrize("bad", [1.5, -0.1, float("nan"), float("inf"), "0.5", True, None])
def test_bad_strengths_are_one_line_naming_the_parameter(style, picture, bad):
    with pytest.raises(UserError, match="^strength must be") as caught:
        style.stylize(picture, strength=bad)
    assert caught.value.params == ("strength",) and "\n" not in str(caught.value)
    with pytest.raises(UserError, match="^strength must be"):
        style.stylize_frames(np.zeros((1, 32, 32, 3), np.uint8), strength=bad)


def test_a_batch_of_frames_is_stylized_as_each_photo_alone(style_path):
    model = runtime.load(style_path)  # one tile per photo, as frames run
    frames = np.stack([pixels(photo(40, 30, seed=s)).astype(np.uint8) for s in range(3)])
    for controls in ({}, {"strength": 0.3, "keep_colors": True}):
        batch = model.stylize_frames(frames, **controls)
        alone = [pixels(model.stylize(Image.fromarray(f), **controls)) for f in frames]
        assert batch.dtype == np.uint8 and batch.shape == frames.shape
        assert np.array_equal(batch, np.stack(alone).astype(np.uint8))


def test_tn_run_stylize_takes_strength_and_keep_colors(style_path, tmp_path, capsys):
    source = tmp_path / "photo.png"
    photo(90, 60).save(source)
    code, out, _ = run(
        ["stylize", style_path, source, "-o", tmp_path / "out.png", "--strength", "0.4",
         "--keep-colors"], capsys,
    )  # fmt: skip
    assert code == 0, out
    want = runtime.load(style_path).stylize(photo(90, 60), strength=0.4, keep_colors=True)
    assert np.array_equal(pixels(Image.open(tmp_path / "out.png")), pixels(want))


@pytest.mark.parametrize("value", ["1.5", "nan", "-1", "strong"])
def test_tn_run_refuses_bad_strengths_in_one_line(style_path, tmp_path, capsys, value):
    source = tmp_path / "photo.png"
    photo(40, 40).save(source)
    code, _, err = run(
        ["stylize", style_path, source, "-o", tmp_path / "out.png", "--strength", value], capsys
    )
    assert code == 2 and "--strength" in one_line_error(err)
    assert not (tmp_path / "out.png").exists()
