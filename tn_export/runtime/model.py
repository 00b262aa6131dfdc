"""`load` an exported model and run it: textures of any size, photos of any size in tiles.

The model's contract comes from the file's own metadata; every size, seed and count is checked
against it and against the memory budget before anything runs.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort
from PIL import Image

from .. import budget
from ..budget import MAX_PIXELS
from ..contract import ModelContract
from ..errors import UserError
from ..images import from_array, to_array, to_rgb, to_uint8
from .controls import Controls
from .session import check_graph, open_session
from .tiling import (
    BAND_BYTES_PER_PIXEL,
    DEFAULT_OVERLAP,
    DEFAULT_TILE_PIXELS,
    IMAGE_BYTES_PER_PIXEL,
    Progress,
    Tiling,
    round_up,
    tile_shape,
)

MIN_SIDE = 16  # smaller outputs are padding more than picture


class Model:
    """An exported generator in an onnxruntime session, with its contract. Made by `load`."""

    def __init__(
        self,
        session: ort.InferenceSession,
        contract: ModelContract,
        source: str,
        tile_pixels: int = DEFAULT_TILE_PIXELS,
        overlap: int = DEFAULT_OVERLAP,
    ) -> None:
        self.session = session
        self.contract = contract
        self.source = source
        m = contract.size_multiple
        if isinstance(tile_pixels, bool) or not isinstance(tile_pixels, int | np.integer):
            raise UserError(f"tile budget must be a whole number of pixels, not {tile_pixels!r}")
        if tile_pixels < contract.min_size**2:
            raise UserError(
                f"tile budget {tile_pixels} pixels is below one {contract.min_size}x"
                f"{contract.min_size} tile, the smallest this model runs; raise tile_pixels",
                "tile_pixels",
            )
        if tile_pixels > MAX_PIXELS:
            raise UserError(
                f"tile budget {tile_pixels} pixels is over the limit of {MAX_PIXELS}; "
                "lower tile_pixels",
                "tile_pixels",
            )
        self.tile_pixels = tile_pixels
        self.overlap = round_up(max(overlap, 0), m)

    def __repr__(self) -> str:
        c = self.contract
        sizes = f"{c.min_size}..{c.max_size} step {c.size_multiple}"
        return f"Model({self.source!r}, {c.mode}, sizes {sizes})"

    def run(self, x: np.ndarray) -> np.ndarray:
        """The raw network: (N, C, H, W) float32 at a size the contract allows -> (N, 3, H, W)."""
        c = self.contract
        feed = {c.input_name: np.ascontiguousarray(x, dtype=np.float32)}
        return self.session.run([c.output_name], feed)[0]

    def padded(self, length: int) -> int:
        """The smallest size the model runs that holds `length` pixels."""
        return max(round_up(length, self.contract.size_multiple), self.contract.min_size)

    def _check_mode(self, mode: str) -> None:
        if self.contract.mode != mode:
            does = {"texture": "synthesizes textures", "style": "stylizes images"}
            command = {"texture": "synthesize", "style": "stylize"}[self.contract.mode]
            raise UserError(
                f"{self.source} is a {self.contract.mode} model: it {does[self.contract.mode]} "
                f"(tn-run {command}, Model.{command}); only {mode} models {does[mode]}"
            )

    def _check_size(self, width: int, height: int, what: str, max_side: int | None) -> None:
        for name, value in (("width", width), ("height", height)):
            if isinstance(value, bool) or not isinstance(value, int | np.integer):
                raise UserError(f"{what} {name} must be a whole number of pixels, not {value!r}")
        if width < MIN_SIDE or height < MIN_SIDE:
            raise UserError(
                f"{what} {width}x{height} is too small: width and height must be at least "
                f"{MIN_SIDE} pixels"
            )
        if max_side is not None and max(width, height) > max_side:
            raise UserError(
                f"{what} {width}x{height} is over this model's maximum of {max_side} pixels per "
                f"side (from its metadata); ask for at most {max_side}x{max_side} or re-export "
                "it with a larger max_size",
                "max_size",
            )
        if width * height > MAX_PIXELS:
            raise UserError(
                f"{what} {width}x{height} has {width * height} pixels, over the limit of "
                f"{MAX_PIXELS}; ask for a smaller size"
            )

    def _check_memory(self, pixels: int, extra: int, what: str, fix: str, *params: str) -> None:
        """A run of `pixels` (as the model runs them) plus `extra` bytes must fit the budget."""
        cost = pixels * self.contract.bytes_per_pixel + extra
        budget.check_memory(cost, f"{self.source} {what}", fix, *params)

    def synthesize(
        self, width: int, height: int, seed: int | None = None, count: int = 1
    ) -> list[Image.Image]:
        """`count` textures of exactly width x height; the same seed gives the same textures."""
        if isinstance(count, bool) or not isinstance(count, int | np.integer) or count < 1:
            raise UserError(f"count must be a positive whole number, not {count!r}")
        budget.check_count(count, "count")
        textures = self.textures(width, height, seed)
        # Each texture kept is a Pillow RGB image: 4 bytes per pixel.
        kept = f"{count} textures of {width}x{height}"
        budget.check_memory(4 * width * height * count, kept, "ask for fewer at a time")
        return list(itertools.islice(textures, count))

    def textures(self, width: int, height: int, seed: int | None = None) -> Iterator[Image.Image]:
        """Endless textures of exactly width x height, made one at a time as they are taken.

        Noise is drawn at the padded size the model runs (a multiple of its size multiple) and
        the output cropped; the i-th texture of a seed is the same however many are taken.
        """
        self._check_mode("texture")
        self._check_size(width, height, "texture size", self.contract.max_size)
        if seed is not None and (
            isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0
        ):
            raise UserError(f"seed must be a whole number >= 0, not {seed!r}")
        padded = self.padded(width) * self.padded(height)
        self._check_memory(padded, 0, f"at {width}x{height}", "ask for a smaller size")
        return self._textures(width, height, np.random.default_rng(seed))

    def _textures(self, width: int, height: int, rng: np.random.Generator) -> Iterator[Image.Image]:
        shape = (1, self.contract.noise_depth, self.padded(height), self.padded(width))
        while True:
            noise = rng.standard_normal(shape, dtype=np.float32)
            yield from_array(self.run(noise)[0, :, :height, :width])

    def stylize(
        self,
        image: Image.Image,
        progress: Progress | None = None,
        *,
        strength: float = 1.0,
        keep_colors: bool = False,
    ) -> Image.Image:
        """The image restyled, same size. Large images run in overlapping tiles, blended;
        `progress(done, total)` is called after each tile.

        `strength` from 0 (the photo) to 1 (full style) blends the stylized pixels with the
        photo's (these models hold no conditional norms to interpolate); `keep_colors` keeps the
        photo's chroma and takes only the stylized luminance (controls.py). Edges are padded by
        reflection up to the size the model runs, then cropped back.
        """
        self._check_mode("style")
        controls = Controls(strength, keep_colors)
        if not isinstance(image, Image.Image):
            raise UserError(f"stylize() takes a Pillow image, not {type(image).__name__}")
        width, height = image.size
        self._check_size(width, height, "image size", None)
        rgb = to_rgb(image) if image.mode != "RGB" else image
        padded = (self.padded(width), self.padded(height))
        tile_h, tile_w = tile_shape(self.contract, self.tile_pixels, padded[1], padded[0])
        m = self.contract.size_multiple
        tiles = Tiling.cover((width, height), padded, (tile_w, tile_h), self.overlap, m)
        # The bound of tiling.py: one tile's run, the images and one band.
        images = IMAGE_BYTES_PER_PIXEL * width * height + BAND_BYTES_PER_PIXEL * tile_h * width
        where = f"on a {width}x{height} image in {tile_w}x{tile_h} tiles"
        fix = "lower tile_pixels or downscale it"
        self._check_memory(tile_h * tile_w, images, where, fix, "tile_pixels")

        def tile(x: int, y: int) -> np.ndarray:
            box = (x, y, min(x + tile_w, width), min(y + tile_h, height))
            return self._stylize_padded(to_array(rgb.crop(box))[None], tile_h, tile_w, controls)[0]

        return tiles.assemble(tile, progress)

    def stylize_frames(
        self, frames: np.ndarray, *, strength: float = 1.0, keep_colors: bool = False
    ) -> np.ndarray:
        """A batch of frames restyled in one run: (N, H, W, 3) uint8 RGB -> the same shape.

        Video frames run whole (not tiled), so a side is bounded by the model's max_size; the
        controls are `stylize`'s.
        """
        self._check_mode("style")
        controls = Controls(strength, keep_colors)
        if not isinstance(frames, np.ndarray) or frames.ndim != 4 or frames.shape[3] != 3:
            what = getattr(frames, "shape", type(frames).__name__)
            raise UserError(f"stylize_frames() takes (N, H, W, 3) uint8 RGB frames, not {what}")
        count, height, width = frames.shape[:3]
        self.check_frames(count, width, height)
        padded_h, padded_w = self.padded(height), self.padded(width)
        photos = frames.transpose(0, 3, 1, 2).astype(np.float32) / 255.0
        out = self._stylize_padded(photos, padded_h, padded_w, controls)
        return np.stack([to_uint8(frame) for frame in out[:, :, :height, :width]])

    def check_frames(self, count: int, width: int, height: int) -> None:
        """Whether `count` frames of width x height fit the model's bounds and the memory budget,
        checked before a video is opened for writing."""
        self._check_mode("style")
        self._check_size(width, height, "frame size", self.contract.max_size)
        # Beside the run: the uint8 frames, the float32 photos, padded and blended, the output.
        padded = count * self.padded(height) * self.padded(width)
        where = f"on {count} frames of {width}x{height} at once"
        fix = "take fewer frames at a time (batch) or a smaller size"
        self._check_memory(padded, 16 * 3 * padded, where, fix, "batch", "size")

    def _stylize_padded(
        self, photos: np.ndarray, height: int, width: int, controls: Controls
    ) -> np.ndarray:
        """(N, 3, h, w) photos in [0, 1], reflection-padded to height x width, run, with the
        controls applied: (N, 3, height, width), the padding not yet cropped."""
        pad = ((0, 0), (0, 0), (0, height - photos.shape[2]), (0, width - photos.shape[3]))
        padded = np.pad(photos, pad, mode="reflect")
        return controls.apply(self.run(padded), padded)


def load(
    path: str | os.PathLike,
    providers: Sequence[str] | None = None,
    threads: int | None = None,
    *,
    tile_pixels: int = DEFAULT_TILE_PIXELS,
    overlap: int = DEFAULT_OVERLAP,
    low_memory: bool = True,
) -> Model:
    """Open an exported ONNX (or ORT-format) model and check it against its own metadata.

    `providers`: onnxruntime execution providers in order of preference (default: all local
    ones available); `threads`: intra-op threads (default: onnxruntime's choice); `tile_pixels`:
    the largest tile `stylize` runs at once; `low_memory`: no memory patterns (same speed).
    """
    path = Path(path)
    session = open_session(path, providers, threads, low_memory)
    contract = ModelContract.from_metadata(
        session.get_modelmeta().custom_metadata_map, f"model {path}"
    )
    check_graph(session, contract, f"model {path}")
    return Model(session, contract, str(path), tile_pixels=tile_pixels, overlap=overlap)
