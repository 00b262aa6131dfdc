"""Which of a model's styles to apply: the style weights a model of several styles takes.

A model trained by `tn-train styles` holds one scale and shift per style in its conditional
norms and takes a weight per style; one-hot picks a style, weights summing to 1 mix them (the
norms' scales and shifts are interpolated, not the pixels). Torch-free, as the runtime is.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from ..errors import UserError

Style = str | Mapping[str, float] | Sequence[float] | None


def parse_mix(text: str) -> dict[str, float]:
    """'starry=0.7,mosaic=0.3' -> {'starry': 0.7, 'mosaic': 0.3} (tn-run --mix)."""
    mix: dict[str, float] = {}
    for part in text.split(","):
        name, sep, value = part.partition("=")
        try:
            weight = float(value)
        except ValueError:
            weight = math.nan
        if not sep or not name.strip() or not math.isfinite(weight):
            raise UserError(
                f"--mix {text!r}: each part must be NAME=WEIGHT, e.g. starry=0.7,mosaic=0.3"
            )
        mix[name.strip()] = mix.get(name.strip(), 0.0) + weight
    return mix


def style_weights(names: Sequence[str], style: Style, source: str = "model") -> np.ndarray:
    """The (styles,) float32 weights for `style` of a model whose styles are `names` (its
    contract's `styles`): a style's name, {name: weight}, or one weight per style in that order;
    None picks the first style. Weights must be >= 0 and are scaled to sum to 1, so that a mix
    stays between its styles."""
    names = list(names)
    if not names:
        if style is not None:
            raise UserError(f"{source} holds one style: it takes no style choice")
        return np.zeros(0, np.float32)
    listed = ", ".join(names)
    if style is None:
        weights = [1.0] + [0.0] * (len(names) - 1)
    elif isinstance(style, str):
        if style not in names:
            raise UserError(f"{source} has no style {style!r}; its styles: {listed}")
        weights = [float(n == style) for n in names]
    elif isinstance(style, Mapping):
        unknown = [n for n in style if n not in names]
        if unknown:
            raise UserError(f"{source} has no style {unknown[0]!r}; its styles: {listed}")
        weights = [float(style.get(n, 0.0)) for n in names]
    else:
        weights = [float(w) for w in style]
        if len(weights) != len(names):
            raise UserError(
                f"{source} holds {len(names)} styles ({listed}): give {len(names)} weights, "
                f"not {len(weights)}",
            )
    array = np.asarray(weights, np.float64)
    if not np.isfinite(array).all() or (array < 0).any() or array.sum() <= 0:
        raise UserError(f"style weights {weights} must be finite, at least 0 and not all 0")
    return (array / array.sum()).astype(np.float32)
