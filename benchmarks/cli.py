"""tn-bench: measure a texture generator against the Gatys et al. optimisation, and report.

tn-bench [run] [--model CHECKPOINT] [--sizes 256,512,1024,768x512] [--backends ...] [--quick] -o DIR
tn-bench report DIR/results.json [-o DIR] [--notes FILE]
tn-bench quality MODEL --exemplar IMG [--against IMG ...] [--photos IMG ... [--gatys S]] -o DIR
tn-bench train-speed [--image-size 256] [--batch-size 4] [--iterations 4] [--rounds 3] -o DIR
tn-bench training-curve RUN [RUN ...] [--reference NAME=DISTANCE ...] -o FILE.png

`run` is the default: `tn-bench -o DIR` is `tn-bench run -o DIR`.
"""

from __future__ import annotations

import argparse
import inspect
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tn_export import budget
from tn_export.atomic import atomic_path, check_outputs
from tn_export.budget import (
    DESCRIPTOR_BYTES_PER_PIXEL,
    MAX_PIXELS,
    MAX_SIDE,
    MAX_TILED_SIDE,
    number,
)
from tn_export.cli import command_parser, defaults, flags, given
from tn_export.errors import UserError, cli_entry
from tn_export.images import load_image
from tn_export.sizes import format_sizes, parse_size, parse_sizes

from .backends import BACKENDS, GROUPS
from .config import QUICK, BenchConfig, QualityConfig
from .train_speed import train_speed

if TYPE_CHECKING:
    from tn_export.generator import GeneratorConfig

VGG16_WEIGHTS_HELP = (
    "VGG-16 state dict (default: $TN_DESCRIPTOR_WEIGHTS "
    "or $TN_SHARED/descriptors/vgg16_imagenet_features.pth)"
)
OUTPUTS = ("results.json", "report.md", "report.html")  # and the folders plots/ and images/
BENCH, QUALITY = defaults(BenchConfig), defaults(QualityConfig)
TRAIN_SPEED = {k: p.default for k, p in inspect.signature(train_speed).parameters.items()}


def repo_shared() -> Path:
    """$TN_SHARED, else the `shared` folder beside the repository (textures, VGG weights)."""
    default = Path(__file__).resolve().parents[2] / "shared"
    return Path(os.environ.get("TN_SHARED", default))


def parse_backends(text: str) -> list[str]:
    """'torch,onnxruntime' -> the backends named, families expanded; an argparse `type`."""
    names: list[str] = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        if part not in GROUPS and part not in BACKENDS:
            choices = ", ".join([*GROUPS, *(b for b in BACKENDS if b not in GROUPS)])
            raise argparse.ArgumentTypeError(f"unknown backend {part!r}; choose from {choices}")
        names += GROUPS.get(part, [part])
    return list(dict.fromkeys(names))


def parse_pixels(text: str) -> list[str]:
    """'sigmoid,unbounded' -> what Gatys optimises, each checked; an argparse `type`."""
    from .gatys import PIXELS

    names = list(dict.fromkeys(filter(None, (p.strip() for p in text.split(",")))))
    unknown = [n for n in names if n not in PIXELS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"{', '.join(unknown) or 'empty'}; choose from {', '.join(PIXELS)}"
        )
    return names


def _count() -> Callable[[str], int | float]:
    """An argparse type for a count of runs, seeds or samples: from 1 to the count limit."""
    return number(int, 1, budget.count())


SIDE = number(int, 1, MAX_SIDE)
SECONDS = number(float, above=0)
MEGABYTES = number(float, above=0)


def parse_megabytes(text: str) -> list[float]:
    """'64,128,256' -> memory bounds in MB, each checked; an argparse `type`."""
    return [MEGABYTES(p.strip()) for p in text.split(",") if p.strip()]


def _text(value: Any) -> str:
    """A default as the command line spells it: sizes as 256,768x512, lists comma-separated."""
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, list) and value and isinstance(value[0], tuple):
        return format_sizes(value)
    return ",".join(map(str, value)) if isinstance(value, list) else str(value)


def _default(field: str) -> str:
    """' (default: X)' of a BenchConfig field, with what --quick makes of it."""
    quick = f"; {_text(QUICK[field])} with --quick" if field in QUICK else ""
    return f" (default: {_text(BENCH[field])}{quick})"


