"""Render results.json as report.md (plots beside it) and a self-contained report.html (plots
embedded as base64 PNG). Both come from one list of blocks, so they always say the same thing."""

from __future__ import annotations

import base64
import html
import json
import math
import re
from pathlib import Path

from tn_export.atomic import atomic_path

from . import analysis, plots
from .analysis import HEADLINE, JOHNSON, MIB, PYRAMID, find_cell, ok_cells, series

# A block is ("h2"|"h3", text) | ("p", text) | ("code", text) | ("table", headers, rows)
# | ("img", plot name, caption).
Block = tuple


def fmt_time(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return f"{seconds * 1e3:.3g} ms" if seconds < 1 else f"{seconds:.3g} s"


def fmt_bytes(n: float | None) -> str:
    if n is None:
        return "-"
    if n < 10 * MIB:  # weights: 0.45 MiB, not 0 MiB
        return f"{n / MIB:.2g} MiB"
    return f"{n / MIB:.0f} MiB" if n < 2**30 else f"{n / 2**30:.2f} GiB"


def size_label(width: int, height: int) -> str:
    return f"{width}x{height}"


def _sizes(results: dict) -> list[tuple[int, int]]:
    return sorted({(c["width"], c["height"]) for c in results["cells"]}, key=lambda s: s[0] * s[1])


def _cell_any(results: dict, network: str, backend: str, size: tuple[int, int]) -> dict | None:
    for c in results["cells"]:
        if (c["network"], c["backend"], c["width"], c["height"]) == (network, backend, *size):
            return c
    return None


def _parity_text(budget_s: float, stats: dict) -> str:
    if stats["bound"]:
        missed = stats["seeds"] - stats["reached"]
        return (
            f"not at the generator's quality within {fmt_time(budget_s)} on "
            f"{missed} of {stats['seeds']} seeds"
        )
    ci = stats["ci95_s"]
    interval = f", 95 % CI {fmt_time(ci[0])}-{fmt_time(ci[1])}" if ci else ""
    return (
        f"{fmt_time(stats['mean_s'])} (mean of {stats['seeds']} seeds{interval}) until its "
        "delivered image is as good"
    )


def headline_table(results: dict) -> Block | None:
    """Generator vs Gatys et al. at its best: time for one delivered texture of the generator's
    quality, memory, loss (the paper's claim)."""
    g = results["gatys"]
    if g.get("status") != "ok":
        return None
    size, best = g["size"], analysis.gatys_baseline(g)
    gen = find_cell(results, HEADLINE, size, size)
    rows = []
    if gen:
        up = analysis.gatys_speedups(results)[HEADLINE]
        rows.append(
            [
                f"time for one {size}x{size} texture",
                f"{fmt_time(gen['median_ms'] / 1e3)} (median)",
                _parity_text(
                    results["config"]["gatys_seconds"], analysis.parity_times(g["variants"][best])
                ),
                analysis.speedup_text(up),
            ]
        )
    for msize in sorted({size, *([g["memory"]["size"]] if "memory" in g else [])}):
        cell, grun = (
            find_cell(results, HEADLINE, msize, msize),
            analysis.gatys_memory(results, msize),
        )
        if cell and grun and cell.get("rss_increase_bytes") and grun.get("rss_increase_bytes"):
            rows.append(
                [
                    f"memory at {msize}x{msize} (peak RSS over idle)",
                    fmt_bytes(cell["rss_increase_bytes"]),
                    fmt_bytes(grun["rss_increase_bytes"]),
                    f"{grun['rss_increase_bytes'] / cell['rss_increase_bytes']:.1f}x",
                ]
            )
    sets = results["quality"].get("sets", {})
    if "generator" in sets and "gatys" in sets:
        at = "at parity" if g["image"]["at_parity"] else "at the end of its budget"
        rows.append(
            [
                f"Gram distance of the delivered {size}x{size} image (lower is better)",
                f"{sets['generator']['texture_loss']:.4g} (mean of {sets['generator']['count']})",
                f"{sets['gatys']['texture_loss']:.4g} ({at})",
                "",
            ]
        )
    head = [
        "",
        f"generator ({HEADLINE})",
        f"Gatys et al. ({g['optimizer']}, {best} pixels)",
        "ratio",
    ]
    return ("table", head, rows)


def _overview(results: dict) -> list[Block]:
    m, model, cfg = results["machine"], results["model"], results["config"]
    versions = ", ".join(f"{k} {v}" for k, v in m["versions"].items() if v)
    meta = model.get("metadata") or {}
    trained = ", ".join(
        f"{k} {meta[k]}" for k in ("exemplar", "descriptor", "iteration") if meta.get(k)
    )
    blocks: list[Block] = [
        ("p", f"Made {results['created']} by {results['tool']}. Reproduce with:"),
        ("code", results["command"]),
        (
            "p",
            f"Model: {model['path']} ({model['parameters']:,} parameters; "
            f"{', '.join(f'{k} {v}' for k, v in model['config'].items())}"
            f"{'; trained on ' + trained if trained else ''}).",
        ),
        (
            "p",
            f"Machine: {m['cpu']}, {m['physical_cores']} cores ({m['logical_cores']} logical), "
            f"{m['memory_gb']:.0f} GB, {m['os']}. Every backend and the Gatys baseline ran with "
            f"{cfg['threads']} threads, {cfg['runs']} timed runs after {cfg['warmup']} warm-up "
            f"runs, each backend and size in its own process. Versions: {versions}.",
        ),
    ]
    load = results.get("load", {})
    parts = []
    for when in ("start", "end"):
        if when in load:
            snap = load[when]
            busiest = ", ".join(f"{p['name']} {p['cpu_percent']:.0f} %" for p in snap["busiest"])
            parts.append(
                f"at the {when}: load average {snap['loadavg'][0]:.1f} (1 min), CPU "
                f"{snap['cpu_busy_percent']:.0f} % busy, busiest other processes {busiest}"
            )
    if parts:
        cores = m["logical_cores"]
        warn = ""
        if max(load[w]["loadavg"][0] for w in ("start", "end") if w in load) > 0.5 * cores:
            warn = (
                f" Other processes competed for the {cores} cores, so latencies are longer and "
                "noisier than on an idle machine (each cell records the 1-minute load average)."
            )
        blocks.append(("p", "Load " + "; ".join(parts) + "." + warn))
    return blocks


def _targets(results: dict) -> list[Block]:
    rows = [[t.name, t.goal, t.measured, t.status, t.gap] for t in analysis.targets(results)]
    return [
        ("h2", "Targets"),
        ("table", ["target", "goal", "measured", "status", "by how much"], rows),
    ]


def _latency(results: dict, figures: dict[str, bytes]) -> list[Block]:
    sizes, rows = _sizes(results), []
    for network, backend in series(results, ok_only=False):
        row = [network, backend]
        for size in sizes:
            c = _cell_any(results, network, backend, size)
            if c is None:
                row.append("")
            elif c["status"] == "ok":
                row.append(f"{c['median_ms']:.4g} ({c['p10_ms']:.4g}-{c['p90_ms']:.4g})")
            else:
                row.append(c["status"])
        loads = [c["load_s"] for c in ok_cells(results, backend, network)]
        row.append(fmt_time(min(loads)) if loads else "-")
        rows.append(row)
    head = ["network", "backend", *(size_label(*s) for s in sizes), "model load"]
    blocks: list[Block] = [
        ("h2", "Latency"),
        (
            "p",
            "Median latency in ms (p10-p90), one image per call; model load timed apart. "
            "onnxruntime runs through tn_export.runtime as apps do: the pyramid's `synthesize` "
            "(noise, network, crop, 8-bit image), the peer's `stylize` of an 8-bit photo (one "
            "tile: the whole image); PyTorch eager runs the bare network.",
        ),
        ("table", head, rows),
    ]
    if "latency" in figures:
        blocks.append(("img", "latency", "Latency against image size"))
    return blocks


def _memory(results: dict, figures: dict[str, bytes]) -> list[Block]:
    sizes, rows = _sizes(results), []
    for network, backend in series(results, ok_only=False):
        row = [network, backend]
        for size in sizes:
            c = find_cell(results, backend, *size, network=network)
            row.append(
                f"{fmt_bytes(c['peak_rss_bytes'])} (+{fmt_bytes(c['rss_increase_bytes'])})"
                if c
                else "-"
            )
        rows.append(row)
    idle = ", ".join(f"{k} {fmt_bytes(v['peak_rss_bytes'])}" for k, v in results["idle"].items())
    blocks: list[Block] = [
        ("h2", "Memory"),
        (
            "p",
            "Peak RSS of the process that ran the backend (in brackets: its increase over an idle "
            f"interpreter that imported the same libraries; idle: {idle}).",
        ),
        ("table", ["network", "backend", *(size_label(*s) for s in sizes)], rows),
    ]
    if "memory" in figures:
        blocks.append(("img", "memory", "Peak memory increase per backend and size"))
    return blocks


def _tiling(results: dict, figures: dict[str, bytes]) -> list[Block]:
    t = results.get("tiling")
    if t is None:  # results of before the step
        return []
    blocks: list[Block] = [("h2", "Exact tiles in bounded memory")]
    if t["status"] != "ok":
        return [*blocks, ("p", f"{t['status']}: {t['reason']}")]
    photo = t.get("photo") or "none"
    style = f" by the bundled `{t['style_model']}`" if t.get("style_model") else ""
    blocks.append(
        (
            "p",
            "What `tn-run synthesize` / `stylize` do through tn_export.runtime with the model's "
            "exact-tiling parts, each run in its own process: median latency (p10-p90) and peak "
            "RSS over an idle interpreter that imported the runtime; `--max-memory` is the bound "
            "the run was planned under (whole: none). Each tiled image is compared, 8-bit pixel "
            f"for pixel, with the whole image of the same seed. Photo stylized{style}: {photo} "
            "(resized to a square).",
        )
    )
    rows = []
    for r in t["runs"]:
        bound = "whole" if r["max_memory_mb"] is None else f"{r['max_memory_mb']:g} MB"
        head = [r["role"], r["input"], size_label(r["size"], r["size"]), bound]
        if r["status"] != "ok":
            rows.append([*head, r["status"], r["reason"], "", ""])
            continue
        latency = f"{fmt_time(r['median_ms'] / 1e3)} ({r['p10_ms']:.4g}-{r['p90_ms']:.4g} ms)"
        exact = analysis.exactness_text(r) if r["tiles"] else "-"
        memory = fmt_bytes(r["rss_increase_bytes"])
        rows.append([*head, r["tiles"] or "whole", latency, memory, exact])
    head = ["run", "input", "size", "--max-memory", "tiles", "latency", "memory", "vs whole"]
    blocks.append(("table", head, rows))
    if "tiling" in figures:
        blocks.append(("img", "tiling", "Memory against latency under each bound"))
    return blocks


def _agreement(results: dict) -> list[Block]:
    rows = []
    for c in ok_cells(results):
        if "vs_reference" in c:
            v = c["vs_reference"]
            psnr = "identical" if v["psnr_db"] is None else f"{v['psnr_db']:.1f} dB"
            rows.append(
                [
                    c["network"],
                    c["backend"],
                    size_label(c["width"], c["height"]),
                    v["reference"],
                    psnr,
                    f"{v['max_abs']:.2g}",
                ]
            )
    if not rows:
        return []
    return [
        ("h2", "Agreement between backends"),
        (
            "p",
            "Float output for the same fixed input against the reference backend of the same "
            "network (values in [0, 1]).",
        ),
        ("table", ["network", "backend", "size", "reference", "PSNR", "max abs error"], rows),
    ]


def _roofline(results: dict) -> list[Block]:
    peak = results.get("peak")
    if not peak or not results["flops"]:
        return []
    flops = "; ".join(
        f"{network} "
        + ", ".join(
            f"{size_label(f['width'], f['height'])} {f['flops'] / 1e9:.3g}"
            for f in results["flops"]
            if f["network"] == network
        )
        for network in dict.fromkeys(f["network"] for f in results["flops"])
    )
    rows = []
    for c in ok_cells(results):
        fraction = analysis.peak_fraction(results, c)
        if fraction is not None:
            rate = fraction * peak["gflops_best"]
            rows.append(
                [
                    c["network"],
                    c["backend"],
                    size_label(c["width"], c["height"]),
                    f"{rate:.0f}",
                    f"{fraction * 100:.0f} %",
                ]
            )
    return [
        ("h2", "Roofline"),
        (
            "p",
            f"FLOPs per image counted from the graph (torch FlopCounterMode, a multiply-add is 2), "
            f"GFLOP: {flops}. Measured fp32 peak: {peak['gflops_best']:.0f} GFLOP/s "
            f"(best of {peak['reps']} {peak['n']}x{peak['n']} matmuls on {peak['threads']} "
            f"threads{_peak_libraries(peak)}; median {peak['gflops_median']:.0f}). int8 and fp16 "
            "rows are measured against the same fp32 peak.",
        ),
        ("table", ["network", "backend", "size", "GFLOP/s", "share of fp32 peak"], rows),
    ]


def _peak_libraries(peak: dict) -> str:
    """Which library gave the peak and what the others reached (results of before: none)."""
    libraries = peak.get("libraries")
    if not libraries:
        return ""
    rates = ", ".join(f"{k} {v['gflops_best']:.0f}" for k, v in libraries.items())
    return f", {peak['library']}'s; best of each library: {rates}"


def _scaling(results: dict) -> list[Block]:
    rows = []
    for (network, backend), fits in analysis.scaling_fits(results).items():
        lat, mem = fits["latency"], fits["memory"]
        if lat is None:
            continue
        rows.append(
            [
                network,
                backend,
                f"{lat.slope * 1e6:.4g} ms/MP + {lat.intercept:.3g} ms",
                f"{lat.r2:.4f}",
                f"{mem.slope * 1e6:.4g} MiB/MP + {mem.intercept:.3g} MiB" if mem else "-",
                f"{mem.r2:.4f}" if mem else "-",
                f"{lat.points} ({lat.min_pixels / 1e6:.3g}-{lat.max_pixels / 1e6:.3g} MP)",
            ]
        )
    if not rows:
        return []
    head = ["network", "backend", "latency fit", "R^2", "memory fit", "R^2", "sizes (pixels)"]
    return [
        ("h2", "Scaling"),
        ("p", "Least-squares lines against pixel count over every size measured (MP = 10^6 px)."),
        ("table", head, rows),
    ]


def _networks(results: dict) -> list[Block]:
    """The pyramid beside its peer: parameters, weights, FLOPs, and why memory does not follow
    the parameter count."""
    if not results["peers"]:
        return []
    model = results["model"]
    networks = {
        PYRAMID: {"parameters": model["parameters"], "description": "Texture Networks pyramid"},
        **results["peers"],
    }
    sizes = sorted({(f["width"], f["height"]) for f in results["flops"]}, key=lambda s: s[0] * s[1])
    rows = []
    for name, info in networks.items():
        gflop = [analysis.flops_at(results, *size, network=name) for size in sizes]
        rows.append(
            [
                name,
                info["description"],
                f"{info['parameters']:,}",
                fmt_bytes(4 * info["parameters"]),
                *("-" if f is None else f"{f / 1e9:.3g}" for f in gflop),
            ]
        )
    head = [
        "network",
        "",
        "parameters",
        "fp32 weights",
        *(f"GFLOP {size_label(*s)}" for s in sizes),
    ]
    blocks: list[Block] = [
        ("h2", "Networks"),
        (
            "p",
            "The pyramid beside the network a user would pick instead, measured the same way in "
            "every table (its weights are random: speed and memory do not depend on them).",
        ),
        ("table", head, rows),
    ]
    why = _memory_why(results, networks)
    if why:
        blocks.append(("p", why))
    return blocks


def _memory_why(results: dict, networks: dict) -> str | None:
    """Parameters against peak memory at the largest size both ran under onnxruntime."""
    if JOHNSON not in networks:
        return None
    pyramid, johnson = networks[PYRAMID], networks[JOHNSON]
    both = [
        (a, b)
        for a in ok_cells(results, HEADLINE, PYRAMID)
        if (b := find_cell(results, HEADLINE, a["width"], a["height"], JOHNSON))
        and a.get("rss_increase_bytes")
        and b.get("rss_increase_bytes")
    ]
    if not both:
        return None
    mine, theirs = max(both, key=lambda pair: pair[0]["pixels"])
    config = results["model"]["config"]
    fits = analysis.scaling_fits(results)
    slopes = [fits.get((n, HEADLINE), {}).get("memory") for n in (PYRAMID, JOHNSON)]
    growth = (
        f" (memory grows by {slopes[0].slope * 1e6:.0f} against {slopes[1].slope * 1e6:.0f} MiB "
        "per megapixel, Scaling below)"
        if all(slopes)
        else ""
    )
    weights = [fmt_bytes(4 * n["parameters"]) for n in (pyramid, johnson)]
    return (
        f"The pyramid has {johnson['parameters'] / pyramid['parameters']:.0f}x fewer parameters "
        f"than Johnson et al.'s transformer, yet at {size_label(mine['width'], mine['height'])} "
        f"onnxruntime peaks {fmt_bytes(mine['rss_increase_bytes'])} over idle against "
        f"{fmt_bytes(theirs['rss_increase_bytes'])}: the weights ({weights[0]} and {weights[1]}) "
        "are a small, fixed part of memory. Activation maps at full resolution fill it and grow "
        f"with the pixels{growth}. The pyramid's finest level runs at full resolution with up to "
        f"{config['channels'] * config['scales']} channels ({config['scales']} scales of "
        f"{config['channels']} joined), while the transformer keeps only 32 channels at full "
        "resolution and does its heavy work, the 128-channel residual blocks, on a quarter of "
        "the width and height."
    )


def _gatys(results: dict, figures: dict[str, bytes]) -> list[Block]:
    g = results["gatys"]
    if g.get("status") != "ok":
        return [("h2", "Gatys et al. baseline"), ("p", f"{g['status']}: {g.get('reason', '')}")]
    best, budget = analysis.gatys_baseline(g), results["config"]["gatys_seconds"]
    rows = []
    for pixels, child in g["variants"].items():
        stats = analysis.parity_times(child)
        runs = child["runs"]
        ci = stats["ci95_s"]
        rows.append(
            [
                f"{pixels}{' (baseline)' if pixels == best else ''}",
                f"{stats['reached']} of {stats['seeds']}",
                ("> " if stats["bound"] else "") + fmt_time(stats["mean_s"]),
                f"{fmt_time(ci[0])}-{fmt_time(ci[1])}" if ci else "-",
                f"{sum(r['evaluations'] for r in runs) / len(runs):.0f}",
                f"{stats['final_loss']:.4g}",
                f"{fmt_bytes(child['peak_rss_bytes'])} (+{fmt_bytes(child['rss_increase_bytes'])})",
            ]
        )
    if "memory" in g:
        m = g["memory"]
        seed = m["runs"][0]
        reached = seed["parity_s"] is not None
        rows.append(
            [
                f"{m['pixels']} at {m['size']}x{m['size']} (target {m['target_loss']:.4g})",
                f"{int(reached)} of 1",
                fmt_time(seed["parity_s"]) if reached else f"> {fmt_time(seed['elapsed_s'])}",
                "-",
                str(seed["evaluations"]),
                f"{seed['loss']:.4g}",
                f"{fmt_bytes(m['peak_rss_bytes'])} (+{fmt_bytes(m['rss_increase_bytes'])})",
            ]
        )
    head = [
        "pixels optimised",
        "seeds at parity",
        "time to parity (mean)",
        "95 % CI",
        "loss evaluations",
        "delivered loss at the end (mean)",
        "peak RSS",
    ]
    ups = analysis.gatys_speedups(results)
    speed = "; ".join(f"{b} {analysis.speedup_text(u)}" for b, u in ups.items())
    image = g["image"]
    blocks: list[Block] = [
        ("h2", "Gatys et al. baseline"),
        (
            "p",
            f"One {g['size']}x{g['size']} image optimised from uniform noise with "
            f"{g['optimizer']} (same descriptor and layers as the generator's training; the "
            "optimiser minimises the absolute Gram loss, which converged about 2x faster than "
            "the per-layer relative loss). Two "
            "parametrisations: `sigmoid` optimises z with pixels = sigmoid(z), always in range; "
            "`unbounded` optimises the pixels themselves. Either way, at every loss evaluation "
            "the image a user would receive (clamped to [0, 1], rounded to 8 bits) is scored with "
            "the same yardstick as the generator's samples, and parity is the first moment it "
            f"reaches their mean, {g['target_loss']:.4g}; scoring it stops the clock. Each "
            f"parametrisation ran {len(next(iter(g['variants'].values()))['runs'])} seeds with "
            f"a budget of {fmt_time(budget)} each; the one reaching parity sooner is the "
            "baseline, so the generator is compared with Gatys at its best. Descriptor load, the "
            "texture's Grams and a warm-up evaluation are timed apart."
            + (
                " The run at the larger size (one seed of the baseline) measures its time to "
                "the generator's quality there and its peak memory (it goes on past parity until "
                "L-BFGS's history is full)."
                if "memory" in g
                else ""
            ),
        ),
        ("table", head, rows),
        (
            "p",
            f"Speedup (the baseline's mean time to parity over the generator's latency at the "
            f"same size): {speed}. The image compared is {image['path']} (`{image['pixels']}`, "
            f"seed {image['seed']}, "
            + ("at parity" if image["at_parity"] else "the last one: parity was not reached")
            + f", delivered loss {image['loss']:.4g})."
            + _large_text(results),
        ),
    ]
    if "gatys_loss" in figures:
        blocks.append(("img", "gatys_loss", "Delivered-image loss against wall time"))
    return blocks


def _large_text(results: dict) -> str:
    up = analysis.large_speedup(results)
    if up is None:
        return ""
    side = up["size"]
    return (
        f" At {side}x{side} (one seed, the generator's mean there as the target): "
        f"{analysis.speedup_text({**up, 'ci95': None})}; the image is "
        f"{results['images'].get(f'gatys_{side}', '-')}."
    )


def _quality(results: dict, figures: dict[str, bytes]) -> list[Block]:
    q = results["quality"]
    if q.get("status") != "ok":
        return [("h2", "Quality and diversity"), ("p", f"{q['status']}: {q.get('reason', '')}")]

    def num(v: float | None) -> str:
        return "-" if v is None else f"{v:.4g}"

    names = {
        "generator": "generator samples (images/generator_SEED.png)",
        "gatys": "Gatys et al. (images/gatys_parity.png)",
        "noise": "uniform noise",
        "texture": "the texture itself",
    }

    def label(key: str) -> str:
        side = key.removeprefix("generator_")  # the samples that set the larger Gatys target
        if side != key:
            return f"generator samples at {side}x{side} (images/{key}_SEED.png)"
        return names.get(key, key)

    rows = [
        [
            label(k),
            str(s["count"]),
            num(s["texture_loss"]),
            num(s["pixel_distance"]),
            num(s["gram_distance"]),
            num(s["seam_error"]),
        ]
        for k, s in q["sets"].items()
    ]
    circular = "circular padding: tiles should be seamless" if q["circular"] else "not circular"
    blocks: list[Block] = [
        ("h2", "Quality and diversity"),
        (
            "p",
            f"At {q['size']}x{q['size']}, every image as a user receives it: clamped to [0, 1] "
            "and rounded to 8 bits, scored from the saved PNG. Gram distance to the texture: the "
            "quality yardstick, the sum over the descriptor's layers of the mean squared "
            "difference of Gram matrices (F F^T / (C H W)). generator_SEED.png is what "
            f"`tn-run synthesize MODEL.onnx --size {q['size']}x{q['size']} --seed SEED` writes. "
            "Diversity: mean pairwise RMS pixel distance and mean pairwise Gram distance between "
            "images. Seam error: mean |difference| across the wrap-around edge over that between "
            f"neighbours inside (1 = seamless; the model is {circular}).",
        ),
        (
            "table",
            [
                "images",
                "n",
                "Gram distance to the texture",
                "pixel distance",
                "Gram distance",
                "seam",
            ],
            rows,
        ),  # fmt: skip
    ]
    if "strip" in figures:
        blocks.append(("img", "strip", "Texture, generator samples, Gatys et al.'s image"))
    return blocks


def _notes(results: dict, notes: str | None) -> list[Block]:
    skipped = [
        f"{c['backend']} {size_label(c['width'], c['height'])}: {c['status']}, {c['reason']}"
        for c in results["cells"]
        if c["status"] != "ok"
    ]
    blocks: list[Block] = []
    if skipped:
        blocks += [("h2", "Skipped or failed"), ("p", "; ".join(skipped) + ".")]
    if notes:
        blocks += [("h2", "Closing note")] + [("p", p) for p in notes.strip().split("\n\n")]
    return blocks


def build(results: dict, figures: dict[str, bytes], notes: str | None = None) -> list[Block]:
    cfg = results["config"]
    blocks: list[Block] = [("h1", "tn-bench report"), *_overview(results)]
    headline = headline_table(results)
    if headline:
        blocks += [("h2", "Headline"), headline]
    blocks += _targets(results) + _networks(results)
    blocks += _latency(results, figures) + _memory(results, figures) + _tiling(results, figures)
    blocks += _agreement(results)
    blocks += _roofline(results) + _scaling(results)
    if cfg.get("gatys", True):
        blocks += _gatys(results, figures)
    blocks += _quality(results, figures) + _notes(results, notes)
    return blocks


def to_markdown(blocks: list[Block]) -> str:
    out = []
    for b in blocks:
        kind = b[0]
        if kind in ("h1", "h2", "h3"):
            out.append("#" * int(kind[1]) + " " + b[1])
        elif kind == "p":
            out.append(b[1])
        elif kind == "code":
            out.append(f"```\n{b[1]}\n```")
        elif kind == "table":
            out.append(markdown_table(b[1], b[2]))
        elif kind == "img":
            out.append(f"![{b[2]}](plots/{b[1]}.png)")
    return "\n\n".join(out) + "\n"


def markdown_table(head: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


_CSS = (
    "body{font-family:system-ui,sans-serif;max-width:1000px;margin:2em auto;padding:0 1em;"
    "line-height:1.45}table{border-collapse:collapse;margin:1em 0;font-size:.9em}"
    "td,th{border:1px solid #ccc;padding:.3em .6em;text-align:left}th{background:#f3f3f3}"
    "pre{background:#f6f6f6;padding:.6em;overflow-x:auto}img{max-width:100%}"
)


def _inline(text: str) -> str:
    """The markdown a closing note uses inline: `code` and **bold**."""
    text = re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(text))
    return re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", text)


def to_html(blocks: list[Block], figures: dict[str, bytes]) -> str:
    out = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>tn-bench report</title>"
        f"<style>{_CSS}</style></head><body>"
    ]
    for b in blocks:
        kind = b[0]
        if kind in ("h1", "h2", "h3"):
            out.append(f"<{kind}>{_inline(b[1])}</{kind}>")
        elif kind == "p":
            out.append(f"<p>{_inline(b[1])}</p>")
        elif kind == "code":
            out.append(f"<pre><code>{html.escape(b[1])}</code></pre>")
        elif kind == "table":
            head = "".join(f"<th>{_inline(h)}</th>" for h in b[1])
            rows = "".join(
                "<tr>" + "".join(f"<td>{_inline(str(v))}</td>" for v in row) + "</tr>"
                for row in b[2]
            )
            out.append(f"<table><tr>{head}</tr>{rows}</table>")
        elif kind == "img":
            data = base64.b64encode(figures[b[1]]).decode()
            out.append(
                f"<figure><img alt='{html.escape(b[2])}' src='data:image/png;base64,{data}'>"
                f"<figcaption>{html.escape(b[2])}</figcaption></figure>"
            )
    out.append("</body></html>")
    return "\n".join(out) + "\n"


