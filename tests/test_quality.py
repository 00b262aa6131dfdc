"""tn-bench quality: the yardstick's mechanics on a tiny random descriptor, and with the real
VGG-16 that it tells the paper's released generators and the bundled model apart from noise and
from other textures."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PIL import Image
from test_runtime import tiny_onnx

from benchmarks import gatys, quality
from benchmarks.cli import main as bench_main
from benchmarks.judge import TILE, QualityConfig, quality_table, run_quality
from tn_export.checkpoint import save_checkpoint
from tn_export.contract import ModelContract
from tn_export.descriptor import TEXTURE_LAYERS, load_descriptor
from tn_export.errors import UserError
from tn_export.export.graph import delivered
from tn_export.generator import PyramidGenerator
from tn_export.images import from_array, save_image, to_array

# The bundled red_peppers model (13,435 over 8 seeds, README; 15,760 on this test's 2 seeds) must
# stay at or below issue 10's target: 1.25x the paper's released model (14,111 over 8 seeds).
BUNDLED_RED_PEPPERS_TARGET = 17_639


def _smooth_noise(size: int, blur: int, seed: int = 0) -> torch.Tensor:
    """Blobs about `blur` pixels across: box-filtered noise, as a (3, size, size) image."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(1, 1, size + 2 * blur, size + 2 * blur, generator=g)
    x = torch.nn.functional.avg_pool2d(x, 2 * blur + 1, stride=1)[..., :size, :size]
    x = (x - x.min()) / (x.max() - x.min())
    return x[0].expand(3, -1, -1).clone()


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("images")
    paths = {}
    for name, blur in (("fine", 2), ("coarse", 8)):
        paths[name] = folder / f"{name}.png"
        save_image(from_array(_smooth_noise(96, blur).numpy()), paths[name])
    return paths


def _config(model: str, out: Path, images: dict[str, Path], **changes) -> QualityConfig:
    base = dict(
        model=model, out=out, exemplar=images["fine"], descriptor_weights=None,
        against=[images["coarse"]], size=(64, 64), samples=3, descriptor="random",
    )  # fmt: skip
    return QualityConfig(**{**base, **changes})


def test_element_size_follows_the_scale_of_the_image():
    small = _smooth_noise(128, 3)
    large = torch.nn.functional.interpolate(small[None], scale_factor=2, mode="bicubic")[0]
    ratio = quality.element_size(large) / quality.element_size(small)
    assert 1.8 < ratio < 2.2
    assert quality.element_size(_smooth_noise(128, 8)) > 1.3 * quality.element_size(small)


@pytest.mark.parametrize(
    ("texture", "released"),
    [("bricks.png", "bricks.png_model.t7"), ("red-peppers.jpg", "red-peppers256.o.jpg_model.t7")],
)
def test_element_size_finds_the_released_models_at_their_exemplars_scale(
    shared_dir, texture, released
):
    """The paper's generators keep their textures' scale (by eye); the measure must agree
    (0.93 and 1.04 when written) and must see the exemplar itself resized by 1.5."""
    from tn_export.torch7 import load_torch7

    path = shared_dir / "data" / "textures" / texture
    exemplar = torch.from_numpy(to_array(Image.open(path).convert("RGB")))
    larger = torch.nn.functional.interpolate(exemplar[None], scale_factor=1.5, mode="bicubic")
    own = quality.element_size(exemplar)
    assert 1.35 < quality.element_size(larger) / own < 1.7
    generator = load_torch7(shared_dir / "data" / "texture_nets_v1_models" / released).generator
    samples = quality.generator_samples(generator, 4, 256, 256)
    ratio = sum(quality.element_size(s) for s in samples) / len(samples) / own
    assert 0.85 < ratio < 1.15


def test_the_exemplar_scores_zero_against_itself_and_more_against_others():
    d = load_descriptor("random", TEXTURE_LAYERS)
    a, b = _smooth_noise(64, 2), _smooth_noise(64, 8, seed=1)
    r = quality.texture_quality(d, TEXTURE_LAYERS, a[None], a[None], {"b": b[None]})
    assert r["gram_distance"]["mean"] == pytest.approx(0.0, abs=1e-9)
    assert r["against"]["b"] > 0 and r["nearest_other"] == "b"
    assert sum(r["per_layer"].values()) == pytest.approx(r["gram_distance"]["mean"], abs=1e-9)


def test_delivered_images_are_clamped_and_8_bit():
    x = torch.tensor([-0.5, 0.1234, 0.5, 1.7])
    out = delivered(x)
    assert out.min() >= 0 and out.max() <= 1
    assert torch.equal(out * 255, (out * 255).round())


