"""tn-run: synthesize and stylize from the command line; formats, batches, one-line errors."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from test_runtime import TN_RUN, bad_model, export_small, photo

from tn_export.runtime.cli import main


@pytest.fixture(scope="module")
def texture_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_small(tmp_path_factory.getbasetemp() / "runtime-models", "texture")


@pytest.fixture(scope="module")
def style_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_small(tmp_path_factory.getbasetemp() / "runtime-models", "style")


def run(args: list, capsys: pytest.CaptureFixture) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def one_line_error(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tn-run: error: "), err
    assert "Traceback" not in err
    return lines[0]


def test_synthesize_writes_the_exact_size_and_reports_the_seed(texture_path, tmp_path, capsys):
    out = tmp_path / "tex.png"
    code, stdout, _ = run(
        ["synthesize", texture_path, "--size", "1000x744", "--seed", "3", "-o", out], capsys
    )
    assert code == 0 and "seed 3" in stdout and str(out) in stdout
    assert Image.open(out).size == (1000, 744)


def test_synthesize_is_repeatable_and_count_names_the_files(texture_path, tmp_path, capsys):
    single, many = tmp_path / "one.png", tmp_path / "many.png"
    base = ["synthesize", texture_path, "--size", "40x30", "--seed", "7"]
    assert run([*base, "-o", single], capsys)[0] == 0
    assert run([*base, "--count", "3", "-o", many], capsys)[0] == 0
    files = [tmp_path / f"many-{i}.png" for i in (1, 2, 3)]
    assert all(f.is_file() for f in files) and not many.exists()
    images = [np.asarray(Image.open(f), np.float32) for f in [single, *files]]
    np.testing.assert_array_equal(images[0], images[1])  # same seed, same first texture
    assert np.abs(images[1] - images[2]).mean() > 5


def test_without_a_seed_the_seed_used_is_printed_and_reproduces(texture_path, tmp_path, capsys):
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    _, stdout, _ = run(["synthesize", texture_path, "--size", "32x32", "-o", a], capsys)
    seed = stdout.split("seed ")[1].split(")")[0]
    run(["synthesize", texture_path, "--size", "32x32", "--seed", seed, "-o", b], capsys)
    assert np.array_equal(np.asarray(Image.open(a)), np.asarray(Image.open(b)))


@pytest.mark.parametrize(("suffix", "fmt"), [(".png", "PNG"), (".jpg", "JPEG"), (".webp", "WEBP")])
def test_the_output_format_follows_the_extension(texture_path, tmp_path, capsys, suffix, fmt):
    out = tmp_path / f"tex{suffix}"
    assert run(["synthesize", texture_path, "--size", "48x40", "-o", out], capsys)[0] == 0
    with Image.open(out) as im:
        assert im.format == fmt and im.size == (48, 40)


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (["--size", "1x1"], "at least 16 pixels"),
        (["--size", "4097x31"], "maximum of 4096"),
        (["--size", "64x64", "--count", "0"], "argument --count: must be positive, not 0"),
        (["--size", "64x64", "--seed", "-5"], "argument --seed: must be at least 0"),
        (["--size", "64x64", "--threads", "0"], "argument --threads: must be positive"),
        (["--size", "64x64", "--providers", "CUDAExecutionProvider"], "not available"),
    ],
)
def test_bad_synthesize_arguments_are_one_line_and_write_nothing(
    texture_path, tmp_path, capsys, args, match
):
    out = tmp_path / "tex.png"
    code, _, err = run(["synthesize", texture_path, *args, "-o", out], capsys)
    assert code == 2 and match in one_line_error(err)
    assert list(tmp_path.iterdir()) == []


def test_an_unknown_output_format_is_refused_before_running(texture_path, tmp_path, capsys):
    code, _, err = run(
        ["synthesize", texture_path, "--size", "64x64", "-o", tmp_path / "t.bmp"], capsys
    )
    assert code == 2 and ".png, .jpg or .webp" in one_line_error(err)


def test_a_malformed_size_is_an_argparse_error(texture_path, tmp_path, capsys):
    code, _, err = run(
        ["synthesize", texture_path, "--size", "big", "-o", tmp_path / "t.png"], capsys
    )
    assert code == 2 and "WIDTHxHEIGHT" in one_line_error(err)


def test_wrong_mode_from_the_command_line(texture_path, style_path, tmp_path, capsys):
    photo(64, 64).save(tmp_path / "in.png")
    code, _, err = run(
        ["stylize", texture_path, tmp_path / "in.png", "-o", tmp_path / "o.png"], capsys
    )
    assert code == 2 and "texture model" in one_line_error(err)
    code, _, err = run(
        ["synthesize", style_path, "--size", "64x64", "-o", tmp_path / "t.png"], capsys
    )
    assert code == 2 and "style model" in one_line_error(err)


def test_stylize_one_file_keeps_its_size(style_path, tmp_path, capsys):
    photo(333, 222).save(tmp_path / "photo.jpg")
    out = tmp_path / "styled.webp"
    code, stdout, err = run(["stylize", style_path, tmp_path / "photo.jpg", "-o", out], capsys)
    assert code == 0 and str(out) in stdout and err == ""  # no progress bar for one file
    with Image.open(out) as im:
        assert im.size == (333, 222) and im.format == "WEBP"


def test_stylize_a_phone_photo_writes_a_png_of_its_size(style_path, tmp_path, capsys):
    pillow_heif = pytest.importorskip("pillow_heif", reason="pillow-heif (the heif extra) absent")
    folder = tmp_path / "phone"
    folder.mkdir()
    pillow_heif.from_pillow(photo(72, 48)).save(folder / "IMG_0001.HEIC")
    code, stdout, err = run(["stylize", style_path, folder, "-o", tmp_path / "out"], capsys)
    assert code == 0, err
    with Image.open(tmp_path / "out" / "IMG_0001.png") as im:  # HEIC is not written: PNG
        assert im.size == (72, 48) and im.format == "PNG"


def test_stylize_files_and_folders_into_a_folder_with_a_progress_bar(style_path, tmp_path, capsys):
    folder = tmp_path / "photos"
    folder.mkdir()
    photo(40, 50, 1).save(folder / "a.png")
    photo(60, 30, 2).save(folder / "b.jpg")
    photo(20, 20, 3).save(folder / "c.bmp")
    photo(30, 40, 4).save(tmp_path / "d.webp")
    out = tmp_path / "out"
    code, stdout, err = run(["stylize", style_path, folder, tmp_path / "d.webp", "-o", out], capsys)
    assert code == 0 and "4 images" in stdout
    assert "4/4" in err  # tqdm's bar
    sizes = {p.name: Image.open(p).size for p in out.iterdir()}
    assert sizes == {"a.png": (40, 50), "b.jpg": (60, 30), "c.png": (20, 20), "d.webp": (30, 40)}


def test_one_bad_image_in_a_batch_is_named_and_the_rest_are_done(style_path, tmp_path, capsys):
    folder = tmp_path / "photos"
    folder.mkdir()
    photo(40, 40).save(folder / "good.png")
    (folder / "broken.png").write_bytes(b"\x89PNG not really")
    out = tmp_path / "out"
    code, _, err = run(["stylize", style_path, folder, "-o", out], capsys)
    assert code == 2
    assert "broken.png" in err and "1 of 2 images could not be stylized" in err
    assert [p.name for p in out.iterdir()] == ["good.png"]


@pytest.mark.parametrize(
    ("inputs", "output", "match"),
    [
        (["empty"], "out", "no images found"),
        (["a.png", "b.png"], "out.png", "need a folder"),
        (["a.png"], "a.png", "is the input itself"),
        (["a.png", "sub/a.png"], "out", "would both be written"),
        (["missing.png"], "out.png", "does not exist"),
    ],
)
def test_bad_stylize_arguments(style_path, tmp_path, capsys, inputs, output, match):
    (tmp_path / "empty").mkdir()
    (tmp_path / "sub").mkdir()
    for name in ("a.png", "b.png", "sub/a.png"):
        photo(32, 32).save(tmp_path / name)
    args = ["stylize", style_path, *[tmp_path / i for i in inputs], "-o", tmp_path / output]
    code, _, err = run(args, capsys)
    assert code == 2 and match in one_line_error(err)


@pytest.mark.parametrize("kind", ["random bytes", "foreign", "lying size multiple", "missing"])
def test_bad_models_from_the_command_line(texture_path, tmp_path, capsys, kind):
    model = bad_model(kind, texture_path, tmp_path)
    code, _, err = run(["synthesize", model, "--size", "64x64", "-o", tmp_path / "t.png"], capsys)
    assert code == 2 and str(model) in one_line_error(err)


def test_a_real_process_prints_one_line_and_debug_shows_the_traceback(tmp_path):
    model = tmp_path / "garbage.onnx"
    model.write_bytes(b"not an onnx file at all")
    args = ["synthesize", str(model), "--size", "64x64", "-o", str(tmp_path / "t.png")]
    plain = subprocess.run([*TN_RUN, *args], capture_output=True, text=True)
    assert plain.returncode == 2 and len(plain.stderr.strip().splitlines()) == 1
    assert "cannot be loaded by onnxruntime" in plain.stderr and plain.stdout == ""
    debug = subprocess.run([*TN_RUN, *args, "--debug"], capture_output=True, text=True)
    assert debug.returncode != 0 and "Traceback" in debug.stderr


def test_stylize_tiles_follow_tile_pixels(style_path, tmp_path, capsys, monkeypatch):
    import tn_export.runtime as runtime

    shapes: list = []
    run_model = runtime.Model.run
    monkeypatch.setattr(
        runtime.Model, "run", lambda m, x, style: shapes.append(x.shape) or run_model(m, x, style)
    )
    photo(300, 200).save(tmp_path / "p.png")
    args = ["stylize", style_path, tmp_path / "p.png", "-o", tmp_path / "o.png"]
    assert run([*args, "--tile-pixels", str(64 * 64)], capsys)[0] == 0
    tiles = [s for s in shapes if s[2:] == (64, 64)]
    assert len(tiles) > 4
    assert Image.open(tmp_path / "o.png").size == (300, 200)


def test_stylize_of_one_large_photo_shows_progress_per_tile(style_path, tmp_path, capsys):
    photo(300, 200).save(tmp_path / "p.png")
    args = ["stylize", style_path, tmp_path / "p.png", "-o", tmp_path / "o.png"]
    code, _, err = run([*args, "--tile-pixels", str(64 * 64)], capsys)
    done = re.search(r"\b(\d+)/\1 \[.*tile", err)  # tqdm's finished bar: 24/24 [... 3.1tile/s]
    assert code == 0 and done and int(done[1]) > 4, err


def test_library_errors_are_worded_as_tn_run_flags(style_path, tmp_path, capsys):
    photo(64, 64).save(tmp_path / "p.png")
    args = ["stylize", style_path, tmp_path / "p.png", "-o", tmp_path / "o.png"]
    code, _, err = run([*args, "--tile-pixels", "49"], capsys)
    assert code == 2 and one_line_error(err).endswith("; raise --tile-pixels")
