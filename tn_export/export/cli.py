"""tn-export: turn a generator checkpoint into ONNX, ORT and Core ML files, each validated first.

The command line of `tn_export.export` (pipeline.py), which does the work: every artifact is
built and checked against PyTorch in a hidden scratch folder and only then renamed into place.
One that fails its check is never installed. A Core ML model whose numbers could not be checked
("not verified": the reference evaluator lacks an op) is not installed either, unless
--allow-unverified says to ship it anyway; the table then says NOT VERIFIED and export.json
records it.
"""

from __future__ import annotations

import argparse
import inspect
import sys
from pathlib import Path

from tqdm import tqdm

from ..budget import MAX_SIDE, number
from ..cli import command_parser
from ..errors import UserError, cli_entry
from ..sizes import parse_sizes
from .formats import FORMATS, REFUSED
from .pipeline import DEFAULT_SIZES, ExportResult, Sizes, disk_size, export

# --- command line -----------------------------------------------------------------------------

# tn_export.export's parameters (and the contract's size bounds) as this command's flags.
FLAGS = {
    "precision": "--precision",
    "format": "--format",
    "image_io": "--image-io",
    "name": "--name",
    "min_size": "--min-size",
    "max_size": "--max-size",
    "shapes": "--shapes",
}
# The API's defaults are the command's: written once, in `export`'s signature.
_API = inspect.signature(export).parameters


def _parser() -> argparse.ArgumentParser:
    p = command_parser("tn-export", __doc__.splitlines()[0])
    p.add_argument(
        "checkpoint",
        nargs="?",
        type=Path,
        help="tn-train model.pt, a texture_nets v1 *.t7, or a bundled model's name: "
        "red_peppers (the default) or starry",
    )
    p.add_argument(
        "--format",
        required=True,
        choices=[*FORMATS, "all", *REFUSED],
        help=f"all = {' + '.join(FORMATS)}, those installed; {', '.join(REFUSED)}: refused, "
        "with the reason",
    )
    out = Path(_API["output_dir"].default)
    p.add_argument("-o", "--out", type=Path, default=out, help="output folder")
    p.add_argument("--name", help="file name stem (default: the checkpoint's run folder or stem)")
    defaults = ", ".join(f"{f.precisions[0]} for {f.name}" for f in FORMATS.values())
    p.add_argument(
        "--precision",
        choices=list(dict.fromkeys(q for f in FORMATS.values() for q in f.precisions)),
        help=f"default: {defaults}; each format has its own (see the README's format table)",
    )
    sizes = p.add_mutually_exclusive_group()
    side = number(int, 1, MAX_SIDE)
    lo, hi = DEFAULT_SIZES
    sizes.add_argument("--min-size", type=side, help=f"smallest width and height (default: {lo})")
    sizes.add_argument(
        "--shapes",
        type=parse_sizes,
        help="enumerated WIDTHxHEIGHT sizes instead of a range, e.g. 256x256,512x384 "
        "(default: the range)",
    )
    p.add_argument("--max-size", type=side, help=f"largest width and height (default: {hi})")
    p.add_argument(
        "--image-io",
        action="store_true",
        help="Core ML: image output (and image input for style models)",
    )
    p.add_argument(
        "--batch",
        choices=["dynamic", "1"],
        default="dynamic" if _API["dynamic_batch"].default else "1",
        help="ONNX/ORT batch dimension",
    )
    p.add_argument(
        "--no-tiling-parts",
        dest="tiling_parts",
        action="store_false",
        help="ONNX: leave out NAME.coarse.onnx and NAME.fine.onnx (two more exports), which "
        "tn-run needs to tile large images exactly; it cross-fades tiles without them",
    )
    p.add_argument(
        "--allow-unverified",
        action="store_true",
        help="install a Core ML model even when its numbers could not be checked",
    )
    p.add_argument(
        "--verbose",
        action="store_true",
        help="show the converters' own progress bars, banners and warnings",
    )
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    return p


def _sizes(args: argparse.Namespace) -> Sizes:
    """--shapes, or --min-size and --max-size with their defaults."""
    if args.shapes is None:
        lo, hi = DEFAULT_SIZES
        return (
            lo if args.min_size is None else args.min_size,
            hi if args.max_size is None else args.max_size,
        )
    if args.max_size is not None:
        raise UserError("--shapes and --max-size exclude each other; give one or the other")
    return args.shapes


# --- report -----------------------------------------------------------------------------------


def _human(n: int) -> str:
    if n < 1000:
        return f"{n} B"
    kb = n / 1000
    return f"{kb:.1f} KB" if kb < 1000 else f"{kb / 1000:.1f} MB"


def _verdict(a: ExportResult) -> str:
    v = a.validation
    if a.skipped:
        return f"skipped: {a.skipped}"
    summary = v.summary if v.ok is not None else f"NOT VERIFIED ({v.summary})"
    delegation = v.details.get("delegation")  # what a delegate (ExecuTorch's XNNPACK) runs
    if delegation:
        summary += f"; {delegation['flops_delegated']:.1%} of FLOPs on {v.details['delegate']}"
    return summary


def table(results: list[ExportResult]) -> str:
    """The summary printed after an export, one row per artifact."""
    head = ("Format", "Precision", "Artifact", "Size", "Inputs -> outputs", "Validation", "Time")
    rows = [head]
    for a in results:
        named = [f"{k} ({', '.join(v)})" if v else k for k, v in a.io.items()]
        io = ", ".join(named[:-1]) + " -> " + named[-1] if named else ""  # one output, last
        rows.append(
            (
                FORMATS[a.format].label,
                a.precision,
                str(a.path) if a.installed else "-" if a.skipped else f"{a.path} (not written)",
                _human(disk_size(a.path)) if a.installed else "-",
                io or "-",
                _verdict(a),
                f"{a.seconds:.1f} s",
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(head) - 1)]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(r[:-1], widths, strict=True)) + "  " + r[-1]
        for r in rows
    )


def _warn(text: str) -> None:
    tqdm.write(f"tn-export: {text}", file=sys.stderr)  # above the progress bar, not through it


@cli_entry("tn-export", FLAGS)
def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = _parser().parse_args(argv)
    results = export(
        args.checkpoint,
        formats=args.format,
        output_dir=args.out,
        precision=args.precision,
        sizes=_sizes(args),
        name=args.name,
        image_io=args.image_io,
        dynamic_batch=args.batch == "dynamic",
        tiling_parts=args.tiling_parts,
        allow_unverified=args.allow_unverified,
        command=["tn-export", *argv],
        log=_warn,
        progress=True,
        verbose=args.verbose or args.debug,
    )
    print(table(results))
    failed = [r for r in results if not r.installed and not r.skipped]
    if failed:
        names = ", ".join(FORMATS[r.format].label for r in failed)
        print(
            f"tn-export: failed: {names} not verified or out of tolerance; not written",
            file=sys.stderr,
        )
        return 1
    return 0
