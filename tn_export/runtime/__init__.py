"""Run exported generators with onnxruntime: textures of any size, photos of any size in tiles.

Torch-free on purpose (numpy, onnxruntime and Pillow only), so an app installs the base package
and nothing else. The model's contract comes from the ONNX file's own metadata.

Memory of `stylize`, the stated bound: one tile of at most `tile_pixels` runs at a time, so peak
RSS <= (peak of a run on one tile-sized image) + 8 bytes per image pixel (the RGB input and output
images) + 16 bytes x tile height x image width (the float32 band being blended) + 64 MB of
allocator slack. The model's working set never scales with the image: with the default 6-scale
model and 512x512 tiles a 4096x4096 photo peaks at 0.52 GB where one tile alone takes 0.35 GB
(1024x1024 tiles: 1.39 GB and 1.16 GB).
"""

from __future__ import annotations

import itertools
import math
import os
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort
from PIL import Image

from .. import budget
from ..budget import MAX_PIXELS
from ..contract import ModelContract
from ..errors import UserError
from ..images import from_array, to_array, to_rgb
from ..sizes import probe_size

__all__ = [
    "DEFAULT_OVERLAP",
    "DEFAULT_TILE_PIXELS",
    "IMAGE_BYTES_PER_PIXEL",
    "MIN_SIDE",
    "Model",
    "load",
]

DEFAULT_TILE_PIXELS = 512 * 512  # same speed as 1024 x 1024 tiles on 2 cores, 1/3 the memory
DEFAULT_OVERLAP = 128
IMAGE_BYTES_PER_PIXEL = 8  # stylize: the RGB input and output images, beside the tiles' runs
MIN_SIDE = 16  # smaller outputs are padding more than picture
_PASTE_ROWS = 128


def _session_options(threads: int | None, low_memory: bool) -> ort.SessionOptions:
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # Memory patterns pre-plan one big block per input shape: about half the peak RSS without
    # them at the same speed (design.md section 4). The arena stays on: without it, 30-100 % slower.
    options.enable_mem_pattern = not low_memory
    options.log_severity_level = 4  # failures reach the user as our one-line errors instead
    if threads is not None:
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
            raise UserError(f"threads must be a whole number of at least 1, not {threads!r}")
        budget.check_count(threads, "threads", budget.threads())
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    return options


