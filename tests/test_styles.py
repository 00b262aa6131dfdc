"""Several styles in one generator: conditional norms, tn-train styles, the style input of every
export, and tn-run's --style and --mix."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import tn_export
from tn_export import runtime
from tn_export.checkpoint import load_checkpoint
from tn_export.errors import UserError
from tn_export.generator import ConditionalInstanceNorm2d, PyramidGenerator
from tn_export.losses import gram_matrix, texture_loss
from tn_export.runtime.cli import main as tn_run
from training.cli import main as tn_train


def _stripes(path: Path, colour: tuple[float, float, float], period: float) -> Path:
    y, x = np.mgrid[0:96, 0:96]
    wave = (np.sin(x / period) * 0.5 + 0.5)[..., None] * np.array(colour)
    Image.fromarray((wave * 255).astype(np.uint8)).save(path)
    return path


def _photo(width: int = 96, height: int = 64, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    low = rng.random((height // 8 + 1, width // 8 + 1, 3))
    pixels = np.kron(low, np.ones((8, 8, 1)))[:height, :width]  # blocks: smooth regions
    return Image.fromarray((pixels * 255).astype(np.uint8))


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A two-style run (red fine stripes, blue coarse ones) on a random descriptor."""
    root = tmp_path_factory.mktemp("styles")
    red = _stripes(root / "red.png", (1.0, 0.2, 0.1), 2.0)
    blue = _stripes(root / "blue.png", (0.1, 0.3, 1.0), 6.0)
    photos = root / "photos"
    photos.mkdir()
    for i in range(2):
        _photo(128, 96, seed=i).save(photos / f"p{i}.png")
    run = root / "run"
    args = ["styles", "--style", str(red), str(blue), "--content", str(photos), "-o", str(run)]
    fast = ["--descriptor", "random", "--image-size", "64", "--batch-size", "2"]
    assert tn_train([*args, *fast, "--iterations", "30", "--lr", "0.02"]) == 0
    return run / "model.pt"


def _style(index: int, count: int = 2) -> torch.Tensor:
    return torch.nn.functional.one_hot(torch.tensor([index]), count).float()


@torch.no_grad()
def _outputs(generator: PyramidGenerator, photo: torch.Tensor, weights) -> list[torch.Tensor]:
    generator.eval()
    return [generator(photo, torch.tensor([w], dtype=torch.float32)) for w in weights]


def test_two_styles_trained_briefly_differ_and_one_hot_is_that_style(trained):
    ckpt = load_checkpoint(trained)
    g = ckpt.generator
    assert g.config.norm == "conditional" and g.config.styles == 2
    assert ckpt.metadata["styles"] == ["red", "blue"]
    photo = torch.from_numpy(np.asarray(_photo(), np.float32).transpose(2, 0, 1) / 255)[None]
    red, blue = _outputs(g, photo, [[1, 0], [0, 1]])
    assert float((red - blue).abs().mean()) > 0.02  # each style learnt its own norms
    # One-hot weights are that style exactly: an instance-norm generator with the shared weights
    # and the style's own scales and shifts gives the same image.
    for index, expected in enumerate((red, blue)):
        single = PyramidGenerator("style", norm="instance", padding="reflect").eval()
        state = {
            k: v[index] if k.rsplit(".", 1)[0] in _conditional(g) else v
            for k, v in g.state_dict().items()
        }
        single.load_state_dict(state)
        with torch.no_grad():
            error = float((single(photo) - expected).abs().max())
        assert error < 1e-4 * float(expected.abs().max())  # float32 rounding of the same sums


def _conditional(g: PyramidGenerator) -> set[str]:
    return {n for n, m in g.named_modules() if isinstance(m, ConditionalInstanceNorm2d)}


def test_a_mix_lies_between_its_styles(trained):
    g = load_checkpoint(trained).generator
    photo = torch.from_numpy(np.asarray(_photo(seed=3), np.float32).transpose(2, 0, 1) / 255)[None]
    steps = [0.0, 0.25, 0.5, 0.75, 1.0]
    images = _outputs(g, photo, [[1 - t, t] for t in steps])
    from_red = [float((x - images[0]).abs().mean()) for x in images]
    from_blue = [float((x - images[-1]).abs().mean()) for x in images]
    assert from_red == sorted(from_red) and from_blue == sorted(from_blue, reverse=True)
    assert max(from_red[2], from_blue[2]) < from_red[-1]  # the half mix is nearer each end


