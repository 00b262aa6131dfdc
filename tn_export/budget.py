"""The one budget every command checks sizes, counts and threads against before it allocates.

Limits come from the machine (its memory, its cores) and from what a model costs per pixel; each
refusal names the limit and the parameter or environment variable that changes it. The costs are
lower bounds, so that nothing that would fit is refused. Torch-free: the runtime uses it too.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .errors import UserError

# Decompression bombs and absurd sizes are refused at 64 megapixels (8192x8192), far above any
# use here: images read, sizes asked of the runtime, models exported, steps trained.
MAX_SIDE = 8192
MAX_PIXELS = MAX_SIDE * MAX_SIDE
# Textures made in exact tiles (runtime/exact.py) never hold a whole-image map: only the 8-bit
# image itself, 805 MB at this side, bounds them.
MAX_TILED_SIDE = 16384
MAX_SCALES = MAX_SIDE.bit_length()  # a pyramid's size multiple 2**(scales - 1) fits one side
MAX_SEED = 2**32 - 1
MEMORY_ENV = "TN_MEMORY_BUDGET"
THREADS_ENV = "TN_MAX_THREADS"
COUNT_ENV = "TN_MAX_COUNT"
PROBE_ENV = "TN_PROBE_SECONDS"
DEFAULT_MAX_COUNT = 10_000
DEFAULT_PROBE_SECONDS = 10.0
DEFAULT_CHANNELS = 8  # every pyramid tn-train builds, and the paper's released ones

FLOAT = 4  # bytes
# VGG's first block at full resolution: two 64-channel float32 maps are alive at once when
# describing an image (measured: 750 B per pixel); a backward pass keeps its four maps and a
# gradient (measured: 1500 B).
DESCRIPTOR_BYTES_PER_PIXEL = 2 * 64 * FLOAT
DESCRIPTOR_TRAINING_BYTES_PER_PIXEL = 5 * 64 * FLOAT
_UNITS = {"": 1, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}


@dataclass(frozen=True)
class Limit:
    """A bound, where it comes from, and the environment variable that changes it."""

    value: float
    source: str
    env: str

    def __str__(self) -> str:
        return f"{_amount(self)} ({self.source}; set {self.env} to change it)"


def _amount(limit: Limit) -> str:
    return size_text(limit.value) if limit.env == MEMORY_ENV else _plain(limit.value)


def _plain(value: float) -> str:
    """4294967295 as such, 0.5 as 0.5 (not 4.29497e+09, nor 0.500000)."""
    return str(value) if isinstance(value, int) else f"{value:g}"


def size_text(n: float, up: bool = False) -> str:
    """Bytes for people: 17.2 GB, 512 MB; `up` rounds up, for a least amount to ask for."""
    if math.isinf(n):
        return "unlimited"
    rounded = math.ceil if up else round
    return f"{rounded(n / 1e8) / 10:.1f} GB" if n >= 1e9 else f"{rounded(n / 1e6):.0f} MB"


def _from_env(name: str, parse: Callable[[str], float]) -> tuple[float, str] | None:
    text = os.environ.get(name, "").strip()
    if not text:
        return None
    try:
        value = parse(text)
    except ValueError:
        value = math.nan
    if not value > 0 or math.isinf(value):
        raise UserError(f"{name}={text!r} is not a positive number; fix or unset it")
    return value, f"{name}={text}"


def _parse_bytes(text: str) -> float:
    """'8G', '512M', '1.5G' or a plain number of bytes (decimal units, as size_text prints)."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([KMGT]?)B?", text.strip(), re.IGNORECASE)
    if not match:
        raise ValueError(text)
    return float(match[1]) * _UNITS[match[2].upper()]


def _machine_memory() -> tuple[float, str]:
    """This machine's physical memory, or its container's limit where that is lower."""
    try:
        total: float = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        source = "this machine's memory"
    except (AttributeError, ValueError, OSError):  # no sysconf (Windows): the limit is unknown
        return math.inf, "memory of unknown size"
    for cgroup in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            limit = int(Path(cgroup).read_text().strip())
        except (OSError, ValueError):  # absent, or "max"
            continue
        if limit < total:
            total, source = limit, "this container's memory limit"
        break
    return total, source


def memory() -> Limit:
    """The memory allocations are checked against: $TN_MEMORY_BUDGET, else the machine's."""
    given = _from_env(MEMORY_ENV, _parse_bytes)
    value, source = given or _machine_memory()
    return Limit(value, source, MEMORY_ENV)


def threads() -> Limit:
    """The most threads a command may ask for: one per logical core ($TN_MAX_THREADS)."""
    given = _from_env(THREADS_ENV, int)
    cores = os.cpu_count() or 1
    value, source = given or (cores, f"this machine's logical cores, os.cpu_count() = {cores}")
    return Limit(int(value), source, THREADS_ENV)


def count() -> Limit:
    """The most items (textures, runs, samples, sizes) one command makes ($TN_MAX_COUNT)."""
    value, source = _from_env(COUNT_ENV, int) or (DEFAULT_MAX_COUNT, "the default")
    return Limit(int(value), source, COUNT_ENV)


def probe_seconds() -> Limit:
    """How long the load-time check of a model may run ($TN_PROBE_SECONDS)."""
    value, source = _from_env(PROBE_ENV, float) or (DEFAULT_PROBE_SECONDS, "the default")
    return Limit(value, source, PROBE_ENV)


