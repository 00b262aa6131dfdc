"""Training data: the texture/style exemplar and random square crops of content photos."""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch
from torch.nn import functional as F

from tn_export.budget import DESCRIPTOR_BYTES_PER_PIXEL, FLOAT
from tn_export.errors import UserError
from tn_export.images import image_files, load_image, to_array

MIN_EXEMPLAR = 64  # VGG pools four times before relu5_1: smaller exemplars leave ~nothing there
CROP_BYTES_PER_PIXEL = 2 * 3 * FLOAT  # a content photo as float32 RGB, and resized for its crop


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def load_tensor(path: Path, per_pixel: int = 0, use: str = "") -> torch.Tensor:
    """An image file as a (1, 3, H, W) float tensor in [0, 1] (`per_pixel`: see load_image)."""
    return torch.from_numpy(to_array(load_image(path, per_pixel=per_pixel, use=use))).unsqueeze(0)


def load_exemplar(path: Path) -> torch.Tensor:
    """The texture or style image, at its own size (Gram statistics do not depend on size),
    refused before it is decoded when describing it would not fit the memory budget."""
    image = load_tensor(path, DESCRIPTOR_BYTES_PER_PIXEL, "described as the exemplar")
    if min(image.shape[-2:]) < MIN_EXEMPLAR:
        h, w = image.shape[-2:]
        raise UserError(
            f"image {path} is {w}x{h}, smaller than {MIN_EXEMPLAR} px on a side; "
            "use a larger texture or style image"
        )
    return image


class ContentCrops:
    """Random image_size x image_size crops of content photos at random scales, mirrored at random.

    All randomness comes from torch's global generator, so a resumed run draws the same crops
    and every rank of a torchrun job draws the same global batch.
    """

    def __init__(self, paths: list[str], image_size: int) -> None:
        self.files = image_files(paths)
        if not self.files:
            raise UserError(
                f"no content images in {', '.join(paths)}; pass image files or a folder"
            )
        self.image_size = image_size
        for f in self.files:  # fail at start, not at iteration 900
            image = load_image(f, per_pixel=CROP_BYTES_PER_PIXEL, use="as a content photo")
            if min(image.size) < image_size:
                raise UserError(
                    f"content image {f} is {image.size[0]}x{image.size[1]}, smaller than "
                    f"--image-size {image_size}; remove it or lower --image-size"
                )

    def crop(self, path: Path, draw: torch.Tensor) -> torch.Tensor:
        """The crop of `path` that `draw` (four uniform numbers in [0, 1)) picks: the scale (the
        shorter side between image_size and the smaller of twice that and its own), the top and
        left corner within the free room, and a mirror flip. A few photos give many crops."""
        image = load_tensor(path)
        size, (h, w) = self.image_size, image.shape[-2:]
        shorter = size + float(draw[0]) * (min(h, w, 2 * size) - size)
        s = shorter / min(h, w)
        image = F.interpolate(
            image,
            size=(round(h * s), round(w * s)),
            mode="bilinear",
            antialias=True,
            align_corners=False,
        )
        h, w = image.shape[-2:]
        top = int(draw[1] * (h - size + 1))
        left = int(draw[2] * (w - size + 1))
        crop = image[:, :, top : top + size, left : left + size]
        return crop.flip(-1) if draw[3] < 0.5 else crop

    def batch(self, size: int, share: slice = slice(None)) -> torch.Tensor:
        """`size` random crops, of which only `share` (one rank's part) is loaded; the random
        draws for all `size` are made, so every rank stays on the same random stream."""
        files = torch.randint(0, len(self.files), (size,)).tolist()
        draws = torch.rand(size, 4)
        picks = list(zip(files, draws, strict=True))[share]
        return torch.cat([self.crop(self.files[i], draw) for i, draw in picks]).clamp(0, 1)
