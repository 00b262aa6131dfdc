"""tn-train: train a texture (noise -> texture) or style (content + noise -> stylized) generator."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tn_export import budget
from tn_export.atomic import check_outputs, full_disk_names, refuse_overwriting_inputs
from tn_export.budget import number
from tn_export.cli import command_parser, defaults, flags, given
from tn_export.descriptor import STYLE_LAYERS, TEXTURE_LAYERS
from tn_export.errors import Terminated, UserError, cli_entry
from tn_export.images import image_files

from .data import load_exemplar
from .train import PAPER, RECIPES, TrainConfig, TrainingError, train

POSITIVE, WEIGHT = number(int, 1), number(float, 0)
DEFAULTS = defaults(TrainConfig)  # the recipe (None: RECIPES, by mode); the parser uses these


def _layers(text: str) -> tuple[str, ...] | None:
    return tuple(text.split(",")) if text else None  # empty: the mode's default layers


def _parser() -> argparse.ArgumentParser:
    parser = command_parser("tn-train", __doc__)
    sub = parser.add_subparsers(dest="mode", required=True)
    texture = sub.add_parser("texture", help="noise -> texture")
    texture.add_argument(
        "--texture", dest="exemplar", required=True, type=Path, help="the texture image"
    )
    style = sub.add_parser("style", help="content image + noise -> stylized image")
    style.add_argument("--style", dest="exemplar", required=True, type=Path, help="the style image")
    styles = sub.add_parser(
        "styles", help="several styles in one generator (conditional instance norms)"
    )
    styles.add_argument(
        "--style", dest="exemplars", required=True, nargs="+", type=Path, help="the style images"
    )
    for p in (style, styles):
        p.add_argument("--content", required=True, nargs="+", help="content images or folders")
    for p in (texture, style, styles):
        d = DEFAULTS | RECIPES["texture" if p is texture else "style"]
        p.set_defaults(**{k: v for k, v in DEFAULTS.items() if k not in PAPER})
        p.add_argument("-o", "--out", required=True, type=Path, help="run folder")
        side, count = number(int, 1, budget.MAX_SIDE), number(int, 1, budget.count())
        p.add_argument(
            "--image-size",
            type=side,
            help="side of the square training crops, in pixels (default: "
            f"{d['image_size']}; {PAPER['image_size']} with --preset paper)",
        )
        p.add_argument(
            "--finish-size",
            type=side,
            help="side of the crops of the last --finish-last iterations: train small, finish "
            f"at the size samples are judged at (default: {d['finish_size']}; --image-size "
            "if that alone is given)",
        )
        p.add_argument(
            "--preset",
            choices=["recipe", "paper"],
            default="recipe",
            help="recipe: this project's (docs/training.md); paper: upstream texture_nets v1 "
            "(batch 16, 1500 iterations, lr 0.1 x0.8 every 300); options given win",
        )
        for flag, kind, what in (
            ("batch_size", count, "images per step"),
            ("iterations", POSITIVE, "optimizer steps"),
            ("lr", number(float, above=0), "Adam's learning rate"),
            ("lr_decay", number(float, at_most=1, above=0), "learning rate factor"),
            ("lr_step", POSITIVE, "iterations between learning rate decays"),
            (
                "clamp_last",
                number(int, 0),
                "final iterations that score the output clamped to [0, 1], as delivered",
            ),
            ("finish_last", number(int, 0), "final iterations trained on --finish-size crops"),
        ):
            p.add_argument(
                f"--{flag.replace('_', '-')}",
                type=kind,
                help=f"{what} (default: {d[flag]}; {PAPER[flag]} with --preset paper)",
            )
        layers = TEXTURE_LAYERS if p is texture else STYLE_LAYERS
        p.add_argument(
            "--layers",
            type=_layers,
            help=f"descriptor layers matched, comma-separated (default: {','.join(layers)})",
        )
        p.add_argument("--content-layer", help="style: the layer the content loss compares")
        p.add_argument("--style-weight", type=WEIGHT, help="weight of the Gram (style) loss")
        p.add_argument(
            "--gram-loss",
            choices=["absolute", "relative"],
            help="relative divides each layer's Gram error by its target's mean square "
            "(default: absolute for texture, relative for style)",
        )
        p.add_argument(
            "--normalize-gradients",
            action=argparse.BooleanOptionalAction,
            help="divide the gradient of each layer's Gram term by its L1 norm (upstream's "
            f"-normalize_gradients): every layer pulls alike (default: {d['normalize_gradients']})",
        )
        p.add_argument("--content-weight", type=WEIGHT, help="style: weight of the content loss")
        p.add_argument("--tv-weight", type=WEIGHT, help="weight of the total variation loss")
        p.add_argument(
            "--diversity-weight",
            type=WEIGHT,
            help="weight of the term that keeps the samples of a batch apart",
        )
        if p is not styles:  # several styles: conditional norms, one scale and shift per style
            p.add_argument("--norm", choices=["batch", "instance"], help="the generator's norms")
        p.add_argument(
            "--padding",
            choices=["circular", "reflect", "zero"],
            # Style photos do not tile: reflection, where a texture wraps around.
            default=d["padding"] if p is texture else "reflect",
            help="the generator's convolution padding",
        )
        p.add_argument(
            "--descriptor", choices=["vgg19", "vgg16", "random"], help="the frozen loss network"
        )
        p.add_argument(
            "--descriptor-weights",
            help="torchvision-layout VGG state dict (default: $TN_DESCRIPTOR_WEIGHTS, else "
            "torchvision's cache)",
        )
        for part in ("descriptor", "generator"):
            p.add_argument(
                f"--{part}-precision",
                choices=["auto", "fp32", "bf16"],
                help=f"bf16 autocasts the {part} (about 2x faster where bf16 is native); "
                "auto: bf16 on CUDA GPUs and on CPUs with AVX512-BF16 or AMX, else fp32",
            )
        p.add_argument(
            "--seed", type=number(int, 0, budget.MAX_SEED), help="weights, noise and crops"
        )
        p.add_argument("--device", choices=["cpu", "cuda"], help="where to train")
        p.add_argument(
            "--checkpoint-every", type=POSITIVE, help="iterations between saves of model.pt"
        )
        p.add_argument(
            "--sample-every",
            type=POSITIVE,
            help="iterations between samples and eval_distance in log.jsonl",
        )
        p.add_argument("--log-every", type=POSITIVE, help="iterations between log.jsonl rows")
        p.add_argument("--resume", action="store_true", help="continue from OUT/model.pt")
        p.add_argument(
            "--overwrite",
            action="store_true",
            help="start a new run in a folder that holds one, replacing its model.pt and log",
        )
        p.add_argument("--debug", action="store_true", help="show tracebacks")
    return parser


def _schedule(args: argparse.Namespace) -> dict:
    """Batch size, iterations and learning-rate schedule: given options, else the preset's."""
    preset = PAPER if args.preset == "paper" else {}
    asked = {k: getattr(args, k) for k in PAPER if getattr(args, k) is not None}
    return {k: DEFAULTS[k] for k in PAPER} | preset | asked


