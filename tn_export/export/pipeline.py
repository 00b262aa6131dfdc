"""`tn_export.export(...)`: one model to every format asked, each checked against PyTorch first.

Everything is built and checked in a hidden scratch folder inside the output folder (scratch),
against one Reference made for the whole export, and only what passed is then renamed into
place, with NAME.export.json recording the contract, every check and the timings. tn-export and
tn-bench both export through `export`.
"""

from __future__ import annotations

import datetime
import importlib.util
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from torch import nn
from tqdm import tqdm

from .. import __version__
from ..atomic import atomic_path, check_outputs, full_disk_names, refuse_overwriting_inputs
from ..budget import MAX_SIDE, check_count, check_memory
from ..checkpoint import Metadata, load_model, training_summary
from ..contract import ModelContract, Tiling
from ..errors import UserError
from ..generator import GeneratorConfig, PyramidGenerator
from ..runtime.exact import PART_SUFFIXES, SPLIT, reaches
from . import quiet
from .formats import FORMATS, REFUSED, Format, Job, Options
from .reference import Reference, Validation
from .scratch import install, scratch_folder

DEFAULT_SIZES = (64, 2048)

Sizes = tuple[int, int] | Sequence[tuple[int, int]]


@dataclass
class ExportResult:
    """One artifact: where it is (or would have been) installed, its check, how long it took."""

    format: str
    precision: str
    path: Path
    validation: Validation | None = None  # None: not validated (validate=False)
    io: dict[str, list[str]] = field(default_factory=dict)
    side_files: list[Path] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)  # seconds: "build", "validate"
    installed: bool = False
    skipped: str = ""  # why `formats="all"` left this format out (its libraries are missing)

    @property
    def accepted(self) -> bool:
        return self.validation is not None and self.validation.ok is True

    @property
    def seconds(self) -> float:
        return sum(self.timings.values())


