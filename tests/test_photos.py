"""Photos from phones: HEIC/HEIF (pillow-heif, the `heif` extra) and AVIF (Pillow) are read
wherever images are read, and where a codec is missing the error says which one and how."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tn_export import images
from tn_export.errors import UserError
from tn_export.images import image_files, load_image

needs_heif = pytest.mark.skipif(
    not images.heif_available(), reason="pillow-heif is absent (pip install 'tn-export[heif]')"
)
needs_avif = pytest.mark.skipif(
    not images.avif_available(), reason="this Pillow was built without AVIF support (libavif)"
)


def _photo(width: int = 48, height: int = 32) -> Image.Image:
    """Smooth colour ramps, which lossy codecs keep within a few levels."""
    x = np.linspace(0, 255, width)[None, :].repeat(height, 0)
    y = np.linspace(0, 255, height)[:, None].repeat(width, 1)
    return Image.fromarray(np.stack([x, y, 255 - x], axis=-1).astype(np.uint8), "RGB")


def _same_picture(path: Path, photo: Image.Image) -> None:
    image = load_image(path)
    assert image.mode == "RGB" and image.size == photo.size
    error = np.abs(np.asarray(image, np.int16) - np.asarray(photo, np.int16)).mean()
    assert error < 8, f"{path.name} decoded {error:.1f} levels off on average"


@needs_heif
def test_heic_photos_are_read(tmp_path):
    import pillow_heif

    photo = _photo()
    path = tmp_path / "IMG_0001.HEIC"
    pillow_heif.from_pillow(photo).save(path, quality=95)
    _same_picture(path, photo)


@needs_avif
def test_avif_photos_are_read(tmp_path):
    photo = _photo()
    photo.save(tmp_path / "photo.avif", quality=95)
    _same_picture(tmp_path / "photo.avif", photo)


@needs_heif
def test_a_heic_file_named_otherwise_is_read_by_its_content(tmp_path):
    import pillow_heif

    photo = _photo()
    pillow_heif.from_pillow(photo).save(tmp_path / "photo.jpg", quality=95)
    _same_picture(tmp_path / "photo.jpg", photo)


def _ftyp(path: Path, major: bytes, *compatible: bytes) -> Path:
    """The start of an ISO base media file: its `ftyp` box (the codec is never reached)."""
    box = major + b"\0\0\0\0" + b"".join(compatible)
    path.write_bytes((8 + len(box)).to_bytes(4, "big") + b"ftyp" + box + b"\0" * 64)
    return path


def test_heic_without_pillow_heif_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setattr(images, "heif_available", lambda: False)
    path = _ftyp(tmp_path / "IMG_0001.heic", b"heic", b"mif1", b"heic")
    with pytest.raises(UserError) as error:
        load_image(path)
    message = str(error.value)
    assert str(path) in message and "HEIC/HEIF" in message
    assert "pip install 'tn-export[heif]'" in message and "\n" not in message


def test_avif_without_pillow_support_says_so(tmp_path, monkeypatch):
    monkeypatch.setattr(images, "avif_available", lambda: False)
    path = _ftyp(tmp_path / "photo.avif", b"mif1", b"avif", b"miaf")  # AVIF under a HEIF brand
    with pytest.raises(UserError) as error:
        load_image(path)
    message = str(error.value)
    assert str(path) in message and "is AVIF" in message and "without libavif" in message


def test_a_damaged_photo_from_a_phone_is_still_a_damaged_file(tmp_path):
    """With its codec there, a file that only starts like a HEIC is an unreadable file."""
    path = _ftyp(tmp_path / "broken.heic", b"heic", b"mif1")
    with pytest.raises(UserError, match="cannot be read|needs pillow-heif"):
        load_image(path)


def test_folders_include_phone_photos(tmp_path):
    for name in ("a.heic", "b.HEIF", "c.avif", "d.png", "notes.txt"):
        (tmp_path / name).touch()
    assert [p.name for p in image_files([tmp_path])] == ["a.heic", "b.HEIF", "c.avif", "d.png"]
