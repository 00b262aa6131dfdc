"""PyramidGenerator: the paper's architecture, sizes, modes and seamless tiling."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from tn_export.generator import PyramidGenerator


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


@pytest.mark.parametrize("norm", ["batch", "instance"])
def test_default_texture_generator_has_the_papers_parameter_count(norm):
    assert n_params(PyramidGenerator(norm=norm)) == 116_915


def test_ratios_are_32_to_1():
    assert PyramidGenerator().ratios == [32, 16, 8, 4, 2, 1]


@pytest.mark.parametrize("size", [(64, 64), (96, 160), (128, 64)])
@pytest.mark.parametrize("mode", ["texture", "style"])
def test_output_has_the_input_size(mode, size):
    g = PyramidGenerator(mode=mode, padding="reflect").eval()
    x = torch.rand(2, g.config.input_channels, *size)
    assert g(x).shape == (2, 3, *size)


@pytest.mark.parametrize("size", [(100, 64), (64, 48), (16, 16)])
def test_sizes_that_are_not_multiples_of_32_are_a_clear_error(size):
    g = PyramidGenerator()
    with pytest.raises(ValueError, match="multiples of 32"):
        g(torch.randn(1, 3, *size))


def test_wrong_channel_count_is_a_clear_error():
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        PyramidGenerator(mode="style")(torch.rand(1, 6, 64, 64))


def test_each_scale_receives_unit_variance_noise():
    g = PyramidGenerator()
    x = torch.randn(4, 3, 512, 512)
    pooled = g._pooled(x, 1, 1, g.ratios[0])
    for r in g.ratios:
        assert torch.allclose(pooled[r], F.avg_pool2d(x, r), atol=1e-6)  # chained 2x2 means
        scaled = g._scale_input(pooled[r], r)
        assert scaled.shape[-1] == 512 // r
        assert scaled.std().item() == pytest.approx(1.0, rel=0.1)


def test_style_mode_is_deterministic_in_eval_and_noisy_in_training():
    g = PyramidGenerator(mode="style")
    x = torch.rand(2, 3, 64, 64)
    g.eval()
    assert torch.equal(g(x), g(x))
    g.train()
    assert not torch.allclose(g(x), g(x))


def test_circular_padding_makes_the_generator_wrap_around():
    """Shifting the noise by a multiple of 32 shifts the texture exactly: it lives on a torus."""
    torch.manual_seed(0)
    g = PyramidGenerator(padding="circular").eval()
    x = torch.randn(1, 3, 128, 96)
    out = g(x)
    shifted = g(torch.roll(x, shifts=(32, 64), dims=(2, 3)))
    assert torch.allclose(torch.roll(out, shifts=(32, 64), dims=(2, 3)), shifted, atol=1e-5)


def _seam_ratio(image: torch.Tensor) -> float:
    """Mean step across the wrap-around seam over the mean step between interior neighbours."""
    seam = (image[..., 0, :] - image[..., -1, :]).abs().mean() + (
        image[..., :, 0] - image[..., :, -1]
    ).abs().mean()
    interior = (image[..., 1:, :] - image[..., :-1, :]).abs().mean() + (
        image[..., :, 1:] - image[..., :, :-1]
    ).abs().mean()
    return (seam / interior).item()


def test_circular_texture_tiles_without_a_seam_but_zero_padding_does_not():
    torch.manual_seed(0)
    x = torch.randn(1, 3, 128, 128)
    circular = PyramidGenerator(padding="circular").eval()
    zero = PyramidGenerator(padding="zero").eval()
    with torch.no_grad():  # same weights; the padding modules shift state_dict keys
        for dst, src in zip(zero.parameters(), circular.parameters(), strict=True):
            dst.copy_(src)
    assert _seam_ratio(circular(x)) < 1.3
    assert _seam_ratio(zero(x)) > 1.3


def test_bad_constructor_arguments_are_rejected():
    with pytest.raises(ValueError, match="padding"):
        PyramidGenerator(padding="mirror")
    with pytest.raises(ValueError, match="norm"):
        PyramidGenerator(norm="layer")
    with pytest.raises(ValueError, match="mode"):
        PyramidGenerator(mode="video")