def _run_options(p: argparse.ArgumentParser) -> None:
    """The benchmark run's options. Those of BenchConfig are absent from the parsed arguments
    unless given (argument_default=SUPPRESS), so that --quick fills in the rest."""
    p.add_argument("-o", "--out", type=Path, required=True, help="output folder")
    p.add_argument(
        "--model", type=Path, default=None, help="tn-train model.pt (default: the bundled model)"
    )
    p.add_argument(
        "--texture",
        type=Path,
        default=None,
        help="the texture the model was trained on "
        "(default: $TN_SHARED/data/textures/<exemplar from the checkpoint>)",
    )
    p.add_argument(
        "--descriptor-weights",
        default=None,
        help="VGG state dict (default: $TN_DESCRIPTOR_WEIGHTS "
        "or $TN_SHARED/descriptors/<descriptor>_imagenet_features.pth)",
    )
    p.add_argument("--sizes", type=parse_sizes, help="N or WIDTHxHEIGHT list" + _default("sizes"))
    p.add_argument(
        "--backends",
        type=parse_backends,
        help=f"any of {', '.join([*GROUPS, *BACKENDS])}" + _default("backends"),
    )
    p.add_argument(
        "--peer",
        action=argparse.BooleanOptionalAction,
        help="also measure Johnson et al.'s feed-forward transformer on torch and "
        "onnxruntime-fp32" + _default("peer"),
    )
    p.add_argument(
        "--gatys",
        action=argparse.BooleanOptionalAction,
        help="run the Gatys et al. baseline" + _default("gatys"),
    )
    p.add_argument(
        "--gatys-iterations",
        type=number(int, 1),
        help="optimiser steps" + _default("gatys_iterations"),
    )
    p.add_argument(
        "--gatys-seconds",
        type=SECONDS,
        help="wall-time budget per run" + _default("gatys_seconds"),
    )
    p.add_argument(
        "--gatys-optimizer",
        choices=["lbfgs", "adam"],
        help="Gatys's optimiser" + _default("gatys_optimizer"),
    )
    p.add_argument(
        "--gatys-pixels",
        type=parse_pixels,
        help="what Gatys optimises: pixels = sigmoid(z), and/or the pixels themselves (clamped "
        "on delivery); the one reaching parity sooner is the baseline" + _default("gatys_pixels"),
    )
    p.add_argument(
        "--gatys-seeds",
        type=_count(),
        help="Gatys runs per parametrisation, for the 95 %% interval" + _default("gatys_seeds"),
    )
    p.add_argument("--gatys-size", type=SIDE, help="time-to-parity size" + _default("gatys_size"))
    p.add_argument(
        "--gatys-memory-size",
        type=SIDE,
        help="size of the Gatys memory run" + _default("gatys_memory_size"),
    )
    p.add_argument(
        "--tiling",
        action=argparse.BooleanOptionalAction,
        help="measure exact tiles against whole images (memory bounds, latency, a large "
        "texture and photo)" + _default("tiling"),
    )
    p.add_argument(
        "--tiling-bounds",
        type=parse_megabytes,
        metavar="MB,...",
        help="memory bounds at --gatys-memory-size" + _default("tiling_bounds"),
    )
    p.add_argument(
        "--tiling-max-memory",
        type=MEGABYTES,
        metavar="MB",
        help="the bound of the tiled latency and large runs" + _default("tiling_max_memory"),
    )
    p.add_argument(
        "--tiling-latency-size",
        type=SIDE,
        help="side timed tiled against whole" + _default("tiling_latency_size"),
    )
    p.add_argument(
        "--tiling-size",
        type=number(int, 1, MAX_TILED_SIDE),
        help="side of the large texture and photo" + _default("tiling_size"),
    )
    p.add_argument(
        "--tiling-photo",
        type=Path,
        help="the photo stylized at --tiling-size (default: $TN_SHARED/data/content/tiger.jpg)",
    )
    p.add_argument("--runs", type=_count(), help="timed runs" + _default("runs"))
    p.add_argument("--warmup", type=_count(), help="untimed warm-up runs" + _default("warmup"))
    p.add_argument(
        "--threads",
        type=number(int, 1, budget.threads()),
        help="threads for every backend and Gatys (default: all cores)",
    )
    p.add_argument(
        "--samples", type=_count(), help="generator samples scored" + _default("samples")
    )
    p.add_argument(
        "--cell-budget",
        dest="cell_budget_s",
        type=SECONDS,
        help="skip a backend x size whose estimated time exceeds this many seconds"
        + _default("cell_budget_s"),
    )
    p.add_argument(
        "--quick", action="store_true", default=False, help="small sizes and budgets (minutes)"
    )
    p.add_argument(
        "--notes",
        type=Path,
        default=None,
        help="a closing note (markdown) for the report (default: none)",
    )
    p.add_argument("--debug", action="store_true", default=False, help="show tracebacks")