def test_each_sample_is_scored_against_its_own_style():
    torch.manual_seed(0)
    feats = {"a": torch.randn(3, 4, 5, 5)}
    targets = torch.stack([gram_matrix(torch.randn(1, 4, 5, 5))[0] for _ in range(2)])
    styles = torch.tensor([1, 0, 1])
    each = [
        texture_loss({"a": feats["a"][i : i + 1]}, {"a": targets[s]}, ["a"], relative)
        for relative in (False, True)
        for i, s in enumerate(styles)
    ]
    for k, relative in enumerate((False, True)):
        together = texture_loss(feats, {"a": targets[styles]}, ["a"], relative)
        assert torch.allclose(together, torch.stack(each[3 * k : 3 * k + 3]).mean())


def test_the_generator_refuses_missing_or_misshapen_style_weights():
    g = PyramidGenerator("style", norm="conditional", padding="reflect", styles=3).eval()
    x = torch.rand(2, 3, 64, 64)
    for bad in (None, torch.rand(2, 2), torch.rand(1, 3)):
        with pytest.raises(ValueError, match=r"style weights of shape \(2, 3\)"):
            g(x, bad)
    with pytest.raises(ValueError, match="takes no style weights"):
        PyramidGenerator("style", padding="reflect")(x, torch.rand(2, 3))
    with pytest.raises(ValueError, match="styles must be 1 to"):
        PyramidGenerator("style", norm="conditional", styles=0)
    with pytest.raises(ValueError, match="styles must be 1 to"):
        PyramidGenerator("style", norm="instance", styles=2)


def test_tn_train_styles_refuses_two_styles_of_one_name_and_a_batch_without_each(tmp_path, capsys):
    a = _stripes(tmp_path / "a.png", (1, 0, 0), 2)
    (tmp_path / "b").mkdir()
    same = _stripes(tmp_path / "b" / "a.png", (0, 0, 1), 4)
    other = _stripes(tmp_path / "c.png", (0, 1, 0), 4)
    base = ["styles", "--content", str(a), "-o", str(tmp_path / "run"), "--descriptor", "random"]
    assert tn_train([*base, "--style", str(a), str(same)]) == 2
    assert "two styles are named 'a'" in capsys.readouterr().err
    assert tn_train([*base, "--style", str(a), str(other), str(same), "--batch-size", "2"]) == 2
    assert "two styles are named 'a'" in capsys.readouterr().err
    cmd = [*base, "--style", str(a), str(other), "--batch-size", "1"]
    assert tn_train(cmd) == 2
    assert "smaller than the 2 styles" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


