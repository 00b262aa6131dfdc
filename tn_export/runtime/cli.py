"""tn-run: generate textures or stylize photos with an exported model (onnxruntime, no torch)."""

from __future__ import annotations

import argparse
import secrets
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tqdm import tqdm

from .. import budget
from ..atomic import check_outputs, file_key, refuse_overwriting_inputs
from ..budget import number
from ..cli import command_parser
from ..errors import UserError, cli_entry
from ..images import SAVE_FORMATS, image_files, load_image, save_image
from ..sizes import parse_size
from . import DEFAULT_TILE_PIXELS, IMAGE_BYTES_PER_PIXEL, Model, Progress, load
from .model import DEFAULT_MAX_MEMORY, FIXED_BYTES, TEXTURE_IMAGE_BYTES
from .styles import Style, parse_mix
from .video import DEFAULT_BATCH, stylize_video

# The runtime's parameters as this command's flags; max_size is tn-export's, which sets it.
FLAGS = {
    "tile_pixels": "--tile-pixels",
    "max_memory": "--max-memory",
    "max_size": "--max-size",
    "strength": "--strength",
    "batch": "--batch",
    "size": "--size",
}


def _parser() -> argparse.ArgumentParser:
    parser = command_parser("tn-run", "Run an exported Texture Networks model with onnxruntime.")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("model", type=Path, help="an .onnx file exported by tn-export")
    common.add_argument(
        "--providers",
        type=lambda s: [p.strip() for p in s.split(",") if p.strip()],
        help="onnxruntime execution providers in order, comma-separated "
        "(default: every local one available, e.g. CPUExecutionProvider)",
    )
    common.add_argument(
        "--threads",
        type=number(int, 1, budget.threads()),
        help="intra-op threads (default: onnxruntime's)",
    )
    common.add_argument(
        "--max-memory",
        type=number(float, above=0),
        default=DEFAULT_MAX_MEMORY / 1e6,
        metavar="MB",
        help="memory one image may take, in MB (default: 256, what a phone app can spend); "
        "larger textures and photos run in exact tiles, the same image as a whole run",
    )
    common.add_argument("--debug", action="store_true", help="show tracebacks")
    commands = parser.add_subparsers(dest="command", required=True)

    synth = commands.add_parser(
        "synthesize", parents=[common], help="texture models: noise -> texture of any size"
    )
    synth.add_argument(
        "--size", type=parse_size, required=True, help="WIDTHxHEIGHT, e.g. 1000x744, or N for NxN"
    )
    synth.add_argument(
        "--seed",
        type=number(int, 0, budget.MAX_SEED),
        help="same seed, same texture (default: random)",
    )
    synth.add_argument(
        "--count",
        type=number(int, 1, budget.count()),
        default=1,
        help="number of textures",
    )
    synth.add_argument(
        "-o",
        "--output",
        type=Path,
        required=True,
        help="output image (.png, .jpg, .webp); with --count N: NAME-1.png ... NAME-N.png",
    )

    controls = argparse.ArgumentParser(add_help=False)
    controls.add_argument(
        "--strength",
        type=number(float, 0, 1),
        default=1.0,
        help="0 = the photo, 1 = full style; in between, a blend of the two",
    )
    controls.add_argument(
        "--keep-colors",
        action="store_true",
        help="style the luminance only and keep the photo's colours (YCbCr chroma)",
    )
    choice = controls.add_mutually_exclusive_group()
    choice.add_argument(
        "--style", help="models of several styles: the style to apply (default: the first)"
    )
    choice.add_argument(
        "--mix",
        type=parse_mix,
        metavar="NAME=W,...",
        help="models of several styles: a mix of them, e.g. starry=0.7,mosaic=0.3 (default: "
        "none, --style)",
    )

    style = commands.add_parser(
        "stylize", parents=[common, controls], help="style models: restyle photos of any size"
    )
    style.add_argument("inputs", type=Path, nargs="+", help="images and/or folders of images")
    style.add_argument(
        "-o",
        "--output",
        type=Path,
        required=True,
        help="output image for one input; a folder for several (names and formats kept)",
    )
    style.add_argument(
        "--tile-pixels",
        type=number(int, 1, budget.MAX_PIXELS),
        default=DEFAULT_TILE_PIXELS,
        help="largest tile run at once, in pixels; bigger images are tiled to bound memory",
    )

    video = commands.add_parser(
        "video",
        parents=[common, controls],
        help="style models: restyle every frame of a video (needs the extra 'video': PyAV)",
    )
    video.add_argument("input", type=Path, help="a video file FFmpeg reads (.mp4, .mov, .mkv...)")
    video.add_argument(
        "-o", "--output", type=Path, required=True, help="output video (.mp4, .mov or .mkv)"
    )
    video.add_argument(
        "--size",
        type=parse_size,
        help="WIDTHxHEIGHT or N of the output frames, even sides (default: the input's)",
    )
    video.add_argument(
        "--batch",
        type=number(int, 1, budget.count()),
        default=DEFAULT_BATCH,
        help="frames run through the model at once",
    )
    return parser