def export(
    model: str | os.PathLike | nn.Module | None = None,
    formats: str | Sequence[str | tuple[str, str]] = ("onnx", "coreml"),
    output_dir: str | os.PathLike = "exports",
    precision: str | None = None,
    sizes: Sizes | None = None,
    validate: bool = True,
    *,
    name: str | None = None,
    image_io: bool = False,
    dynamic_batch: bool = True,
    tiling_parts: bool = True,
    allow_unverified: bool = False,
    contract: ModelContract | None = None,
    command: Sequence[str] | None = None,
    log: Callable[[str], None] | None = None,
    progress: bool = False,
    verbose: bool = False,
) -> list[ExportResult]:
    """Export `model` to `formats` in `output_dir`; returns one result per artifact.

    `model`: a tn-train checkpoint, a bundled model's name, a released `.t7`, None (the bundled
    default) or a PyramidGenerator; any other module mapping NCHW to RGB needs `contract`
    (tn-bench's peer). `formats`: names from FORMATS or "all"; a (name, precision) pair exports
    one format at several precisions (files NAME.PRECISION.SUFFIX). `precision`: None for each
    format's default. `sizes`: (min, max) side, or the enumerated (width, height) sizes; default
    64 to 2048, or the contract's bounds. An artifact that fails its check is not installed, nor is
    one that could not be checked ("not verified") unless `allow_unverified`; with
    `validate=False` every artifact is installed unchecked. `tiling_parts`: write the fp32 ONNX
    model's exact-tiling parts beside it (two more torch exports; without them tn-run tiles large
    images with cross-fades). Bad arguments raise UserError naming
    them as this function's parameters (its `params`; tn-export rewords them as its flags). `log`
    receives the warnings a user should read (an artifact not verified); `progress` shows one bar
    for the whole export on stderr where it is a terminal; `verbose` lets the converters' own
    progress bars, banners and warnings through; `command` is recorded.
    """
    start = time.perf_counter()
    targets = _targets(formats, precision)
    _check_options(targets, image_io, name)
    shapes, lo, hi = _bounds(sizes, contract)
    # "all" leaves out the formats whose libraries are missing, and says so; named ones must run.
    missing = {t: why for t in targets if (why := missing_libraries(t[0]))}
    if missing and formats != "all":
        raise UserError(next(iter(missing.values())), "format")
    targets = [t for t in targets if t not in missing]
    if isinstance(model, nn.Module):
        network, metadata, source = model, {}, None
    else:
        ckpt, source = load_model(model)
        network, metadata = ckpt.generator, ckpt.metadata
    if name is None:
        name = default_name(source) if source else contract.name if contract else "texture_network"
    contract = _contract(network, metadata, contract, name, shapes, lo, hi, tiling_parts)
    _check_runs_fit(contract, shapes)
    out = Path(output_dir)
    files = _file_names(targets, name)
    written = [n for f, p in targets for n in (files[f.name, p], *_sides(f, files[f.name, p]))]
    outputs = [out / n for n in (*written, f"{name}.export.json")]
    if source is not None:
        refuse_overwriting_inputs(outputs, [source])
    packages = [out / files[f.name, p] for f, p in targets if f.folder]
    check_outputs([p for p in outputs if p not in packages], packages)
    reference = Reference(network, contract, shapes)
    options = Options(image_io, dynamic_batch, tiling_parts)
    # A full disk in the scratch folder is named as the output folder, not as a scratch file.
    steps = len(targets) * (1 + validate)  # a build and a check each
    # None: shown on a terminal only, so that logs and captured stderr get no carriage returns.
    hidden = None if progress else True
    bar = tqdm(total=steps, desc="tn-export", unit="step", disable=hidden, file=sys.stderr)
    with bar, full_disk_names(out), scratch_folder(out, name) as scratch:
        run = _Run(
            reference, options, files, scratch, validate, allow_unverified, log, bar, verbose
        )
        results = run.all(targets, out)
    results += [
        ExportResult(f.name, p, out / files[f.name, p], skipped=why)
        for (f, p), why in missing.items()
    ]
    if any(r.installed for r in results):
        record = _record(source, contract, results, command, time.perf_counter() - start)
        with atomic_path(out / f"{name}.export.json") as tmp:
            tmp.write_text(json.dumps(record, indent=2, default=str) + "\n")
    return results


# --- arguments --------------------------------------------------------------------------------


def _targets(
    formats: str | Sequence[str | tuple[str, str]], precision: str | None
) -> list[tuple[Format, str]]:
    """(format, precision) in the order asked, each format's precision checked."""
    items = (
        list(FORMATS) if formats == "all" else [formats] if isinstance(formats, str) else formats
    )
    targets = []
    for item in items:
        fmt, asked = (item, precision) if isinstance(item, str) else item
        if fmt in REFUSED:
            raise UserError(REFUSED[fmt], "format")
        if fmt not in FORMATS:
            raise UserError(f"unknown format {fmt!r}; choose from {', '.join(FORMATS)} or all")
        f = FORMATS[fmt]
        if asked and asked not in f.precisions:
            raise UserError(
                f"precision {asked} is not available for {f.label}; "
                f"use {' or '.join(f.precisions)}",
                "precision",
            )
        targets.append((f, asked or f.precisions[0]))
    return list(dict.fromkeys(targets))


def _check_options(targets: list[tuple[Format, str]], image_io: bool, name: str | None) -> None:
    if image_io and not any(f.image_io for f, _ in targets):
        takes = [f for f in FORMATS.values() if f.image_io]
        raise UserError(
            f"image_io applies to {' and '.join(f.label for f in takes)} only; "
            f"use format {' or '.join(f.name for f in takes)} or all",
            "image_io",
            "format",
        )
    if name is not None and (not name or name.startswith(".") or os.sep in name or "/" in name):
        raise UserError(f"name {name!r} must be plain, without a folder, e.g. red_peppers", "name")


