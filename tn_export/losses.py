"""Losses of Texture Networks (Gram, content) and Improved Texture Networks (diversity)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import distributed as dist
from torch.nn import functional as F


def gram_matrix(features: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) -> (N, C, C) channel correlations, normalised by C*H*W so sizes compare."""
    n, c, h, w = features.shape
    f = features.reshape(n, c, h * w)
    return f @ f.transpose(1, 2) / (c * h * w)


class _UnitGradient(torch.autograd.Function):
    """The identity, whose backward divides the incoming gradient by its L1 norm: the whole
    batch's norm, also under torchrun, where each rank holds a share of it."""

    @staticmethod
    def forward(ctx, features: torch.Tensor) -> torch.Tensor:
        return features.view_as(features)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        norm = grad.abs().sum()
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            # Each rank's loss is the mean over its share, so its gradient is world_size times
            # its part of one process's: the mean of the ranks' norms is one process's norm.
            total = norm.float()
            dist.all_reduce(total)
            norm = (total / dist.get_world_size()).to(norm.dtype)
        return grad / (norm + 1e-8)


def texture_loss(
    features: Mapping[str, torch.Tensor],
    target_grams: Mapping[str, torch.Tensor],
    layers: Sequence[str],
    relative: bool = False,
    normalize_gradients: bool = False,
) -> torch.Tensor:
    """Sum over layers of the mean squared difference between Gram matrices (upstream's loss and
    the quality yardstick of `tn-bench quality`). `target_grams[layer]` is (C, C), (1, C, C), or
    (N, C, C): one target per sample (several styles).

    `relative` divides each layer's error by the mean square of its target Gram, so every layer
    counts alike and an unrelated image scores about 1 per layer. Absolute errors let the layers
    with the largest Gram entries (relu2_1, relu3_1) lead, which is what matches the paper's
    models on colour and fine structure; see docs/training.md.

    `normalize_gradients` (upstream's -normalize_gradients) leaves the value alone and divides
    the gradient each layer's term sends into its activations by that gradient's L1 norm, so
    every layer pulls with the same strength whatever the size of its error; the deeper
    layers' gradients still flow through the shallower activations unchanged.
    """
    total = features[layers[0]].new_zeros(())
    for layer in layers:
        f = features[layer]
        g = gram_matrix(_UnitGradient.apply(f) if normalize_gradients else f)
        t = target_grams[layer]
        error = (g - t.expand_as(g)).pow(2).mean(dim=(-2, -1))
        if relative:
            error = error / t.pow(2).mean(dim=(-2, -1))
        total = total + error.mean()
    return total


def content_loss(features: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared difference of activations at the content layer (relu4_2 by default), divided
    by the mean square of the target's, so that it is about 1 for an unrelated image like
    texture_loss's layers: VGG's raw activations there are in the tens, which would otherwise make
    --content-weight drown the style term by four orders of magnitude."""
    return F.mse_loss(features, target) / target.pow(2).mean().clamp_min(1e-12)


def tv_loss(image: torch.Tensor) -> torch.Tensor:
    """Total variation: mean squared difference between neighbouring pixels."""
    dh = image[:, :, 1:, :] - image[:, :, :-1, :]
    dw = image[:, :, :, 1:] - image[:, :, :, :-1]
    return dh.pow(2).mean() + dw.pow(2).mean()


def diversity_loss(features: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Improved Texture Networks: minus the mean log distance from each sample of a batch to its
    nearest neighbour in descriptor space. Minimising it pushes samples apart (batch >= 2)."""
    n = features.shape[0]
    if n < 2:
        raise ValueError("diversity_loss needs a batch of at least 2 samples")
    flat = features.reshape(n, -1)
    dist = torch.cdist(flat, flat) / flat.shape[1] ** 0.5
    # Mask each sample's distance to itself so the minimum is over the others.
    self_mask = torch.eye(n, device=dist.device, dtype=dist.dtype) * (dist.max().detach() + 1)
    return -torch.log((dist + self_mask).min(dim=1).values + eps).mean()