def draw(results: dict, base: Path) -> dict[str, bytes]:
    """Every figure the results allow; images for the strip are read relative to `base`."""
    figures = {
        "latency": plots.latency(results),
        "memory": plots.memory(results),
        "tiling": plots.tiling(results),
        "gatys_loss": plots.gatys_loss(results),
        "strip": plots.image_strip(results, base),
    }
    return {k: v for k, v in figures.items() if v is not None}


def _finite(value: object) -> object:
    """`value` with every NaN or infinity replaced by None: JSON has no such numbers."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def write_results(results: dict, path: Path) -> None:
    """Write results as strict JSON: a measurement that came out NaN is written as null."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(_finite(results), indent=1, allow_nan=False) + "\n")


def render(results: dict, out: Path, base: Path, notes: str | None = None) -> list[Path]:
    """Write out/report.md, out/plots/*.png and out/report.html; returns the paths written."""
    figures = draw(results, base)
    blocks = build(results, figures, notes)
    written = []
    for name, data in figures.items():
        with atomic_path(out / "plots" / f"{name}.png") as tmp:
            tmp.write_bytes(data)
        written.append(out / "plots" / f"{name}.png")
    for name, text in (
        ("report.md", to_markdown(blocks)),
        ("report.html", to_html(blocks, figures)),
    ):
        with atomic_path(out / name) as tmp:
            tmp.write_text(text)
        written.append(out / name)
    return written
