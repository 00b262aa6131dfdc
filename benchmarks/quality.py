"""Quality of a model on the images its users receive (clamped to [0, 1], 8 bits): the Gram
distance to its exemplar in a fixed ImageNet VGG-16, per layer and summed, how far that is from
other textures, how different the samples of different seeds are, whether the elements keep the
exemplar's size, and how visible the wrap-around seam is. `tn-bench quality` and the benchmark
report both score models with the functions here."""

from __future__ import annotations

import itertools
import math
import statistics
from collections.abc import Mapping, Sequence

import torch

from tn_export.descriptor import VGGDescriptor
from tn_export.export.graph import Deployable, delivered
from tn_export.generator import PyramidGenerator
from tn_export.losses import content_loss, gram_matrix

Grams = dict[str, torch.Tensor]


@torch.no_grad()
def generator_samples(
    generator: PyramidGenerator, count: int, height: int, width: int, seed: int = 0
) -> torch.Tensor:
    """`count` delivered samples of a texture generator, seed + i for sample i."""
    model = Deployable(generator)
    noise = [
        generator.sample_input(1, height, width, torch.Generator().manual_seed(seed + i))
        for i in range(count)
    ]
    return torch.cat([delivered(model(x)) for x in noise])


@torch.no_grad()
def grams(descriptor: VGGDescriptor, image: torch.Tensor, layers: Sequence[str]) -> Grams:
    """One image's (3, H, W) or (1, 3, H, W) Gram matrices, (C, C) per layer."""
    features = descriptor(image.reshape(1, *image.shape[-3:]))
    return {k: gram_matrix(features[k].float())[0] for k in layers}


def layer_distances(a: Grams, b: Grams) -> dict[str, float]:
    """Mean squared difference of two images' Gram entries, per layer: the absolute Gram
    distance whose sum is the quality yardstick (and upstream's training loss)."""
    return {k: float((a[k] - b[k]).pow(2).mean()) for k in a}


def relative_distance(a: Grams, target: Grams) -> float:
    """The same errors divided by the target's mean square per layer, summed: about 1 per layer
    for an unrelated image (tn-train's --relative-loss)."""
    return sum(float((a[k] - target[k]).pow(2).mean() / target[k].pow(2).mean()) for k in a)


def seam_error(image: torch.Tensor) -> float:
    """Tiling seam: mean |difference| across the wrap-around edges over that between interior
    neighbours. About 1 for an image that tiles seamlessly; larger when the seam shows."""
    rows = image.diff(dim=-2).abs().mean() + image.diff(dim=-1).abs().mean()
    wrap = (image[..., 0, :] - image[..., -1, :]).abs().mean()
    wrap = wrap + (image[..., :, 0] - image[..., :, -1]).abs().mean()
    if rows == 0:  # a flat image: seamless if its edges agree too
        return 1.0 if wrap == 0 else math.inf
    return float(wrap / rows)


def element_size(image: torch.Tensor) -> float:
    """The size of a texture's elements in pixels: the period at the power-weighted mean
    log-frequency of its luminance (Hann-windowed, 2 cycles per image up to Nyquist). Resizing
    a texture by s multiplies it by s; unlike the correlation length it follows the mortar of
    bricks as well as the blobs of peppers (docs/training.md)."""
    lum = image.reshape(-1, *image.shape[-2:]).double().mean(0)
    h, w = lum.shape
    window = torch.hann_window(h, periodic=False, dtype=lum.dtype)[:, None]
    window = window * torch.hann_window(w, periodic=False, dtype=lum.dtype)[None, :]
    power = torch.fft.fft2((lum - lum.mean()) * window).abs().pow(2)
    fy, fx = torch.fft.fftfreq(h).abs(), torch.fft.fftfreq(w).abs()
    frequency = (fy[:, None] ** 2 + fx[None, :] ** 2).sqrt()  # cycles per pixel
    # Below 2 cycles per image the window's own spectrum dominates.
    keep = (frequency >= 2 / min(h, w)) & (frequency <= 0.5)
    weights = power[keep]
    if float(weights.sum()) == 0:  # a flat image has no elements to measure
        return math.inf
    mean_log = (weights * frequency[keep].log()).sum() / weights.sum()
    return float(torch.exp(-mean_log))


def diversity(images: torch.Tensor, per_image: Sequence[Grams]) -> tuple[float | None, ...]:
    """Mean pixel RMS and mean Gram distance over all pairs of images (None for one image):
    how different the samples of different seeds are."""
    pairs = list(itertools.combinations(range(len(images)), 2))
    if not pairs:
        return None, None
    pixel = statistics.fmean(float((images[i] - images[j]).pow(2).mean().sqrt()) for i, j in pairs)
    gram = statistics.fmean(
        sum(layer_distances(per_image[i], per_image[j]).values()) for i, j in pairs
    )
    return pixel, gram