def _bounds(
    sizes: Sizes | None, contract: ModelContract | None
) -> tuple[list[tuple[int, int]] | None, int, int]:
    """(enumerated (height, width) shapes or None, smallest side, largest side), checked before
    anything loads; `sizes` are (width, height), as every command gives them."""
    if sizes is None:
        sizes = (contract.min_size, contract.max_size) if contract else DEFAULT_SIZES
    if isinstance(sizes[0], int):
        shapes, (lo, hi) = None, sizes
        if lo > hi:
            raise UserError(f"min_size {lo} is larger than max_size {hi}", "min_size", "max_size")
    else:
        shapes = list(dict.fromkeys((int(h), int(w)) for w, h in sizes))
        check_count(len(shapes), "shapes: the number of sizes", None, "shapes")
        dims = [d for shape in shapes for d in shape]
        lo, hi = min(dims), max(dims)
    if hi > MAX_SIDE:  # before anything is built: validation would run at this size
        raise UserError(
            f"size {hi} is over the largest side tn-export builds, {MAX_SIDE} pixels; "
            "use e.g. max_size 2048",
            "max_size",
        )
    if lo == hi:
        raise UserError(
            f"sizes give only {lo}x{lo}; a flexible model needs a range, "
            "e.g. min_size 64 and max_size 2048, or two different shapes",
            "min_size",
            "max_size",
            "shapes",
        )
    return shapes, lo, hi


def missing_libraries(f: Format) -> str:
    """Why `f` cannot be exported here (its libraries are not installed), or ""."""
    missing = [m for m in f.requires if importlib.util.find_spec(m) is None]
    if not missing:
        return ""
    return (
        f"format {f.name} needs {', '.join(missing)}, which is not installed; "
        f"pip install {' '.join(missing)}"
    )


def default_name(path: Path) -> str:
    """runs/bricks/model.pt -> bricks; upstream's bricks.png_model.t7 -> bricks; else the stem."""
    if path.name == "model.pt" and path.resolve().parent.name:
        return path.resolve().parent.name
    if path.stem.endswith("_model"):
        return Path(path.stem.removesuffix("_model")).stem or path.stem
    return path.stem


def _file_names(targets: list[tuple[Format, str]], name: str) -> dict[tuple[str, str], str]:
    """The file name of every (format, precision), sources converted from included: NAME.SUFFIX,
    or NAME.PRECISION.SUFFIX for a format asked at several precisions."""
    asked = [f.name for f, _ in targets]
    return {
        (f.name, p): f"{name}.{p}{f.suffix}" if asked.count(f.name) > 1 else f"{name}{f.suffix}"
        for f in FORMATS.values()
        for p in f.precisions
    }


def _sides(f: Format, file: str) -> list[str]:
    """The names of the side files written beside `file`: bricks.ort -> [bricks.usability.txt]."""
    return [Path(file).with_suffix(suffix).name for suffix in f.side_files]


# --- model and contract -----------------------------------------------------------------------


