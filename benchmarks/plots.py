"""The report's figures, drawn with matplotlib (Agg) from results.json alone, as PNG bytes."""

from __future__ import annotations

import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 - the backend must be chosen first
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from .analysis import HEADLINE, MIB, find_cell, ok_cells, scaling_fits  # noqa: E402


def _png(fig, dpi: int = 110) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def latency(results: dict) -> bytes | None:
    """Median latency (p10-p90 bars) against megapixels per backend, with the linear fits."""
    cells = ok_cells(results)
    if not cells:
        return None
    fits = scaling_fits(results)
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for backend in dict.fromkeys(c["backend"] for c in cells):
        own = sorted(ok_cells(results, backend), key=lambda c: c["pixels"])
        mp = [c["pixels"] / 1e6 for c in own]
        med = [c["median_ms"] for c in own]
        err = [
            [m - c["p10_ms"] for m, c in zip(med, own, strict=True)],
            [c["p90_ms"] - m for m, c in zip(med, own, strict=True)],
        ]
        line = ax.errorbar(mp, med, yerr=err, marker="o", ls="none", capsize=3, label=backend)
        fit = fits[backend]["latency"]
        if fit:  # a line with an intercept is a curve on log axes: draw it point by point
            xs = np.geomspace(fit.min_pixels, fit.max_pixels, 50)
            ax.plot(xs / 1e6, fit.slope * xs + fit.intercept, color=line[0].get_color(), lw=1)
    ax.set(xscale="log", yscale="log", xlabel="megapixels", ylabel="latency, ms (median, p10-p90)")
    ax.set_title("Generator latency against image size (lines: linear fits)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    return _png(fig)


def memory(results: dict) -> bytes | None:
    """Peak RSS increase over an idle interpreter, per backend and size, with the Gatys runs."""
    cells = [c for c in ok_cells(results) if c.get("rss_increase_bytes")]
    if not cells:
        return None
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for backend in dict.fromkeys(c["backend"] for c in cells):
        own = sorted((c for c in cells if c["backend"] == backend), key=lambda c: c["pixels"])
        ax.plot(
            [c["pixels"] / 1e6 for c in own],
            [c["rss_increase_bytes"] / MIB for c in own],
            marker="o",
            label=backend,
        )
    g = results["gatys"]
    if g.get("status") == "ok":
        runs = [g[k] for k in ("parity", "memory") if k in g and g[k].get("rss_increase_bytes")]
        ax.plot(
            [r["size"] ** 2 / 1e6 for r in runs],
            [r["rss_increase_bytes"] / MIB for r in runs],
            marker="s",
            ls="none",
            color="black",
            label=f"Gatys ({g['optimizer']})",
        )
    ax.set(xscale="log", yscale="log", xlabel="megapixels", ylabel="peak RSS over idle, MiB")
    ax.set_title("Memory: peak RSS increase over an idle interpreter")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    return _png(fig)


def gatys_loss(results: dict) -> bytes | None:
    """Gatys loss against wall time, the generator's mean loss and its latency marked."""
    g = results["gatys"]
    if g.get("status") != "ok":
        return None
    run = g["parity"]
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    ax.plot(run["curve"]["t_s"], run["curve"]["loss"], label=f"Gatys ({g['optimizer']})")
    ax.axhline(g["target_loss"], color="C1", ls="--", label="generator mean loss")
    cell = find_cell(results, HEADLINE, run["size"], run["size"])
    if cell:
        t = cell["median_ms"] / 1e3
        ax.axvline(t, color="C2", ls=":", label=f"generator latency ({HEADLINE})")
        ax.plot([t], [g["target_loss"]], marker="*", ms=12, color="C2", ls="none")
    if run["parity_s"] is not None:
        ax.plot(
            [run["parity_s"]],
            [g["target_loss"]],
            marker="o",
            color="C3",
            ls="none",
            label=f"parity at {run['parity_s']:.1f} s",
        )
    ax.set(xscale="log", yscale="log", xlabel="wall time, s", ylabel="texture loss")
    ax.set_title(f"Gatys et al. at {run['size']}x{run['size']} vs one generator sample")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    return _png(fig)


def image_strip(results: dict, base: Path) -> bytes | None:
    """Texture, generator samples, Gatys result at parity (files next to results.json)."""
    images = results.get("images", {})
    entries = [("texture", images.get("texture"))]
    entries += [(f"sample {i}", p) for i, p in enumerate(images.get("samples", []))]
    entries.append(("Gatys at parity", images.get("gatys")))
    entries = [(label, base / p) for label, p in entries if p and (base / p).is_file()]
    if not entries:
        return None
    fig, axes = plt.subplots(1, len(entries), figsize=(2.2 * len(entries), 2.5), squeeze=False)
    for ax, (label, path) in zip(axes[0], entries, strict=True):
        with Image.open(path) as im:
            ax.imshow(im.convert("RGB"))
        ax.set_title(label, fontsize=9)
        ax.axis("off")
    return _png(fig, dpi=80)  # photographs compress poorly: keep the committed report small
