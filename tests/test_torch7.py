"""Import of the paper's released Lua Torch generators (tn_export.torch7)."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
import torch
import torchfile

from tn_export.checkpoint import load_checkpoint, save_checkpoint
from tn_export.descriptor import TEXTURE_LAYERS, load_descriptor
from tn_export.errors import UserError
from tn_export.images import load_image, to_array
from tn_export.losses import gram_matrix, texture_loss
from tn_export.torch7 import load_torch7

MODELS = {"bricks": "bricks.png_model.t7", "red_peppers": "red-peppers256.o.jpg_model.t7"}
TEXTURES = {"bricks": "bricks.png", "red_peppers": "red-peppers.jpg"}
FILE_FLOATS = 116_755  # what the released files hold (design.md section 1)
INTENDED_PARAMETERS = 116_915  # the pyramid with every norm sized for its input


def _model_path(shared_dir: Path, name: str) -> Path:
    path = shared_dir / "data" / "texture_nets_v1_models" / MODELS[name]
    if not path.is_file():
        pytest.skip(f"{path} is absent: the paper's released models are needed for this test")
    return path


@pytest.fixture(scope="module")
def released(shared_dir: Path) -> dict:
    return {name: load_torch7(_model_path(shared_dir, name)) for name in MODELS}


# A minimal Torch7 binary writer (torchfile only reads): numbers, strings, tables, Torch objects.
class _Module:
    def __init__(self, typename: str, **fields: object) -> None:
        self.typename, self.fields = typename, fields


def _t7_bytes(root: object) -> bytes:
    out, counter = bytearray(), iter(range(1, 10_000))

    def write(value: object) -> None:
        if isinstance(value, str):
            out.extend(struct.pack("<ii", 2, len(value)) + value.encode())
        elif isinstance(value, int | float):
            out.extend(struct.pack("<id", 1, value))
        elif isinstance(value, list | dict):
            items = value.items() if isinstance(value, dict) else enumerate(value, start=1)
            out.extend(struct.pack("<iii", 3, next(counter), len(value)))
            for key, item in items:
                write(key)
                write(item)
        else:
            out.extend(struct.pack("<ii", 4, next(counter)))
            for text in ("V 1", value.typename):
                out.extend(struct.pack("<i", len(text)) + text.encode())
            write(value.fields)

    write(root)
    return bytes(out)


def _vgg_grams(descriptor, image: torch.Tensor) -> dict[str, torch.Tensor]:
    with torch.no_grad():
        return {k: gram_matrix(v) for k, v in descriptor(image).items()}


def test_both_released_models_import_as_instance_norm_pyramids(released: dict) -> None:
    for name, checkpoint in released.items():
        config = checkpoint.generator.config
        assert (config.mode, config.scales, config.channels, config.noise_depth) == (
            "texture",
            6,
            8,
            3,
        )
        assert (config.norm, config.padding) == ("instance", "circular")
        assert not checkpoint.generator.training
        assert checkpoint.training_state is None
        assert checkpoint.metadata["file"] == MODELS[name]
        assert checkpoint.metadata["source"] == "texture_nets v1 (Lua Torch)"
        assert checkpoint.metadata["exemplar"] == MODELS[name].removesuffix("_model.t7")


def test_parameter_counts_and_the_flat_storage_read(shared_dir: Path, released: dict) -> None:
    for name, checkpoint in released.items():
        with open(_model_path(shared_dir, name), "rb") as f:
            reader = torchfile.T7Reader(f)
            reader.read_obj()
        floats = [a.size for a in reader.objects.values() if isinstance(a, np.ndarray)]
        assert FILE_FLOATS in floats  # one flat storage holds every parameter
        generator = checkpoint.generator
        assert sum(p.numel() for p in generator.parameters()) == INTENDED_PARAMETERS
        # The coarse-branch norms hold 8 weights followed by 8 biases in the flat storage; reading
        # 8*i weights from the weight view's start (upstream's kernel) reads the biases next.
        for join in generator.joins[1:]:
            norm = join.coarse_norm
            assert torch.equal(norm.weight[8:16], norm.bias[:8])
            assert not torch.equal(norm.weight[8:16], norm.weight[:8])


def test_samples_reproduce_their_own_texture(
    shared_dir: Path, vgg16_weights: Path, released: dict
) -> None:
    descriptor = load_descriptor("vgg16", TEXTURE_LAYERS, vgg16_weights)
    targets = {}
    for name, file in TEXTURES.items():
        image = torch.from_numpy(to_array(load_image(shared_dir / "data" / "textures" / file)))
        targets[name] = _vgg_grams(descriptor, image[None])
    for name, checkpoint in released.items():
        generator = checkpoint.generator
        noise = generator.sample_input(1, 256, 256, torch.Generator().manual_seed(0))
        with torch.no_grad():
            sample = generator(noise)
            features = descriptor(sample)
        # An ordinary RGB image in [0, 1] (Caffe BGR pixels converted inside the model).
        assert sample.min() > -0.2 and sample.max() < 1.3
        assert 0.3 < sample.mean() < 0.7
        losses = {t: texture_loss(features, targets[t], TEXTURE_LAYERS).item() for t in targets}
        other = next(t for t in targets if t != name)
        assert losses[name] * 10 < losses[other], losses
    # Red peppers come out red: the BGR -> RGB flip is folded in.
    with torch.no_grad():
        peppers = released["red_peppers"].generator(noise).mean(dim=(0, 2, 3))
    assert peppers[0] > peppers[1] + 0.2 and peppers[0] > peppers[2] + 0.2


def test_converted_model_survives_a_checkpoint_round_trip(tmp_path: Path, released: dict) -> None:
    checkpoint = released["bricks"]
    save_checkpoint(tmp_path / "bricks.pt", checkpoint.generator, checkpoint.metadata)
    loaded = load_checkpoint(tmp_path / "bricks.pt")
    noise = checkpoint.generator.sample_input(1, 64, 96, torch.Generator().manual_seed(3))
    with torch.no_grad():
        assert torch.allclose(loaded.generator(noise), checkpoint.generator(noise), atol=1e-6)
    assert loaded.metadata["exemplar"] == "bricks.png"


def test_unknown_modules_are_named(tmp_path: Path) -> None:
    path = tmp_path / "odd.t7"
    inner = _Module("nn.Sequential", modules=[_Module("nn.Bar"), _Module("nn.LeakyReLU")])
    path.write_bytes(_t7_bytes(_Module("nn.Sequential", modules=[_Module("nn.Foo"), inner])))
    with pytest.raises(UserError, match=r"odd\.t7 contains unknown Torch modules nn\.Bar, nn\.Foo"):
        load_torch7(path)


def test_known_modules_in_another_layout_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "mlp.t7"
    path.write_bytes(_t7_bytes(_Module("nn.Sequential", modules=[_Module("nn.LeakyReLU")])))
    with pytest.raises(UserError, match=r"mlp\.t7 is not a texture_nets v1 pyramid"):
        load_torch7(path)


def test_not_a_torch7_file(tmp_path: Path) -> None:
    path = tmp_path / "noise.t7"
    path.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(UserError, match=r"noise\.t7 is not a readable Torch7") as err:
        load_torch7(path)
    assert "\n" not in str(err.value)
    with pytest.raises(UserError, match="does not exist"):
        load_torch7(tmp_path / "missing.t7")


def test_truncated_files_fail_cleanly(shared_dir: Path, tmp_path: Path) -> None:
    data = _model_path(shared_dir, "bricks").read_bytes()
    path = tmp_path / "cut.t7"
    for fraction in (0.0, 0.001, 0.3, 0.6, 0.9, 0.9999):
        path.write_bytes(data[: int(len(data) * fraction)])
        with pytest.raises(UserError, match="is not a readable Torch7"):
            load_torch7(path)