def check_memory(needed: float, what: str, fix: str, *params: str) -> None:
    """Refuse `what` when it needs more than the memory budget; `fix` says how to need less,
    naming `params` (UserError.params)."""
    limit = memory()
    if needed > limit.value:
        raise UserError(
            f"{what} needs at least {size_text(needed)} of memory, more than the "
            f"{size_text(limit.value)} of {limit.source}; {fix} (or set {MEMORY_ENV}=BYTES, "
            "e.g. 64G, where more is available)",
            *params,
        )


def unpacked_size(path: Path) -> int:
    """The bytes torch.load would unpack from `path`: a torch file is a zip whose members may
    be compressed (torch.save never compresses them; a crafted file inflates to gigabytes)."""
    try:
        with zipfile.ZipFile(path) as archive:
            return sum(member.file_size for member in archive.infolist())
    except (zipfile.BadZipFile, OSError, ValueError):  # not a zip: torch.load says what it is
        return path.stat().st_size


def check_count(value: int, what: str, limit: Limit | None = None, *params: str) -> None:
    """Refuse more than `limit` (default: the count limit) of something; `what` names `params`
    (UserError.params)."""
    limit = limit or count()
    if value > limit.value:
        raise UserError(f"{what} {value} is over the limit of {limit}", *params)


def generator_parameters(scales: int, channels: int, scale_in: int) -> int:
    """The learnable parameters of a pyramid (generator.py), where `scale_in` is the channels
    each scale's branch takes: a conv block from cin to c channels holds two 3x3 convolutions,
    a 1x1 and three affine norms."""

    def block(cin: int, c: int) -> int:
        return 9 * cin * c + 10 * c * c + 9 * c

    # The join of the k coarsest scales normalises both inputs and convolves their k * channels.
    joins = sum(2 * k * channels + block(k * channels, k * channels) for k in range(2, scales + 1))
    return scales * block(scale_in, channels) + joins + 3 * channels * scales + 3


def generator_bytes_per_pixel(
    scales: int, channels: int, input_channels: int, training: bool = False
) -> int:
    """A lower bound of a pyramid's working memory per output pixel. At the finest scale the
    last join holds `channels * scales` channels; running it keeps about four such float32 maps
    alive (measured: 5 to 6 with PyTorch and onnxruntime), training keeps twelve for the
    backward pass (measured: 15); the input and the RGB output come on top."""
    maps = 12 if training else 4
    return FLOAT * (maps * channels * scales + input_channels + 3)


def training_bytes_per_pixel(scales: int, channels: int, input_channels: int) -> int:
    """A lower bound of one training step's memory per pixel of its batch: the generator's
    forward and backward pass and the descriptor's."""
    generator = generator_bytes_per_pixel(scales, channels, input_channels, training=True)
    return generator + DESCRIPTOR_TRAINING_BYTES_PER_PIXEL


def check_generator(mode: str, scales: int, channels: int, noise_depth: int) -> None:
    """Refuse, before anything is built, a pyramid whose size multiple is over MAX_SIDE, whose
    weights, or whose one run at its smallest size, do not fit the memory budget."""
    for name, value in (("scales", scales), ("channels", channels), ("noise depth", noise_depth)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise UserError(f"a generator's {name} must be a whole number >= 1, not {value!r}")
    shape = f"a {mode} generator of {scales} scales x {channels} channels"
    if scales > MAX_SCALES:
        raise UserError(
            f"{shape} runs only at multiples of 2**{scales - 1} pixels, over the largest side "
            f"of {MAX_SIDE}; at most {MAX_SCALES} scales are possible"
        )
    scale_in = noise_depth + (3 if mode == "style" else 0)
    weights = FLOAT * generator_parameters(scales, channels, scale_in)
    check_memory(weights, f"{shape} with noise depth {noise_depth} (its weights)", "use fewer")
    input_channels = 3 if mode == "style" else noise_depth
    side = 2 ** (scales - 1)
    run = side * side * generator_bytes_per_pixel(scales, channels, input_channels)
    check_memory(run, f"{shape} at its smallest size, {side}x{side}", "use fewer")


def number(
    kind: type[int] | type[float],
    at_least: float | None = None,
    at_most: float | Limit | None = None,
    *,
    above: float | None = None,
) -> Callable[[str], int | float]:
    """An argparse `type` for a finite number within bounds (`above` excludes its bound), so
    that every flag refuses NaN, infinities and out-of-range values in one line."""
    word = "a whole number" if kind is int else "a number"

    def parse(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {word}") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"must be a finite number, not {text}")
        if above is not None and value <= above:
            raise argparse.ArgumentTypeError(f"must be over {_plain(above)}, not {text}")
        if at_least is not None and value < at_least:
            bound = "positive" if at_least == 1 and kind is int else f"at least {_plain(at_least)}"
            raise argparse.ArgumentTypeError(f"must be {bound}, not {text}")
        high = at_most.value if isinstance(at_most, Limit) else at_most
        if high is not None and value > high:
            bound = at_most if isinstance(at_most, Limit) else _plain(at_most)
            raise argparse.ArgumentTypeError(f"must be at most {bound}, not {text}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its own messages
    return parse
