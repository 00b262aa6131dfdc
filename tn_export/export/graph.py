"""What every exporter traces: the generator with its output clamped to the contract's [0, 1]."""

from __future__ import annotations

import torch
from torch import nn

from ..contract import ModelContract


class Deployable(nn.Module):
    """The eval-mode generator (or tn-bench's peer network) plus the final clamp, so every
    backend returns valid RGB."""

    def __init__(self, generator: nn.Module) -> None:
        super().__init__()
        self.generator = generator
        self.eval()

    def forward(self, x: torch.Tensor, style: torch.Tensor | None = None) -> torch.Tensor:
        out = self.generator(x) if style is None else self.generator(x, style)
        return out.clamp(0.0, 1.0)


def delivered(images: torch.Tensor) -> torch.Tensor:
    """What a user receives: clamped to [0, 1] and rounded to 8 bits, as every runtime saves it."""
    return (images.clamp(0, 1) * 255).round() / 255


def example_input(contract: ModelContract, height: int, width: int, seed: int = 0) -> torch.Tensor:
    """A valid input at the given size: noise for texture models, a smooth image for style."""
    g = torch.Generator().manual_seed(seed)
    if contract.mode == "texture":
        return torch.randn(1, contract.noise_depth, height, width, generator=g)
    low = torch.rand(1, 3, max(height // 16, 1), max(width // 16, 1), generator=g)
    return torch.nn.functional.interpolate(low, size=(height, width), mode="bilinear")


def example_style(contract: ModelContract, seed: int = 0) -> torch.Tensor:
    """Style weights (1, styles) of a model of several styles: seed i < styles picks style i,
    larger seeds mix them all (random convex weights), so that a check covers both."""
    count = len(contract.styles)
    if seed < count:
        return torch.nn.functional.one_hot(torch.tensor([seed]), count).float()
    weights = torch.rand(1, count, generator=torch.Generator().manual_seed(seed)) + 0.1
    return weights / weights.sum()


def example_inputs(
    contract: ModelContract, height: int, width: int, seed: int = 0
) -> dict[str, torch.Tensor]:
    """Every input of the model (contract.input_names) at the given size, by name."""
    inputs = {contract.input_name: example_input(contract, height, width, seed)}
    if contract.styles:
        inputs[contract.style_input] = example_style(contract, seed)
    return inputs


def dynamic_shapes(contract: ModelContract, dynamic_batch: bool) -> dict:
    """torch.export dims: H and W are multiples of size_multiple within the contract's bounds;
    the style weights share the image's batch."""
    m = contract.size_multiple
    h = m * torch.export.Dim("h", min=contract.min_size // m, max=contract.max_size // m)
    w = m * torch.export.Dim("w", min=contract.min_size // m, max=contract.max_size // m)
    spec, style = {2: h, 3: w}, {}
    if dynamic_batch:
        spec[0] = style[0] = torch.export.Dim("batch", min=1, max=64)
    return {"x": spec, "style": style} if contract.styles else {"x": spec}
