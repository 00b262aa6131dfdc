"""Numbers derived from results.json: scaling fits, the roofline fraction, Gatys's time to parity
and speedups, memory ratios, and where each of the benchmark's targets stands. Computed at render
time, never stored."""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

import numpy as np

HEADLINE = "onnxruntime-fp32"  # the generator as apps run it
PYRAMID = "pyramid"  # the network under test
JOHNSON = "johnson"  # the peer beside it (benchmarks/peers.py)
TILED = "tiled"  # the pyramid with its exact-tiling parts (benchmarks/tiling.py)
PEER_SIZES = (256, 512, 1024)  # where the pyramid must beat the peer
MIB = 2**20
# Two-sided 95 % quantiles of Student's t for 1..10 degrees of freedom.
_T95 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228)


@dataclass
class Fit:
    """y = slope * pixels + intercept over the sizes measured, with its R^2."""

    slope: float
    intercept: float
    r2: float
    points: int
    min_pixels: int
    max_pixels: int


@dataclass
class Target:
    name: str
    goal: str
    measured: str
    status: str  # "met" | "missed" | "not measured" | "undecided" | "reported" (no goal)
    gap: str = ""


def ok_cells(results: dict, backend: str | None = None, network: str | None = None) -> list[dict]:
    return [
        c
        for c in results["cells"]
        if c["status"] == "ok"
        and (backend is None or c["backend"] == backend)
        and (network is None or c["network"] == network)
    ]


def series(results: dict, ok_only: bool = True) -> list[tuple[str, str]]:
    """(network, backend) pairs in the order they were measured: the rows of every table."""
    cells = ok_cells(results) if ok_only else results["cells"]
    return list(dict.fromkeys((c["network"], c["backend"]) for c in cells))


def find_cell(
    results: dict, backend: str, width: int, height: int, network: str = PYRAMID
) -> dict | None:
    for c in ok_cells(results, backend, network):
        if (c["width"], c["height"]) == (width, height):
            return c
    return None


def flops_at(results: dict, width: int, height: int, network: str = PYRAMID) -> int | None:
    for f in results["flops"]:
        if (f["network"], f["width"], f["height"]) == (network, width, height):
            return f["flops"]
    return None


def peak_fraction(results: dict, cell: dict) -> float | None:
    """Achieved FLOP rate of a cell over the measured matmul peak."""
    flops = flops_at(results, cell["width"], cell["height"], cell["network"])
    peak = results.get("peak")
    if flops is None or not peak:
        return None
    return flops / (cell["median_ms"] / 1e3) / (peak["gflops_best"] * 1e9)


def linear_fit(x: list[float], y: list[float]) -> Fit | None:
    """Least squares with an intercept; None below three points (two always fit exactly)."""
    if len(x) < 3:
        return None
    xs, ys = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    slope, intercept = np.polyfit(xs, ys, 1)
    residual = float(np.sum((ys - (slope * xs + intercept)) ** 2))
    total = float(np.sum((ys - ys.mean()) ** 2))
    r2 = 1 - residual / total if total > 0 else 1.0
    return Fit(float(slope), float(intercept), r2, len(xs), int(xs.min()), int(xs.max()))


def scaling_fits(results: dict) -> dict[tuple[str, str], dict[str, Fit | None]]:
    """Per (network, backend): latency (ms) and memory increase (MiB) against pixel count."""
    fits = {}
    for network, backend in series(results):
        cells = ok_cells(results, backend, network)
        pixels = [c["pixels"] for c in cells]
        mem = [
            (c["pixels"], c["rss_increase_bytes"] / MIB) for c in cells if c["rss_increase_bytes"]
        ]
        fits[network, backend] = {
            "latency": linear_fit(pixels, [c["median_ms"] for c in cells]),
            "memory": linear_fit([p for p, _ in mem], [m for _, m in mem]),
        }
    return fits


def t95(df: int) -> float:
    """Two-sided 95 % quantile of Student's t; beyond the table, the Cornish-Fisher expansion
    around the normal quantile (within 0.003 from 11 degrees of freedom on)."""
    if df <= len(_T95):
        return _T95[df - 1]
    z = 1.959964
    return z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)


def parity_times(variant: dict) -> dict:
    """Time to parity over one parametrisation's seeds: the mean, with a 95 % t interval when
    every seed reached parity; otherwise a lower bound (an unreached seed counts its budget)."""
    runs = variant["runs"]
    times = [r["elapsed_s"] if r["parity_s"] is None else r["parity_s"] for r in runs]
    reached = sum(r["parity_s"] is not None for r in runs)
    mean, ci = statistics.fmean(times), None
    if reached == len(runs) > 1:
        half = t95(len(runs) - 1) * statistics.stdev(times) / math.sqrt(len(runs))
        ci = [max(mean - half, 0.0), mean + half]
    return {
        "seeds": len(runs),
        "reached": reached,
        "mean_s": mean,
        "ci95_s": ci,
        "bound": reached < len(runs),
        "final_loss": statistics.fmean(r["loss"] for r in runs),
    }