def _check_multiples(shapes: list[tuple[int, int]] | None, lo: int, hi: int, multiple: int) -> None:
    params = ("shapes",) if shapes else ("min_size", "max_size")
    for size in (d for s in shapes for d in s) if shapes else (lo, hi):
        if size < multiple or size % multiple:
            fix = max(multiple, size // multiple * multiple)
            raise UserError(
                f"{'/'.join(params)}: {size} is not a positive multiple of {multiple}, this "
                f"model's size multiple; use e.g. {fix}",
                *params,
            )


def _contract(
    network: nn.Module,
    metadata: Metadata,
    given: ModelContract | None,
    name: str,
    shapes: list[tuple[int, int]] | None,
    lo: int,
    hi: int,
    parts: bool,
) -> ModelContract:
    """The exported model's contract: `given` with these bounds and name, else the generator's
    config, its training metadata, the bounds and its tiling (none without its `parts`)."""
    if given is not None:
        _check_multiples(shapes, lo, hi, given.size_multiple)
        return replace(given, name=name, min_size=lo, max_size=hi)
    if not isinstance(network, PyramidGenerator):
        raise UserError(
            f"a {type(network).__name__} is not a PyramidGenerator: pass its contract= "
            "(what it takes and gives)"
        )
    config = network.config
    _check_multiples(shapes, lo, hi, config.size_multiple)
    training = training_summary(metadata)
    trained_on = f" trained on {training['exemplar']}" if "exemplar" in training else ""
    return ModelContract(
        mode=config.mode,
        noise_depth=config.noise_depth,
        size_multiple=config.size_multiple,
        min_size=lo,
        max_size=hi,
        padding=config.padding,
        norm=config.norm,
        channels=config.channels,
        name=name,
        description=f"Texture Networks {config.mode} generator{trained_on}",
        tool_version=__version__,
        training=training,
        tiling=tiling(config) if parts else Tiling(reason=NO_PARTS),
        styles=style_names(config, metadata),
    )


def style_names(config: GeneratorConfig, metadata: Metadata) -> tuple[str, ...]:
    """The names of a generator's styles, as its training recorded them (else style1, style2..)."""
    names = tuple(metadata.get("styles", ()))
    if len(names) == config.styles:
        return names
    return tuple(f"style{i + 1}" for i in range(config.styles))


NO_PARTS = "it was exported without its tiling parts (tn-export --no-tiling-parts)"


def tiling(config: GeneratorConfig) -> Tiling:
    """How the generator runs in exact tiles (runtime/exact.py), or why it cannot."""
    if config.norm != "batch":
        return Tiling(
            reason=f"{config.norm} norm's statistics are global (each tile would normalise by "
            "its own), so tiles cannot equal the whole image"
        )
    if 2 ** (config.scales - 1) < SPLIT:
        return Tiling(reason=f"{config.scales} scales are too few to split at ratio {SPLIT}")
    coarse, fine = reaches(config.scales)
    return Tiling(
        coarse=PART_SUFFIXES[0],
        fine=PART_SUFFIXES[1],
        split=SPLIT,
        coarse_reach=[coarse.before, coarse.after, coarse.align],
        fine_reach=[fine.before, fine.after, fine.align],
    )


def _check_runs_fit(contract: ModelContract, shapes: list[tuple[int, int]] | None) -> None:
    """The metadata must not allow a size that no run of the model fits in memory (and the
    checks run at sizes among those asked for): refused before anything is built."""
    h, w = max(shapes, key=lambda s: s[0] * s[1]) if shapes else (contract.max_size,) * 2
    run = h * w * contract.bytes_per_pixel
    what, fix = f"one run of this model at {w}x{h}", "lower max_size or shapes"
    check_memory(run, what, fix, "max_size", "shapes")


# --- building, checking, installing -----------------------------------------------------------


@dataclass
class _Run:
    """One export's artifacts in its scratch folder, each built once, on first request."""

    reference: Reference
    options: Options
    files: dict[tuple[str, str], str]
    scratch: Path
    validate: bool
    allow_unverified: bool
    log: Callable[[str], None] | None
    bar: tqdm
    verbose: bool
    built: dict[tuple[str, str], tuple[Path, dict]] = field(default_factory=dict)

    def artifact(self, fmt: str, precision: str) -> Path:
        """The artifact of `fmt` at `precision` in scratch/FORMAT-PRECISION/, side files beside."""
        key = (fmt, precision)
        if key not in self.built:
            path = self.scratch / f"{fmt}-{precision}" / self.files[key]
            path.parent.mkdir()
            job = Job(self.reference, precision, path, self.options, self.artifact)
            with quiet.converters(self.verbose):
                self.built[key] = (path, FORMATS[fmt].build(job))
        return self.built[key][0]

    def all(self, targets: list[tuple[Format, str]], out: Path) -> list[ExportResult]:
        """Build and check every target; install the ones that passed."""
        results: list[ExportResult] = []
        for f, precision in targets:
            result = ExportResult(f.name, precision, out / self.files[f.name, precision])
            source = next(
                (r for r in results if (r.format, r.precision) == (f.source, precision)), None
            )
            results.append(result)
            if source is not None and source.validation is not None and not source.accepted:
                label = FORMATS[f.source].label
                result.validation = Validation(
                    False,
                    f"FAILED: not converted, the {label} model it comes from failed validation",
                )
                self.bar.update(1 + self.validate)
                continue
            self._check(f, result)
        # Installed only once all are built: a conversion reads its source in scratch, and a
        # crash halfway leaves the output folder as it was.
        for result in results:
            if not self.validate or self._ships(result.validation):
                self._install(result)
        return results

    def _ships(self, validation: Validation) -> bool:
        return validation.ok is True or (validation.ok is None and self.allow_unverified)

    def _say(self, line: str) -> None:
        if self.log is not None:
            self.log(line)

    def _step(self, f: Format, precision: str, doing: str) -> None:
        self.bar.set_postfix_str(f"{f.label} {precision}: {doing}")

    def _check(self, f: Format, result: ExportResult) -> None:
        start = time.perf_counter()
        self._step(f, result.precision, "building")
        path = self.artifact(f.name, result.precision)
        self.bar.update()
        result.timings["build"] = time.perf_counter() - start
        start = time.perf_counter()
        with quiet.converters(self.verbose):
            result.io = f.describe(path)
        if self.validate:
            self._step(f, result.precision, "validating")
            with quiet.converters(self.verbose):
                result.validation = f.validate(path, self.reference, result.precision, self.options)
            self.bar.update()
            result.validation.details |= self.built[f.name, result.precision][1]
            if result.validation.ok is None:
                kept = (
                    "installed anyway (--allow-unverified)"
                    if self.allow_unverified
                    else "NOT installed; pass --allow-unverified to ship it unchecked"
                )
                self._say(
                    f"WARNING: {f.label} model NOT VERIFIED: {result.validation.summary}; {kept}"
                )
        result.timings["validate"] = time.perf_counter() - start

    def _install(self, result: ExportResult) -> None:
        """Rename the checked artifact and its side files from scratch into place."""
        path, _ = self.built[result.format, result.precision]
        for side in _sides(FORMATS[result.format], path.name):
            if side.endswith(PART_SUFFIXES) and not path.with_name(side).exists():
                continue  # the exact-tiling parts are exported at fp32 only
            install(path.with_name(side), result.path.with_name(side))
            result.side_files.append(result.path.with_name(side))
        install(path, result.path)
        result.installed = True


# --- the record -------------------------------------------------------------------------------


def disk_size(path: Path) -> int:
    if path.is_dir():
        return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    return path.stat().st_size


def _record(
    source: Path | None,
    contract: ModelContract,
    results: list[ExportResult],
    command: Sequence[str] | None,
    seconds: float,
) -> dict:
    return {
        "tool": "tn-export",
        "version": __version__,
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "command": list(command) if command is not None else None,
        "checkpoint": str(source) if source is not None else None,
        "size_order": "WIDTHxHEIGHT",  # of every size below, e.g. the validation's "512x2048"
        "contract": asdict(contract),
        "artifacts": [
            {
                "format": r.format,
                "precision": r.precision,
                "path": str(r.path),
                "installed": r.installed,
                "skipped": r.skipped or None,
                "bytes": disk_size(r.path) if r.installed else None,
                "side_files": [str(f) for f in r.side_files],
                "io": r.io,
                "validation": asdict(r.validation) if r.validation else None,
                "seconds": round(r.seconds, 2),
                "timings": {k: round(v, 2) for k, v in r.timings.items()},
            }
            for r in results
        ],
        "seconds": round(seconds, 2),
    }
