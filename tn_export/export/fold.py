"""Batch norms folded into their convolutions before export: fewer nodes and tensors, same maths.

An eval-mode BatchNorm2d is a per-channel affine map y = s * x + t. After a convolution it folds
into the convolution's weights and bias wherever it sits. Before one (the Join normalises both
branches, concatenates and convolves) it folds into the next convolution only where padding copies
values (circular, reflect) or there is none: zero padding would add t to the zeros at the borders.
Nearest upsampling and concatenation commute with a per-channel affine map. Instance norms are
never folded: their statistics come from each input.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from ..generator import CircularPad, Join


def fold_batch_norms(module: nn.Module, joins: bool = True) -> nn.Module:
    """A copy of `module` in eval mode with every batch norm folded where that is exact; the
    original is untouched (validation runs it). `joins=False` keeps the Join's norms: int8
    quantizes each conv's input with one scale, which the norm before it makes fit all channels
    (the bundled red_peppers: 19.3 dB against fp32 with them, 13.3 dB folded)."""
    folded = copy.deepcopy(module).eval()
    with torch.no_grad():
        for sub in list(folded.modules()):
            if isinstance(sub, Join) and joins:
                _fold_join(sub)
            if isinstance(sub, nn.Sequential):
                _fold_sequential(sub)
    return folded


def _affine(norm: nn.Module) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(s, t) in float64 of an eval-mode BatchNorm2d with running statistics, else None."""
    if not isinstance(norm, nn.BatchNorm2d) or norm.running_mean is None:
        return None
    s = 1.0 / torch.sqrt(norm.running_var.double() + norm.eps)
    if norm.affine:
        s = s * norm.weight.double()
    t = -norm.running_mean.double() * s
    if norm.affine:
        t = t + norm.bias.double()
    return s, t


def _bias(conv: nn.Conv2d) -> torch.Tensor:
    if conv.bias is None:
        return torch.zeros(conv.out_channels, dtype=torch.float64, device=conv.weight.device)
    return conv.bias.double()


def _set(conv: nn.Conv2d, weight: torch.Tensor, bias: torch.Tensor) -> None:
    dtype = conv.weight.dtype
    conv.weight.copy_(weight.to(dtype))
    conv.bias = nn.Parameter(bias.to(dtype), requires_grad=conv.weight.requires_grad)


def _fold_sequential(seq: nn.Sequential) -> None:
    """conv -> batch norm: s scales each output channel's weights, the bias becomes s * b + t."""
    for i in range(len(seq) - 1):
        conv, norm = seq[i], seq[i + 1]
        affine = _affine(norm)
        if isinstance(conv, nn.Conv2d) and affine is not None:
            s, t = affine
            weight = conv.weight.double() * s.view(-1, 1, 1, 1)
            _set(conv, weight, s * _bias(conv) + t)
            seq[i + 1] = nn.Identity()


def _fold_join(join: Join) -> None:
    """Both branch norms -> (padding ->) the block's first conv: s scales each input channel's
    weights, and the conv of the constant t adds to the bias. Left alone under zero padding."""
    coarse, fine = _affine(join.coarse_norm), _affine(join.fine_norm)
    first = join.block[0]
    conv = join.block[1] if isinstance(first, (CircularPad, nn.ReflectionPad2d)) else first
    replicates = conv is not first or conv.padding_mode != "zeros" or not any(conv.padding)
    if coarse is None or fine is None or not replicates or conv.groups != 1:
        return
    s, t = torch.cat([coarse[0], fine[0]]), torch.cat([coarse[1], fine[1]])
    weight = conv.weight.double()
    bias = _bias(conv) + (weight * t.view(1, -1, 1, 1)).sum(dim=(1, 2, 3))
    _set(conv, weight * s.view(1, -1, 1, 1), bias)
    join.coarse_norm, join.fine_norm = nn.Identity(), nn.Identity()