def gatys_baseline(gatys: dict) -> str | None:
    """The parametrisation that reaches parity soonest, so the generator is compared with Gatys
    at its best; when none reaches it on every seed, the one that came closest."""
    stats = {k: parity_times(v) for k, v in gatys.get("variants", {}).items()}
    if not stats:
        return None

    def rank(name: str) -> tuple[int, float]:
        s = stats[name]
        return (1, s["final_loss"]) if s["bound"] else (0, s["mean_s"])

    return min(stats, key=rank)


def gatys_speedups(results: dict) -> dict[str, dict]:
    """The baseline's mean time to parity over each pyramid backend's latency at the Gatys
    size, with the 95 % interval; a lower bound when parity was not reached on every seed."""
    g = results["gatys"]
    if g.get("status") != "ok":
        return {}
    stats = parity_times(g["variants"][gatys_baseline(g)])
    out = {}
    for cell in ok_cells(results, network=PYRAMID):
        if (cell["width"], cell["height"]) == (g["size"], g["size"]):
            latency = cell["median_ms"] / 1e3
            out[cell["backend"]] = {
                "value": stats["mean_s"] / latency,
                "bound": stats["bound"],
                "ci95": [t / latency for t in stats["ci95_s"]] if stats["ci95_s"] else None,
            }
    return out


def speedup_text(up: dict) -> str:
    """ "410x (95 % CI 330-490x)", or "> 250x" for a bound."""
    if up["bound"]:
        return f"> {up['value']:.0f}x"
    ci = f" (95 % CI {up['ci95'][0]:.0f}-{up['ci95'][1]:.0f}x)" if up["ci95"] else ""
    return f"{up['value']:.0f}x{ci}"


def gatys_memory(results: dict, size: int) -> dict | None:
    """The Gatys run at `size` with its peak memory: the memory run, or the baseline's seeds."""
    g = results["gatys"]
    if g.get("status") != "ok":
        return None
    if "memory" in g and g["memory"]["size"] == size:
        return g["memory"]
    if g["size"] == size:
        return g["variants"][gatys_baseline(g)]
    return None


def _ratio_target(name: str, goal: float, goal_text: str, value: float | None, what: str) -> Target:
    if value is None:
        return Target(name, goal_text, "-", "not measured")
    if value >= goal:
        return Target(name, goal_text, f"{value:.3g}x {what}", "met")
    return Target(
        name, goal_text, f"{value:.3g}x {what}", "missed", f"{goal / value:.2g}x short of {goal:g}x"
    )


def large_speedup(results: dict) -> dict | None:
    """The baseline's time to the generator's quality at the larger Gatys size (one seed) over
    the generator's latency there; a lower bound when parity was not reached in the budget."""
    g = results["gatys"]
    run = g.get("memory") if g.get("status") == "ok" else None
    cell = run and find_cell(results, HEADLINE, run["size"], run["size"])
    if not cell or "target_loss" not in run:
        return None
    seed = run["runs"][0]
    bound = seed["parity_s"] is None
    seconds = seed["elapsed_s"] if bound else seed["parity_s"]
    return {"size": run["size"], "value": seconds / (cell["median_ms"] / 1e3), "bound": bound}


def _parity_target(name: str, up: dict | None) -> Target:
    goal = ">= 1000x"
    if up is None:
        return Target(name, goal, "-", "not measured")
    text = speedup_text(up)
    if up["value"] >= 1000:
        return Target(name, goal, text, "met")  # a lower bound above the goal meets it too
    if up["bound"]:
        gap = "Gatys missed parity on some seed within its budget; raise --gatys-seconds"
        return Target(name, goal, text, "undecided", gap)
    return Target(name, goal, text, "missed", f"{1000 / up['value']:.2g}x short of 1000x")


def _peer_target(results: dict, what: str, goal: float, key: str) -> Target:
    """Johnson et al.'s transformer over the pyramid on the headline runtime at 256, 512, 1024."""
    name, wanted = f"pyramid vs Johnson et al., {what}, 256/512/1024", f">= {goal:g}x lower"
    ratios = []
    for side in PEER_SIZES:
        mine = find_cell(results, HEADLINE, side, side)
        peer = find_cell(results, HEADLINE, side, side, JOHNSON)
        if mine and peer and mine.get(key) and peer.get(key):
            ratios.append((side, peer[key] / mine[key]))
    if not ratios:
        return Target(name, wanted, "-", "not measured")
    measured = ", ".join(f"{r:.2g}x at {side}" for side, r in ratios)
    short = [f"{goal / r:.2g}x short at {side}" for side, r in ratios if r < goal]
    if short:
        return Target(name, wanted, measured, "missed", "; ".join(short))
    if len(ratios) < len(PEER_SIZES):
        missing = ", ".join(str(s) for s in PEER_SIZES if s not in dict(ratios))
        return Target(name, wanted, measured, "undecided", f"not measured at {missing}")
    return Target(name, wanted, measured, "met")


