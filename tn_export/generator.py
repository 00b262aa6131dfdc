"""The multi-scale generator of Texture Networks (Ulyanov et al., 2016), as in pyramid.lua."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

import torch
from torch import nn
from torch.nn import functional as F

from .budget import check_generator

Mode = Literal["texture", "style"]
Norm = Literal["batch", "instance", "conditional"]
MAX_STYLES = 256
Padding = Literal["circular", "reflect", "zero"]


@dataclass(frozen=True)
class GeneratorConfig:
    """Everything needed to rebuild a generator; stored in checkpoints and export metadata."""

    mode: Mode = "texture"
    scales: int = 6
    channels: int = 8
    noise_depth: int = 3
    norm: Norm = "batch"
    padding: Padding = "circular"
    styles: int = 0  # conditional norm: the styles it holds (a scale and shift each); else 0

    def as_dict(self) -> dict:
        return asdict(self)

    @property
    def size_multiple(self) -> int:
        """H and W must be divisible by the coarsest pooling ratio."""
        return 2 ** (self.scales - 1)

    @property
    def input_channels(self) -> int:
        return self.noise_depth if self.mode == "texture" else 3


class CircularPad(nn.Module):
    """Wrap-around padding by one pixel, built from slices and concatenation.

    Neither Core ML's pad op nor every ONNX runtime has a circular mode, while slice and concat
    export everywhere; wrap-around is what makes generated textures tile seamlessly.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.cat([x[:, :, -1:, :], x, x[:, :, :1, :]], dim=2)
        return torch.cat([x[:, :, :, -1:], x, x[:, :, :, :1]], dim=3)


