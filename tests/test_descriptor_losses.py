"""The VGG descriptor (layers, weights, errors) and the losses of Texture Networks."""

from __future__ import annotations

import pytest
import torch

from tn_export.cli import flags
from tn_export.descriptor import (
    CONTENT_LAYER,
    STYLE_LAYERS,
    TEXTURE_LAYERS,
    VGGDescriptor,
    load_descriptor,
)
from tn_export.errors import UserError
from tn_export.losses import content_loss, diversity_loss, gram_matrix, texture_loss, tv_loss
from training.train import TrainConfig


def test_vgg_layer_names_and_truncation():
    d19 = VGGDescriptor("vgg19", [*STYLE_LAYERS, CONTENT_LAYER])
    assert d19.names[-1] == "relu4_2"  # stops at the deepest layer asked for
    assert len(d19.features) == 23  # torchvision vgg19 features[22] is relu4_2
    d16 = VGGDescriptor("vgg16", TEXTURE_LAYERS)
    assert len(d16.features) == 26  # vgg16 features[25] is relu5_1


def test_descriptor_returns_the_named_activations():
    d = load_descriptor("random", TEXTURE_LAYERS)
    out = d(torch.rand(1, 3, 64, 64))
    assert list(out) == list(TEXTURE_LAYERS)
    assert out["relu1_1"].shape[-1] == 64 and out["relu5_1"].shape[-1] == 4
    assert not any(p.requires_grad for p in d.parameters())


def test_unknown_layer_or_descriptor_is_a_clear_error():
    with pytest.raises(UserError, match="relu9_9"):
        VGGDescriptor("vgg16", ["relu9_9"])
    with pytest.raises(UserError, match="vgg19, vgg16 or random"):
        load_descriptor("resnet", TEXTURE_LAYERS)


def test_missing_weights_name_the_three_ways_out(monkeypatch, tmp_path):
    monkeypatch.delenv("TN_DESCRIPTOR_WEIGHTS", raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # nothing cached; this machine is offline
    with pytest.raises(UserError) as err:
        load_descriptor("vgg19", TEXTURE_LAYERS)
    message = str(err.value)
    assert "download" in message
    assert "descriptor_weights PATH" in message and "--" not in message  # the library's words
    assert "TN_DESCRIPTOR_WEIGHTS" in message
    # tn-train and tn-bench word the same error with their flag
    assert "give --descriptor-weights PATH" in err.value.worded(flags(TrainConfig))


def test_weights_file_errors(tmp_path):
    missing = tmp_path / "nope.pth"
    with pytest.raises(UserError, match="do not exist"):
        load_descriptor("vgg16", descriptor_weights=missing)
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint at all")
    with pytest.raises(UserError, match="not a readable"):
        load_descriptor("vgg16", descriptor_weights=junk)


def test_weights_from_the_environment_and_architecture_mismatch(monkeypatch, tmp_path):
    state = VGGDescriptor("vgg16", ["relu5_3"]).features.state_dict()
    path = tmp_path / "vgg16.pth"
    torch.save({f"features.{k}": v + 1 for k, v in state.items()}, path)
    monkeypatch.setenv("TN_DESCRIPTOR_WEIGHTS", str(path))
    d = load_descriptor("vgg16", TEXTURE_LAYERS)
    assert torch.equal(d.features[0].weight, state["0.weight"] + 1)
    with pytest.raises(UserError, match="they look like vgg16: use that descriptor"):
        load_descriptor("vgg19", TEXTURE_LAYERS)


def test_real_vgg16_weights_load(vgg16_weights):
    d = load_descriptor("vgg16", TEXTURE_LAYERS, vgg16_weights)
    assert d.features[0].weight.abs().sum() > 0


def test_gram_matrix_by_hand():
    f = torch.tensor([[1.0, 2.0], [3.0, 4.0]]).reshape(1, 2, 1, 2)
    expected = torch.tensor([[5.0, 11.0], [11.0, 25.0]]) / 4  # f f^T / (C*H*W)
    assert torch.allclose(gram_matrix(f)[0], expected)


def test_texture_loss_is_zero_at_the_target_and_positive_elsewhere():
    d = load_descriptor("random", TEXTURE_LAYERS)
    a, b = torch.rand(1, 3, 64, 64), torch.rand(1, 3, 64, 64) * 0.2
    targets = {k: gram_matrix(v) for k, v in d(a).items()}
    assert texture_loss(d(a), targets, TEXTURE_LAYERS).item() == pytest.approx(0.0, abs=1e-6)
    assert texture_loss(d(b), targets, TEXTURE_LAYERS, relative=True).item() > 0.1
    # The absolute form weighs each layer's error by its target's mean square.
    layer = ["relu3_1"]
    scale = targets["relu3_1"].pow(2).mean()
    absolute, relative = (texture_loss(d(b), targets, layer, r).item() for r in (False, True))
    assert absolute == pytest.approx(relative * scale.item(), rel=1e-5)


def test_normalized_gradients_give_each_layer_a_unit_pull_and_keep_the_value():
    torch.manual_seed(0)
    feats = {"a": torch.randn(2, 4, 8, 8), "b": torch.randn(2, 8, 4, 4)}
    targets = {"a": torch.randn(4, 4), "b": 100 * torch.randn(8, 8)}  # b's error is far larger
    grads, values = {}, {}
    for normalize in (False, True):
        leaves = {k: v.clone().requires_grad_() for k, v in feats.items()}
        loss = texture_loss(leaves, targets, ["a", "b"], normalize_gradients=normalize)
        loss.backward()
        grads[normalize] = {k: v.grad for k, v in leaves.items()}
        values[normalize] = loss.item()
    assert values[True] == pytest.approx(values[False])
    for k in feats:
        assert grads[True][k].abs().sum().item() == pytest.approx(1.0, rel=1e-5)
        # Only the length changes, not the direction.
        cos = torch.nn.functional.cosine_similarity(
            grads[True][k].flatten(), grads[False][k].flatten(), dim=0
        )
        assert cos.item() == pytest.approx(1.0, abs=1e-5)
    plain = {k: g.abs().sum().item() for k, g in grads[False].items()}
    assert plain["b"] > 10 * plain["a"]  # without it, b's term would drown a's


def test_content_and_tv_losses():
    x = torch.rand(1, 3, 8, 8)
    assert content_loss(x, x).item() == 0.0
    # Relative: scaling both activations leaves it unchanged, so weights mean the same per layer.
    y = torch.rand(1, 3, 8, 8)
    assert content_loss(100 * x, 100 * y).item() == pytest.approx(content_loss(x, y).item())
    assert tv_loss(torch.ones(1, 3, 8, 8)).item() == 0.0
    assert tv_loss(x).item() > 0.0


def test_diversity_loss_prefers_spread_out_samples():
    base = torch.rand(1, 16)
    close = torch.cat([base, base + 0.01, base - 0.01])
    apart = torch.cat([base, base + 1.0, base - 1.0])
    assert diversity_loss(apart) < diversity_loss(close)
    with pytest.raises(ValueError, match="at least 2"):
        diversity_loss(base)
