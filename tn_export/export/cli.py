"""tn-export: turn a generator checkpoint into ONNX, ORT and Core ML files, each validated first.

Every artifact is built in a hidden scratch folder inside the output folder, checked against
PyTorch there, and only then renamed into place (atomic_path). One that fails its check is never
installed. A Core ML model whose numbers could not be checked ("not verified": the reference
evaluator lacks an op) is not installed either, unless --allow-unverified says to ship it anyway;
the table then says NOT VERIFIED and export.json records it.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import logging
import os
import re
import shutil
import socket
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .. import __version__
from ..atomic import atomic_path, check_writable_dir, refuse_overwriting_inputs
from ..budget import MAX_SIDE
from ..checkpoint import Checkpoint, load_model
from ..contract import ModelContract
from ..errors import ArgumentParser, UserError, cli_entry
from .graph import Validation
from .onnx import export_onnx
from .ort import to_ort, usability_report
from .precision import to_fp16, to_int8
from .validate import io_signature, session, validate_onnx

FORMATS = {
    "onnx": ("onnx",),
    "ort": ("ort",),
    "coreml": ("coreml",),
    "all": ("onnx", "ort", "coreml"),
}
PRECISIONS = {
    "onnx": ("fp32", "fp16", "int8"),
    "ort": ("fp32", "fp16", "int8"),
    "coreml": ("fp16", "fp32"),
}
DEFAULT_PRECISION = {"onnx": "fp32", "ort": "fp32", "coreml": "fp16"}
SUFFIX = {"onnx": ".onnx", "ort": ".ort", "coreml": ".mlpackage"}
LABEL = {"onnx": "ONNX", "ort": "ORT", "coreml": "Core ML"}
# Scratch folders: .NAME.export-PID-RANDOM, holding OWNER, the name of the host PID runs on.
SCRATCH = re.compile(r"\..+\.export-(\d+)-\w+")
OWNER = "owner"


@dataclass(frozen=True)
class ExportConfig:
    """What the command line asked for, checked; sizes are checked again against the model."""

    formats: tuple[str, ...]
    checkpoint: Path | None
    out: Path
    name: str | None
    precision: str | None  # None: each format's default (fp32 ONNX / ORT, fp16 Core ML)
    min_size: int
    max_size: int
    shapes: list[tuple[int, int]] | None
    image_io: bool
    dynamic_batch: bool
    allow_unverified: bool

    def precision_of(self, fmt: str) -> str:
        return self.precision or DEFAULT_PRECISION[fmt]


@dataclass
class Artifact:
    """One row of the table and of export.json."""

    format: str
    precision: str
    path: Path
    seconds: float = 0.0
    validation: Validation | None = None
    io: dict[str, list[str]] = field(default_factory=dict)
    side_files: list[Path] = field(default_factory=list)
    installed: bool = False

    @property
    def accepted(self) -> bool:
        return self.validation is not None and self.validation.ok is True


# --- command line -----------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="tn-export", description=__doc__.splitlines()[0])
    p.add_argument(
        "checkpoint",
        nargs="?",
        type=Path,
        help="tn-train model.pt, a texture_nets v1 *.t7, or a bundled model's name: "
        "red_peppers (the default) or starry",
    )
    p.add_argument(
        "--format", required=True, choices=list(FORMATS), help="all = onnx + ort + coreml"
    )
    p.add_argument("-o", "--out", type=Path, default=Path("exports"), help="output folder")
    p.add_argument("--name", help="file name stem (default: the checkpoint's run folder or stem)")
    p.add_argument(
        "--precision",
        choices=["fp32", "fp16", "int8"],
        help="default: fp32 for onnx/ort, fp16 for coreml; int8 is onnx/ort only",
    )
    sizes = p.add_mutually_exclusive_group()
    sizes.add_argument("--min-size", type=int, default=None, help="smallest H and W (default 64)")
    sizes.add_argument("--shapes", help="enumerated HxW sizes, e.g. 256x256,512x384")
    p.add_argument("--max-size", type=int, default=None, help="largest H and W (default 2048)")
    p.add_argument(
        "--image-io",
        action="store_true",
        help="Core ML: image output (and image input for style models)",
    )
    p.add_argument(
        "--batch", choices=["dynamic", "1"], default="dynamic", help="ONNX/ORT batch dimension"
    )
    p.add_argument(
        "--allow-unverified",
        action="store_true",
        help="install a Core ML model even when its numbers could not be checked",
    )
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    return p


def parse_shapes(text: str) -> list[tuple[int, int]]:
    """'256x256,512x384' -> [(256, 256), (512, 384)] as (height, width)."""
    shapes = []
    for item in text.split(","):
        match = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", item)
        if not match:
            raise UserError(
                f"--shapes item {item.strip()!r} is not HEIGHTxWIDTH; use e.g. 256x256,512x384"
            )
        shapes.append((int(match[1]), int(match[2])))
    return list(dict.fromkeys(shapes))


def _config(argv: list[str]) -> ExportConfig:
    args = _parser().parse_args(argv)
    if args.shapes is not None and args.max_size is not None:
        raise UserError("--shapes and --max-size exclude each other; give one or the other")
    formats = FORMATS[args.format]
    for fmt in formats:
        if args.precision and args.precision not in PRECISIONS[fmt]:
            raise UserError(
                f"--precision {args.precision} is not available for {LABEL[fmt]}; "
                f"use {' or '.join(PRECISIONS[fmt])}"
            )
    if args.image_io and "coreml" not in formats:
        raise UserError("--image-io applies to Core ML only; use --format coreml or all")
    if args.name is not None and (
        not args.name or args.name.startswith(".") or os.sep in args.name or "/" in args.name
    ):
        raise UserError(f"--name {args.name!r} must be a plain file name such as red_peppers")
    shapes = parse_shapes(args.shapes) if args.shapes is not None else None
    if shapes:
        dims = [d for shape in shapes for d in shape]
        lo, hi = min(dims), max(dims)
    else:
        lo = 64 if args.min_size is None else args.min_size
        hi = 2048 if args.max_size is None else args.max_size
        if lo > hi:
            raise UserError(f"--min-size {lo} is larger than --max-size {hi}")
    if hi > MAX_SIDE:  # before anything is built: validation would run at this size
        raise UserError(
            f"size {hi} is over the largest side tn-export builds, {MAX_SIDE} pixels; "
            "use e.g. --max-size 2048"
        )
    if lo == hi:
        raise UserError(
            f"sizes give only {lo}x{lo}; a flexible model needs a range, "
            "e.g. --min-size 64 --max-size 2048 or two different --shapes"
        )
    return ExportConfig(
        formats=formats,
        checkpoint=args.checkpoint,
        out=args.out,
        name=args.name,
        precision=args.precision,
        min_size=lo,
        max_size=hi,
        shapes=shapes,
        image_io=args.image_io,
        dynamic_batch=args.batch == "dynamic",
        allow_unverified=args.allow_unverified,
    )


# --- model and contract -----------------------------------------------------------------------


def default_name(path: Path) -> str:
    """runs/bricks/model.pt -> bricks; upstream's bricks.png_model.t7 -> bricks; else the stem."""
    if path.name == "model.pt" and path.resolve().parent.name:
        return path.resolve().parent.name
    if path.stem.endswith("_model"):
        return Path(path.stem.removesuffix("_model")).stem or path.stem
    return path.stem


