"""`load` an exported model and run it: textures of any size, photos of any size in tiles.

The model's contract comes from the file's own metadata; every size, seed and count is checked
against it and against the memory budget before anything runs.
"""

from __future__ import annotations

import itertools
import os
import secrets
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort
from PIL import Image

from .. import budget
from ..budget import MAX_PIXELS, MAX_TILED_SIDE
from ..contract import PREFIX, ModelContract
from ..errors import UserError
from ..images import from_array, to_array, to_rgb, to_uint8
from .controls import Controls
from .exact import PART_SUFFIXES, SPLIT, Costs, ExactTiler, Plan, least_budget, plan
from .noise import gaussian
from .session import check_graph, open_session
from .styles import Style, style_weights
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
DEFAULT_MAX_MEMORY = 256 * 10**6  # bytes: what a phone app can spend on one image
# Peak RSS over idle of whole tn-run processes (benchmarks/tiling.py), against the model's
# per-pixel lower bound (budget.py; 792 B for the bundled models). 15 runs of the bundled texture
# and style models at 1024-4096 a side, with tiles of 192-512 under 256-700 MB bounds, fit
# 40 MB + ~80 B per held block pixel + ~620 B per fine window pixel + the 8-bit images; these
# factors keep every run's estimate at least 18 % above what it measured. The coarse part's
# arena stays allocated while its block's tiles run (model.costs, exact.plan).
RUN_FACTOR = 1.2
FINE_FACTOR = 0.8
# The three sessions and the load check (measured: 25 MB, about 31 MB with the shared arena's
# bookkeeping: session.share_arena), and allocator slack.
FIXED_BYTES = 40 * 10**6
TEXTURE_IMAGE_BYTES = 4  # per pixel beside a texture's run: the Pillow RGB output (4 bytes)


def check_max_memory(max_memory: float) -> float:
    """`max_memory` if it is a positive number of bytes (math.inf: no bound), else a UserError."""
    number = isinstance(max_memory, int | float) and not isinstance(max_memory, bool)
    if not number or not max_memory > 0:
        raise UserError(f"max_memory must be a positive number of bytes, not {max_memory!r}")
    return max_memory


def arena_region(max_memory: float) -> int | None:
    """The first region of the shared arena (session.share_arena) for runs under `max_memory`:
    the largest whole run it allows, at most the default bound's (an unbounded run would make
    the region's bookkeeping, 1/32 of it, larger than a small image's maps); None if too small."""
    region = min(max_memory, DEFAULT_MAX_MEMORY) - FIXED_BYTES
    return int(region) if region >= 2**20 else None


