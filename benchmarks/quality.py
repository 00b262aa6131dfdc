"""Quality and diversity of a set of images against a texture: the texture loss the generator was
trained on, how different samples of different seeds are (pixels and Gram statistics), and how
visible the seam is when an image is tiled."""

from __future__ import annotations

import itertools
import statistics
from collections.abc import Mapping, Sequence

import torch

from tn_export.descriptor import VGGDescriptor
from tn_export.export.graph import Deployable
from tn_export.generator import PyramidGenerator
from tn_export.losses import gram_matrix, texture_loss


@torch.no_grad()
def generator_samples(
    generator: PyramidGenerator, count: int, height: int, width: int, seed: int = 0
) -> torch.Tensor:
    """`count` deployed (clamped) samples, seed + i for sample i: what a user of the model gets."""
    model = Deployable(generator)
    noise = [
        generator.sample_input(1, height, width, torch.Generator().manual_seed(seed + i))
        for i in range(count)
    ]
    return torch.cat([model(x) for x in noise])


def gram_distance(
    a: Mapping[str, torch.Tensor],
    b: Mapping[str, torch.Tensor],
    targets: Mapping[str, torch.Tensor],
) -> float:
    """The texture loss's distance between two images' Grams (same per-layer normalisation)."""
    return sum(float((a[k] - b[k]).pow(2).mean() / targets[k].pow(2).mean()) for k in targets)


def seam_error(image: torch.Tensor) -> float:
    """Tiling seam: mean |difference| across the wrap-around edges over that between interior
    neighbours. About 1 for an image that tiles seamlessly; larger when the seam shows."""
    rows = image.diff(dim=-2).abs().mean() + image.diff(dim=-1).abs().mean()
    wrap = (image[..., 0, :] - image[..., -1, :]).abs().mean()
    wrap = wrap + (image[..., :, 0] - image[..., :, -1]).abs().mean()
    return float(wrap / rows)


@torch.no_grad()
def evaluate(
    descriptor: VGGDescriptor,
    targets: Mapping[str, torch.Tensor],
    layers: Sequence[str],
    images: torch.Tensor,
) -> dict:
    """Texture loss per image, mean pairwise pixel RMS and Gram distances, mean seam error.

    Images go through the descriptor one at a time, so memory stays bounded at any count.
    """
    losses, per_image = [], []
    for image in images:
        features = descriptor(image[None])
        losses.append(float(texture_loss(features, targets, layers)))
        per_image.append({k: gram_matrix(features[k])[0] for k in layers})
    pairs = list(itertools.combinations(range(len(images)), 2))
    pixel = [float((images[i] - images[j]).pow(2).mean().sqrt()) for i, j in pairs]
    gram = [gram_distance(per_image[i], per_image[j], targets) for i, j in pairs]
    return {
        "count": len(images),
        "texture_loss": statistics.fmean(losses),
        "texture_loss_per_image": losses,
        "pixel_distance": statistics.fmean(pixel) if pixel else None,
        "gram_distance": statistics.fmean(gram) if gram else None,
        "seam_error": statistics.fmean(seam_error(image) for image in images),
    }