@pytest.fixture(scope="module")
def exported(trained, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("exported")
    results = tn_export.export(trained, ["onnx", "ort"], out, sizes=(64, 256), name="two")
    assert all(r.accepted for r in results), [r.validation.summary for r in results]
    return out / "two.onnx"


def test_the_onnx_model_takes_style_weights_per_image_in_a_dynamic_batch(exported):
    model = runtime.load(exported)
    contract = model.contract
    assert contract.styles == ("red", "blue") and contract.input_names == ["content", "style"]
    assert "reason" in contract.tiling  # instance statistics are global: no exact tiles
    inputs = {i.name: i.shape for i in model.session.get_inputs()}
    assert inputs["style"] == ["batch", 2] and inputs["content"][0] == "batch"
    photos = np.stack([np.asarray(_photo(96, 64, s), np.float32).transpose(2, 0, 1) / 255
                       for s in (5, 6, 7)])  # fmt: skip
    weights = np.array([[1, 0], [0, 1], [0.3, 0.7]], np.float32)
    together = model.session.run(None, {"content": photos, "style": weights})[0]
    for i, w in enumerate(weights):
        one = model.session.run(None, {"content": photos[i : i + 1], "style": w[None]})[0]
        np.testing.assert_allclose(together[i : i + 1], one, atol=1e-5)
    assert np.abs(together[0] - together[1]).mean() > 0.02


def test_the_runtime_picks_and_mixes_styles_and_names_them_in_errors(exported):
    model = runtime.load(exported)
    photo = _photo(100, 70, seed=8)
    first = np.asarray(model.stylize(photo), np.int16)
    red = np.asarray(model.stylize(photo, style="red"), np.int16)
    blue = np.asarray(model.stylize(photo, style=[0, 1]), np.int16)
    mix = np.asarray(model.stylize(photo, style={"red": 1, "blue": 3}), np.int16)
    same_mix = np.asarray(model.stylize(photo, style=[0.25, 0.75]), np.int16)
    assert (first == red).all() and (mix == same_mix).all() and red.shape == (70, 100, 3)
    assert np.abs(red - blue).mean() > 3
    assert np.abs(mix - blue).mean() < np.abs(mix - red).mean()  # 3/4 blue
    for bad, says in (
        ("green", "has no style 'green'; its styles: red, blue"),
        ({"red": 1, "pink": 1}, "has no style 'pink'"),
        ([1, 0, 0], "give 2 weights, not 3"),
        ([0, 0], "not all 0"),
        ([1, -1], "at least 0"),
    ):
        with pytest.raises(UserError, match=says):
            model.stylize(photo, style=bad)


def test_tn_run_style_and_mix(exported, tmp_path, capsys):
    photo = tmp_path / "photo.png"
    _photo(96, 96, seed=9).save(photo)
    model = runtime.load(exported)
    for flags, style in (
        (["--style", "blue"], "blue"),
        (["--mix", "red=0.4,blue=0.6"], [0.4, 0.6]),
    ):
        out = tmp_path / f"{flags[1]}.png"
        assert tn_run(["stylize", str(exported), str(photo), "-o", str(out), *flags]) == 0
        expected = np.asarray(model.stylize(Image.open(photo), style=style))
        assert (np.asarray(Image.open(out)) == expected).all()
    capsys.readouterr()
    for flags, says in (
        (["--style", "green"], "has no style 'green'; its styles: red, blue"),
        (["--mix", "red"], "--mix 'red': each part must be NAME=WEIGHT"),
    ):
        out = tmp_path / "bad.png"
        assert tn_run(["stylize", str(exported), str(photo), "-o", str(out), *flags]) == 2
        err = capsys.readouterr().err.strip()
        assert says in err and len(err.splitlines()) == 1 and not out.exists()


def test_a_model_of_one_style_refuses_a_style_choice(tmp_path, capsys):
    tn_export.export("starry", "onnx", tmp_path, sizes=(64, 128), tiling_parts=False)
    model = runtime.load(tmp_path / "starry.onnx")
    with pytest.raises(UserError, match="holds one style: it takes no style choice"):
        model.stylize(_photo(), style="starry")
    photo = tmp_path / "p.png"
    _photo().save(photo)
    args = ["stylize", str(tmp_path / "starry.onnx"), str(photo), "-o", str(tmp_path / "o.png")]
    assert tn_run([*args, "--style", "starry"]) == 2
    assert "takes no style choice" in capsys.readouterr().err


def test_core_ml_and_openvino_take_the_style_weights_too(trained, tmp_path):
    pytest.importorskip("coremltools")
    formats = [("coreml", "fp32")]
    try:
        import openvino  # noqa: F401

        formats.append(("openvino", "fp32"))
    except ImportError:
        pass
    results = tn_export.export(trained, formats, tmp_path, sizes=(64, 128), name="two")
    for r in results:
        assert r.accepted, r.validation.summary
        assert r.io["style"][-1] == "2", r.io
    coreml = next(r for r in results if r.format == "coreml")
    assert coreml.validation.details["backend"] in ("Core ML", "MIL reference evaluator")


def test_tn_run_video_applies_the_style_asked(exported, tmp_path, capsys):
    pytest.importorskip("av", reason="PyAV is missing: pip install -e '.[video]'")
    from clips import pan_and_zoom, read_frames, write_clip

    clip = tmp_path / "clip.mp4"
    write_clip(clip, pan_and_zoom(_photo(160, 120), (64, 48), 4), 10)
    frames = {}
    for style in ("red", "blue"):
        out = tmp_path / f"{style}.mp4"
        assert tn_run(["video", str(exported), str(clip), "-o", str(out), "--style", style]) == 0
        frames[style] = read_frames(out).astype(np.int16)
    model = runtime.load(exported)
    photos = read_frames(clip)
    expected = model.stylize_frames(photos, style="blue").astype(np.int16)
    # H.264 moves pixels by a few levels; the other style is much further off.
    assert np.abs(frames["blue"] - expected).mean() < np.abs(frames["red"] - expected).mean() / 3
    capsys.readouterr()
    assert tn_run(["video", str(exported), str(clip), "-o", str(tmp_path / "x.mp4"),
                   "--style", "green"]) == 2  # fmt: skip
    assert "has no style 'green'" in capsys.readouterr().err
    assert not (tmp_path / "x.mp4").exists()