def _check_output_name(path: Path) -> None:
    if path.suffix.lower() not in SAVE_FORMATS:
        raise UserError(f"cannot write {path}: use a .png, .jpg or .webp output name")


def _synthesize(model: Model, args: argparse.Namespace) -> None:
    _check_output_name(args.output)
    width, height = args.size
    seed = secrets.randbits(32) if args.seed is None else args.seed
    if args.count == 1:
        outputs = [args.output]
    else:
        outputs = [
            args.output.with_name(f"{args.output.stem}-{i}{args.output.suffix}")
            for i in range(1, args.count + 1)
        ]
    refuse_overwriting_inputs(outputs, [args.model])
    check_outputs(outputs)
    start = time.perf_counter()
    textures = model.textures(width, height, seed=seed)
    how = _how(model, width, height, TEXTURE_IMAGE_BYTES)
    # One texture at a time: memory stays that of one sample whatever --count is.
    for path, image in zip(outputs, textures, strict=False):
        save_image(image, path)
    took = time.perf_counter() - start
    names = str(outputs[0]) if len(outputs) == 1 else f"{outputs[0]} .. {outputs[-1]}"
    print(f"wrote {names} ({width}x{height}, seed {seed}{how}) in {took:.2f} s")


def _how(model: Model, width: int, height: int, image_bytes: int = IMAGE_BYTES_PER_PIXEL) -> str:
    """ ", in N exact tiles of WxH" where an image runs in exact tiles, else ""; a note on
    stderr where it is over --max-memory and the model cannot be tiled exactly."""
    layout = model.layout(width, height, image_bytes)
    if layout is None:
        whole = model.whole_bytes(width, height, image_bytes) + FIXED_BYTES
        if model.tiler is None and whole > model.max_memory:
            print(f"tn-run: note: {model.tiling_note}; tiled as before", file=sys.stderr)
        return ""
    count = layout.tiles_inside(height, width)
    return f", in {count} exact tiles of {layout.tile_w}x{layout.tile_h}"


def _stylize_targets(inputs: list[Path], output: Path) -> list[tuple[Path, Path]]:
    """(input, output) pairs: one file to one file, anything else into the folder `output`."""
    files = image_files(inputs)
    if not files:
        raise UserError(f"no images found in {', '.join(map(str, inputs))}; pass image files")
    if len(inputs) == 1 and not inputs[0].is_dir() and output.suffix:
        _check_output_name(output)
        return [(files[0], output)]
    if output.suffix.lower() in SAVE_FORMATS:
        raise UserError(f"several inputs need a folder for -o, not the image name {output}")
    pairs = []
    for f in files:
        suffix = f.suffix if f.suffix.lower() in SAVE_FORMATS else ".png"
        pairs.append((f, output / (f.stem + suffix)))
    seen: dict[tuple, Path] = {}
    for source, target in pairs:
        if (key := file_key(target)) in seen:
            raise UserError(
                f"{seen[key]} and {source} would both be written to {target}; "
                "stylize them into different folders"
            )
        seen[key] = source
    return pairs


