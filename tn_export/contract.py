"""The contract of an exported model: what it takes and gives, stored as metadata inside the file.

Exporters write it (ONNX `metadata_props`, Core ML `user_defined_metadata`); the runtime and the
web app read it back. It is the one place these facts are written down. Torch-free.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from typing import TypedDict

from .budget import DEFAULT_CHANNELS, MAX_PIXELS, MAX_SIDE, generator_bytes_per_pixel
from .errors import UserError

PREFIX = "tn_export."
FORMAT_VERSION = 1


class TrainingSummary(TypedDict, total=False):
    """What a contract records of the generator's training, from its checkpoint's Metadata
    (checkpoint.training_summary): the keys known of these."""

    descriptor: str
    exemplar: str
    iterations: int  # the checkpoint's "iteration": how many it was trained for
    loss: float
    source: str


class Tiling(TypedDict, total=False):
    """How a model runs in exact tiles (tn_export.runtime.exact): the suffixes of its two parts
    beside the model file (NAME.coarse.onnx, NAME.fine.onnx), the pooling ratio they are split
    at, and each part's reach [before, after, grid] in pixels; or, where it cannot, the reason."""

    coarse: str
    fine: str
    split: int
    coarse_reach: list[int]
    fine_reach: list[int]
    reason: str


@dataclass(frozen=True)
class ModelContract:
    """What an exported generator expects and returns.

    Texture models take unit Gaussian noise (N, noise_depth, H, W); style models take an RGB image
    in [0, 1] (N, 3, H, W). Both return RGB (N, 3, H, W) in [0, 1]. H and W must be multiples of
    `size_multiple` within [min_size, max_size]. A model of several `styles` also takes their
    weights, `style_input` (N, len(styles)): one-hot picks a style, a convex mix blends them.
    """

    mode: str  # "texture" | "style"
    noise_depth: int = 3
    size_multiple: int = 32
    min_size: int = 64
    max_size: int = 2048
    padding: str = "circular"
    norm: str = "batch"
    channels: int = 0  # the generator's channels per scale, for memory estimates; 0: unknown
    input_name: str = ""
    output_name: str = "image"
    layout: str = "NCHW"
    channel_order: str = "RGB"
    input_range: str = ""
    output_range: str = "[0, 1]"
    name: str = "texture_network"
    description: str = ""
    tool_version: str = ""
    training: TrainingSummary = field(default_factory=TrainingSummary)
    tiling: Tiling = field(default_factory=Tiling)
    styles: tuple[str, ...] = ()  # the style names, in the order of the style weights
    style_input: str = "style"
    format_version: int = FORMAT_VERSION

    def __post_init__(self) -> None:
        if self.mode not in ("texture", "style"):
            raise UserError(f"model mode must be 'texture' or 'style', not {self.mode!r}")
        if not self.input_name:
            object.__setattr__(self, "input_name", "noise" if self.mode == "texture" else "content")
        if not self.input_range:
            rng = "N(0, 1) noise" if self.mode == "texture" else "[0, 1]"
            object.__setattr__(self, "input_range", rng)
        if self.noise_depth < 1:
            raise UserError(f"noise depth must be at least 1, not {self.noise_depth}")
        if self.size_multiple < 1 or self.min_size < 1 or self.min_size > self.max_size:
            raise UserError(
                f"bad size bounds: multiple {self.size_multiple}, min {self.min_size}, "
                f"max {self.max_size}; need 1 <= min <= max"
            )
        for bound in (self.min_size, self.max_size):
            if bound % self.size_multiple:
                raise UserError(
                    f"size bound {bound} is not a multiple of {self.size_multiple}; "
                    f"use e.g. {self.size_multiple * 2} or {self.size_multiple * 64}"
                )
        if self.max_size > MAX_SIDE:
            raise UserError(f"max size {self.max_size} is over the largest side, {MAX_SIDE}")
        # Inputs at the largest size hold at most the values of an RGB image at the pixel limit.
        if self.input_channels * self.max_size**2 > 3 * MAX_PIXELS:
            raise UserError(
                f"{self.input_channels} input channels at {self.max_size}x{self.max_size} are "
                f"over the {3 * MAX_PIXELS} values of an RGB image at the pixel limit"
            )
        if self.channels < 0:
            raise UserError(f"channels must be at least 0 (unknown), not {self.channels}")
        object.__setattr__(self, "styles", tuple(self.styles))
        if self.styles and self.mode != "style":
            raise UserError("only style models hold several styles")
        if any(not isinstance(n, str) or not n or "," in n or "=" in n for n in self.styles):
            raise UserError(f"style names must be plain words, not {list(self.styles)}")
        if len(set(self.styles)) < len(self.styles):
            raise UserError(f"style names repeat: {list(self.styles)}")

    @property
    def input_channels(self) -> int:
        return self.noise_depth if self.mode == "texture" else 3

    @property
    def input_names(self) -> list[str]:
        """The model's inputs, in order: the image (or noise), then the style weights if any."""
        return [self.input_name, *([self.style_input] if self.styles else [])]

    @property
    def bytes_per_pixel(self) -> int:
        """A lower bound of the memory one output pixel costs the runtime (budget.py)."""
        scales = self.size_multiple.bit_length()  # a pyramid's multiple is 2 ** (scales - 1)
        channels = self.channels or DEFAULT_CHANNELS
        return generator_bytes_per_pixel(scales, channels, self.input_channels)

    def to_metadata(self) -> dict[str, str]:
        """Flat string key/values, as both ONNX and Core ML metadata require."""
        return {
            PREFIX + k: json.dumps(v) if isinstance(v, dict | tuple) else str(v)
            for k, v in asdict(self).items()
        }

    @classmethod
    def from_metadata(cls, metadata: dict[str, str], source: str = "model") -> ModelContract:
        """Read a contract back; a model without one (not ours) gets a clear error."""
        values = {k.removeprefix(PREFIX): v for k, v in metadata.items() if k.startswith(PREFIX)}
        if "mode" not in values:
            raise UserError(
                f"{source} has no tn-export metadata (not exported by tn-export?); "
                "export it with tn-export"
            )
        kwargs: dict = {}
        try:
            for f in fields(cls):
                if f.name not in values:
                    continue
                raw = values[f.name]
                if f.name in ("training", "tiling"):
                    kwargs[f.name] = json.loads(raw)
                    if not isinstance(kwargs[f.name], dict):
                        raise ValueError(f"{f.name} is {raw[:40]!r}, not a JSON object")
                elif f.name == "styles":
                    kwargs[f.name] = json.loads(raw)
                    if not isinstance(kwargs[f.name], list):
                        raise ValueError(f"styles is {raw[:40]!r}, not a JSON list")
                elif f.type == "int":
                    kwargs[f.name] = int(raw)
                else:
                    kwargs[f.name] = raw
        except (ValueError, TypeError, RecursionError) as e:  # RecursionError: nested JSON
            reason = str(e).splitlines()[0][:100] if str(e) else type(e).__name__
            raise UserError(
                f"{source} has malformed tn-export metadata ({reason}); re-export it"
            ) from e
        if kwargs.get("format_version", FORMAT_VERSION) > FORMAT_VERSION:
            raise UserError(f"{source} was exported by a newer tn-export; upgrade tn-export")
        try:
            return cls(**kwargs)
        except UserError as e:
            raise UserError(f"{source} has invalid tn-export metadata: {e}; re-export it") from e


def contract_problem(
    contract: ModelContract,
    read: Callable[[], ModelContract],
    inputs: list[str],
    outputs: list[str],
) -> str:
    """What a written artifact gets wrong about `contract`: the contract it holds (`read()`, which
    raises UserError when there is none) or its input/output names. Empty when nothing."""
    try:
        stored = read()
    except UserError as e:
        return str(e)
    if stored != contract:
        return "the contract read back from the file differs from the one written"
    if (inputs, outputs) != (contract.input_names, [contract.output_name]):
        return (
            f"inputs/outputs are {(inputs, outputs)}, the contract says "
            f"{'+'.join(contract.input_names)}/{contract.output_name}"
        )
    return ""