class Model:
    """An exported generator in an onnxruntime session, with its contract. Made by `load`."""

    def __init__(
        self,
        session: ort.InferenceSession,
        contract: ModelContract,
        source: str,
        tile_pixels: int = DEFAULT_TILE_PIXELS,
        overlap: int = DEFAULT_OVERLAP,
        *,
        tiler: ExactTiler | None = None,
        tiling_note: str = "",
        max_memory: float = DEFAULT_MAX_MEMORY,
    ) -> None:
        self.session = session
        self.contract = contract
        self.source = source
        self.tiler = tiler
        self.tiling_note = tiling_note  # why large images are not tiled exactly, if they are not
        self.max_memory = check_max_memory(max_memory)
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

    def run(self, x: np.ndarray, style: Style = None) -> np.ndarray:
        """The raw network: (N, C, H, W) float32 at a size the contract allows -> (N, 3, H, W);
        a model of several styles applies `style` (styles.style_weights) to every image."""
        c = self.contract
        feed = {c.input_name: np.ascontiguousarray(x, dtype=np.float32)}
        weights = style_weights(c.styles, style, self.source)  # refuses a choice without styles
        if c.styles:
            feed[c.style_input] = np.repeat(weights[None], len(x), axis=0)
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

    def _check_size(
        self, width: int, height: int, what: str, max_side: int | None, pixels: int = MAX_PIXELS
    ) -> None:
        for name, value in (("width", width), ("height", height)):
            if isinstance(value, bool) or not isinstance(value, int | np.integer):
                raise UserError(f"{what} {name} must be a whole number of pixels, not {value!r}")
        if width < MIN_SIDE or height < MIN_SIDE:
            raise UserError(
                f"{what} {width}x{height} is too small: width and height must be at least "
                f"{MIN_SIDE} pixels"
            )
        if max_side == MAX_TILED_SIDE and max(width, height) > max_side:
            raise UserError(
                f"{what} {width}x{height} is over the largest side exact tiles make, "
                f"{MAX_TILED_SIDE} pixels; ask for at most {max_side}x{max_side}"
            )
        if max_side is not None and max(width, height) > max_side:
            raise UserError(
                f"{what} {width}x{height} is over this model's maximum of {max_side} pixels per "
                f"side (from its metadata); ask for at most {max_side}x{max_side} or re-export "
                "it with a larger max_size",
                "max_size",
            )
        if width * height > pixels:
            raise UserError(
                f"{what} {width}x{height} has {width * height} pixels, over the limit of "
                f"{pixels}; ask for a smaller size"
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

        The noise is a function of (seed, texture index, channel, position) (noise.py), drawn
        at the padded size the model runs (a multiple of its size multiple), the output cropped.
        A run whose memory would exceed `max_memory` runs in exact tiles (exact.py) where the
        model has its tiling parts: the same texture, up to MAX_TILED_SIDE pixels a side.
        """
        self._check_mode("texture")
        side = MAX_TILED_SIDE if self.tiler else self.contract.max_size
        self._check_size(width, height, "texture size", side, side * side)
        if seed is not None and (
            isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0
        ):
            raise UserError(f"seed must be a whole number >= 0, not {seed!r}")
        seed = secrets.randbits(32) if seed is None else int(seed)
        layout = self.layout(width, height, TEXTURE_IMAGE_BYTES)
        if layout is None:
            padded = self.padded(width) * self.padded(height)
            self._check_memory(padded, 0, f"at {width}x{height}", "ask for a smaller size")
        return self._textures(width, height, seed, layout)

    def layout(
        self, width: int, height: int, image_bytes: int = IMAGE_BYTES_PER_PIXEL
    ) -> Plan | None:
        """How a width x height image runs: None whole (it fits `max_memory`, or the model
        has no tiling parts), else the exact tiles that fit. Refused where nothing fits.
        `image_bytes` per pixel: the 8-bit images beside the run (stylize: photo and output)."""
        hp, wp = self.padded(height), self.padded(width)
        c = self.contract
        images = image_bytes * width * height
        whole = self.whole_bytes(width, height, image_bytes)
        fits = whole + FIXED_BYTES <= self.max_memory and max(hp, wp) <= c.max_size
        if self.tiler is None or fits:
            return None
        costs = self.costs()
        room = self.max_memory - images - FIXED_BYTES
        reaches = self.tiler.reaches
        layout = plan(hp, wp, c.size_multiple, reaches, costs, room)
        if layout is None:
            least = FIXED_BYTES + images + least_budget(hp, wp, c.size_multiple, reaches, costs)
            raise UserError(
                f"{self.source} at {width}x{height} needs more than max_memory "
                f"{budget.size_text(self.max_memory)}: its 8-bit images alone take "
                f"{budget.size_text(images)}; raise max_memory to at least "
                f"{budget.size_text(least, up=True)}",
                "max_memory",
            )
        return layout

    def whole_bytes(
        self, width: int, height: int, image_bytes: int = IMAGE_BYTES_PER_PIXEL
    ) -> float:
        """The estimated memory of a whole run at width x height: the model's maps and input
        at the padded size, and the 8-bit images."""
        c, padded = self.contract, self.padded(height) * self.padded(width)
        run = padded * (RUN_FACTOR * c.bytes_per_pixel + 4 * c.input_channels)
        return run + image_bytes * width * height

    def costs(self) -> Costs:
        """The exact tiles' bytes per window pixel, from the contract (exact.Costs)."""
        c = self.contract
        scales = c.size_multiple.bit_length()
        split = self.tiler.split if self.tiler else 1
        features = (c.channels or budget.DEFAULT_CHANNELS) * (scales - split.bit_length() + 1)
        held = 4 * c.input_channels + 4 * features / split**2
        # The coarse part's largest maps are at ratio `split`: 1 / split**2 of a fine map.
        coarse = RUN_FACTOR * c.bytes_per_pixel / split**2 + 4 * c.input_channels / split**2
        fine = FINE_FACTOR * c.bytes_per_pixel + 4 * (c.input_channels + features / split**2)
        return Costs(held, coarse, fine)

    def _textures(
        self, width: int, height: int, seed: int, layout: Plan | None
    ) -> Iterator[Image.Image]:
        depth, hp, wp = self.contract.noise_depth, self.padded(height), self.padded(width)
        for index in itertools.count():
            if layout is None:
                noise = gaussian(seed, depth, np.arange(hp), np.arange(wp), index)
                yield from_array(self.run(noise[None])[0, :, :height, :width])
                continue
            image = Image.new("RGB", (width, height))

            def source(ys: np.ndarray, xs: np.ndarray, index: int = index) -> np.ndarray:
                return gaussian(seed, depth, ys, xs, index)

            for y, x, rgb in self.tiler.tiles(source, layout, height, width):
                image.paste(from_array(rgb), (x, y))
            yield image

    def stylize(
        self,
        image: Image.Image,
        progress: Progress | None = None,
        *,
        strength: float = 1.0,
        keep_colors: bool = False,
        style: Style = None,
    ) -> Image.Image:
        """The image restyled, same size. Large images run in overlapping tiles, blended;
        `progress(done, total)` is called after each tile.

        `strength` from 0 (the photo) to 1 (full style) blends the stylized pixels with the
        photo's; `keep_colors` keeps the photo's chroma and takes only the stylized luminance
        (controls.py); `style` picks or mixes the styles of a model that holds several
        (styles.py; default: its first). Edges are padded by reflection up to the size the
        model runs, then cropped back.
        """
        self._check_mode("style")
        controls = Controls(strength, keep_colors)
        style_weights(self.contract.styles, style, self.source)  # a bad choice fails before any run
        if not isinstance(image, Image.Image):
            raise UserError(f"stylize() takes a Pillow image, not {type(image).__name__}")
        width, height = image.size
        self._check_size(width, height, "image size", None)
        rgb = to_rgb(image) if image.mode != "RGB" else image
        layout = self.layout(width, height)
        if layout is not None:
            return self._stylize_exact(rgb, layout, controls, progress)
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
            photo = to_array(rgb.crop(box))[None]
            return self._stylize_padded(photo, tile_h, tile_w, controls, style)[0]

        return tiles.assemble(tile, progress)

    def _stylize_exact(
        self, rgb: Image.Image, layout: Plan, controls: Controls, progress: Progress | None
    ) -> Image.Image:
        """`stylize` in exact tiles: the photo reflection-padded as the whole run pads it,
        read window by window."""
        width, height = rgb.size
        rows = np.pad(np.arange(height), (0, layout.padded_h - height), mode="reflect")
        cols = np.pad(np.arange(width), (0, layout.padded_w - width), mode="reflect")

        def source(ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
            r, c = rows[ys], cols[xs]
            top, left = int(r.min()), int(c.min())
            crop = to_array(rgb.crop((left, top, int(c.max()) + 1, int(r.max()) + 1)))
            return crop[:, r - top][:, :, c - left]

        out = Image.new("RGB", (width, height))
        for done, (y, x, styled) in enumerate(self.tiler.tiles(source, layout, height, width)):
            h, w = styled.shape[1:]
            photo = to_array(rgb.crop((x, y, x + w, y + h)))
            out.paste(from_array(controls.apply(styled, photo)), (x, y))
            if progress is not None:
                progress(done + 1, layout.tiles_inside(height, width))
        return out

    def stylize_frames(
        self,
        frames: np.ndarray,
        *,
        strength: float = 1.0,
        keep_colors: bool = False,
        style: Style = None,
    ) -> np.ndarray:
        """A batch of frames restyled in one run: (N, H, W, 3) uint8 RGB -> the same shape.

        Video frames run whole (not tiled), so a side is bounded by the model's max_size; the
        controls and the style are `stylize`'s.
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
        out = self._stylize_padded(photos, padded_h, padded_w, controls, style)
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
        self, photos: np.ndarray, height: int, width: int, controls: Controls, style: Style
    ) -> np.ndarray:
        """(N, 3, h, w) photos in [0, 1], reflection-padded to height x width, run in `style`,
        with the controls applied: (N, 3, height, width), the padding not yet cropped."""
        pad = ((0, 0), (0, 0), (0, height - photos.shape[2]), (0, width - photos.shape[3]))
        padded = np.pad(photos, pad, mode="reflect")
        return controls.apply(self.run(padded, style), padded)


def load(
    path: str | os.PathLike,
    providers: Sequence[str] | None = None,
    threads: int | None = None,
    *,
    tile_pixels: int = DEFAULT_TILE_PIXELS,
    overlap: int = DEFAULT_OVERLAP,
    low_memory: bool = True,
    max_memory: float = DEFAULT_MAX_MEMORY,
) -> Model:
    """Open an exported ONNX (or ORT-format) model and check it against its own metadata.

    `providers`: onnxruntime execution providers in order of preference (default: all local
    ones available); `threads`: intra-op threads (default: onnxruntime's choice); `tile_pixels`:
    the largest tile `stylize` runs at once where a model cannot be tiled exactly; `low_memory`:
    no memory patterns, no NCHWc layout and the shared arena (session.share_arena; about half
    the memory, up to 8 % slower);
    `max_memory`: bytes a texture or photo may take, above which it runs in exact tiles
    (exact.py) where the model has its tiling parts beside it.
    """
    path = Path(path)
    region = arena_region(check_max_memory(max_memory)) if low_memory else None
    session = open_session(path, providers, threads, low_memory, shared_region=region)
    contract = ModelContract.from_metadata(
        session.get_modelmeta().custom_metadata_map, f"model {path}"
    )
    check_graph(session, contract, f"model {path}")
    tiler, note = _open_parts(path, contract, providers, threads, low_memory)
    return Model(
        session,
        contract,
        str(path),
        tile_pixels=tile_pixels,
        overlap=overlap,
        tiler=tiler,
        tiling_note=note,
        max_memory=max_memory,
    )


def _open_parts(
    path: Path,
    contract: ModelContract,
    providers: Sequence[str] | None,
    threads: int | None,
    low_memory: bool,
) -> tuple[ExactTiler | None, str]:
    """The exact tiler of the model at `path` from the parts its contract names beside it, or
    None and why large images run otherwise."""
    tiling = contract.tiling
    if "coarse" not in tiling or "fine" not in tiling:
        reason = tiling.get("reason", "it was exported without tiling parts (before tn-export 0.2)")
        return None, f"{path} is not tiled exactly: {reason}"
    if (tiling["coarse"], tiling["fine"]) != PART_SUFFIXES or tiling.get("split") != SPLIT:
        return None, f"{path} is not tiled exactly: its tiling metadata is not this runtime's"
    sessions = []
    for part in ("coarse", "fine"):
        part_path = path.with_suffix(tiling[part])
        if not part_path.is_file():
            return None, (
                f"{path} is not tiled exactly: its part {part_path.name} is missing (tn-export "
                "--format onnx writes it beside the fp32 model)"
            )
        # The coarse part's arena would hold its block-sized peak through every fine run.
        session = open_session(part_path, providers, threads, low_memory, arena=part == "fine")
        meta = session.get_modelmeta().custom_metadata_map
        stored = ModelContract.from_metadata(meta, f"model part {part_path}")
        if stored != contract or meta.get(PREFIX + "part") != part:
            raise UserError(
                f"{part_path} is not the {part} part of {path} (its metadata differs); "
                "export them again together with tn-export"
            )
        sessions.append(session)
    scales = contract.size_multiple.bit_length()
    wrap = contract.padding == "circular"
    tiler = ExactTiler(*sessions, scales, contract.input_name, wrap)
    return tiler, ""