def _mean_sd(values: Sequence[float]) -> dict:
    return {
        "mean": statistics.fmean(values),
        "sd": statistics.stdev(values) if len(values) > 1 else 0.0,
        "values": list(values),
    }


def texture_quality(
    descriptor: VGGDescriptor,
    layers: Sequence[str],
    samples: torch.Tensor,
    exemplar: torch.Tensor,
    against: Mapping[str, torch.Tensor] | None = None,
    circular: bool = False,
) -> dict:
    """Score delivered samples (N, 3, H, W) against their exemplar (1, 3, h, w).

    Returns the Gram distance (mean, sd, per layer), its relative form, the ratio of the nearest
    `against` image's distance to the exemplar's, the mean pairwise pixel RMS and Gram distance
    between samples (diversity), element sizes, and the seam error when `circular`.
    """
    target = grams(descriptor, exemplar, layers)
    per_sample = [grams(descriptor, s, layers) for s in samples]
    distances = [layer_distances(g, target) for g in per_sample]
    totals = [sum(d.values()) for d in distances]
    result: dict = {
        "count": len(samples),
        "size": list(samples.shape[-2:]),
        "layers": list(layers),
        "gram_distance": _mean_sd(totals),
        "per_layer": {k: statistics.fmean(d[k] for d in distances) for k in layers},
        "relative_distance": statistics.fmean(relative_distance(g, target) for g in per_sample),
    }
    if against:
        others = {}
        for name, image in against.items():
            other = grams(descriptor, image, layers)
            others[name] = statistics.fmean(
                sum(layer_distances(g, other).values()) for g in per_sample
            )
        nearest = min(others, key=others.__getitem__)
        result["against"] = others
        result["nearest_other"] = nearest
        result["separation"] = others[nearest] / max(result["gram_distance"]["mean"], 1e-12)
    pixel, gram = diversity(samples, per_sample)
    if pixel is not None:
        result["pixel_diversity"], result["gram_diversity"] = pixel, gram
    exemplar_size = element_size(exemplar)
    sizes = [element_size(s) for s in samples]
    result["element_size"] = {
        "exemplar": exemplar_size,
        "samples": statistics.fmean(sizes),
        "ratio": statistics.fmean(sizes) / exemplar_size,
    }
    if circular:
        result["seam_error"] = statistics.fmean(seam_error(s) for s in samples)
    return result


def style_quality(
    descriptor: VGGDescriptor,
    layers: Sequence[str],
    content_layer: str,
    style: torch.Tensor,
    photos: Sequence[torch.Tensor],
    stylized: Sequence[torch.Tensor],
) -> dict:
    """Style distance (Gram distance to the style image) of each delivered stylized photo, and
    of the photo itself for reference, and the content distance (relative MSE at
    `content_layer`) between each stylized photo and its original."""
    target = grams(descriptor, style, layers)
    before, after, content = [], [], []
    for photo, out in zip(photos, stylized, strict=True):
        with torch.no_grad():
            fp, fo = (descriptor(x.reshape(1, *x.shape[-3:])) for x in (photo, out))
        for feats, into in ((fp, before), (fo, after)):
            g = {k: gram_matrix(feats[k].float())[0] for k in layers}
            into.append(sum(layer_distances(g, target).values()))
        content.append(float(content_loss(fo[content_layer], fp[content_layer])))
    return {
        "count": len(photos),
        "layers": list(layers),
        "content_layer": content_layer,
        "style_distance": _mean_sd(after),
        "photo_style_distance": _mean_sd(before),
        "content_distance": _mean_sd(content),
    }


def evaluate(
    descriptor: VGGDescriptor,
    targets: Mapping[str, torch.Tensor],
    layers: Sequence[str],
    images: torch.Tensor,
) -> dict:
    """The benchmark's summary of a set of images against target Grams: the Gram distance per
    image and its mean (`texture_loss`), mean pairwise pixel RMS and Gram distances, seam error."""
    target = {k: targets[k].reshape(targets[k].shape[-2:]) for k in layers}
    per_image = [grams(descriptor, image, layers) for image in images]
    losses = [sum(layer_distances(g, target).values()) for g in per_image]
    pixel, gram = diversity(images, per_image)
    return {
        "count": len(images),
        "texture_loss": statistics.fmean(losses),
        "texture_loss_per_image": losses,
        "pixel_distance": pixel,
        "gram_distance": gram,
        "seam_error": statistics.fmean(seam_error(image) for image in images),
    }
