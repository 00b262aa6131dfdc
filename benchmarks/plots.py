"""The report's figures, drawn with matplotlib (Agg) from results.json alone, as PNG bytes."""

from __future__ import annotations

import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 - the backend must be chosen first
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from .analysis import (  # noqa: E402
    HEADLINE,
    MIB,
    find_cell,
    gatys_baseline,
    gatys_memory,
    ok_cells,
    scaling_fits,
    series,
    tiled_runs,
)

SHOWN_SAMPLES = 4  # generator samples in the image strip


def _png(fig, dpi: int = 110) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def latency(results: dict) -> bytes | None:
    """Median latency (p10-p90 bars) against megapixels per network and backend, with the
    linear fits."""
    if not ok_cells(results):
        return None
    fits = scaling_fits(results)
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for network, backend in series(results):
        own = sorted(ok_cells(results, backend, network), key=lambda c: c["pixels"])
        mp = [c["pixels"] / 1e6 for c in own]
        med = [c["median_ms"] for c in own]
        err = [
            [m - c["p10_ms"] for m, c in zip(med, own, strict=True)],
            [c["p90_ms"] - m for m, c in zip(med, own, strict=True)],
        ]
        label = f"{network} {backend}"
        line = ax.errorbar(mp, med, yerr=err, marker="o", ls="none", capsize=3, label=label)
        fit = fits[network, backend]["latency"]
        if fit:  # a line with an intercept is a curve on log axes: draw it point by point
            xs = np.geomspace(fit.min_pixels, fit.max_pixels, 50)
            ax.plot(xs / 1e6, fit.slope * xs + fit.intercept, color=line[0].get_color(), lw=1)
    ax.set(xscale="log", yscale="log", xlabel="megapixels", ylabel="latency, ms (median, p10-p90)")
    ax.set_title("Latency against image size (lines: linear fits)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    return _png(fig)


def memory(results: dict) -> bytes | None:
    """Peak RSS increase over an idle interpreter, per network, backend and size, with the
    Gatys baseline's runs."""
    cells = [c for c in ok_cells(results) if c.get("rss_increase_bytes")]
    if not cells:
        return None
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for network, backend in dict.fromkeys((c["network"], c["backend"]) for c in cells):
        own = sorted(
            (c for c in cells if (c["network"], c["backend"]) == (network, backend)),
            key=lambda c: c["pixels"],
        )
        ax.plot(
            [c["pixels"] / 1e6 for c in own],
            [c["rss_increase_bytes"] / MIB for c in own],
            marker="o",
            label=f"{network} {backend}",
        )
    g = results["gatys"]
    if g.get("status") == "ok":
        sizes = {g["size"], *([g["memory"]["size"]] if "memory" in g else [])}
        runs = {s: gatys_memory(results, s) for s in sorted(sizes)}
        runs = {s: r for s, r in runs.items() if r and r.get("rss_increase_bytes")}
        ax.plot(
            [s**2 / 1e6 for s in runs],
            [r["rss_increase_bytes"] / MIB for r in runs.values()],
            marker="s",
            ls="none",
            color="black",
            label=f"Gatys ({g['optimizer']}, {gatys_baseline(g)})",
        )
    ax.set(xscale="log", yscale="log", xlabel="megapixels", ylabel="peak RSS over idle, MiB")
    ax.set_title("Memory: peak RSS increase over an idle interpreter")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    return _png(fig)


def tiling(results: dict) -> bytes | None:
    """Peak RSS increase against latency of the tiling step's bounds at one size, whole image
    included, with Gatys's peak there as a line."""
    runs = [r for r in tiled_runs(results, "bounds") if r.get("rss_increase_bytes")]
    if not runs:
        return None
    size = runs[0]["size"]
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for r in runs:
        x, y = r["median_ms"] / 1e3, r["rss_increase_bytes"] / MIB
        bound = "whole" if r["max_memory_mb"] is None else f"{r['max_memory_mb']:g} MB"
        ax.plot(x, y, marker="o", color="tab:blue" if r["tiles"] else "tab:orange")
        ax.annotate(bound, (x, y), textcoords="offset points", xytext=(6, 4), fontsize=8)
    g = gatys_memory(results, size)
    if g and g.get("rss_increase_bytes"):
        ax.axhline(g["rss_increase_bytes"] / MIB, color="black", ls="--", lw=1, label="Gatys")
        ax.legend(fontsize=8)
    ax.set(yscale="log", xlabel="latency, s (median)", ylabel="peak RSS over idle, MiB")
    ax.set_title(f"Exact tiles at {size}x{size}: memory against latency per --max-memory")
    ax.grid(True, which="both", alpha=0.3)
    return _png(fig)


def gatys_loss(results: dict) -> bytes | None:
    """Loss of Gatys's delivered image against wall time, every parametrisation and seed, with
    the generator's mean loss and latency marked."""
    g = results["gatys"]
    if g.get("status") != "ok":
        return None
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for i, (pixels, child) in enumerate(g["variants"].items()):
        color = f"C{i}"
        for j, run in enumerate(child["runs"]):
            curve = run["curve"]
            label = f"Gatys, {pixels} pixels ({len(child['runs'])} seeds)" if j == 0 else None
            ax.plot(curve["t_s"], curve["loss"], color=color, lw=1, alpha=0.8, label=label)
            if run["parity_s"] is not None:
                ax.plot([run["parity_s"]], [g["target_loss"]], "o", color=color, ms=5)
    ax.axhline(g["target_loss"], color="C3", ls="--", label="generator mean loss")
    cell = find_cell(results, HEADLINE, g["size"], g["size"])
    if cell:
        t = cell["median_ms"] / 1e3
        ax.axvline(t, color="C2", ls=":", label=f"generator latency ({HEADLINE})")
        ax.plot([t], [g["target_loss"]], marker="*", ms=12, color="C2", ls="none")
    ax.set(
        xscale="log",
        yscale="log",
        xlabel="wall time, s",
        ylabel="Gram distance of the delivered image",
    )
    ax.set_title(f"Gatys et al. at {g['size']}x{g['size']} vs the generator (dots: parity)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    return _png(fig)


def image_strip(results: dict, base: Path) -> bytes | None:
    """Texture, generator samples, Gatys's image (files next to results.json)."""
    images = results.get("images", {})
    entries = [("texture", images.get("texture"))]
    entries += [(f"seed {i}", p) for i, p in enumerate(images.get("samples", [])[:SHOWN_SAMPLES])]
    g = results["gatys"]
    at_parity = g.get("status") == "ok" and g["image"]["at_parity"]
    entries.append(("Gatys at parity" if at_parity else "Gatys, last", images.get("gatys")))
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


def eval_curve(rows: list[dict]) -> list[tuple[float, float]]:
    """(minutes of training, eval_distance) from log.jsonl's rows. A --resume restarts the
    log's clock, so the time before it is added to the rows after it."""
    points, offset, last = [], 0.0, 0.0
    for r in rows:
        if r["seconds"] < last:
            offset += last
        last = r["seconds"]
        if "eval_distance" in r:
            points.append(((offset + last) / 60, r["eval_distance"]))
    return points


def training_curves(runs: dict[str, Path], references: dict[str, float]) -> bytes:
    """Gram distance of each run's delivered samples (log.jsonl's eval_distance) against
    training time, with horizontal lines at reference models' distances."""
    import json

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for label, log in runs.items():
        points = eval_curve([json.loads(line) for line in log.read_text().splitlines() if line])
        if points:
            ax.plot(*zip(*points, strict=True), marker="o", ms=3, label=label)
    for label, value in references.items():
        ax.axhline(value, ls="--", lw=1, color="grey")
        ax.annotate(
            label, (0, value), xycoords=("axes fraction", "data"), textcoords="offset points",
            xytext=(4, 3), fontsize=8,
        )  # fmt: skip
    ax.set(yscale="log", xlabel="training time, minutes", ylabel="Gram distance (VGG-16)")
    ax.set_title("Quality of the delivered samples while training")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    return _png(fig)