def _tiny(mode: str = "texture") -> PyramidGenerator:
    """A 3-scale generator whose norms have seen one batch, so its eval output is not flat."""
    torch.manual_seed(0)
    g = PyramidGenerator(mode, scales=3, channels=4)
    with torch.no_grad():
        g(torch.rand(2, g.config.input_channels, 32, 32))
        g.to_rgb.bias.fill_(0.5)  # mid-grey plus a little structure, not clipped flat
        g.to_rgb.weight.mul_(100.0)
    return g.eval()


def test_quality_of_a_checkpoint_writes_json_and_picture(tmp_path, images, capsys):
    path = tmp_path / "model.pt"
    save_checkpoint(path, _tiny())
    result = run_quality(_config(str(path), tmp_path / "q", images))
    saved = json.loads((tmp_path / "q" / "quality.json").read_text())
    assert saved["gram_distance"]["mean"] == pytest.approx(result["gram_distance"]["mean"])
    assert len(saved["gram_distance"]["values"]) == 3 and saved["seam_error"] > 0
    assert saved["against"]["coarse.png"] > 0 and saved["pixel_diversity"] > 0
    with Image.open(tmp_path / "q" / "quality.png") as sheet:
        assert sheet.width > 4 * TILE and sheet.height > 2 * TILE
    table = quality_table(result)
    assert "relu5_1" in table and "nearest other texture: coarse.png" in table


def test_quality_of_an_onnx_model_runs_through_the_runtime(tmp_path, images):
    # An identity graph with a texture contract: its "texture" is its own noise, clipped.
    contract = ModelContract(mode="texture", size_multiple=4, min_size=8, max_size=256)
    model = tiny_onnx(tmp_path / "noise.onnx", 4, contract.to_metadata())
    result = run_quality(_config(str(model), tmp_path / "q", images))
    assert result["count"] == 3 and result["size"] == [64, 64]
    # Clipped unit noise is about half 0 and half above: far from the smooth exemplar.
    assert result["pixel_diversity"] > 0.3


def test_style_model_needs_photos(tmp_path, images, capsys):
    path = tmp_path / "style.pt"
    save_checkpoint(path, _tiny("style"))
    with pytest.raises(Exception, match="--photos"):
        run_quality(_config(str(path), tmp_path / "q", images))
    photo = images["coarse"]
    result = run_quality(_config(str(path), tmp_path / "q", images, photos=[photo, photo]))
    assert result["count"] == 2 and result["content_distance"]["mean"] >= 0
    assert "style distance" in quality_table(result)


def test_a_model_of_several_styles_is_scored_in_the_style_asked(tmp_path, images):
    torch.manual_seed(0)
    g = PyramidGenerator("style", norm="conditional", padding="reflect", styles=2)
    with torch.no_grad():
        for m in g.modules():
            if hasattr(m, "num_features") and m.weight.dim() == 2:  # the conditional norms
                m.weight.uniform_(0.8, 1.2)
                m.bias.normal_(0, 0.3)
    path = tmp_path / "two.pt"
    save_checkpoint(path, g.eval(), {"styles": ["fine", "coarse"]})
    photos = {"photos": [images["coarse"], images["fine"]]}
    scores = {
        style: run_quality(_config(str(path), tmp_path / style, images, style=style, **photos))
        for style in ("fine", "coarse")
    }
    assert scores["fine"]["style"] == "fine" and "in style coarse" in quality_table(
        scores["coarse"]
    )
    distances = [scores[s]["style_distance"]["mean"] for s in ("fine", "coarse")]
    assert distances[0] != pytest.approx(distances[1], rel=1e-3)
    default = run_quality(_config(str(path), tmp_path / "first", images, **photos))
    assert default["style_distance"] == scores["fine"]["style_distance"]  # the first style
    with pytest.raises(UserError, match="has no style 'bold'; its styles: fine, coarse"):
        run_quality(_config(str(path), tmp_path / "bad", images, style="bold", **photos))


def test_cli_refuses_a_bad_size_in_one_line(tmp_path, images, capsys):
    code = bench_main(
        ["quality", "red_peppers", "--exemplar", str(images["fine"]), "--size", "9x", "-o",
         str(tmp_path / "q")]
    )  # fmt: skip
    assert code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--size" in err and not (tmp_path / "q").exists()


