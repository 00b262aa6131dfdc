"""Image files in and out (Pillow + numpy only: the torch-free runtime uses this too).

Photos from phones read too: HEIC/HEIF through pillow-heif (the optional extra `heif`),
registered with Pillow when installed, and AVIF through Pillow itself where it was built with
libavif.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import struct
import warnings
from pathlib import Path

import numpy as np
import PIL
from PIL import Image, ImageOps, features

from .atomic import atomic_path
from .budget import MAX_PIXELS, check_memory
from .errors import UserError

# The last three are photos from phones (HEIC/HEIF, AVIF), where this installation reads them.
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".gif"}
IMAGE_SUFFIXES |= {".heic", ".heif", ".avif"}
# The decoders tried, whatever the extension says: the formats above and no exotic ones (EPS
# would start Ghostscript). JPEG includes multi-picture camera files (MPO).
READ_FORMATS = ("PNG", "JPEG", "WEBP", "BMP", "TIFF", "GIF")
SAVE_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP"}
# ISO base media file brands (the `ftyp` box at the start of the file) of the phone formats.
AVIF_BRANDS = {b"avif", b"avis"}
HEIF_BRANDS = {b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1"}


@functools.cache
def heif_available() -> bool:
    """Whether pillow-heif is installed; registers its HEIF opener with Pillow the first time."""
    if importlib.util.find_spec("pillow_heif") is None:
        return False
    import pillow_heif

    pillow_heif.register_heif_opener()
    return True


def avif_available() -> bool:
    """Whether this Pillow was built with AVIF support (libavif)."""
    return bool(features.check("avif"))


def read_formats() -> tuple[str, ...]:
    """The decoders load_image tries: READ_FORMATS and the phone formats that are available."""
    available = {"HEIF": heif_available(), "AVIF": avif_available()}
    return READ_FORMATS + tuple(name for name, ok in available.items() if ok)


def _brands(path: Path) -> set[bytes]:
    """The major and compatible brands of an ISO base media file (HEIF, AVIF), else none."""
    with path.open("rb") as f:
        head = f.read(64)
    if len(head) < 12 or head[4:8] != b"ftyp":
        return set()
    size = min(struct.unpack(">I", head[:4])[0], len(head))
    # ftyp: size, "ftyp", major brand, minor version, then compatible brands, 4 bytes each.
    return {head[8:12], *(head[i : i + 4] for i in range(16, size - 3, 4))}


def _unsupported(path: Path) -> str | None:
    """Why `path` cannot be read here although it is a phone photo, or None."""
    brands = _brands(path)
    if brands & AVIF_BRANDS and not avif_available():
        return (
            f"image {path} is AVIF, which this Pillow {PIL.__version__} cannot read (built "
            "without libavif); install a Pillow with AVIF support or re-save it as PNG or JPEG"
        )
    if brands & HEIF_BRANDS and not brands & AVIF_BRANDS and not heif_available():
        return (
            f"image {path} is HEIC/HEIF, which needs pillow-heif: "
            "pip install 'tn-export[heif]' (or pillow-heif), or re-save it as PNG or JPEG"
        )
    return None


def to_rgb(image: Image.Image) -> Image.Image:
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


def load_image(
    path: str | os.PathLike, max_pixels: int = MAX_PIXELS, per_pixel: int = 0, use: str = ""
) -> Image.Image:
    """Open an image file as RGB with its EXIF orientation applied; one clear error otherwise.

    `per_pixel`: the bytes per pixel that its `use` (e.g. "as the exemplar") will need, checked
    against the memory budget from the declared size, before the image is decoded.
    """
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{path} is a folder, not an image; pass an image file")
    if not path.is_file():
        raise UserError(f"image {path} does not exist; check the path")
    if path.stat().st_size == 0:
        raise UserError(f"image {path} is empty (0 bytes); pass a PNG, JPEG or WebP image")
    too_big = f"over the limit of {max_pixels} pixels; downscale it first"
    try:
        # Pillow warns (on stderr) about damaged metadata and large images; the outcome here is
        # an RGB image or one clear error, so its warnings are noise.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(path, formats=read_formats()) as im:
                w, h = im.size
                if w * h > max_pixels:
                    raise UserError(f"image {path} declares {w}x{h} pixels, {too_big}")
                check_memory(w * h * per_pixel, f"image {path} ({w}x{h}) {use}", "downscale it")
                im.load()
                image = ImageOps.exif_transpose(im) or im
                return to_rgb(image)
    except UserError:
        raise
    except Image.DecompressionBombError as e:  # Pillow's own, larger limit, checked on opening
        raise UserError(f"image {path} declares a size {too_big}") from e
    except Exception as e:  # noqa: BLE001 - damaged files make Pillow's decoders raise anything
        reason = _unsupported(path)
        if reason is not None:
            raise UserError(reason) from e
        first = str(e).strip().splitlines()[0][:100] if str(e).strip() else ""
        raise UserError(
            f"image {path} cannot be read ({type(e).__name__}: {first}); it may be truncated "
            "or not an image: re-save it as PNG or JPEG"
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


def to_uint8(array: np.ndarray) -> np.ndarray:
    """float (3, H, W) RGB, nominally in [0, 1] -> (H, W, 3) uint8 (values clipped, NaN black)."""
    a = np.clip(np.asarray(array, dtype=np.float32).transpose(1, 2, 0) * 255.0 + 0.5, 0, 255)
    return np.nan_to_num(a, copy=False).astype(np.uint8)


def from_array(array: np.ndarray) -> Image.Image:
    """float (3, H, W) RGB, nominally in [0, 1] -> Pillow image (values clipped, NaN black)."""
    return Image.fromarray(to_uint8(array), "RGB")


def save_image(image: Image.Image, path: str | os.PathLike) -> None:
    """Save atomically, the format chosen by the extension (PNG, JPEG or WebP)."""
    path = Path(path)
    fmt = SAVE_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise UserError(f"cannot write {path}: use a .png, .jpg or .webp output name")
    with atomic_path(path) as tmp:
        image.save(tmp, format=fmt, **({"quality": 95} if fmt in ("JPEG", "WEBP") else {}))