def _styles(args: argparse.Namespace) -> dict:
    """tn-train styles: a style model whose conditional norms hold every --style, in order."""
    if args.mode != "styles":
        return {}
    names = [path.stem for path in args.exemplars]
    if len(set(names)) < len(names):
        twice = next(n for n in names if names.count(n) > 1)
        raise UserError(
            f"two styles are named {twice!r} (a style's name is its file name without the "
            "suffix, as tn-run --style takes it); rename one"
        )
    first, *more = args.exemplars
    return {"mode": "style", "exemplar": first, "more_styles": more, "norm": "conditional"}


def config(args: argparse.Namespace) -> TrainConfig:
    """The run's TrainConfig: the options given, the preset's schedule, TrainConfig's defaults."""
    relative = None if args.gram_loss is None else args.gram_loss == "relative"
    chosen = given(args, TrainConfig) | _schedule(args) | {"relative_loss": relative}
    return TrainConfig(**chosen | _styles(args))


def _check_run_folder(out: Path, resume: bool, overwrite: bool) -> None:
    """A new run goes into a new or empty folder, so that it never replaces another run's
    model.pt or mixes its log with it: anything else needs --resume or --overwrite."""
    if resume and overwrite:
        raise UserError("--resume continues the run in -o, --overwrite replaces it; give one")
    if resume or overwrite or not out.is_dir():
        return
    try:
        holds = next(iter(sorted(out.iterdir())), None)
    except OSError as e:
        raise UserError(f"cannot read run folder {out}: {e.strerror}; choose another -o") from e
    if holds is not None:
        raise UserError(
            f"run folder {out} is not empty ({holds.name}: another run?); add --resume to "
            "continue it, choose a new -o, or add --overwrite to replace it"
        )


@cli_entry("tn-train", flags(TrainConfig))
def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    # What train() writes into the run folder; no input may be among it.
    written = [args.out / "model.pt", args.out / "log.jsonl", args.out / "samples"]
    cfg = config(args)
    refuse_overwriting_inputs(written, [*cfg.exemplars, *image_files(cfg.content)])
    for exemplar in cfg.exemplars:  # a bad exemplar fails here, before any model is built
        load_exemplar(exemplar)
    _check_run_folder(args.out, args.resume, args.overwrite)
    check_outputs(written[:2], written[2:])  # once every argument is good: no stray folders
    try:
        with full_disk_names(args.out, "the checkpoints written so far are kept"):
            path = train(cfg)
    except TrainingError as e:
        print(f"tn-train: failed: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as e:  # Ctrl-C, or SIGTERM (Terminated)
        kept = cfg.out / "model.pt"  # train() saved the last finished iteration there
        hint = f"; {kept} is kept: add --resume to continue" if kept.is_file() else ""
        word, status = ("terminated", 143) if isinstance(e, Terminated) else ("interrupted", 130)
        print(f"tn-train: {word}{hint}", file=sys.stderr)
        return status
    print(f"tn-train: wrote {path}")
    return 0
