"""Image files in and out (Pillow + numpy only: the torch-free runtime uses this too)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from .atomic import atomic_path
from .errors import UserError

# Refuse decompression bombs: 64 megapixels is a 8192x8192 photo, far above any use here.
MAX_PIXELS = 64 * 1024 * 1024
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".gif"}
_SAVE_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP"}


def _to_rgb(image: Image.Image) -> Image.Image:
    """Any Pillow mode -> 8-bit RGB. Transparency is composited on white; 16-bit is rescaled."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        a = np.asarray(image, dtype=np.float64)
        top = 65535.0 if image.mode.startswith("I;16") or a.max() > 255 else 255.0
        image = Image.fromarray(np.clip(a / top * 255.0 + 0.5, 0, 255).astype(np.uint8), "L")
    elif image.mode == "F":
        a = np.asarray(image, dtype=np.float64)
        image = Image.fromarray(np.clip(a * 255.0 + 0.5, 0, 255).astype(np.uint8), "L")
    if image.mode == "P":
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    return image.convert("RGB")


def load_image(path: str | os.PathLike, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Open an image file as RGB with its EXIF orientation applied; one clear error otherwise."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{path} is a folder, not an image; pass an image file")
    if not path.is_file():
        raise UserError(f"image {path} does not exist; check the path")
    if path.stat().st_size == 0:
        raise UserError(f"image {path} is empty (0 bytes); pass a PNG, JPEG or WebP image")
    try:
        with Image.open(path) as im:
            w, h = im.size
            if w * h > max_pixels:
                raise UserError(
                    f"image {path} declares {w}x{h} pixels, over the limit of {max_pixels} "
                    "pixels; downscale it first"
                )
            im.load()
            image = ImageOps.exif_transpose(im) or im
            return _to_rgb(image)
    except UserError:
        raise
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        raise UserError(
            f"image {path} cannot be read ({type(e).__name__}: {str(e).splitlines()[0][:100]}); "
            "it may be truncated or not an image: re-save it as PNG or JPEG"
        ) from e


def image_files(paths: list[str | os.PathLike]) -> list[Path]:
    """Expand folders into their image files (sorted); files are taken as given."""
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            out += sorted(f for f in p.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
        else:
            out.append(p)
    return out


def to_array(image: Image.Image) -> np.ndarray:
    """RGB Pillow image -> float32 (3, H, W) in [0, 1]."""
    return np.asarray(image, dtype=np.float32).transpose(2, 0, 1) / 255.0


def from_array(array: np.ndarray) -> Image.Image:
    """float (3, H, W) RGB, nominally in [0, 1] -> Pillow image (values clipped)."""
    a = np.clip(np.asarray(array, dtype=np.float32).transpose(1, 2, 0) * 255.0 + 0.5, 0, 255)
    return Image.fromarray(a.astype(np.uint8), "RGB")


def save_image(image: Image.Image, path: str | os.PathLike) -> None:
    """Save atomically, the format chosen by the extension (PNG, JPEG or WebP)."""
    path = Path(path)
    fmt = _SAVE_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise UserError(f"cannot write {path}: use a .png, .jpg or .webp output name")
    with atomic_path(path) as tmp:
        image.save(tmp, format=fmt, **({"quality": 95} if fmt in ("JPEG", "WEBP") else {}))