def targets(results: dict) -> list[Target]:
    """Where each target of the benchmark issue stands (on the machine that produced results)."""
    size = results["config"]["gatys_size"]
    ups = gatys_speedups(results)
    out = [_parity_target(f"generator vs Gatys time to parity, {size}x{size}", ups.get(HEADLINE))]
    large = large_speedup(results)
    if large is not None:
        side = large["size"]
        text = speedup_text({**large, "ci95": None})
        name = f"generator vs Gatys time to parity, {side}x{side} (one seed)"
        out.append(Target(name, "stated", text, "reported"))
    out.append(_peer_target(results, "latency", 2.5, "median_ms"))
    out.append(_peer_target(results, "peak memory over idle", 2, "rss_increase_bytes"))

    cell512 = find_cell(results, HEADLINE, 512, 512)
    run512 = gatys_memory(results, 512)
    ratio, what = None, ""
    if (
        cell512
        and run512
        and cell512.get("rss_increase_bytes")
        and run512.get("rss_increase_bytes")
    ):
        ratio = run512["rss_increase_bytes"] / cell512["rss_increase_bytes"]
        total = run512["peak_rss_bytes"] / cell512["peak_rss_bytes"]
        what = f"(increase over idle; whole-process peak RSS {total:.3g}x)"
    out.append(
        _ratio_target(
            "peak memory, Gatys / generator (onnxruntime), 512x512",
            10,
            ">= 10x",
            ratio,
            what,
        )
    )

    torch512 = find_cell(results, "torch", 512, 512)
    value = torch512["median_ms"] / cell512["median_ms"] if cell512 and torch512 else None
    out.append(
        _ratio_target("onnxruntime fp32 vs PyTorch eager, 512x512", 2, ">= 2x faster", value, "")
    )

    fraction = peak_fraction(results, cell512) if cell512 else None
    name = "onnxruntime fp32 share of the measured fp32 peak, 512x512"
    goal = f">= {PEAK_SHARE * 100:.0f} %"
    if fraction is None:
        out.append(Target(name, goal, "-", "not measured"))
    else:
        status = "met" if fraction >= PEAK_SHARE else "missed"
        gap = f"{(PEAK_SHARE - fraction) * 100:.0f} points short" if status == "missed" else ""
        out.append(Target(name, goal, f"{fraction * 100:.0f} %", status, gap))

    name = "whole-image peak memory over idle, onnxruntime fp32, 512x512"
    increase = cell512.get("rss_increase_bytes") if cell512 else None
    out.append(_at_most(name, WHOLE_MIB, increase))
    out += _tiling_targets(results)
    out.append(_int8_target(results))
    out.append(_linearity_target(results))
    return out


# Issue 12's targets: the share of the fp32 roof and memory, whole and in exact tiles.
PEAK_SHARE, WHOLE_MIB, TILED_MIB, TILED_RATIO, TILED_SLOWDOWN = 0.8, 150, 300, 30, 1.15


def _at_most(name: str, goal_mib: float, increase: int | None, note: str = "") -> Target:
    goal = f"<= {goal_mib:g} MiB"
    if increase is None:
        return Target(name, goal, "-", "not measured")
    measured = f"{increase / MIB:.0f} MiB{note}"
    if increase / MIB <= goal_mib:
        return Target(name, goal, measured, "met")
    return Target(name, goal, measured, "missed", f"{increase / MIB - goal_mib:.0f} MiB over")


def tiled_runs(results: dict, role: str, input: str | None = None) -> list[dict]:
    """The tiling step's runs of `role` (and `input`) that measured something."""
    runs = results.get("tiling", {}).get("runs", [])  # results of before the step have none
    return [
        r for r in runs if r["role"] == role and r["status"] == "ok" and input in (None, r["input"])
    ]


def exactness_text(run: dict) -> str:
    """How a tiled image compares with the whole-image one, in 8-bit levels."""
    v = run.get("vs_whole")
    if v is None:
        return "no whole-image run to compare"
    if v["max_level_diff"] == 0:
        return "identical to the whole image"
    share = v["differing_pixels"] * 100
    return f"within {v['max_level_diff']} level(s) of the whole image ({share:.2g} % of pixels)"


