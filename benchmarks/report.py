"""Render results.json as report.md (plots beside it) and a self-contained report.html (plots
embedded as base64 PNG). Both come from one list of blocks, so they always say the same thing."""

from __future__ import annotations

import base64
import html
import json
import re
from pathlib import Path

from tn_export.atomic import atomic_path

from . import analysis, plots
from .analysis import HEADLINE, MIB, find_cell, ok_cells

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
    return f"{n / MIB:.0f} MiB" if n < 2**30 else f"{n / 2**30:.2f} GiB"


def size_label(width: int, height: int) -> str:
    return f"{width}x{height}"


def _sizes(results: dict) -> list[tuple[int, int]]:
    return sorted({(c["width"], c["height"]) for c in results["cells"]}, key=lambda s: s[0] * s[1])


def _backends(results: dict) -> list[str]:
    return list(dict.fromkeys(c["backend"] for c in results["cells"]))


def _cell_any(results: dict, backend: str, size: tuple[int, int]) -> dict | None:
    for c in results["cells"]:
        if c["backend"] == backend and (c["width"], c["height"]) == size:
            return c
    return None


def headline_table(results: dict) -> Block | None:
    """Generator vs Gatys et al.: time for one texture, memory, loss (the paper's claim)."""
    g = results["gatys"]
    if g.get("status") != "ok":
        return None
    run, size = g["parity"], g["parity"]["size"]
    gen = find_cell(results, HEADLINE, size, size)
    rows = []
    if gen:
        up = analysis.gatys_speedups(results).get(HEADLINE)
        parity = (
            f"{fmt_time(run['parity_s'])} to reach the generator's loss"
            if run["parity_s"] is not None
            else f"not at the generator's loss after {fmt_time(run['elapsed_s'])}"
        )
        rows.append(
            [
                f"time for one {size}x{size} texture",
                f"{fmt_time(gen['median_ms'] / 1e3)} (median)",
                parity,
                f"{'> ' if up['bound'] else ''}{up['value']:.0f}x",
            ]
        )
    for msize in sorted({r["size"] for k in ("parity", "memory") if (r := g.get(k))}):
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
        rows.append(
            [
                f"texture loss at {size}x{size} (lower is better)",
                f"{sets['generator']['texture_loss']:.3g} (mean of {sets['generator']['count']})",
                f"{sets['gatys']['texture_loss']:.3g}",
                "",
            ]
        )
    head = ["", f"generator ({HEADLINE})", f"Gatys et al. ({g['optimizer']})", "ratio"]
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
    for backend in _backends(results):
        row = [backend]
        for size in sizes:
            c = _cell_any(results, backend, size)
            if c is None:
                row.append("")
            elif c["status"] == "ok":
                row.append(f"{c['median_ms']:.4g} ({c['p10_ms']:.4g}-{c['p90_ms']:.4g})")
            else:
                row.append(c["status"])
        loads = [c["load_s"] for c in ok_cells(results, backend)]
        row.append(fmt_time(min(loads)) if loads else "-")
        rows.append(row)
    head = ["backend", *(size_label(*s) for s in sizes), "model load"]
    blocks: list[Block] = [
        ("h2", "Latency"),
        ("p", "Median latency in ms (p10-p90), one image per call; model load timed apart."),
        ("table", head, rows),
    ]
    if "latency" in figures:
        blocks.append(("img", "latency", "Latency against image size"))
    return blocks


def _memory(results: dict, figures: dict[str, bytes]) -> list[Block]:
    sizes, rows = _sizes(results), []
    for backend in _backends(results):
        row = [backend]
        for size in sizes:
            c = find_cell(results, backend, *size)
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
        ("table", ["backend", *(size_label(*s) for s in sizes)], rows),
    ]
    if "memory" in figures:
        blocks.append(("img", "memory", "Peak memory increase per backend and size"))
    return blocks