class ConditionalInstanceNorm2d(nn.Module):
    """Instance norm with one scale and shift per style (Dumoulin et al., ICLR 2017), picked or
    mixed by the style weights (N, styles): one-hot selects a style, a convex mix interpolates."""

    def __init__(self, channels: int, styles: int) -> None:
        super().__init__()
        self.num_features = channels  # as torch's norms name it
        self.weight = nn.Parameter(torch.ones(styles, channels))
        self.bias = nn.Parameter(torch.zeros(styles, channels))

    def forward(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        scale = (style @ self.weight)[:, :, None, None]
        shift = (style @ self.bias)[:, :, None, None]
        return F.instance_norm(x) * scale + shift


def _apply(layer: nn.Module, x: torch.Tensor, style: torch.Tensor | None) -> torch.Tensor:
    """`layer(x)`; a conditional norm also gets the style weights."""
    return layer(x, style) if isinstance(layer, ConditionalInstanceNorm2d) else layer(x)


class Block(nn.Sequential):
    """Layers in order, as nn.Sequential; conditional norms also get the style weights."""

    def forward(self, x: torch.Tensor, style: torch.Tensor | None = None) -> torch.Tensor:
        for layer in self:
            x = _apply(layer, x, style)
        return x


def _norm(kind: Norm, channels: int, styles: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "conditional":
        return ConditionalInstanceNorm2d(channels, styles)
    # Improved Texture Networks: per-sample statistics with a learned affine transform.
    return nn.InstanceNorm2d(channels, affine=True)


def _conv(cin: int, cout: int, kernel: int, padding: Padding) -> list[nn.Module]:
    if kernel == 1:
        return [nn.Conv2d(cin, cout, 1)]
    if padding == "zero":
        return [nn.Conv2d(cin, cout, kernel, padding=kernel // 2)]
    pad = CircularPad() if padding == "circular" else nn.ReflectionPad2d(kernel // 2)
    return [pad, nn.Conv2d(cin, cout, kernel)]


def conv_block(cin: int, cout: int, norm: Norm, padding: Padding, styles: int = 0) -> Block:
    """conv3x3 -> norm -> LeakyReLU, conv3x3 -> norm -> LeakyReLU, conv1x1 -> norm -> LeakyReLU."""
    layers: list[nn.Module] = []
    for i, kernel in enumerate((3, 3, 1)):
        layers += _conv(cin if i == 0 else cout, cout, kernel, padding)
        layers += [_norm(norm, cout, styles), nn.LeakyReLU(0.01)]
    return Block(*layers)


class Join(nn.Module):
    """Normalise both branches, upsample the coarser x2, concatenate, convolve. The coarser is
    normalised before its upsampling: the same values (nearest upsampling copies each value
    four times, which leaves its statistics alone), on a quarter of the pixels."""

    def __init__(
        self, coarse: int, fine: int, norm: Norm, padding: Padding, styles: int = 0
    ) -> None:
        super().__init__()
        self.upsample = nn.Upsample(scale_factor=2.0, mode="nearest")  # a module: exporters swap it
        self.coarse_norm = _norm(norm, coarse, styles)
        self.fine_norm = _norm(norm, fine, styles)
        self.block = conv_block(coarse + fine, coarse + fine, norm, padding, styles)

    def forward(
        self, coarse: torch.Tensor, fine: torch.Tensor, style: torch.Tensor | None = None
    ) -> torch.Tensor:
        up = self.upsample(_apply(self.coarse_norm, coarse, style))
        return self.block(torch.cat([up, _apply(self.fine_norm, fine, style)], dim=1), style)


class PyramidGenerator(nn.Module):
    """Texture Networks' pyramid: one full-resolution input, pooled by 2**(scales-1) .. 1 inside.

    Texture mode takes unit Gaussian noise (N, noise_depth, H, W). Style mode takes an RGB image
    in [0, 1] (N, 3, H, W) and appends noise channels to every scale: fresh N(0, 1) noise while
    training, zeros in eval mode, so an exported style model is deterministic. The output is RGB,
    nominally in [0, 1] (not clamped: the descriptor sees the raw values while training).
    With `norm="conditional"` it holds `styles` styles and takes their weights (N, styles) too.
    """

    def __init__(
        self,
        mode: Mode = "texture",
        scales: int = 6,
        channels: int = 8,
        noise_depth: int = 3,
        norm: Norm = "batch",
        padding: Padding = "circular",
        styles: int = 0,
    ) -> None:
        super().__init__()
        if mode not in ("texture", "style"):
            raise ValueError(f"mode must be 'texture' or 'style', not {mode!r}")
        if norm not in ("batch", "instance", "conditional"):
            raise ValueError(f"norm must be 'batch', 'instance' or 'conditional', not {norm!r}")
        if (norm == "conditional") != (styles > 0) or not 0 <= styles <= MAX_STYLES:
            raise ValueError(
                f"styles must be 1 to {MAX_STYLES} with norm 'conditional' and 0 without it, "
                f"not {styles!r} with norm {norm!r}"
            )
        if padding not in ("circular", "reflect", "zero"):
            raise ValueError(f"padding must be 'circular', 'reflect' or 'zero', not {padding!r}")
        check_generator(mode, scales, channels, noise_depth)  # before a weight is allocated
        self.config = GeneratorConfig(mode, scales, channels, noise_depth, norm, padding, styles)
        scale_in = noise_depth if mode == "texture" else 3 + noise_depth
        self.branches = nn.ModuleList(
            conv_block(scale_in, channels, norm, padding, styles) for _ in range(scales)
        )
        self.joins = nn.ModuleList(
            Join(channels * i, channels, norm, padding, styles) for i in range(1, scales)
        )
        self.to_rgb = nn.Conv2d(channels * scales, 3, 1)

    @classmethod
    def from_config(cls, config: GeneratorConfig | dict) -> PyramidGenerator:
        return cls(**(config.as_dict() if isinstance(config, GeneratorConfig) else config))

    @property
    def ratios(self) -> list[int]:
        """Pooling ratios, coarsest first (32, 16, 8, 4, 2, 1 for six scales)."""
        return [2**i for i in reversed(range(self.config.scales))]

    def check_size(self, height: int, width: int) -> None:
        m = self.config.size_multiple
        if height % m or width % m or height < m or width < m:
            raise ValueError(
                f"input size {width}x{height} (WIDTHxHEIGHT) is not supported: width and height "
                f"must be positive multiples of {m} (e.g. {m * 8}x{m * 8} or {m * 16}x{m * 12})"
            )

    def _pooled(self, x: torch.Tensor, given: int, finest: int, coarsest: int) -> dict:
        """{ratio: the input average-pooled by ratio} for the ratios from `finest` to `coarsest`,
        from `x`, the input pooled by `given`. Each is the 2x2 mean of the next finer one:
        onnxruntime's AveragePool is no faster for a 32x32 kernel than for 2x2: five pools of the
        whole input took 10.5 ms of the bundled model's 186 at 512x512, chained 2.5 ms."""
        pooled, ratio = {}, given
        while True:
            if ratio >= finest:
                pooled[ratio] = x
            if ratio >= coarsest:
                return pooled
            x, ratio = F.avg_pool2d(x, 2), ratio * 2

    def _scale_input(self, pooled: torch.Tensor, ratio: int) -> torch.Tensor:
        """The input of the scale at `ratio` from the input average-pooled by `ratio`."""
        if self.config.mode == "texture":
            # Averaging r*r independent N(0,1) values divides the std by r; multiplying by r gives
            # every scale unit-variance noise, as upstream's per-scale GenNoise did.
            return pooled * ratio if ratio > 1 else pooled
        n, _, h, w = pooled.shape
        shape = (n, self.config.noise_depth, h, w)
        if self.training:
            noise = torch.randn(shape, device=pooled.device, dtype=pooled.dtype)
        else:
            noise = pooled.new_zeros(shape)
        return torch.cat([pooled, noise], dim=1)

    def forward(self, x: torch.Tensor, style: torch.Tensor | None = None) -> torch.Tensor:
        expected = self.config.input_channels
        if x.dim() != 4 or x.shape[1] != expected:
            raise ValueError(f"expected input of shape (N, {expected}, H, W), got {tuple(x.shape)}")
        self.check_size(x.shape[2], x.shape[3])
        styles = self.config.styles
        if styles and (style is None or style.shape != (x.shape[0], styles)):
            got = "none" if style is None else tuple(style.shape)
            raise ValueError(f"expected style weights of shape ({x.shape[0]}, {styles}), got {got}")
        if not styles and style is not None:
            raise ValueError("this generator holds one style: it takes no style weights")
        return self.tail(self.head(x, style=style), x, style=style)

    def head(
        self, x: torch.Tensor, split: int = 1, given: int = 1, style: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The scales of ratio >= `split`, joined: features at ratio `split` with
        channels * (number of those scales) channels. `x` is the input pooled by `given`."""
        pooled = self._pooled(x, given, split, self.ratios[0])
        out = self.branches[0](self._scale_input(pooled[self.ratios[0]], self.ratios[0]), style)
        for ratio, branch, join in zip(self.ratios[1:], self.branches[1:], self.joins, strict=True):
            if ratio < split:
                break
            out = join(out, branch(self._scale_input(pooled[ratio], ratio), style), style)
        return out

    def tail(
        self,
        features: torch.Tensor,
        x: torch.Tensor,
        split: int = 1,
        style: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The rest after `head(.., split)`: the scales of ratio < `split` joined onto
        `features`, then RGB. `x` is the full-resolution input."""
        out = features
        pooled = self._pooled(x, 1, 1, split // 2)
        for ratio, branch, join in zip(self.ratios[1:], self.branches[1:], self.joins, strict=True):
            if ratio < split:
                out = join(out, branch(self._scale_input(pooled[ratio], ratio), style), style)
        return self.to_rgb(out)

    def sample_input(
        self, batch: int, height: int, width: int, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """A texture-mode input: unit Gaussian noise of the right shape."""
        return torch.randn(batch, self.config.noise_depth, height, width, generator=generator)