def _check_sizes(cfg: ExportConfig, multiple: int) -> None:
    what = "--shapes" if cfg.shapes else "--min-size/--max-size"
    for size in (d for s in cfg.shapes for d in s) if cfg.shapes else (cfg.min_size, cfg.max_size):
        if size < multiple or size % multiple:
            fix = max(multiple, size // multiple * multiple)
            raise UserError(
                f"{what}: {size} is not a positive multiple of {multiple}, this model's size "
                f"multiple; use e.g. {fix}"
            )


def build_contract(ckpt: Checkpoint, cfg: ExportConfig, name: str) -> ModelContract:
    """The model's contract from its generator config, its training metadata and the options."""
    config, meta = ckpt.config, ckpt.metadata
    _check_sizes(cfg, config.size_multiple)
    training = {
        "descriptor": meta.get("descriptor"),
        "exemplar": meta.get("exemplar"),
        "iterations": meta.get("iteration"),
        "loss": meta.get("loss"),
        "source": meta.get("source"),
    }
    training = {k: v for k, v in training.items() if v is not None}
    trained_on = f" trained on {training['exemplar']}" if "exemplar" in training else ""
    return ModelContract(
        mode=config.mode,
        noise_depth=config.noise_depth,
        size_multiple=config.size_multiple,
        min_size=cfg.min_size,
        max_size=cfg.max_size,
        padding=config.padding,
        norm=config.norm,
        name=name,
        description=f"Texture Networks {config.mode} generator{trained_on}",
        tool_version=__version__,
        training=training,
    )


# --- exports ----------------------------------------------------------------------------------


def _onnx_in(
    scratch: Path,
    ckpt: Checkpoint,
    contract: ModelContract,
    cfg: ExportConfig,
    precision: str,
    name: str,
) -> Path:
    """Export the ONNX model of `precision` into `scratch` (fp32 first, then converted)."""
    fp32 = scratch / "fp32" / f"{name}.onnx"
    fp32.parent.mkdir()
    export_onnx(ckpt.generator, fp32, contract, dynamic_batch=cfg.dynamic_batch)
    if precision == "fp32":
        return fp32
    path = scratch / f"{name}.onnx"
    if precision == "fp16":
        to_fp16(fp32, path)
    else:
        to_int8(fp32, path, contract)
    return path


def _validate_onnx_file(
    art: Artifact, file: Path, ckpt: Checkpoint, contract: ModelContract, cfg: ExportConfig
) -> None:
    art.io = io_signature(session(file))
    art.validation = validate_onnx(file, ckpt.generator, contract, art.precision, cfg.shapes)


def _coreml_io(path: Path) -> dict[str, list[str]]:
    """Names and dims of a saved ML program's input and output, ranges as lo..hi."""
    import coremltools as ct

    desc = ct.models.MLModel(os.fspath(path), skip_model_load=True).get_spec().description
    io = {}
    for feature in (*desc.input, *desc.output):
        kind = feature.type.WhichOneof("Type")
        if kind == "imageType":
            io[feature.name] = ["image", "H", "W"]
            continue
        array = feature.type.multiArrayType
        if array.WhichOneof("ShapeFlexibility") == "shapeRange":
            dims = [
                r.lowerBound if r.lowerBound == r.upperBound else f"{r.lowerBound}..{r.upperBound}"
                for r in array.shapeRange.sizeRanges
            ]
        elif array.WhichOneof("ShapeFlexibility") == "enumeratedShapes":
            shapes = array.enumeratedShapes.shapes
            dims = [*array.shape[:2], "|".join(f"{s.shape[2]}x{s.shape[3]}" for s in shapes)]
        else:
            dims = list(array.shape)  # empty for outputs: the size follows the input
        io[feature.name] = [str(d) for d in dims]
    return io


def _export_all(
    cfg: ExportConfig, ckpt: Checkpoint, contract: ModelContract, name: str, scratch: Path
) -> list[Artifact]:
    """Build and check every requested artifact in `scratch`; install the ones that passed."""
    arts: list[Artifact] = []
    onnx_file: Path | None = None
    onnx_failed = False
    passed: list[tuple[Artifact, Path]] = []
    for fmt in cfg.formats:
        art = Artifact(fmt, cfg.precision_of(fmt), cfg.out / f"{name}{SUFFIX[fmt]}")
        arts.append(art)
        _progress(f"{LABEL[fmt]} ({art.precision}): exporting and validating")
        start = time.perf_counter()
        if fmt == "coreml":
            file = _coreml(art, ckpt, contract, cfg, scratch, name)
        else:
            if onnx_file is None:
                onnx_file = _onnx_in(scratch, ckpt, contract, cfg, art.precision, name)
            if fmt == "onnx":
                file = onnx_file
                _validate_onnx_file(art, file, ckpt, contract, cfg)
                onnx_failed = not art.accepted
            elif onnx_failed:
                file = None
                art.validation = Validation(
                    False, "FAILED: not converted, the ONNX model it comes from failed validation"
                )
            else:
                file = scratch / f"{name}.ort"
                to_ort(onnx_file, file)
                _validate_onnx_file(art, file, ckpt, contract, cfg)
                report, worth_trying = usability_report(onnx_file)
                report_file = scratch / f"{name}.usability.txt"
                report_file.write_text(report)
                art.validation.details["nnapi_or_coreml_ep_worth_trying"] = worth_trying
                art.side_files = [report_file]
        art.seconds = time.perf_counter() - start
        ok = art.accepted or (
            fmt == "coreml" and cfg.allow_unverified and art.validation.ok is None
        )
        if ok and file is not None:
            passed.append((art, file))
    # Installed only once all are built: the ORT conversion reads the ONNX file in scratch, and a
    # crash halfway leaves the output folder as it was.
    for art, file in passed:
        _install(art, file)
    return arts


def _coreml(
    art: Artifact,
    ckpt: Checkpoint,
    contract: ModelContract,
    cfg: ExportConfig,
    scratch: Path,
    name: str,
) -> Path:
    from .coreml import export_coreml, validate_coreml  # coremltools loads only when asked

    file = scratch / f"{name}.mlpackage"
    options = {"shapes": cfg.shapes, "precision": art.precision, "image_io": cfg.image_io}
    export_coreml(ckpt.generator, file, contract, **options)
    art.io = _coreml_io(file)
    art.validation = validate_coreml(file, ckpt.generator, contract, **options)
    if art.validation.ok is None:
        kept = (
            "installed anyway (--allow-unverified)"
            if cfg.allow_unverified
            else ("NOT installed; pass --allow-unverified to ship it unchecked")
        )
        print(
            f"tn-export: WARNING: Core ML model NOT VERIFIED: {art.validation.summary}; {kept}",
            file=sys.stderr,
        )
    return file


@contextlib.contextmanager
def _scratch(out: Path, name: str) -> Iterator[Path]:
    """A hidden scratch folder in `out`, removed when the export ends, on SIGTERM too (cli_entry
    raises it as an exception). A SIGKILL leaves it; the next export into `out` removes it."""
    _sweep(out)
    with tempfile.TemporaryDirectory(prefix=f".{name}.export-{os.getpid()}-", dir=out) as tmp:
        (Path(tmp) / OWNER).write_text(socket.gethostname())
        yield Path(tmp)


def _sweep(out: Path) -> None:
    """Remove the scratch folders of killed exports from `out`: those whose process, on this
    host, is gone. A running export's, another host's, or one without its OWNER file yet (just
    made) stay."""
    host = socket.gethostname()
    for entry in out.iterdir():
        match = SCRATCH.fullmatch(entry.name)
        if match is None or entry.is_symlink() or not entry.is_dir():
            continue
        try:
            owner = (entry / OWNER).read_text()
        except OSError:
            continue
        if owner == host and not _running(int(match[1])):
            shutil.rmtree(entry, ignore_errors=True)


def _running(pid: int) -> bool:
    """Whether process `pid` exists. A pid taken again by another process keeps its old scratch
    folder: the safe side."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (OSError, OverflowError):  # another user's process; a number no pid can be
        return True
    return True


def _install(art: Artifact, file: Path) -> None:
    """Rename the checked file (and its side files) from scratch into place."""
    for src in (*art.side_files, file):
        dst = art.path if src == file else art.path.with_name(src.name)
        with atomic_path(dst) as tmp:
            os.replace(src, tmp)
    art.side_files = [art.path.with_name(f.name) for f in art.side_files]
    art.installed = True


# --- report -----------------------------------------------------------------------------------


def disk_size(path: Path) -> int:
    if path.is_dir():
        return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    return path.stat().st_size


def _human(n: int) -> str:
    if n < 1000:
        return f"{n} B"
    kb = n / 1000
    return f"{kb:.1f} KB" if kb < 1000 else f"{kb / 1000:.1f} MB"


def _verdict(v: Validation) -> str:
    return v.summary if v.ok is not None else f"NOT VERIFIED ({v.summary})"


def table(arts: list[Artifact]) -> str:
    """The summary printed after an export, one row per artifact."""
    head = ("Format", "Precision", "Artifact", "Size", "Inputs -> outputs", "Validation", "Time")
    rows = [head]
    for a in arts:
        io = " -> ".join(f"{k} ({', '.join(v)})" if v else k for k, v in a.io.items())
        rows.append(
            (
                LABEL[a.format],
                a.precision,
                str(a.path) if a.installed else f"{a.path} (not written)",
                _human(disk_size(a.path)) if a.installed else "-",
                io or "-",
                _verdict(a.validation),
                f"{a.seconds:.1f} s",
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(head) - 1)]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(r[:-1], widths, strict=True)) + "  " + r[-1]
        for r in rows
    )


def _record(
    source: Path,
    contract: ModelContract,
    arts: list[Artifact],
    argv: list[str],
    seconds: float,
) -> dict:
    return {
        "tool": "tn-export",
        "version": __version__,
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "command": ["tn-export", *argv],
        "checkpoint": str(source),
        "contract": asdict(contract),
        "artifacts": [
            {
                "format": a.format,
                "precision": a.precision,
                "path": str(a.path),
                "installed": a.installed,
                "bytes": disk_size(a.path) if a.installed else None,
                "side_files": [str(f) for f in a.side_files] if a.installed else [],
                "io": a.io,
                "validation": asdict(a.validation) if a.validation else None,
                "seconds": round(a.seconds, 2),
            }
            for a in arts
        ],
        "seconds": round(seconds, 2),
    }


def _outputs(cfg: ExportConfig, name: str) -> list[Path]:
    """Every path an export may write: the artifacts, ORT's usability report, the record."""
    paths = [cfg.out / f"{name}{SUFFIX[fmt]}" for fmt in cfg.formats]
    if "ort" in cfg.formats:
        paths.append(cfg.out / f"{name}.usability.txt")
    return [*paths, cfg.out / f"{name}.export.json"]


def _progress(text: str) -> None:
    print(f"tn-export: {text}", file=sys.stderr, flush=True)


@cli_entry("tn-export")
def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    start = time.perf_counter()
    cfg = _config(argv)
    ckpt, source = load_model(cfg.checkpoint)
    name = cfg.name or default_name(source)
    contract = build_contract(ckpt, cfg, name)
    refuse_overwriting_inputs(_outputs(cfg, name), [source])
    check_writable_dir(cfg.out)
    root, level = logging.getLogger(), logging.getLogger().level
    if "--debug" not in argv:
        # The quantizer and the converters warn through the root logger about harmless details.
        root.setLevel(logging.ERROR)
    try:
        with _scratch(cfg.out, name) as scratch:
            arts = _export_all(cfg, ckpt, contract, name, scratch)
    finally:
        root.setLevel(level)
    print(table(arts))
    if any(a.installed for a in arts):
        record = _record(source, contract, arts, argv, time.perf_counter() - start)
        with atomic_path(cfg.out / f"{name}.export.json") as tmp:
            tmp.write_text(json.dumps(record, indent=2, default=str) + "\n")
    failed = [a for a in arts if not a.installed]
    if failed:
        names = ", ".join(LABEL[a.format] for a in failed)
        print(
            f"tn-export: failed: {names} not verified or out of tolerance; not written",
            file=sys.stderr,
        )
        return 1
    return 0
