"""apps/web in a real headless Chromium: the bundled model generates what Python onnxruntime does,
on wasm and, switched over, on WebGPU (Chromium's software adapter).

Needs Debian's chromium and `npm ci` in apps/web (.ci/setup-browser installs both); skipped, with
the reason, where they are missing. Screenshots are kept in the folder each test prints.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from test_exact_tiling import export_tiny
from test_runtime import photo, tiny_onnx

from tn_export import runtime
from tn_export.images import to_array
from tn_export.runtime.controls import Controls
from tn_export.runtime.noise import gaussian
from tn_export.runtime.styles import Style

WEB = Path(__file__).resolve().parents[1] / "apps" / "web"
CHROMIUM = Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))
TOLERANCE = 1e-3  # max abs difference in [0, 1]
BACKENDS_AGREE = 1e-4  # WebGPU against wasm, max abs difference in [0, 1]
NO_ADAPTER = "WebGPU unavailable: the browser gives no WebGPU adapter"


def _missing() -> str | None:
    if not CHROMIUM.is_file():
        return f"{CHROMIUM} is missing (run .ci/setup-browser or set $CHROMIUM)"
    if shutil.which("node") is None:
        return "node is missing (run .ci/setup-browser)"
    for package in ("onnxruntime-web", "playwright-core"):
        if not (WEB / "node_modules" / package / "package.json").is_file():
            return f"apps/web/node_modules/{package} is missing (run npm ci in apps/web)"
    return None


pytestmark = pytest.mark.skipif(_missing() is not None, reason=_missing() or "")


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """(page origin, folder served at /models/) with both bundled models exported to ONNX there:
    what a user gets out of the box, less the exact-tiling parts (the page does not use them)."""
    from tn_export.export.cli import main as export_main

    models = tmp_path_factory.mktemp("web-models")
    for name in ("red_peppers", "starry"):
        assert export_main(["--format", "onnx", name, "--no-tiling-parts", "-o", str(models)]) == 0
    server = subprocess.Popen(
        [sys.executable, str(WEB / "serve.py"), "--port", "0", "--models", str(models)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        line = server.stdout.readline()
        assert line.startswith("serving http://127.0.0.1:"), line
        yield line.split()[1].rstrip("/"), models
    finally:
        server.terminate()
        server.wait(timeout=10)


def browse(url: str, out: Path, *args: Path | str) -> tuple[int, dict]:
    """Run the Playwright driver, with its arguments (an image to stylize, "--camera",
    "--webgpu", "--switch"); returns its exit status and summary (screenshot in `out`)."""
    out.mkdir(parents=True, exist_ok=True)
    command = ["node", str(WEB / "tests" / "e2e.mjs"), url, str(out), *map(str, args)]
    done = subprocess.run(command, cwd=WEB, timeout=300)
    print(f"browser artifacts: {out}")
    return done.returncode, json.loads((out / "summary.json").read_text())


def raw_stylized(
    model: runtime.Model, rgb: np.ndarray, controls: Controls | None = None, style: Style = None
) -> np.ndarray:
    """The runtime's own padded run of an (H, W, 3) uint8 picture as one tile, cropped back:
    the (3, H, W) output the page computes, before its 8-bit conversion."""
    height, width = rgb.shape[:2]
    photos = rgb.transpose(2, 0, 1)[None].astype(np.float32) / 255.0
    controls = controls or Controls()
    padded = (model.padded(height), model.padded(width))
    return model._stylize_padded(photos, *padded, controls, style)[0, :, :height, :width]


@pytest.fixture(scope="module")
def two_styles(served: tuple[str, Path]) -> Path:
    """An untrained style model of two styles (style1, style2) in the served folder, its
    conditional norms randomised so that the styles differ."""
    import torch

    import tn_export
    from tn_export.generator import ConditionalInstanceNorm2d, PyramidGenerator

    torch.manual_seed(0)
    g = PyramidGenerator("style", norm="conditional", padding="reflect", styles=2)
    for m in g.modules():
        if isinstance(m, ConditionalInstanceNorm2d):
            m.weight.data.uniform_(0.8, 1.2)
            m.bias.data.normal_(0, 0.2)
    models = served[1]
    tn_export.export(g, "onnx", models, sizes=(64, 256), tiling_parts=False, name="two_styles")
    return models / "two_styles.onnx"


def test_bundled_model_in_the_browser_matches_python_onnxruntime(served, tmp_path):
    origin, models = served
    model = runtime.load(models / "red_peppers.onnx")
    noise = np.random.default_rng(0).standard_normal((1, 3, 256, 256), dtype=np.float32)
    noise.astype("<f4").tofile(models / "noise.bin")
    url = f"{origin}/index.html?model=/models/red_peppers.onnx&size=256x256&noise=/models/noise.bin"

    start = time.perf_counter()
    code, summary = browse(url, tmp_path / "texture")
    wall = time.perf_counter() - start
    assert code == 0, summary
    web = np.fromfile(tmp_path / "texture" / "out.bin", "<f4").reshape(3, 256, 256)
    python = model.run(noise)[0]
    difference = float(np.abs(web - python).max())
    print(f"browser vs Python max abs difference {difference:.2e}; browser test {wall:.1f} s")
    assert python.std() > 0.05  # a real texture, not a flat image
    assert difference <= TOLERANCE
    assert summary["foreign"] == [] and summary["errors"] == []
    assert summary["download"]["width"] == 256 and summary["download"]["height"] == 256
    # Without --enable-unsafe-webgpu headless Chromium has navigator.gpu but no adapter:
    # the switch offers wasm only, says why, and the page ran on wasm.
    assert summary["offered"] == ["wasm"] and summary["backendInfo"].startswith(NO_ADAPTER)
    assert re.fullmatch(r"Generated 256x256 on wasm in \d+ ms", summary["status"])
    assert (tmp_path / "texture" / "screenshot.png").stat().st_size > 10_000


def test_the_page_pads_and_crops_any_size_from_a_seed(served, tmp_path):
    origin, models = served
    code, summary = browse(
        f"{origin}/index.html?model=/models/red_peppers.onnx&size=100x60&seed=5&run=1",
        tmp_path / "seeded",
    )
    assert code == 0, summary
    rgb = np.fromfile(tmp_path / "seeded" / "out.bin", "<f4").reshape(3, 60, 100)
    assert summary["download"] == {
        "name": "red_peppers-100x60-seed5.png",
        "width": 100,
        "height": 60,
    }
    assert rgb.std() > 0.05 and rgb.min() >= 0 and rgb.max() <= 1
    # The page's noise is the runtime's counter-based noise: seed 5 is tn-run's seed 5.
    noise = gaussian(5, 3, np.arange(64), np.arange(128))[None]  # padded to 128x64
    python = runtime.load(models / "red_peppers.onnx").run(noise)[0][:, :60, :100]
    assert float(np.abs(rgb - python).max()) <= 1e-4


def test_a_texture_in_exact_tiles_is_python_s_whole_run(served, tmp_path):
    """With its tiling parts beside it the page runs a texture tile by tile (forced here with
    tile=, as it is for textures over 1024 pixels) and gets what Python gets in one run."""
    origin, models = served
    source = export_tiny(tmp_path / "tiny", "texture")  # 4 scales: sides multiples of 8
    for suffix in (".onnx", ".coarse.onnx", ".fine.onnx"):
        shutil.copy(source.with_suffix(suffix), models / source.with_suffix(suffix).name)
    url = f"{origin}/index.html?model=/models/{source.name}&size=72x40&seed=3&tile=16&run=1"
    code, summary = browse(url, tmp_path / "tiled")
    assert code == 0, summary
    assert re.fullmatch(r"Generated 72x40 in 15 exact tiles on wasm in \d+ ms", summary["status"])
    rgb = np.fromfile(tmp_path / "tiled" / "out.bin", "<f4").reshape(3, 40, 72)
    model = runtime.load(models / source.name)
    python = model.run(gaussian(3, 3, np.arange(40), np.arange(72))[None])[0]
    assert python.std() > 0.01
    assert float(np.abs(rgb - python).max()) <= 1e-4


def test_the_bundled_style_model_stylizes_a_chosen_image_as_python_does(served, tmp_path):
    origin, models = served
    picture = tmp_path / "photo.png"
    photo(100, 70).save(picture)
    code, summary = browse(
        f"{origin}/index.html?model=/models/starry.onnx", tmp_path / "style", picture
    )
    assert code == 0, summary
    web = np.fromfile(tmp_path / "style" / "out.bin", "<f4").reshape(3, 70, 100)
    model = runtime.load(models / "starry.onnx")
    python = raw_stylized(model, np.asarray(Image.open(picture).convert("RGB")))
    assert float(np.abs(web - python).max()) <= TOLERANCE
    assert summary["styles"] == []  # a model of one style: no style picker


def test_a_model_of_two_styles_stylizes_each_style_and_mixes_as_python_does(
    served, two_styles, tmp_path
):
    """?style= and ?mix= (tn-run's syntax) set the page's style picker and mix slider; the page
    feeds the style weights as the runtime does, so each choice is Python's stylize(style=)."""
    origin, _ = served
    picture = tmp_path / "photo.png"
    photo(80, 60, seed=3).save(picture)
    image = Image.open(picture).convert("RGB")
    model = runtime.load(two_styles)
    web = {}
    for key, query, style in [
        ("style", "style=style2", "style2"),
        ("mix", "mix=style1=0.25,style2=0.75", {"style1": 0.25, "style2": 0.75}),
    ]:
        url = f"{origin}/index.html?model=/models/{two_styles.name}&{query}"
        code, summary = browse(url, tmp_path / key, picture)
        assert code == 0, summary
        assert summary["styles"] == ["style1", "style2"]
        web[key] = np.fromfile(tmp_path / key / "out.bin", "<f4").reshape(3, 60, 80)
        raw = raw_stylized(model, np.asarray(image), style=style)
        assert float(np.abs(web[key] - raw).max()) <= TOLERANCE
        # What the page shows, in 8 bits, is the runtime's stylize(style=) of the picture.
        python = to_array(model.stylize(image, style=style))
        assert float(np.abs(np.clip(web[key], 0, 1) - python).max()) <= 0.5 / 255 + TOLERANCE
    style1 = raw_stylized(model, np.asarray(image), style="style1")
    assert np.abs(web["style"] - style1).mean() > 0.05  # the two styles differ
    for one in (style1, web["style"]):
        assert np.abs(web["mix"] - one).mean() > 0.02  # and the mix is neither


def test_an_unknown_style_is_a_clear_error_on_the_page(served, two_styles, tmp_path):
    origin, _ = served
    url = f"{origin}/index.html?model=/models/{two_styles.name}&mix=style1=0.5,mosaic=0.5"
    code, summary = browse(url, tmp_path / "unknown")
    assert code == 1 and summary["state"] == "error"
    assert summary["status"] == 'two_styles.onnx has no style "mosaic"; its styles: style1, style2'


def test_a_foreign_model_is_a_clear_error_on_the_page(served, tmp_path):
    origin, models = served
    tiny_onnx(models / "foreign.onnx", 4, {"author": "someone else"})
    code, summary = browse(f"{origin}/index.html?model=/models/foreign.onnx", tmp_path / "foreign")
    assert code == 1 and summary["state"] == "error"
    assert "has no tn-export metadata" in summary["status"]


def test_strength_and_keep_colors_on_the_page_match_the_runtime(served, tmp_path):
    origin, models = served
    picture = tmp_path / "photo.png"
    photo(90, 60, seed=2).save(picture)
    url = f"{origin}/index.html?model=/models/starry.onnx&strength=0.5&keep-colors=1"
    code, summary = browse(url, tmp_path / "controls", picture)
    assert code == 0, summary
    web = np.fromfile(tmp_path / "controls" / "out.bin", "<f4").reshape(3, 60, 90)
    model = runtime.load(models / "starry.onnx")
    rgb = np.asarray(Image.open(picture).convert("RGB"))
    python = raw_stylized(model, rgb, Controls(0.5, keep_colors=True))
    assert float(np.abs(web - python).max()) <= TOLERANCE
    assert np.abs(python - raw_stylized(model, rgb)).mean() > 0.02  # the controls did something


def test_the_camera_stylizes_live_frames_as_python_does(served, tmp_path):
    """Chromium's fake camera (a moving test picture): frames are stylized live with frames per
    second shown, a snapshot is offered, and the last frame equals Python onnxruntime's run."""
    origin, models = served
    out = tmp_path / "camera"
    code, summary = browse(f"{origin}/index.html?model=/models/starry.onnx", out, "--camera")
    assert code == 0, summary
    camera = summary["camera"]
    width, height = camera["width"], camera["height"]
    assert camera["frames"] >= 3 and max(width, height) == 256, camera
    assert re.fullmatch(rf"\d+\.\d frames/s at {width}x{height} on wasm", summary["fps"])
    assert summary["download"]["name"].startswith("camera-starry-")
    assert (summary["download"]["width"], summary["download"]["height"]) == (width, height)
    frame = np.fromfile(out / "camera.bin", np.uint8).reshape(height, width, 4)[..., :3]
    web = np.fromfile(out / "out.bin", "<f4").reshape(3, height, width)
    python = raw_stylized(runtime.load(models / "starry.onnx"), frame)
    print(f"camera: {camera['frames']} frames, {summary['fps']}")
    assert frame.std() > 10  # a real picture came from the camera
    assert float(np.abs(web - python).max()) <= TOLERANCE


def test_webgpu_and_wasm_agree_and_the_page_says_which_ran(served, tmp_path):
    """Chromium with WebGPU (--enable-unsafe-webgpu: Dawn's SwiftShader adapter, on the CPU):
    the page starts on wasm (a software adapter is no default), then re-runs when switched to
    WebGPU; each run says its backend, and the two agree within 1e-4. Without an adapter, wasm
    is checked and the test is skipped with the page's reason."""
    origin, models = served
    noise = np.random.default_rng(1).standard_normal((1, 3, 64, 64), dtype=np.float32)
    noise.astype("<f4").tofile(models / "noise64.bin")
    url = f"{origin}/index.html?model=/models/red_peppers.onnx&size=64x64&noise=/models/noise64.bin"
    out = tmp_path / "backends"
    code, summary = browse(url, out, "--webgpu", "--switch")
    assert code == 0, summary
    wasm = np.fromfile(out / "out.bin", "<f4").reshape(3, 64, 64)
    python = runtime.load(models / "red_peppers.onnx").run(noise)[0]
    assert float(np.abs(wasm - python).max()) <= TOLERANCE
    assert re.fullmatch(r"Generated 64x64 on wasm in \d+ ms", summary["runs"][0]["status"])
    if "webgpu" not in summary["offered"]:
        pytest.skip(f"headless Chromium gave no WebGPU; the page says: {summary['backendInfo']}")
    info = summary["backendInfo"]
    assert info.startswith("WebGPU adapter: ") and info.endswith("(software, so wasm by default)")
    assert [run["backend"] for run in summary["runs"]] == ["wasm", "webgpu"]
    assert re.fullmatch(r"Generated 64x64 on WebGPU in \d+ ms", summary["runs"][1]["status"])
    webgpu = np.fromfile(out / "out-webgpu.bin", "<f4").reshape(3, 64, 64)
    difference = float(np.abs(webgpu - wasm).max())
    print(f"{info}; WebGPU vs wasm max abs difference {difference:.2e}")
    print(f"{summary['runs']}; {summary['seconds']} s")
    assert difference <= BACKENDS_AGREE


def test_asking_for_webgpu_without_an_adapter_is_a_clear_error(served, tmp_path):
    origin, _ = served
    url = f"{origin}/index.html?model=/models/red_peppers.onnx&backend=webgpu&run=1"
    code, summary = browse(url, tmp_path / "no-webgpu")
    assert code == 1 and summary["state"] == "error"
    assert summary["status"].startswith("backend=webgpu: " + NO_ADAPTER), summary["status"]