def _providers(requested: Sequence[str] | None) -> list[str]:
    available = ort.get_available_providers()
    if requested is None:
        # Azure's provider calls a remote endpoint; every other one is a local device.
        return [p for p in available if p != "AzureExecutionProvider"]
    unknown = [p for p in requested if p not in available]
    if unknown or not requested:
        raise UserError(
            f"execution provider(s) {', '.join(unknown) or '(none)'} not available in this "
            f"onnxruntime; choose from {', '.join(available)}"
        )
    return list(requested)


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0][:200] if text else type(error).__name__


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def _tile_starts(length: int, tile: int, overlap: int, multiple: int) -> list[int]:
    """Starts (multiples of `multiple`, so pooling grids align) of tiles covering `length`.

    Consecutive tiles share at least `overlap` pixels; both are multiples of `multiple`.
    """
    if length <= tile:
        return [0]
    span, size, stride = length // multiple, tile // multiple, (tile - overlap) // multiple
    count = -(-(span - size) // stride) + 1
    return [multiple * (i * (span - size) // (count - 1)) for i in range(count)]


def _blend_weights(starts: list[int], tile: int, overlap: int, length: int) -> list[np.ndarray]:
    """1-D weights of each tile over its part of [0, length), summing to exactly 1 everywhere.

    A tile's outer quarter of each shared strip gets no weight (padding effects live near its
    interior edges); across the middle half of the strip the two tiles cross-fade linearly.
    Edges on the image border keep full weight.
    """
    raw = []
    for i, start in enumerate(starts):
        pos = np.arange(start, min(start + tile, length), dtype=np.float32)
        inside = np.full(pos.shape, np.inf, np.float32)  # distance to the nearest interior edge
        if i > 0:
            inside = np.minimum(inside, pos - start + 0.5)
        if i < len(starts) - 1:
            inside = np.minimum(inside, start + tile - pos - 0.5)
        raw.append(np.clip(inside - overlap / 4, 1e-6, max(overlap / 2, 1.0)))
    total = np.zeros(length, np.float32)
    for start, weight in zip(starts, raw, strict=True):
        total[start : start + len(weight)] += weight
    return [
        weight / total[start : start + len(weight)]
        for start, weight in zip(starts, raw, strict=True)
    ]


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
                f"{contract.min_size} tile, the smallest this model runs; raise --tile-pixels"
            )
        if tile_pixels > MAX_PIXELS:
            raise UserError(
                f"tile budget {tile_pixels} pixels is over the limit of {MAX_PIXELS}; "
                "lower --tile-pixels"
            )
        self.tile_pixels = tile_pixels
        self.overlap = _round_up(max(overlap, 0), m)

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
        return max(_round_up(length, self.contract.size_multiple), self.contract.min_size)

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
                "it with a larger --max-size"
            )
        if width * height > MAX_PIXELS:
            raise UserError(
                f"{what} {width}x{height} has {width * height} pixels, over the limit of "
                f"{MAX_PIXELS}; ask for a smaller size"
            )

    def _check_memory(self, pixels: int, extra: int, what: str, fix: str) -> None:
        """A run of `pixels` (as the model runs them) plus `extra` bytes must fit the budget."""
        cost = pixels * self.contract.bytes_per_pixel + extra
        budget.check_memory(cost, f"{self.source} {what}", fix)

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

    def stylize(self, image: Image.Image) -> Image.Image:
        """The image restyled, same size. Large images run in overlapping tiles, blended.

        Edges are padded by reflection up to the size the model runs, then cropped back.
        """
        self._check_mode("style")
        if not isinstance(image, Image.Image):
            raise UserError(f"stylize() takes a Pillow image, not {type(image).__name__}")
        width, height = image.size
        self._check_size(width, height, "image size", None)
        rgb = to_rgb(image) if image.mode != "RGB" else image
        tile_h, tile_w = self._tile_shape(self.padded(height), self.padded(width))
        m = self.contract.size_multiple
        overlap_h = min(self.overlap, tile_h // 2 // m * m)
        overlap_w = min(self.overlap, tile_w // 2 // m * m)
        # The bound of this module's docstring: one tile's run, the images and one band.
        images = IMAGE_BYTES_PER_PIXEL * width * height + 16 * tile_h * width
        where = f"on a {width}x{height} image in {tile_w}x{tile_h} tiles"
        self._check_memory(tile_h * tile_w, images, where, "lower --tile-pixels or downscale it")
        ys = _tile_starts(self.padded(height), tile_h, overlap_h, m)
        xs = _tile_starts(self.padded(width), tile_w, overlap_w, m)
        wy = _blend_weights(ys, tile_h, overlap_h, height)
        wx = _blend_weights(xs, tile_w, overlap_w, width)

        out = Image.new("RGB", (width, height))
        carry = np.zeros((3, 0, width), np.float32)  # rows shared with the next band
        for i, y in enumerate(ys):
            rows = len(wy[i])
            band = np.zeros((3, rows, width), np.float32)
            band[:, : carry.shape[1]] = carry
            for j, x in enumerate(xs):
                cols = len(wx[j])
                tile = self._stylize_tile(rgb, x, y, tile_w, tile_h)[:, :rows, :cols]
                band[:, :, x : x + cols] += tile * wy[i][:, None] * wx[j][None, :]
            done = ys[i + 1] - y if i + 1 < len(ys) else rows
            for top in range(0, done, _PASTE_ROWS):  # in strips: small conversion temporaries
                out.paste(from_array(band[:, top : min(top + _PASTE_ROWS, done)]), (0, y + top))
            carry = band[:, done:].copy()
            del band  # before the next band is allocated
        return out

    def _tile_shape(self, padded_h: int, padded_w: int) -> tuple[int, int]:
        """The largest tile within the pixel budget and the model's bounds; the image if it fits."""
        c = self.contract

        def fit(pixels: float, padded: int) -> int:
            side = int(pixels) // c.size_multiple * c.size_multiple
            return min(padded, max(c.min_size, min(side, c.max_size)))

        tile_h = fit(math.sqrt(self.tile_pixels), padded_h)
        return tile_h, fit(self.tile_pixels / tile_h, padded_w)

    def _stylize_tile(self, image: Image.Image, x: int, y: int, tile_w: int, tile_h: int):
        crop = to_array(
            image.crop((x, y, min(x + tile_w, image.width), min(y + tile_h, image.height)))
        )
        pad = ((0, 0), (0, tile_h - crop.shape[1]), (0, tile_w - crop.shape[2]))
        return self.run(np.pad(crop, pad, mode="reflect")[None])[0]


def _check_graph(session: ort.InferenceSession, contract: ModelContract, source: str) -> None:
    """The graph must match what the metadata says: names, rank, channels, and a real run."""
    c = contract
    inputs, outputs = session.get_inputs(), session.get_outputs()
    if len(inputs) != 1 or inputs[0].name != c.input_name:
        names = ", ".join(i.name for i in inputs)
        raise UserError(
            f"{source} has inputs ({names}) but its metadata names one input {c.input_name!r}; "
            "re-export it with tn-export"
        )
    shape = inputs[0].shape
    if len(shape) != 4 or (isinstance(shape[1], int) and shape[1] != c.input_channels):
        raise UserError(
            f"{source} input {c.input_name!r} has shape {shape}, not (N, {c.input_channels}, H, W) "
            "as its metadata says; re-export it with tn-export"
        )
    if c.output_name not in [o.name for o in outputs]:
        raise UserError(
            f"{source} has no output {c.output_name!r} named in its metadata; re-export it"
        )
    if c.layout != "NCHW" or c.channel_order != "RGB":
        raise UserError(
            f"{source} uses layout {c.layout} / {c.channel_order}; this runtime reads NCHW RGB "
            "models: re-export it with tn-export"
        )
    h, w = probe_size(c)
    budget.check_memory(h * w * c.bytes_per_pixel, f"{source}'s check at {h}x{w}", "re-export it")
    probe = np.zeros((1, c.input_channels, h, w), np.float32)
    limit = budget.probe_seconds()
    options = ort.RunOptions()
    options.log_severity_level = 4
    # The terminate flag stops a run between kernels (a Loop checks it every iteration).
    timer = threading.Timer(limit.value, setattr, (options, "terminate", True))
    timer.start()
    try:
        result = session.run([c.output_name], {c.input_name: probe}, options)[0]
    except Exception as e:  # noqa: BLE001 - any failure here means the file is not what it claims
        if options.terminate:
            raise UserError(
                f"{source} did not finish one run at {h}x{w} within {limit.value:g} s "
                f"({limit.source}; set {limit.env} to change it): its graph may loop without "
                "end; re-export it with tn-export"
            ) from e
        raise UserError(
            f"{source} fails at {h}x{w} although its metadata allows multiples of "
            f"{c.size_multiple} from {c.min_size} to {c.max_size}, so its metadata is wrong "
            f"({_first_line(e)}); re-export it with tn-export"
        ) from e
    finally:
        timer.cancel()
    if result.shape != (1, 3, h, w):
        raise UserError(
            f"{source} returns shape {result.shape} for a {h}x{w} input (height x width), not "
            f"(1, 3, {h}, {w}): its output does not follow its input; re-export it with tn-export"
        )
    if not np.isfinite(result).all():
        raise UserError(
            f"{source} returns NaN or infinite values; its weights are broken: re-export it "
            "from a checkpoint that trained well"
        )


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
    if not path.is_file():
        what = "is a folder" if path.is_dir() else "does not exist"
        raise UserError(f"model {path} {what}; pass an .onnx file exported by tn-export")
    if path.stat().st_size == 0:
        raise UserError(f"model {path} is empty (0 bytes); export it again with tn-export")
    budget.check_memory(path.stat().st_size, f"model {path}", "pass a model exported by tn-export")
    options = _session_options(threads, low_memory)
    try:
        session = ort.InferenceSession(os.fspath(path), options, providers=_providers(providers))
    except UserError:
        raise
    except Exception as e:  # noqa: BLE001 - onnxruntime raises its own unrelated classes
        raise UserError(
            f"model {path} cannot be loaded by onnxruntime ({_first_line(e)}); it is not a valid "
            "ONNX file: export it again with tn-export"
        ) from e
    contract = ModelContract.from_metadata(
        session.get_modelmeta().custom_metadata_map, f"model {path}"
    )
    _check_graph(session, contract, f"model {path}")
    return Model(session, contract, str(path), tile_pixels=tile_pixels, overlap=overlap)