def _report_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("results", type=Path, help="a results.json written by tn-bench")
    p.add_argument("-o", "--out", type=Path, help="output folder (default: beside results.json)")
    p.add_argument(
        "--notes", type=Path, help="a closing note (markdown) for the report (default: none)"
    )
    p.add_argument("--debug", action="store_true", help="show tracebacks")


def _train_speed_options(p: argparse.ArgumentParser) -> None:
    d = TRAIN_SPEED
    p.add_argument("-o", "--out", type=Path, required=True, help="output folder")
    p.add_argument(
        "--image-size", type=SIDE, default=d["image_size"], help="side of the training crops"
    )
    p.add_argument("--batch-size", type=_count(), default=d["batch_size"], help="images per step")
    p.add_argument(
        "--iterations", type=_count(), default=d["iterations"], help="timed steps per run"
    )
    p.add_argument("--rounds", type=_count(), default=d["rounds"], help="runs per setting")
    p.add_argument(
        "--texture",
        type=Path,
        help="the texture trained on (default: $TN_SHARED/data/textures/red-peppers.jpg)",
    )
    p.add_argument("--descriptor-weights", help=VGG16_WEIGHTS_HELP)
    p.add_argument("--debug", action="store_true", help="show tracebacks")


def _quality_options(p: argparse.ArgumentParser) -> None:
    d = QUALITY
    p.add_argument(
        "model",
        help="a tn-train model.pt, a bundled name (red_peppers, starry), a released .t7, "
        "or an exported .onnx/.ort",
    )
    p.add_argument("--exemplar", type=Path, required=True, help="the texture or style image")
    p.add_argument(
        "--against", type=Path, nargs="*", default=[], help="other textures (default: none)"
    )
    p.add_argument(
        "--photos", type=Path, nargs="*", default=[], help="style models: photos (default: none)"
    )
    p.add_argument(
        "--style", help="models of several styles: the style scored (default: the first)"
    )
    p.add_argument(
        "--size",
        type=parse_size,
        default=d["size"],
        help=f"sample size, N or WIDTHxHEIGHT (default: {format_sizes([d['size']])})",
    )
    p.add_argument(
        "--gatys",
        dest="gatys_seconds",
        type=number(float, 0),
        default=d["gatys_seconds"],
        metavar="SECONDS",
        help="style models: also run Gatys et al. on each photo until it reaches the generator's "
        "training loss, at most SECONDS per parametrisation (default: 0, not run)",
    )
    p.add_argument("--samples", type=_count(), default=d["samples"], help="seeds scored")
    p.add_argument(
        "--seed", type=number(int, 0, budget.MAX_SEED), default=d["seed"], help="first seed"
    )
    p.add_argument("--descriptor-weights", help=VGG16_WEIGHTS_HELP)
    p.add_argument("-o", "--out", type=Path, required=True, help="output folder")
    p.add_argument("--debug", action="store_true", help="show tracebacks")


def _curve_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("runs", type=Path, nargs="+", help="tn-train run folders (with log.jsonl)")
    p.add_argument(
        "--reference",
        action="append",
        default=[],
        help="NAME=DISTANCE: a horizontal line, e.g. released=14569 (repeatable; default: none)",
    )
    p.add_argument("-o", "--out", type=Path, required=True, help="the PNG to write")
    p.add_argument("--debug", action="store_true", help="show tracebacks")


def _int8_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", nargs="?", help="checkpoint or bundled model (default: red_peppers)")
    p.add_argument("--size", type=SIDE, default=256, help="side PSNR is measured at")
    p.add_argument("--speed-size", type=SIDE, default=512, help="side latency is timed at")
    p.add_argument("--repeats", type=number(int, 1), default=5, help="timed runs per setting")
    p.add_argument("-o", "--out", type=Path, required=True, help="output folder")
    p.add_argument("--debug", action="store_true", help="show tracebacks")