def test_training_curve_plots_the_logged_distances(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    rows = [{"iteration": i, "loss": 1.0, "seconds": 60.0 * i, "eval_distance": 1e5 / i}
            for i in (1, 2, 3)]  # fmt: skip
    (run / "log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "curve.png"
    assert bench_main(["training-curve", str(run), "--reference", "paper=2e4", "-o", str(out)]) == 0
    with Image.open(out) as image:
        assert image.width > 300
    assert bench_main(["training-curve", str(tmp_path), "-o", str(out)]) == 2
    assert "no log.jsonl" in capsys.readouterr().err


# --- with the real VGG-16 -----------------------------------------------------------------------


def _judge(shared_dir: Path, weights: Path, model: str, texture: str, out: Path) -> dict:
    textures = shared_dir / "data" / "textures"
    cfg = QualityConfig(
        model=model, out=out, exemplar=textures / texture, descriptor_weights=str(weights),
        against=[p for p in sorted(textures.iterdir()) if p.name != texture], samples=2,
    )  # fmt: skip
    return run_quality(cfg)


def test_released_bricks_model_beats_noise_and_red_peppers(shared_dir, vgg16_weights, tmp_path):
    model = shared_dir / "data" / "texture_nets_v1_models" / "bricks.png_model.t7"
    if not model.is_file():
        pytest.skip(f"{model} is absent: the paper's released bricks model is needed")
    result = _judge(shared_dir, vgg16_weights, str(model), "bricks.png", tmp_path / "q")
    noise = torch.rand(2, 3, 256, 256, generator=torch.Generator().manual_seed(0))
    d = load_descriptor("vgg16", TEXTURE_LAYERS, vgg16_weights)
    exemplar = torch.from_numpy(to_array(Image.open(shared_dir / "data/textures/bricks.png")))
    as_noise = quality.texture_quality(d, TEXTURE_LAYERS, delivered(noise), exemplar[None])
    assert result["gram_distance"]["mean"] * 20 < as_noise["gram_distance"]["mean"]
    assert result["against"]["red-peppers.jpg"] > 20 * result["gram_distance"]["mean"]


def test_bundled_red_peppers_model_stays_within_its_stated_quality(
    shared_dir, vgg16_weights, tmp_path
):
    result = _judge(shared_dir, vgg16_weights, "red_peppers", "red-peppers.jpg", tmp_path / "q")
    assert result["gram_distance"]["mean"] <= BUNDLED_RED_PEPPERS_TARGET
    assert result["separation"] > 100  # 164x over 8 seeds


def test_a_resumed_runs_curve_continues_its_clock():
    from benchmarks.plots import eval_curve

    rows = [
        {"seconds": 60, "eval_distance": 9},
        {"seconds": 120},
        {"seconds": 30, "eval_distance": 5},
    ]
    assert eval_curve(rows) == [(1.0, 9), (2.5, 5)]


def test_gatys_minimises_the_loss_the_style_model_was_trained_on(tmp_path, images):
    """style_objective, built from a checkpoint's train_config alone, is training's loss."""
    from dataclasses import asdict

    from training.train import TrainConfig, _Objective

    cfg = TrainConfig(
        "style", exemplar=images["fine"], out=tmp_path, descriptor="random", style_weight=0.5,
        content_weight=3.0, relative_loss=False,
    )  # fmt: skip
    descriptor = load_descriptor("random", [*cfg.layers, cfg.content_layer])
    training = _Objective(cfg, descriptor, torch.autocast("cpu", enabled=False), content=True)
    style = torch.from_numpy(to_array(Image.open(images["fine"])))[None]
    training.aim_at([style])
    photo, image = torch.rand(2, 1, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    expected = sum(training.terms(photo, image).values())
    train = json.loads(json.dumps(asdict(cfg), default=str))  # as stored in the checkpoint
    objective = gatys.style_objective(descriptor, train, style, photo)
    assert float(objective(image)) == pytest.approx(float(expected), rel=1e-5)


def test_gatys_stylizes_each_photo_to_the_generators_loss(tmp_path, images):
    path = tmp_path / "style.pt"
    save_checkpoint(path, _tiny("style"), {"train_config": {"style_weight": 1.0}})
    photos = {"photos": [images["coarse"]], "gatys_seconds": 30.0}
    result = run_quality(_config(str(path), tmp_path / "q", images, **photos))
    (record,) = result["gatys"]["photos"]
    best = record["variants"][record["baseline"]]
    assert set(record["variants"]) == set(gatys.PIXELS)
    # The photo itself is nearer the generator's loss than the untrained generator's output,
    # so Gatys reaches parity, and the image it returns is at or below that loss.
    assert best["parity_s"] is not None and best["loss"] <= record["generator_loss"]
    assert record["generator_s"] > 0 and len(result["gatys"]["style_distance"]["values"]) == 1
    assert "Gatys et al. to parity" in quality_table(result)
    sheet = Image.open(tmp_path / "q" / "quality.png")
    assert sheet.height == 3 * (TILE + 18)  # photos, stylized, Gatys
    texture = tmp_path / "texture.pt"
    save_checkpoint(texture, _tiny())
    with pytest.raises(UserError, match="--gatys compares a style model"):
        run_quality(_config(str(texture), tmp_path / "t", images, gatys_seconds=5.0))