@contextmanager
def _tile_bar(leave: bool) -> Iterator[Progress]:
    """A `stylize` progress callback: a tqdm bar of the image's tiles on stderr, opened at the
    first tile of an image in several (one tile shows nothing)."""
    bars: list[tqdm] = []

    def progress(done: int, total: int) -> None:
        if not bars and total > 1:
            bars.append(tqdm(total=total, unit="tile", leave=leave, file=sys.stderr))
        for bar in bars:
            bar.update(done - bar.n)

    try:
        yield progress
    finally:
        for bar in bars:
            bar.close()


def _style(args: argparse.Namespace) -> Style:
    return args.mix if args.mix is not None else args.style


def _stylize(model: Model, args: argparse.Namespace) -> None:
    pairs = _stylize_targets(args.inputs, args.output)
    refuse_overwriting_inputs([t for _, t in pairs], [args.model, *(s for s, _ in pairs)])
    check_outputs(t for _, t in pairs)
    start = time.perf_counter()
    failed, how = 0, ""
    for source, target in tqdm(pairs, unit="image", disable=len(pairs) < 2, file=sys.stderr):
        try:
            # An image whose buffers alone would not fit is refused before it is decoded.
            image = load_image(source, per_pixel=IMAGE_BYTES_PER_PIXEL, use="to stylize")
            how = _how(model, *image.size)
            with _tile_bar(leave=len(pairs) == 1) as progress:
                styled = model.stylize(
                    image,
                    progress,
                    strength=args.strength,
                    keep_colors=args.keep_colors,
                    style=_style(args),
                )
            save_image(styled, target)
        except UserError as e:
            if len(pairs) == 1:
                raise
            failed += 1
            tqdm.write(f"tn-run: skipped: {e.worded(FLAGS)}", file=sys.stderr)
    took = time.perf_counter() - start
    if failed:
        raise UserError(f"{failed} of {len(pairs)} images could not be stylized (listed above)")
    where = f"{pairs[0][1]}" + (f" ({how[2:]})" if how else "")
    if len(pairs) > 1:
        where = f"{len(pairs)} images into {args.output}"
    print(f"wrote {where} in {took:.2f} s")


def _video(model: Model, args: argparse.Namespace) -> None:
    refuse_overwriting_inputs([args.output], [args.model, args.input])
    check_outputs([args.output])
    bars: list[tqdm] = []

    def progress(done: int, total: int | None) -> None:
        if not bars:  # opened after the first frames: an error before them stays one line
            bars.append(tqdm(total=total, unit="frame", file=sys.stderr))
        bars[0].update(done - bars[0].n)

    try:
        result = stylize_video(
            model,
            args.input,
            args.output,
            args.size,
            strength=args.strength,
            keep_colors=args.keep_colors,
            style=_style(args),
            batch=args.batch,
            progress=progress,
        )
    finally:
        for bar in bars:
            bar.close()
    width, height = result.size
    rate = f"{float(result.rate):g} fps" if result.rate else "variable frame rate"
    audio = "audio copied" if result.audio else "no audio"
    print(
        f"wrote {result.path} ({result.frames} frames, {width}x{height}, {rate}, {audio}) "
        f"in {result.seconds:.2f} s"
    )


@cli_entry("tn-run", FLAGS)
def main(argv: list[str] | None = None) -> int:
    """tn-run synthesize MODEL --size WxH -o OUT | stylize MODEL INPUT... -o OUT |
    video MODEL IN -o OUT."""
    args = _parser().parse_args(argv)
    tile_pixels = getattr(args, "tile_pixels", DEFAULT_TILE_PIXELS)
    model = load(
        args.model,
        providers=args.providers,
        threads=args.threads,
        tile_pixels=tile_pixels,
        max_memory=args.max_memory * 1e6,
    )

    {"synthesize": _synthesize, "stylize": _stylize, "video": _video}[args.command](model, args)
    return 0