def parser() -> argparse.ArgumentParser:
    """tn-bench and its subcommands (`main` takes `run` where the command line starts with an
    option)."""
    p = command_parser("tn-bench", __doc__.splitlines()[0])
    commands = p.add_subparsers(
        dest="subcommand",
        required=True,
        metavar="COMMAND",
        description="`tn-bench -o DIR [options]` is `tn-bench run -o DIR [options]`; "
        "`tn-bench COMMAND --help` lists each command's options.",
    )
    for name, options, summary, description in (
        (
            "run",
            _run_options,
            "the default: measure a generator on every backend against Gatys et al.",
            "Latency, memory, FLOPs and quality of a Texture Networks generator on each "
            "backend, against the Gatys et al. optimisation; writes results.json, report.md, "
            "report.html.",
        ),
        ("report", _report_options, "re-render a report from results.json", "Re-render a report."),
        (
            "quality",
            _quality_options,
            "judge a model before shipping it",
            "Judge a model before shipping it: the VGG-16 Gram distance of its delivered "
            "(clamped, 8-bit) samples to the exemplar, per layer, against other textures, "
            "diversity between seeds, element size and seam; writes DIR/quality.json and "
            "DIR/quality.png.",
        ),
        (
            "train-speed",
            _train_speed_options,
            "tn-train iterations per second, fp32 and bf16",
            "tn-train iterations per second with fp32, bf16-descriptor and bf16 autocast "
            "(texture mode, VGG-16); writes DIR/train_speed.json and DIR/train_speed.md.",
        ),
        (
            "training-curve",
            _curve_options,
            "plot tn-train's eval_distance against time",
            "Plot the Gram distance that tn-train logs (eval_distance) against training time "
            "for one or more runs.",
        ),
        (
            "int8",
            _int8_options,
            "int8's accuracy/speed curve, one row per quantization setting",
            "PSNR against fp32 (clamped, 8-bit outputs) and onnxruntime latency against fp32 "
            "of every int8 quantization setting; writes DIR/int8.json, DIR/int8.md, DIR/int8.png.",
        ),
    ):
        extra = {"argument_default": argparse.SUPPRESS} if name == "run" else {}
        options(commands.add_parser(name, help=summary, description=description, **extra))
    return p


def read_notes(path: Path | None) -> str | None:
    if path is None:
        return None
    if not path.is_file():
        raise UserError(f"--notes {path} does not exist; pass a text or markdown file")
    return path.read_text()


def _default_file(given: Path | str | None, fallback: Path) -> Path | None:
    if given:
        return Path(given)
    return fallback if fallback.is_file() else None


def descriptor_weights(given: str | None, descriptor: str) -> str | None:
    """VGG weights: `given`, else $TN_DESCRIPTOR_WEIGHTS, else the shared folder's file if there
    (None: the descriptor loader then tries torchvision's cache)."""
    from tn_export.descriptor import WEIGHTS_ENV

    weights = given or os.environ.get(WEIGHTS_ENV)
    if weights:
        return weights
    found = _default_file(
        None, repo_shared() / "descriptors" / f"{descriptor}_imagenet_features.pth"
    )
    return str(found) if found else None


def vgg16_weights(given: str | None) -> str:
    """The VGG-16 weights file that train-speed and quality need, or one line saying how."""
    weights = descriptor_weights(given, "vgg16")
    if weights is None or not Path(weights).is_file():
        raise UserError(
            f"no VGG-16 weights ({weights or 'none found'}); pass --descriptor-weights PATH "
            "or set $TN_DESCRIPTOR_WEIGHTS"
        )
    return weights


