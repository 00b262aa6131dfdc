"""Strength and colour controls of a stylization: how much of the style reaches the photo.

Strength is a blend of pixels, for models of one style and of several (whose styles mix inside):
strength * stylized + (1 - strength) * photo. Keeping the photo's colours replaces only its
luminance by the stylized one (YCbCr, BT.601 full range as in JPEG): since every RGB channel
holds Y with weight 1, that is adding the change of Y to each channel, which leaves Cb and Cr as
they were; the new Y is kept within the range where no channel leaves [0, 1], so that no clipping
shifts the colour. Both act per pixel, so tiles and frames take them independently.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..errors import UserError

# BT.601 luma weights of R, G, B (YCbCr as JPEG defines it).
LUMA = np.array([0.299, 0.587, 0.114], np.float32)


def luminance(rgb: np.ndarray) -> np.ndarray:
    """Y of (..., 3, H, W) RGB in [0, 1], shaped (..., 1, H, W)."""
    return np.tensordot(LUMA, rgb, axes=([0], [-3]))[..., None, :, :]


@dataclass(frozen=True)
class Controls:
    """`strength` from 0 (the photo) to 1 (full style); `keep_colors`: the photo's chroma."""

    strength: float = 1.0
    keep_colors: bool = False

    def __post_init__(self) -> None:
        s = self.strength
        if isinstance(s, bool) or not isinstance(s, int | float | np.floating | np.integer):
            raise UserError(f"strength must be a number from 0 to 1, not {s!r}", "strength")
        if not (math.isfinite(s) and 0 <= s <= 1):
            raise UserError(
                f"strength must be from 0 (the photo) to 1 (full style), not {s}", "strength"
            )
        if not isinstance(self.keep_colors, bool | np.bool_):
            raise UserError(f"keep_colors must be True or False, not {self.keep_colors!r}")

    @property
    def identity(self) -> bool:
        """Whether the generator's output is delivered as it is (full style, its colours)."""
        return self.strength == 1 and not self.keep_colors

    def apply(self, styled: np.ndarray, photo: np.ndarray) -> np.ndarray:
        """The delivered (..., 3, H, W) RGB from the generator's raw output and the photo it
        stylized (both float, same shape); not clamped (the caller's 8-bit conversion clips)."""
        if self.identity:
            return styled
        styled = np.clip(styled, 0.0, 1.0)  # the stylized image as delivered, before mixing
        strength = np.float32(self.strength)
        if not self.keep_colors:
            return photo + strength * (styled - photo)
        y = luminance(photo)
        chroma = photo - y  # each channel's offset from Y: what Cb and Cr fix
        wanted = y + strength * (luminance(styled) - y)
        # The Y for which every channel stays within [0, 1] with these offsets: clipping channels
        # instead would shift the colour.
        low, high = -chroma.min(axis=-3, keepdims=True), 1 - chroma.max(axis=-3, keepdims=True)
        return chroma + np.clip(wanted, low, high)
