"""Exact tiles against whole-image runs (issue 12): peak RSS over an idle interpreter and latency
of what `tn-run synthesize` / `stylize` do, each in a fresh process (isolated.py).

    python -m benchmarks.tiling MODEL.onnx --size 4096 [--photo PHOTO] [--max-memory 256]
    python -m benchmarks.tiling MODEL.onnx --size 1024 --compare   # tiled vs whole latency
"""

from __future__ import annotations

import argparse
import json
import time

from .isolated import run_isolated

MIB = 2**20


def run(model: str, size: int, max_memory_mb: float, photo: str | None, runs: int) -> dict:
    """In the child: load `model`, make one size x size texture (or stylize `photo`, resized to
    it) `runs` times with the runtime's defaults under `max_memory_mb`; the times and layout."""
    from PIL import Image

    from tn_export.images import load_image
    from tn_export.runtime import load

    m = load(model, threads=None, max_memory=max_memory_mb * 1e6)
    image = None
    if photo is not None:
        image = load_image(photo)
        if image.size != (size, size):
            image = image.resize((size, size), Image.BICUBIC)
    layout = m.layout(size, size, 8 if image is not None else 4)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        if image is None:
            m.synthesize(size, size, seed=1)
        else:
            m.stylize(image)
        times.append(time.perf_counter() - start)
    tiles = None if layout is None else f"{layout.tile_w}x{layout.tile_h} in blocks of "
    tiles = tiles and tiles + f"{layout.block_w}x{layout.block_h}"
    return {"times_s": times, "tiles": tiles}


def measure(
    model: str, size: int, max_memory_mb: float, photo: str | None, runs: int, threads: int
) -> dict:
    idle = run_isolated("benchmarks.isolated:idle", {"modules": ["tn_export.runtime"]}, threads)
    kwargs = {
        "model": model,
        "size": size,
        "max_memory_mb": max_memory_mb,
        "photo": photo,
        "runs": runs,
    }
    out = run_isolated("benchmarks.tiling:run", kwargs, threads)
    out["rss_increase_mib"] = round((out["peak_rss_bytes"] - idle["peak_rss_bytes"]) / MIB)
    out["max_memory_mb"] = max_memory_mb
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.tiling", description=__doc__)
    parser.add_argument("model")
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--photo", help="stylize this photo (resized to --size) instead")
    parser.add_argument("--max-memory", type=float, default=256.0, metavar="MB")
    parser.add_argument("--compare", action="store_true", help="also a whole-image run (1e6 MB)")
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    settings = [args.max_memory] + ([1e6] if args.compare else [])
    for mb in settings:
        out = measure(args.model, args.size, mb, args.photo, args.runs, args.threads)
        print(json.dumps({"size": args.size, **out}))


if __name__ == "__main__":
    main()