def _tiling_targets(results: dict) -> list[Target]:
    out = []
    size = results["config"]["gatys_memory_size"]
    gatys_run = gatys_memory(results, size)
    name = f"Gatys / generator peak memory in exact tiles (onnxruntime), {size}x{size}"
    tiled = [r for r in tiled_runs(results, "bounds") if r["tiles"] and r["rss_increase_bytes"]]
    if gatys_run and gatys_run.get("rss_increase_bytes") and tiled:
        best = min(tiled, key=lambda r: r["rss_increase_bytes"])
        ratio = gatys_run["rss_increase_bytes"] / best["rss_increase_bytes"]
        what = f"at --max-memory {best['max_memory_mb']:g} ({best['median_ms'] / 1e3:.2g} s)"
        out.append(_ratio_target(name, TILED_RATIO, f">= {TILED_RATIO}x", ratio, what))
    else:
        out.append(Target(name, f">= {TILED_RATIO}x", "-", "not measured"))

    pair = {r["max_memory_mb"] is None: r for r in tiled_runs(results, "latency")}
    side = results["config"].get("tiling_latency_size")
    name = f"exact tiles' latency against the whole image's, {side}x{side}"
    goal = f"<= {TILED_SLOWDOWN:g}x"
    if True in pair and False in pair and pair[False]["tiles"]:
        slowdown = pair[False]["median_ms"] / pair[True]["median_ms"]
        measured = f"{slowdown:.2f}x ({pair[False]['tiles']})"
        if slowdown <= TILED_SLOWDOWN:
            out.append(Target(name, goal, measured, "met"))
        else:
            gap = f"{(slowdown - TILED_SLOWDOWN) * 100:.0f} % slower than allowed"
            out.append(Target(name, goal, measured, "missed", gap))
    else:
        out.append(Target(name, goal, "-", "not measured"))

    side = results["config"].get("tiling_size")
    for kind, what in (("noise", "texture"), ("photo", "stylized photo")):
        name = f"{side}x{side} {what} in exact tiles, peak memory over idle"
        run = next((r for r in tiled_runs(results, "large", kind) if r["tiles"]), None)
        if run is None:
            out.append(_at_most(name, TILED_MIB, None))
            continue
        target = _at_most(name, TILED_MIB, run["rss_increase_bytes"], f"; {exactness_text(run)}")
        if target.status == "met" and run.get("vs_whole", {}).get("max_level_diff", 0) > 1:
            target.status, target.gap = "missed", "not exact: more than fp32 rounding apart"
        out.append(target)
    return out


# Issue 12's int8 target: this much faster than fp32 at INT8_SIDE, this close to it at every size.
INT8_SPEEDUP, INT8_PSNR_DB, INT8_SIDE = 1.8, 35.0, 512


def _int8_target(results: dict) -> Target:
    name = f"int8 vs fp32 (onnxruntime), speed at {INT8_SIDE}x{INT8_SIDE}"
    goal = f">= {INT8_SPEEDUP:g}x faster, PSNR >= {INT8_PSNR_DB:g} dB"
    speedups, worst = {}, math.inf
    for c in ok_cells(results, "onnxruntime-int8"):
        ref = find_cell(results, HEADLINE, c["width"], c["height"])
        psnr = c.get("vs_reference", {}).get("psnr_db")
        if ref and psnr is not None:
            speedups[c["width"], c["height"]] = ref["median_ms"] / c["median_ms"]
            worst = min(worst, psnr)
    at_side = speedups.get((INT8_SIDE, INT8_SIDE))
    if at_side is None:
        return Target(name, goal, "-", "not measured")
    spread = f"{min(speedups.values()):.2f}-{max(speedups.values()):.2f}x"
    measured = (
        f"{at_side:.2f}x ({spread} over {len(speedups)} sizes), PSNR >= {worst:.1f} dB at all"
    )
    gaps = []
    if at_side < INT8_SPEEDUP:
        gaps.append(f"{at_side:.2f}x, {INT8_SPEEDUP:g}x wanted")
    if worst < INT8_PSNR_DB:
        gaps.append(f"PSNR {INT8_PSNR_DB - worst:.1f} dB short")
    return Target(name, goal, measured, "missed" if gaps else "met", "; ".join(gaps))


def _linearity_target(results: dict) -> Target:
    name, goal = "onnxruntime fp32 latency linear in pixels, 256^2..2048^2", "R^2 >= 0.99"
    fit = scaling_fits(results).get((PYRAMID, HEADLINE), {}).get("latency")
    if fit is None:
        return Target(name, goal, "-", "not measured")
    span = f"R^2 {fit.r2:.4f} over {fit.points} sizes up to {fit.max_pixels / 1e6:.2f} MP"
    full = fit.min_pixels <= 256 * 256 and fit.max_pixels >= 2048 * 2048
    if fit.r2 < 0.99:
        return Target(name, goal, span, "missed", f"R^2 {0.99 - fit.r2:.3f} short")
    if not full:
        return Target(name, goal, span, "undecided", "the fit does not span 256^2..2048^2")
    return Target(name, goal, span, "met")
