"""The network a user would pick instead of the pyramid: Johnson et al.'s (ECCV 2016) feed-forward
transformer, as in the paper's supplementary material and pytorch/examples' fast_neural_style.

Three convolutions down (9x9 to 32 channels, then two stride-2 3x3 to 64 and 128), five residual
blocks at 128 channels, two nearest-x2 upsampling 3x3 convolutions back to 32 channels and a 9x9
convolution to RGB; instance norm and ReLU after every convolution but the last, reflection
padding throughout. 1,679,235 parameters. The benchmark measures its speed and memory, which do
not depend on the weights, so it runs with its random initialisation.
"""

from __future__ import annotations

import os

import torch
from torch import nn
from torch.nn import functional as F

from tn_export import __version__
from tn_export.contract import ModelContract

SIZE_MULTIPLE = 4  # two stride-2 convolutions, undone by two x2 upsamplings


def _conv(cin: int, cout: int, kernel: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.ReflectionPad2d(kernel // 2), nn.Conv2d(cin, cout, kernel, stride))


def _conv_norm_relu(cin: int, cout: int, kernel: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        _conv(cin, cout, kernel, stride), nn.InstanceNorm2d(cout, affine=True), nn.ReLU()
    )


class _Residual(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            _conv_norm_relu(channels, channels, 3),
            _conv(channels, channels, 3),
            nn.InstanceNorm2d(channels, affine=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class _Upsample(nn.Module):
    """Nearest x2 then a 3x3 convolution: the paper's fractionally strided convolution, without
    its checkerboard artefacts (as pytorch/examples does it)."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv = _conv_norm_relu(cin, cout, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2, mode="nearest"))


class JohnsonTransformer(nn.Module):
    """(N, 3, H, W) image -> (N, 3, H, W), H and W multiples of 4. Unbounded output; the exported
    model clamps it to [0, 1] like the pyramid's (tn_export.export.graph.Deployable)."""

    def __init__(self) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            _conv_norm_relu(3, 32, 9),
            _conv_norm_relu(32, 64, 3, stride=2),
            _conv_norm_relu(64, 128, 3, stride=2),
            *(_Residual(128) for _ in range(5)),
            _Upsample(128, 64),
            _Upsample(64, 32),
            _conv(32, 3, 9),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


def johnson(seed: int = 0) -> JohnsonTransformer:
    """The transformer with reproducible random weights, in eval mode."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return JohnsonTransformer().eval()


def save(model: JohnsonTransformer, path: str | os.PathLike) -> None:
    torch.save(model.state_dict(), path)


def load(path: str | os.PathLike) -> JohnsonTransformer:
    model = JohnsonTransformer()
    model.load_state_dict(torch.load(path, weights_only=True))
    return model.eval()


def contract(max_size: int) -> ModelContract:
    """The exported peer's contract: a style model (image in, image out) of any multiple of 4."""
    return ModelContract(
        mode="style",
        size_multiple=SIZE_MULTIPLE,
        min_size=4 * SIZE_MULTIPLE,  # the 9x9 reflection padding needs more than 4 pixels
        max_size=max_size // SIZE_MULTIPLE * SIZE_MULTIPLE,
        padding="reflect",
        norm="instance",
        name="johnson2016",
        description="Johnson et al. (2016) transformer, random weights (the tn-bench peer)",
        tool_version=__version__,
    )