def make_config(args: argparse.Namespace, argv: list[str]) -> BenchConfig:
    """Resolve defaults (model, texture, VGG weights, quick budgets) into a BenchConfig."""
    from tn_export.checkpoint import DEFAULT_MODEL, load_checkpoint

    from .run import command_line

    model = args.model or DEFAULT_MODEL
    if args.model is None and not model.is_file():
        raise UserError(f"the bundled model {model} is missing; pass --model CHECKPOINT")
    checkpoint = load_checkpoint(model)
    metadata = checkpoint.metadata
    shared = repo_shared()
    exemplar = metadata.get("exemplar")
    texture = _default_file(args.texture, shared / "data" / "textures" / (exemplar or "-"))
    if texture is not None and not texture.is_file():
        raise UserError(f"--texture {texture} does not exist; pass the texture the model learnt")
    if texture is not None:  # Gatys and the quality scores describe it at its own size
        load_image(texture, per_pixel=DESCRIPTOR_BYTES_PER_PIXEL, use="described by VGG")
    options = (QUICK if args.quick else {}) | given(args, BenchConfig)
    if texture is None and options.get("gatys", BENCH["gatys"]):
        raise UserError(
            f"no texture for the Gatys baseline: the checkpoint's exemplar {exemplar!r} is not in "
            f"{shared / 'data' / 'textures'}; pass --texture PATH or --no-gatys"
        )
    weights = descriptor_weights(args.descriptor_weights, metadata.get("descriptor") or "vgg16")
    photo = _default_file(options.get("tiling_photo"), shared / "data" / "content" / "tiger.jpg")
    if photo is not None:
        load_image(photo)  # one line now rather than a failed run at the end
    resolved = {
        "model": Path(model),
        "texture": texture,
        "descriptor_weights": weights,
        "tiling_photo": photo,
    }
    cfg = BenchConfig(**options | resolved, command=command_line(argv))
    check_sizes(cfg, checkpoint.config)
    return cfg


def check_sizes(cfg: BenchConfig, config: GeneratorConfig) -> None:
    """Every size (and the Gatys sizes) must be a positive multiple of the model's size multiple,
    at most MAX_SIDE and MAX_PIXELS, and its run must fit the memory budget: refused here,
    before anything is allocated."""
    multiple = config.size_multiple
    budget.check_count(len(cfg.sizes), "--sizes: the number of sizes")
    sizes = [*cfg.sizes, (cfg.gatys_size,) * 2, (cfg.gatys_memory_size,) * 2]
    bad = [
        f"{w}x{h}"
        for w, h in sizes
        if w % multiple
        or h % multiple
        or min(w, h) < 2 * multiple
        or max(w, h) > MAX_SIDE
        or w * h > MAX_PIXELS
    ]
    if bad:
        raise UserError(
            f"size(s) {', '.join(dict.fromkeys(bad))} do not fit this model: width and height "
            f"must be multiples of {multiple}, at least {2 * multiple} and at most {MAX_SIDE}, "
            f"at most {MAX_PIXELS} pixels in all"
        )
    w, h = max(cfg.sizes, key=lambda s: s[0] * s[1])
    run = budget.generator_bytes_per_pixel(config.scales, config.channels, config.input_channels)
    budget.check_memory(w * h * run, f"one run of the model at {w}x{h}", "lower --sizes")
    if cfg.gatys:
        side = max(cfg.gatys_size, cfg.gatys_memory_size)
        gatys = side * side * budget.DESCRIPTOR_TRAINING_BYTES_PER_PIXEL
        budget.check_memory(gatys, f"Gatys at {side}x{side}", "lower --gatys-size")


@cli_entry("tn-bench", flags(BenchConfig, QualityConfig))
def main(argv: list[str] | None = None) -> int:
    argv = list(argv or [])
    first = argv[0] if argv else None
    # Options first, or nothing: the benchmark run, as `tn-bench -o DIR` has always meant. A
    # first word that is no command is a command mistyped, and argparse says so.
    named = first is not None and (first in ("-h", "--help", "--version") or first[:1] != "-")
    args = parser().parse_args(argv if named else ["run", *argv])
    return COMMANDS[args.subcommand](args, argv)


def run_main(args: argparse.Namespace, argv: list[str]) -> int:
    # Heavy imports (torch) only after the arguments parsed, so --help and typos answer at once.
    from .report import render, write_results
    from .run import run_benchmark
    from .schema import validate

    cfg = make_config(args, argv)
    notes = read_notes(args.notes)
    out = cfg.out
    check_outputs([out / n for n in OUTPUTS], [out / "plots", out / "images"])
    results = run_benchmark(cfg)
    validate(results)
    write_results(results, cfg.out / "results.json")
    for path in [cfg.out / "results.json", *render(results, cfg.out, cfg.out, notes)]:
        print(path)
    return 0