def _agreement(results: dict) -> list[Block]:
    rows = []
    for c in ok_cells(results):
        if "vs_reference" in c:
            v = c["vs_reference"]
            psnr = "identical" if v["psnr_db"] is None else f"{v['psnr_db']:.1f} dB"
            rows.append(
                [
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
        ("p", "Output for the same fixed input against the reference backend (values in [0, 1])."),
        ("table", ["backend", "size", "reference", "PSNR", "max abs error"], rows),
    ]


def _roofline(results: dict) -> list[Block]:
    peak = results.get("peak")
    if not peak or not results["flops"]:
        return []
    flops = ", ".join(
        f"{size_label(f['width'], f['height'])} {f['flops'] / 1e9:.3g}" for f in results["flops"]
    )
    rows = []
    for c in ok_cells(results):
        fraction = analysis.peak_fraction(results, c)
        if fraction is not None:
            rate = fraction * peak["gflops_best"]
            rows.append(
                [
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
            f"threads; median {peak['gflops_median']:.0f}). int8 and fp16 rows are measured "
            "against the same fp32 peak.",
        ),
        ("table", ["backend", "size", "GFLOP/s", "share of fp32 peak"], rows),
    ]


def _scaling(results: dict) -> list[Block]:
    rows = []
    for backend, fits in analysis.scaling_fits(results).items():
        lat, mem = fits["latency"], fits["memory"]
        if lat is None:
            continue
        rows.append(
            [
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
    head = ["backend", "latency fit", "R^2", "memory fit", "R^2", "sizes (pixels)"]
    return [
        ("h2", "Scaling"),
        ("p", "Least-squares lines against pixel count over every size measured (MP = 10^6 px)."),
        ("table", head, rows),
    ]


def _gatys(results: dict, figures: dict[str, bytes]) -> list[Block]:
    g = results["gatys"]
    if g.get("status") != "ok":
        return [("h2", "Gatys et al. baseline"), ("p", f"{g['status']}: {g.get('reason', '')}")]
    rows = []
    for key in ("parity", "memory"):
        if key not in g:
            continue
        r = g[key]
        rows.append(
            [
                f"{key} run",
                f"{r['size']}x{r['size']}",
                str(r["iterations"]),
                str(r["evaluations"]),
                fmt_time(r["elapsed_s"]),
                fmt_time(r["parity_s"]) if key == "parity" else "-",
                f"{r['final_loss']:.3g}",
                f"{fmt_bytes(r['peak_rss_bytes'])} (+{fmt_bytes(r['rss_increase_bytes'])})",
            ]
        )
    head = [
        "",
        "size",
        "iterations",
        "loss evaluations",
        "wall time",
        "time to parity",
        "last loss",
        "peak RSS",
    ]
    ups = analysis.gatys_speedups(results)
    speed = "; ".join(f"{b} {'> ' if u['bound'] else ''}{u['value']:.0f}x" for b, u in ups.items())
    blocks: list[Block] = [
        ("h2", "Gatys et al. baseline"),
        (
            "p",
            f"Pixels optimised from uniform noise with {g['optimizer']} (same descriptor, layers "
            f"and loss as the generator's training) until the loss first reaches the generator's "
            f"mean sample loss, {g['target_loss']:.4g}. Descriptor load and the texture's Grams "
            f"are timed apart (setup {fmt_time(g['parity']['setup_s'])}). The pixels are "
            "unbounded and parity is judged on their own loss, which is lower than that of the "
            "image clamped to [0, 1] (quality table below): if anything it favours Gatys."
            + (
                " The memory run measures peak memory at the larger size over a fixed number of "
                "iterations (enough to fill L-BFGS's history)."
                if "memory" in g
                else ""
            ),
        ),
        ("table", head, rows),
        ("p", f"Speedup (time to parity over generator latency at the same size): {speed}."),
    ]
    if "gatys_loss" in figures:
        blocks.append(("img", "gatys_loss", "Gatys loss against wall time"))
    return blocks


def _quality(results: dict, figures: dict[str, bytes]) -> list[Block]:
    q = results["quality"]
    if q.get("status") != "ok":
        return [("h2", "Quality and diversity"), ("p", f"{q['status']}: {q.get('reason', '')}")]

    def num(v: float | None) -> str:
        return "-" if v is None else f"{v:.3g}"

    names = {
        "generator": "generator samples (different seeds)",
        "gatys": "Gatys et al. at parity",
        "noise": "uniform noise",
        "texture": "the texture itself",
    }
    rows = [
        [
            names.get(k, k),
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
            f"At {q['size']}x{q['size']}. Texture loss: the training loss against the texture. "
            "Diversity: mean pairwise RMS pixel distance and mean pairwise Gram distance (in the "
            "loss's units) between images. Seam error: mean |difference| across the wrap-around "
            f"edge over that between neighbours inside (1 = seamless; the model is {circular}).",
        ),
        ("table", ["images", "n", "texture loss", "pixel distance", "Gram distance", "seam"], rows),
    ]
    if "strip" in figures:
        blocks.append(("img", "strip", "Texture, generator samples, Gatys result at parity"))
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
    blocks += _targets(results)
    blocks += _latency(results, figures) + _memory(results, figures) + _agreement(results)
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
        "gatys_loss": plots.gatys_loss(results),
        "strip": plots.image_strip(results, base),
    }
    return {k: v for k, v in figures.items() if v is not None}


def write_results(results: dict, path: Path) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(results, indent=1) + "\n")


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