def report_main(args: argparse.Namespace, argv: list[str]) -> int:
    from .report import render
    from .schema import load_results

    results = load_results(args.results)
    out = args.out or args.results.parent
    for path in render(results, out, args.results.parent, read_notes(args.notes)):
        print(path)
    return 0


def train_speed_main(args: argparse.Namespace, argv: list[str]) -> int:
    from tn_export.generator import GeneratorConfig

    from .report import write_results
    from .train_speed import speed_table

    shared = repo_shared()
    texture = _default_file(args.texture, shared / "data" / "textures" / "red-peppers.jpg")
    if texture is None or not texture.is_file():
        raise UserError(f"no texture at {texture or shared / 'data' / 'textures'}; pass --texture")
    weights = vgg16_weights(args.descriptor_weights)
    cfg = GeneratorConfig("texture")
    step = args.batch_size * args.image_size**2
    per_pixel = budget.training_bytes_per_pixel(cfg.scales, cfg.channels, cfg.input_channels)
    what = f"a training step of --batch-size {args.batch_size} x --image-size {args.image_size}"
    budget.check_memory(step * per_pixel, what, "lower them")
    check_outputs([args.out / "train_speed.json", args.out / "train_speed.md"])
    result = train_speed(
        weights, str(texture), image_size=args.image_size, batch_size=args.batch_size,
        iterations=args.iterations, rounds=args.rounds,
    )  # fmt: skip
    table = speed_table(result)
    write_results(result, args.out / "train_speed.json")
    with atomic_path(args.out / "train_speed.md") as tmp:
        tmp.write_text(table + "\n")
    print(table)
    return 0


def quality_main(args: argparse.Namespace, argv: list[str]) -> int:
    from .judge import quality_table, run_quality

    size = args.size
    if max(size) > MAX_SIDE or size[0] * size[1] > MAX_PIXELS:
        text = format_sizes([size])
        raise UserError(f"--size {text} is over the limit of {MAX_SIDE}x{MAX_SIDE} pixels")
    # The samples are kept as float32 RGB; each is described at its size.
    samples = size[0] * size[1] * (12 * args.samples + DESCRIPTOR_BYTES_PER_PIXEL)
    what = f"{args.samples} samples of {size[0]}x{size[1]}"
    budget.check_memory(samples, what, "lower --samples or --size")
    weights = vgg16_weights(args.descriptor_weights)
    for path in [args.exemplar, *args.against, *args.photos]:
        # A bad image fails here, before any model is loaded; each is described at its size.
        load_image(path, per_pixel=DESCRIPTOR_BYTES_PER_PIXEL, use="described by VGG")
    check_outputs([args.out / "quality.json", args.out / "quality.png"])
    cfg = QualityConfig(**given(args, QualityConfig) | {"descriptor_weights": weights})
    print(quality_table(run_quality(cfg)))
    return 0


def curve_main(args: argparse.Namespace, argv: list[str]) -> int:
    from .plots import training_curves

    logs = {}
    for run in args.runs:
        if not (run / "log.jsonl").is_file():
            raise UserError(f"{run} has no log.jsonl; pass tn-train run folders")
        logs[run.name] = run / "log.jsonl"
    references = {}
    for item in args.reference:
        name, _, value = item.partition("=")
        try:
            references[name] = number(float)(value)
        except argparse.ArgumentTypeError as e:
            raise UserError(f"--reference {item!r} is not NAME=DISTANCE ({e})") from None
    if args.out.suffix.lower() != ".png":
        raise UserError(f"-o {args.out}: the curve is a PNG; name it e.g. curve.png")
    check_outputs([args.out])
    with atomic_path(args.out) as tmp:
        tmp.write_bytes(training_curves(logs, references))
    print(args.out)
    return 0


def int8_main(args: argparse.Namespace, argv: list[str]) -> int:
    from .int8_curve import int8_curve, table, write

    out = args.out
    check_outputs([out / "int8.json", out / "int8.md", out / "int8.png"])
    curve = int8_curve(args.model, args.size, args.speed_size, args.repeats)
    write(curve, out)
    print(table(curve), end="")
    return 0


COMMANDS: dict[str, Callable[[argparse.Namespace, list[str]], int]] = {
    "run": run_main,
    "report": report_main,
    "quality": quality_main,
    "train-speed": train_speed_main,
    "training-curve": curve_main,
    "int8": int8_main,
}
