"""Reliability and security (issue 6): every bad input gets one clear line, nothing is left
half-written, untrusted files cannot run code.

One table (CASES) holds the bad inputs of tn-train, tn-export, tn-run and tn-bench; one test runs
each case through the command's main(argv) and checks the exit status, the one stderr line, the
absence of a traceback and of partial output. Process-level faults (SIGKILL while a checkpoint is
written, two exports to one path at once), image modes, size properties and a seeded fuzz run
over the image loader and the metadata parser follow. docs/reliability.md maps each case to its
test. Models here are hand-built ONNX graphs and a 3-scale, 4-channel generator: a torch export
takes tens of seconds on this machine, these take milliseconds.
"""

from __future__ import annotations

import argparse
import errno
import functools
import io
import json
import math
import multiprocessing
import os
import pickle
import random
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
import warnings
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from conftest import onnx_copier
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper
from PIL import Image
from test_runtime import tiny_onnx
from test_torch7 import _Module, _t7_bytes

import training.train as train_module
from benchmarks.cli import main as bench_main
from tn_export import atomic, budget, runtime
from tn_export.checkpoint import load_checkpoint, save_checkpoint
from tn_export.contract import ModelContract
from tn_export.errors import UserError, cli_entry
from tn_export.export.cli import main as export_main
from tn_export.generator import PyramidGenerator
from tn_export.images import MAX_PIXELS, load_image
from tn_export.runtime.cli import main as run_main
from training.cli import main as train_main

MAINS = {
    "tn-train": train_main,
    "tn-export": export_main,
    "tn-run": run_main,
    "tn-bench": bench_main,
}
MODULES = {"tn-run": "tn_export.runtime.cli"}  # commands run as real processes (torch-free)
MAX_SIDE = 96  # the hand-built models' max_size: small, so sizes beyond it are cheap to ask for
SmallGenerator = functools.partial(PyramidGenerator, scales=3, channels=4)


# --- inputs -------------------------------------------------------------------------------------


def onnx_model(
    path: Path,
    nodes: list,
    metadata: dict[str, str],
    *,
    initializers: tuple = (),
    channels: int | str = 3,
    doc: str = "",
) -> Path:
    """An ONNX file of `nodes` from the input its metadata names to `image`, with that metadata."""
    x = metadata["tn_export.input_name"]
    graph = helper.make_graph(
        nodes,
        path.stem,
        [helper.make_tensor_value_info(x, TensorProto.FLOAT, ["n", channels, "h", "w"])],
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["n", 3, "oh", "ow"])],
        list(initializers),
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)])
    model.ir_version = 10
    model.doc_string = doc
    helper.set_model_props(model, metadata)
    onnx.save(model, path)
    return path


def tiny_model(path: Path, mode: str, *, multiple: int = 4, doc: str = "", **bounds: int) -> Path:
    """A hand-built stand-in for an exported generator: average-pool by 4, upsample by 4, add to
    the input, sigmoid. Like a real pyramid it runs only at multiples of 4; `multiple` is what its
    metadata claims (a lie when not 4); `bounds`: min_size (8) and max_size (MAX_SIDE)."""
    bounds = {"min_size": 8, "max_size": MAX_SIDE} | bounds
    contract = ModelContract(mode=mode, size_multiple=multiple, name=path.stem, **bounds)
    x = contract.input_name
    nodes = [
        helper.make_node("AveragePool", [x], ["pooled"], kernel_shape=[4, 4], strides=[4, 4]),
        helper.make_node("Resize", ["pooled", "", "scales"], ["up"], mode="nearest"),
        helper.make_node("Add", [x, "up"], ["sum"]),
        helper.make_node("Sigmoid", ["sum"], ["image"]),
    ]
    scales = numpy_helper.from_array(np.array([1, 1, 4, 4], np.float32), "scales")
    return onnx_model(path, nodes, contract.to_metadata(), initializers=(scales,), doc=doc)


TEXTURE_METADATA = ModelContract(mode="texture", size_multiple=4, min_size=8, max_size=96)


def one_node_model(path: Path, node, *initializers, **metadata: str) -> Path:
    """A texture model of one node from `noise` to `image`, its metadata changed by `metadata`
    (input channels left open, so that only the metadata says how many)."""
    values = TEXTURE_METADATA.to_metadata() | {f"tn_export.{k}": v for k, v in metadata.items()}
    return onnx_model(path, [node], values, initializers=initializers, channels="c")


def endless_loop(path: Path) -> Path:
    """A model whose graph is an ONNX Loop with a trip count of 2**62 (runs for ever)."""
    body = helper.make_graph(
        [
            helper.make_node("Identity", ["cond_in"], ["cond_out"]),
            helper.make_node("Identity", ["x_in"], ["x_out"]),
        ],
        "body",
        [
            helper.make_tensor_value_info("i", TensorProto.INT64, []),
            helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
            helper.make_tensor_value_info("x_in", TensorProto.FLOAT, None),
        ],
        [
            helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
            helper.make_tensor_value_info("x_out", TensorProto.FLOAT, None),
        ],
    )
    loop = helper.make_node("Loop", ["trips", "go", "noise"], ["image"], body=body)
    trips = numpy_helper.from_array(np.array(2**62, np.int64), "trips")
    return one_node_model(path, loop, trips, numpy_helper.from_array(np.array(True), "go"))


def png_declaring(width: int, height: int, data: bytes | None = None) -> bytes:
    """A PNG whose header declares width x height, its compressed pixel rows `data` (default:
    almost nothing)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data)
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\0" * 16) if data is None else data)
        + chunk(b"IEND", b"")
    )


def black_png(width: int, height: int) -> bytes:
    """A whole, decodable black RGB PNG, compressed row by row so that making it stays small."""
    packer, row = zlib.compressobj(9), bytes(1 + 3 * width)  # filter byte 0, then the pixels
    rows = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    return png_declaring(width, height, rows)


def encoded(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def picture(width: int, height: int, seed: int = 0) -> Image.Image:
    return Image.fromarray(
        np.random.default_rng(seed).integers(0, 256, (height, width, 3), np.uint8)
    )


class _MarkerPayload:
    """Unpickling this would create `marker`: the proof that a loader ran code."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


class Assets:
    """Good inputs shared by a module's tests, each made on first use."""

    def __init__(self, root: Path) -> None:
        self.root = root

    @cached_property
    def texture(self) -> Path:
        path = self.root / "texture.png"
        y, x = np.mgrid[0:64, 0:64]
        stripes = (np.sin(x / 3.0) * 0.5 + 0.5)[..., None] * np.array([1.0, 0.4, 0.1])
        Image.fromarray((stripes * 255).astype(np.uint8)).save(path)
        return path

    @cached_property
    def checkpoint(self) -> Path:
        torch.manual_seed(0)
        path = self.root / "small.pt"
        save_checkpoint(path, SmallGenerator(), {"descriptor": "random", "exemplar": "t.png"})
        return path

    @cached_property
    def run(self) -> Path:
        """A tn-train run folder after one iteration of a small generator (model.pt, log)."""
        run = self.root / "run"
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(train_module, "PyramidGenerator", SmallGenerator)
            assert train_main(train_args(self.texture, run, "--iterations", "1")) == 0
        return run

    def model(self, mode: str) -> Path:
        path = self.root / f"{mode}.onnx"
        return path if path.is_file() else tiny_model(path, mode)

    @cached_property
    def pixel_limit_png(self) -> Path:
        """A real 8192 x 8192 image, exactly at the pixel limit (200 KB on disk)."""
        return _write(self.root / "pixel-limit.png", black_png(8192, 8192))

    @cached_property
    def inflating(self) -> Path:
        """The small checkpoint with its first tensor's record made 600 MB of zeros, deflated:
        640 KB on disk, which torch.load would inflate (and then refuse)."""
        path = self.root / "inflating.pt"
        with zipfile.ZipFile(self.checkpoint) as source, zipfile.ZipFile(path, "w") as out:
            for info in source.infolist():
                if not info.filename.endswith("/data/0"):
                    out.writestr(info, source.read(info.filename))
                    continue
                entry = zipfile.ZipInfo(info.filename)
                entry.compress_type = zipfile.ZIP_DEFLATED
                with out.open(entry, "w", force_zip64=True) as f:
                    for _ in range(600):
                        f.write(bytes(1 << 20))
        return path


def train_args(texture: Path, run: Path, *extra: str) -> list[str]:
    fast = ["--descriptor", "random", "--image-size", "32", "--batch-size", "2"]
    return ["texture", "--texture", str(texture), "-o", str(run), *fast, *extra]


def _copy_run(tmp: Path, a: Assets, model: bytes | None = None) -> Path:
    run = shutil.copytree(a.run, tmp / "run")
    if model is not None:
        (run / "model.pt").write_bytes(model)
    return run


def _evil_pickle(tmp: Path) -> bytes:
    return pickle.dumps({"format": "tn-export/checkpoint", "x": _MarkerPayload(str(tmp / "pwned"))})


def _changed_checkpoint(tmp: Path, a: Assets, name: str, **changes) -> Path:
    payload = torch.load(a.checkpoint, weights_only=True)
    payload["config"] |= changes.pop("config", {})
    payload |= changes
    torch.save(payload, tmp / name)
    return tmp / name


def _changed_weights(
    tmp: Path, a: Assets, name: str, rename: str | None = None, nan: str | None = None
) -> Path:
    """The small checkpoint with the weight `rename` under another key, or `nan` made NaN."""
    payload = torch.load(a.checkpoint, weights_only=True)
    weights = payload["state_dict"]
    if rename:
        weights["to_rgb.offset"] = weights.pop(rename)
    if nan:
        weights[nan] = torch.full_like(weights[nan], float("nan"))
    torch.save(payload, tmp / name)
    return tmp / name


def _busy(folder: Path) -> Path:
    """An output folder in which what the commands write (results.json, t.png, model.pt,
    small.onnx) are folders: written last, they would fail only after all the work."""
    for name in ("results.json", "t.png", "model.pt", "small.onnx"):
        (folder / name).mkdir(parents=True)
    return folder


def _identity():
    return helper.make_node("Identity", ["noise"], ["image"])


def _t7_containing_itself() -> bytes:
    """A Torch7 nn.Sequential whose modules list holds, by reference, the module itself."""

    def text(value: str) -> bytes:
        return struct.pack("<i", len(value)) + value.encode()

    module = struct.pack("<ii", 4, 1) + text("V 1") + text("nn.Sequential")  # object 1
    fields = struct.pack("<iii", 3, 2, 1) + struct.pack("<i", 2) + text("modules")
    modules = struct.pack("<iii", 3, 3, 1) + struct.pack("<id", 1, 1.0)
    return module + fields + modules + struct.pack("<ii", 4, 1)  # object 1 again


def _readonly(tmp: Path, a: Assets) -> Path:
    if os.geteuid() == 0:
        pytest.skip("running as root: a read-only folder does not stop root from writing")
    folder = tmp / "readonly"
    folder.mkdir()
    folder.chmod(0o555)
    return folder


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _saved(image: Image.Image, path: Path) -> Path:
    image.save(path)
    return path


def _mkdir(path: Path) -> Path:
    path.mkdir()
    return path


PHOTOS = {"a.png": (40, 36, 1), "b.png": (36, 40, 2)}  # name: picture(width, height, seed)


def _photos(tmp: Path) -> Path:
    """A folder of the user's photos: the inputs a command must never write over."""
    folder = tmp / "photos"
    if not folder.is_dir():  # made once, whichever placeholder asks first
        folder.mkdir()
        for name, args in PHOTOS.items():
            picture(*args).save(folder / name)
    return folder


def _linked(link: Path, target: Path) -> Path:
    link.symlink_to(target)
    return link


def _hard_linked(link: Path, target: Path) -> Path:
    os.link(target, link)
    return link


def _holding(folder: Path, name: str, data: bytes) -> Path:
    """`folder`, made with the file `name` (which may lie in subfolders) holding `data`."""
    (folder / name).parent.mkdir(parents=True)
    (folder / name).write_bytes(data)
    return folder


# Placeholder -> the input it stands for, made in the test's own folder on first use.
BUILD: dict[str, Callable[[Path, Assets], Path]] = {
    "out": lambda t, a: t / "out",
    "texture": lambda t, a: a.texture,
    "photo": lambda t, a: _saved(picture(40, 36), t / "photo.png"),
    "checkpoint": lambda t, a: a.checkpoint,
    "texture.onnx": lambda t, a: a.model("texture"),
    "style.onnx": lambda t, a: a.model("style"),
    "run": lambda t, a: _copy_run(t, a),
    "missing.png": lambda t, a: t / "missing.png",
    "missing.json": lambda t, a: t / "missing.json",
    "folder": lambda t, a: _mkdir(t / "folder"),
    "blocker": lambda t, a: _write(t / "blocker", b"a file where a folder would go"),
    "readonly": _readonly,
    "empty.png": lambda t, a: _write(t / "empty.png", b""),
    "truncated.png": lambda t, a: _write(
        t / "truncated.png", encoded(picture(64, 64), "PNG")[:3000]
    ),
    "truncated.jpg": lambda t, a: _write(
        t / "truncated.jpg", encoded(picture(64, 64), "JPEG")[:1500]
    ),
    "random.png": lambda t, a: _write(t / "random.png", np.random.default_rng(1).bytes(3000)),
    "postscript.png": lambda t, a: _write(
        t / "postscript.png", b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 64 64\nshowpage\n"
    ),
    "bomb.png": lambda t, a: _write(t / "bomb.png", png_declaring(100_000, 100_000)),
    "big.png": lambda t, a: _write(t / "big.png", png_declaring(9500, 9500)),
    "tiny.png": lambda t, a: _saved(picture(8, 8), t / "tiny.png"),
    "random.pt": lambda t, a: _write(t / "random.pt", np.random.default_rng(2).bytes(4096)),
    "truncated.pt": lambda t, a: _write(t / "truncated.pt", a.checkpoint.read_bytes()[:4000]),
    "evil.pt": lambda t, a: _write(t / "evil.pt", _evil_pickle(t)),
    "version99.pt": lambda t, a: _changed_checkpoint(t, a, "version99.pt", version=99),
    "other-config.pt": lambda t, a: _changed_checkpoint(
        t, a, "other-config.pt", config={"channels": 16}
    ),
    "unknown.t7": lambda t, a: _write(
        t / "unknown.t7", _t7_bytes(_Module("nn.Sequential", modules=[_Module("nn.Foo")]))
    ),
    "truncated.onnx": lambda t, a: _write(
        t / "truncated.onnx", a.model("texture").read_bytes()[:200]
    ),
    "foreign.onnx": lambda t, a: tiny_onnx(t / "foreign.onnx", 4, {"author": "someone else"}),
    "rank3.onnx": lambda t, a: tiny_onnx(
        t / "rank3.onnx", 3, ModelContract(mode="texture").to_metadata()
    ),
    "lying.onnx": lambda t, a: tiny_model(t / "lying.onnx", "style", multiple=2),
    "nested.json": lambda t, a: _write(t / "nested.json", b"[" * 100_000),
    "evil-run": lambda t, a: _copy_run(t, a, _evil_pickle(t)),
    "truncated-run": lambda t, a: _copy_run(t, a, (a.run / "model.pt").read_bytes()[:3000]),
    "photos": lambda t, a: _photos(t),
    "photos-link": lambda t, a: _linked(t / "photos-link", _photos(t)),
    "a-link.png": lambda t, a: _linked(t / "a-link.png", _photos(t) / "a.png"),
    "a-hardlink.png": lambda t, a: _hard_linked(t / "a-hardlink.png", _photos(t) / "a.png"),
    "model.png": lambda t, a: _write(t / "model.png", a.model("texture").read_bytes()),
    "checkpoints": lambda t, a: _holding(t / "ckpts", "small.onnx", a.checkpoint.read_bytes()),
    "packages": lambda t, a: _holding(
        t / "pkgs", "x.mlpackage/model.pt", a.checkpoint.read_bytes()
    ),
    # the one budget
    "pixel-limit.png": lambda t, a: a.pixel_limit_png,
    "inflating.pt": lambda t, a: a.inflating,
    "huge-layers.pt": lambda t, a: _changed_checkpoint(
        t, a, "huge-layers.pt", config={"channels": 100_000}
    ),
    "20-scales.pt": lambda t, a: _changed_checkpoint(t, a, "20-scales.pt", config={"scales": 20}),
    "loop.onnx": lambda t, a: endless_loop(t / "loop.onnx"),
    "side-1000000.onnx": lambda t, a: one_node_model(
        t / "side-1000000.onnx", _identity(), max_size="1000000"
    ),
    "noise-depth-1e9.onnx": lambda t, a: one_node_model(
        t / "noise-depth-1e9.onnx", _identity(), noise_depth="1000000000"
    ),
    "min-8192.onnx": lambda t, a: tiny_model(
        t / "min-8192.onnx", "texture", min_size=8192, max_size=8192
    ),
    "max-8192.onnx": lambda t, a: tiny_model(t / "max-8192.onnx", "texture", max_size=8192),
    "busy": lambda t, a: _busy(t / "busy"),
    # clear messages
    "transposed.onnx": lambda t, a: one_node_model(
        t / "transposed.onnx",
        helper.make_node("Transpose", ["noise"], ["image"], perm=[0, 1, 3, 2]),
    ),
    "nan.onnx": lambda t, a: one_node_model(
        t / "nan.onnx",
        helper.make_node("Mul", ["noise", "nan"], ["image"]),
        numpy_helper.from_array(np.array(np.nan, np.float32), "nan"),
    ),
    "itself.t7": lambda t, a: _write(t / "itself.t7", _t7_containing_itself()),
    "list-metadata.pt": lambda t, a: _changed_checkpoint(t, a, "list-metadata.pt", metadata=[1]),
    "wrong-key.pt": lambda t, a: _changed_weights(t, a, "wrong-key.pt", rename="to_rgb.bias"),
    "nan.pt": lambda t, a: _changed_weights(t, a, "nan.pt", nan="to_rgb.weight"),
}


class Files(dict):
    """'{truncated.png}' in a case stands for that file, made in `tmp` on first use."""

    def __init__(self, tmp: Path, assets: Assets) -> None:
        super().__init__()
        self.tmp, self.assets = tmp, assets

    def __missing__(self, key: str) -> str:
        self[key] = str(BUILD[key](self.tmp, self.assets))
        return self[key]

    def path(self, key: str) -> Path:
        return Path(self[key])

    def fill(self, text: str) -> str:
        return re.sub(r"\{([^{}]+)\}", lambda m: self[m[1]], text)


# --- faults injected while working, and checks afterwards ---------------------------------------


def _fail_loss(patch: pytest.MonkeyPatch, on_call: int, fail: Callable) -> None:
    """Make the texture loss fail on its `on_call`-th evaluation (1 = the first iteration run)."""
    real, calls = train_module.texture_loss, {"n": 0}

    def loss(*args, **kwargs):
        calls["n"] += 1
        value = real(*args, **kwargs)
        return fail(value) if calls["n"] == on_call else value

    patch.setattr(train_module, "texture_loss", loss)


def _interrupt(value):
    raise KeyboardInterrupt


def _sigterm(value=None):
    """`kill PID` sent to this process; cli_entry's handler raises it at the next bytecode."""
    os.kill(os.getpid(), signal.SIGTERM)
    return value


def _no_space(path: Path | None = None) -> None:
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), *([str(path)] if path else []))


def _scratch_fills(deployable, path, *args, **kwargs) -> None:
    """The ONNX export, on a disk that fills while it writes into the export's scratch folder."""
    Path(path).write_bytes(b"half an ONNX file")
    _no_space(path)


def _half_written(write: Callable[[object, Path], None], then: Callable[[], None]) -> Callable:
    """A writer that puts half a file down, then meets `then` (a full disk, a SIGTERM)."""

    def writer(obj, target, *args, **kwargs):
        buffer = io.BytesIO()
        write(obj, buffer)
        Path(target).write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
        then()

    return writer


class _FullLog(io.StringIO):
    """tn-train's log on a full disk: every write fails."""

    def write(self, text: str) -> int:
        _no_space()
        return 0


_SAVE_CHECKPOINT, _SAVE_IMAGE = torch.save, Image.Image.save  # the real writers, kept
_PNG = functools.partial(_SAVE_IMAGE, format="PNG")

FAULTS: dict[str, Callable[[pytest.MonkeyPatch], None]] = {
    "nan loss": lambda p: _fail_loss(p, 1, lambda v: v * float("nan")),
    "inf loss": lambda p: _fail_loss(p, 1, lambda v: v * float("inf")),
    "ctrl-c": lambda p: _fail_loss(p, 2, _interrupt),
    "sigterm": lambda p: _fail_loss(p, 2, _sigterm),
    "sigterm (image)": lambda p: p.setattr(Image.Image, "save", _half_written(_PNG, _sigterm)),
    "full disk (checkpoint)": lambda p: p.setattr(
        torch, "save", _half_written(_SAVE_CHECKPOINT, _no_space)
    ),
    "full disk (image)": lambda p: p.setattr(Image.Image, "save", _half_written(_PNG, _no_space)),
    "full disk (export)": lambda p: p.setattr("tn_export.export.onnx.export_onnx", _scratch_fills),
    "full disk (log)": lambda p: p.setattr(
        train_module, "open", lambda *args, **kwargs: _FullLog(), raising=False
    ),
}


def _iteration_kept(files: Files, iteration: int) -> None:
    ckpt = load_checkpoint(files.path("run") / "model.pt")
    assert ckpt.metadata["iteration"] == iteration
    assert ckpt.training_state["iteration"] == iteration


def _resumes(files: Files, kept: int) -> None:
    _iteration_kept(files, kept)
    run = files.path("run")
    args = train_args(Path(files["texture"]), run, "--iterations", str(kept + 1), "--resume")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(train_module, "PyramidGenerator", SmallGenerator)
        assert train_main(args) == 0
    _iteration_kept(files, kept + 1)


def _no_code_ran(files: Files) -> None:
    assert not (files.tmp / "pwned").exists(), "unpickling the checkpoint ran code"


def _written(files: Files) -> None:
    with Image.open(files.path("out") / "new" / "deeper" / "t.png") as image:
        assert image.size == (40, 24)


def _logged(files: Files, iterations: list[int]) -> None:
    """The run folder holds one run: its model.pt and a log of `iterations`, nothing appended."""
    _iteration_kept(files, iterations[-1])
    rows = (files.path("run") / "log.jsonl").read_text().splitlines()
    assert [json.loads(row)["iteration"] for row in rows] == iterations


def _photos_unchanged(files: Files) -> None:
    folder = files.path("photos")
    assert sorted(p.name for p in folder.iterdir()) == sorted(PHOTOS)
    for name, args in PHOTOS.items():
        with Image.open(folder / name) as image:
            assert np.array_equal(np.asarray(image), np.asarray(picture(*args))), name


CHECKS: dict[str, Callable[[Files], None]] = {
    "no code ran": _no_code_ran,
    "iteration 1 kept": lambda f: _iteration_kept(f, 1),
    "iteration 2 kept, --resume works": lambda f: _resumes(f, 2),
    "written": _written,
    "photos unchanged": _photos_unchanged,
    "the other run kept": lambda f: _logged(f, [1]),
    "a new run replaced it": lambda f: _logged(f, [2]),
}


# --- the table ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """One bad input: a command line ('{name}' are files from BUILD), the exit status it must
    give, substrings of its one stderr line (and `never` ones it must not hold), an optional
    fault injected while it works and an optional check afterwards. `process`: run as a real
    process (for what a process prints). `env`: environment variables set for the run (a
    smaller memory budget, say, so that the case is the same on every machine). `bounded`: the
    answer must take under BOUND_SECONDS of CPU time and BOUND_BYTES of memory (see measured)."""

    name: str
    tool: str
    argv: tuple[str, ...]
    status: int
    says: tuple[str, ...] = ()
    fault: str | None = None
    check: str | None = None
    process: bool = False
    env: dict[str, str] = field(default_factory=dict)
    bounded: bool = False
    never: tuple[str, ...] = ()


def case(name: str, tool: str, argv: str, status: int, *says: str, **options) -> Case:
    return Case(name, tool, tuple(argv.split()), status, says, **options)


def train_on(image: str = "{texture}", run: str = "{out}") -> str:
    return f"texture --texture {image} -o {run} --descriptor random --image-size 32 --batch-size 2"


def bench(model: str = "{checkpoint}", texture: str = "{texture}", out: str = "{out}") -> str:
    return f"--model {model} --texture {texture} -o {out}"


SYNTH = "synthesize {texture.onnx} --size 40x24 -o"
STYLE = "stylize {style.onnx}"
TRAIN, RESUME = train_on(), train_on(run="{run}")
EXPORT = "--format onnx"
WONT_READ = "cannot be read"

CASES = [
    # files: images
    case("folder as image", "tn-train", train_on("{folder}"), 2,
         "{folder}", "is a folder"),
    case("empty image", "tn-run", f"{STYLE} {{empty.png}} -o {{out}}/o.png", 2,
         "{empty.png}", "empty (0 bytes)"),
    case("truncated PNG", "tn-run", f"{STYLE} {{truncated.png}} -o {{out}}/o.png", 2,
         "{truncated.png}", WONT_READ, "truncated", "re-save it"),
    case("truncated JPEG", "tn-train", train_on("{truncated.jpg}"), 2, "{truncated.jpg}",
         WONT_READ),
    case("random bytes named .png", "tn-run", f"{STYLE} {{random.png}} -o {{out}}/o.png", 2,
         "{random.png}", WONT_READ),
    case("PostScript named .png (never given to Ghostscript)", "tn-run",
         f"{STYLE} {{postscript.png}} -o {{out}}/o.png", 2, "{postscript.png}", WONT_READ),
    case("decompression bomb 100000x100000", "tn-run", f"{STYLE} {{bomb.png}} -o {{out}}/o.png",
         2, "{bomb.png}", f"over the limit of {MAX_PIXELS} pixels", "downscale"),
    case("9500x9500 declared, no Pillow warning", "tn-run",
         f"{STYLE} {{big.png}} -o {{out}}/o.png", 2, "{big.png}", "9500x9500", "over the limit",
         process=True),
    case("decompression bomb as exemplar", "tn-train",
         train_on("{bomb.png}"), 2, "{bomb.png}",
         "over the limit"),
    case("image too small", "tn-run", f"{STYLE} {{tiny.png}} -o {{out}}/o.png", 2,
         "8x8", "at least 16 pixels"),
    case("missing texture", "tn-bench", bench(texture="{missing.png}"), 2, "{missing.png}",
         "does not exist"),
    # checkpoints
    case("random bytes checkpoint", "tn-bench",
         bench("{random.pt}"), 2, "{random.pt}",
         "not a readable tn-export checkpoint"),
    case("pickle that would run code", "tn-export", f"{EXPORT} {{evil.pt}} -o {{out}}", 2,
         "{evil.pt}", "could run code", check="no code ran"),
    case("pickle that would run code, on --resume", "tn-train",
         train_on(run="{evil-run}") + " --resume", 2, "model.pt", "could run code",
         check="no code ran"),
    case("checkpoint of another format version", "tn-export",
         f"{EXPORT} {{version99.pt}} -o {{out}}", 2, "{version99.pt}", "format version 99"),
    case("checkpoint of another config", "tn-export", f"{EXPORT} {{other-config.pt}} -o {{out}}",
         2, "{other-config.pt}", "does not match its generator config"),
    case("--resume with another config", "tn-train", f"{RESUME} --resume --norm instance", 2,
         "--resume", "was trained with"),
    case("truncated checkpoint", "tn-bench",
         bench("{truncated.pt}"), 2, "{truncated.pt}",
         "not a readable", "truncated"),
    case("truncated checkpoint on --resume", "tn-train",
         train_on(run="{truncated-run}") + " --resume", 2, "model.pt",
         "not a readable"),
    case("--resume without a checkpoint", "tn-train", f"{TRAIN} --resume", 2,
         "no checkpoint", "without --resume"),
    case(".t7 with unknown modules", "tn-export", f"{EXPORT} {{unknown.t7}} -o {{out}}", 2,
         "{unknown.t7}", "unknown Torch modules nn.Foo"),
    case("folder as checkpoint", "tn-export", f"{EXPORT} {{folder}} -o {{out}}", 2,
         "{folder}", "is a folder"),
    # models for the runtime
    case("malformed ONNX", "tn-run", "synthesize {truncated.onnx} --size 32x32 -o {out}/t.png",
         2, "{truncated.onnx}", "cannot be loaded"),
    case("foreign ONNX", "tn-run", "stylize {foreign.onnx} {photo} -o {out}/o.png", 2,
         "{foreign.onnx}", "no tn-export metadata", "export it with tn-export"),
    case("wrong input rank", "tn-run", "synthesize {rank3.onnx} --size 32x32 -o {out}/t.png", 2,
         "{rank3.onnx}", "(N, 3, H, W)"),
    case("metadata lying about its size multiple", "tn-run",
         "stylize {lying.onnx} {photo} -o {out}/o.png", 2, "{lying.onnx}", "metadata is wrong"),
    case("folder as model", "tn-run", "synthesize {folder} --size 32x32 -o {out}/t.png", 2,
         "{folder}", "is a folder"),
    # arguments
    case("absurd --size", "tn-run",
         "synthesize {texture.onnx} --size 999999999x999999999 -o {out}/t.png", 2,
         f"maximum of {MAX_SIDE}"),
    case("absurd --max-size", "tn-export", f"{EXPORT} {{checkpoint}} --max-size 1000000000 "
         "-o {out}", 2, "1000000000", "8192"),
    case("absurd --image-size", "tn-train", f"{TRAIN} --image-size 1048576", 2,
         "--image-size", "at most 8192, not 1048576"),
    case("absurd --batch-size", "tn-train", f"{TRAIN} --batch-size 100000", 2,
         "--batch-size", "at most 10000 (the default; set TN_MAX_COUNT to change it)"),
    case("absurd --sizes", "tn-bench", f"{bench()} --sizes 100000", 2,
         "100000x100000", f"at most {MAX_PIXELS} pixels"),
    case("negative --count", "tn-run", f"{SYNTH} {{out}}/t.png --count -3", 2,
         "argument --count: must be positive, not -3"),
    case("zero --tile-pixels", "tn-run", f"{STYLE} {{photo}} -o {{out}}/o.png --tile-pixels 0",
         2, "argument --tile-pixels: must be positive"),
    case("zero --iterations", "tn-train", f"{TRAIN} --iterations 0", 2,
         "argument --iterations: must be positive"),
    case("negative --batch-size", "tn-train", f"{TRAIN} --batch-size -2", 2,
         "argument --batch-size: must be positive"),
    case("zero --runs", "tn-bench", f"{bench()} --runs 0", 2, "--runs",
         "must be positive", "tn-bench run --help"),
    case("negative --threads", "tn-bench", f"{bench()} --threads -1", 2, "--threads",
         "must be positive"),
    case("negative --min-size", "tn-export", f"{EXPORT} {{checkpoint}} --min-size -32 "
         "--max-size 64 -o {out}", 2, "argument --min-size: must be positive, not -32"),
    case("zero --min-size", "tn-export", f"{EXPORT} {{checkpoint}} --min-size 0 --max-size 64 "
         "-o {out}", 2, "argument --min-size: must be positive, not 0"),
    case("unknown precision", "tn-export", f"{EXPORT} {{checkpoint}} --precision int4 -o {{out}}",
         2, "invalid choice: 'int4'", "tn-export --help"),
    case("unknown output format", "tn-run", f"{STYLE} {{photo}} -o {{out}}/o.gif", 2,
         ".png, .jpg or .webp"),
    case("unknown command", "tn-run", "paint {texture.onnx}", 2, "invalid choice: 'paint'",
         "tn-run --help"),
    case("unknown mode", "tn-train", "painting --texture {texture} -o {out}", 2,
         "invalid choice: 'painting'"),
    case("unknown descriptor", "tn-train", f"{TRAIN} --descriptor alexnet", 2,
         "invalid choice: 'alexnet'"),
    case("results nested too deep", "tn-bench", "report {nested.json}", 2, "{nested.json}",
         "is not JSON"),
    case("missing results", "tn-bench", "report {missing.json}", 2, "{missing.json}",
         "does not exist"),
    case("output folder under a file", "tn-run", f"{SYNTH} {{blocker}}/sub/t.png", 2,
         "cannot create output folder", "choose another -o"),
    case("output folder under a file", "tn-train", train_on(run="{blocker}/run"), 2,
         "cannot create output folder"),
    case("output folder under a file", "tn-export", f"{EXPORT} {{checkpoint}} --min-size 32"
         " --max-size 64 -o {blocker}/x", 2, "cannot create output folder"),
    case("output folder under a file", "tn-bench", bench(out="{blocker}/x"), 2,
         "cannot create output folder"),
    case("read-only output folder", "tn-run", f"{SYNTH} {{readonly}}/t.png", 2, "not writable"),
    case("missing output folder is created", "tn-run", f"{SYNTH} {{out}}/new/deeper/t.png", 0,
         check="written"),
    # nothing a user had is lost: no output over an input, whatever its spelling or link
    case("folder into itself", "tn-run", f"{STYLE} {{photos}} -o {{photos}}", 2,
         "{photos}/a.png", "is the input itself", "choose another -o", check="photos unchanged"),
    case("several files into their own folder, spelt with ..", "tn-run",
         f"{STYLE} {{photos}}/a.png {{photos}}/b.png -o {{photos}}/../photos", 2,
         "is the input itself", check="photos unchanged"),
    case("folder into a link to itself", "tn-run", f"{STYLE} {{photos}} -o {{photos-link}}", 2,
         "{photos-link}/a.png", "is the input itself ({photos}/a.png)",
         check="photos unchanged"),
    case("one file over itself, spelt with ..", "tn-run",
         f"{STYLE} {{photos}}/a.png -o {{photos}}/../photos/a.png", 2, "is the input itself",
         check="photos unchanged"),
    case("one file over a symbolic link to it", "tn-run",
         f"{STYLE} {{photos}}/a.png -o {{a-link.png}}", 2, "{a-link.png} is the input itself",
         check="photos unchanged"),
    case("one file over a hard link to it", "tn-run",
         f"{STYLE} {{photos}}/a.png -o {{a-hardlink.png}}", 2,
         "{a-hardlink.png} is the input itself", check="photos unchanged"),
    case("texture over its own model", "tn-run", "synthesize {model.png} --size 40x24 -o "
         "{model.png}", 2, "{model.png} is the input itself"),
    case("export over its own checkpoint", "tn-export", f"{EXPORT} {{checkpoints}}/small.onnx "
         "--name small -o {checkpoints}/../ckpts", 2, "small.onnx is the input itself"),
    case("Core ML package that holds the checkpoint", "tn-export", "--format coreml "
         "{packages}/x.mlpackage/model.pt --name x -o {packages}", 2,
         "{packages}/x.mlpackage is a folder that holds the input"),
    case("exemplar in the run's samples", "tn-train",
         train_on("{run}/samples/iter_000001.png", "{run}") + " --resume", 2,
         "{run}/samples is a folder that holds the input", check="iteration 1 kept"),
    # nothing a user had is lost: a new run never replaces another run
    case("existing run without --resume", "tn-train", RESUME, 2,
         "run folder {run} is not empty", "--resume", "new -o", "--overwrite",
         check="the other run kept"),
    case("folder of photos as run folder", "tn-train", train_on(run="{photos}"), 2,
         "run folder {photos} is not empty", check="photos unchanged"),
    case("--resume with --overwrite", "tn-train", f"{RESUME} --resume --overwrite", 2,
         "--resume", "--overwrite", "give one", check="the other run kept"),
    case("--overwrite starts a new run in its place", "tn-train",
         f"{RESUME} --overwrite --iterations 2", 0, check="a new run replaced it"),
    case("existing empty folder", "tn-train", f"{train_on(run='{folder}')} --iterations 1", 0),
    # small inputs, huge costs: every size, count and thread number checked against the one
    # budget (tn_export.budget) before anything is allocated or started
    case("--count of 10^8", "tn-run", f"{SYNTH} {{out}}/t.png --count 100000000", 2, "--count",
         "at most 10000", "TN_MAX_COUNT", bounded=True),
    case("--threads 10000", "tn-run", f"{SYNTH} {{out}}/t.png --threads 10000", 2, "--threads",
         "os.cpu_count()", "TN_MAX_THREADS", bounded=True),
    case("--threads 10000", "tn-bench", f"{bench()} --threads 10000", 2, "--threads",
         "logical cores", "TN_MAX_THREADS", bounded=True),
    case("--runs of 10^5", "tn-bench", f"{bench()} --runs 100000", 2, "--runs", "at most 10000",
         bounded=True),
    case("more --sizes than the count limit", "tn-bench", f"{bench()} --sizes 32,64,96,128", 2,
         "--sizes", "4 is over the limit of 3", env={"TN_MAX_COUNT": "3"}, bounded=True),
    case("exemplar exactly at the pixel limit", "tn-train", train_on("{pixel-limit.png}"), 2,
         "{pixel-limit.png} (8192x8192) described as the exemplar", "needs at least 34.4 GB",
         "8.0 GB of TN_MEMORY_BUDGET=8G", "downscale it", env={"TN_MEMORY_BUDGET": "8G"},
         bounded=True),
    case("content photo at the pixel limit", "tn-train",
         "style --style {texture} --content {pixel-limit.png} -o {out} --descriptor random "
         "--image-size 32 --batch-size 2", 2,
         "{pixel-limit.png} (8192x8192) as a content photo needs at least 1.6 GB",
         env={"TN_MEMORY_BUDGET": "1G"}, bounded=True),
    case("descriptor weights that inflate to 600 MB", "tn-train",
         f"{TRAIN} --descriptor vgg16 --descriptor-weights {{inflating.pt}}", 2,
         "descriptor weights {inflating.pt} (unpacked) needs at least 629 MB",
         "point --descriptor-weights at a torchvision VGG state dict",
         env={"TN_MEMORY_BUDGET": "256M"}, bounded=True),
    case("photo at the pixel limit, its buffers over the memory", "tn-run",
         f"{STYLE} {{pixel-limit.png}} -o {{out}}/o.png", 2,
         "{pixel-limit.png} (8192x8192) to stylize needs at least 537 MB",
         env={"TN_MEMORY_BUDGET": "256M"}, bounded=True),
    case("a training step over the memory", "tn-train",
         f"{TRAIN} --image-size 2048 --batch-size 8", 2, "a training step of --batch-size 8",
         "needs at least", "lower them", env={"TN_MEMORY_BUDGET": "8G"}, bounded=True),
    case("Gatys size over the memory", "tn-bench", f"{bench()} --gatys-size 8192", 2,
         "Gatys at 8192x8192 needs at least", "lower --gatys-size",
         env={"TN_MEMORY_BUDGET": "8G"}, bounded=True),
    case("quality samples over the memory", "tn-bench",
         "quality {checkpoint} --exemplar {texture} --samples 10000 --size 1024 -o {out}", 2,
         "10000 samples of 1024x1024 needs at least", env={"TN_MEMORY_BUDGET": "8G"},
         bounded=True),
    case("checkpoint declaring absurd layer sizes", "tn-bench", bench("{huge-layers.pt}"), 2,
         "{huge-layers.pt}: a texture generator of 3 scales x 100000 channels",
         "(its weights) needs at least", bounded=True),
    case("checkpoint declaring 20 scales", "tn-bench", bench("{20-scales.pt}"), 2,
         "multiples of 2**19", "at most 14 scales", bounded=True),
    case("compressed model.pt that inflates to 600 MB", "tn-bench", bench("{inflating.pt}"), 2,
         "{inflating.pt} (unpacked) needs at least 629 MB", env={"TN_MEMORY_BUDGET": "256M"},
         bounded=True),
    case("ONNX graph that loops for ever in the load-time check", "tn-run",
         "synthesize {loop.onnx} --size 32x32 -o {out}/t.png", 2, "{loop.onnx}",
         "did not finish one run at 8x12 within 1 s (TN_PROBE_SECONDS=1",
         env={"TN_PROBE_SECONDS": "1"}, bounded=True),
    case("metadata max size over the largest side", "tn-run",
         "synthesize {side-1000000.onnx} --size 32x32 -o {out}/t.png", 2,
         "invalid tn-export metadata", "max size 1000000 is over the largest side, 8192",
         bounded=True),
    case("metadata noise depth over the pixel limit", "tn-run",
         "synthesize {noise-depth-1e9.onnx} --size 32x32 -o {out}/t.png", 2,
         "1000000000 input channels at 96x96", "RGB image at the pixel limit", bounded=True),
    case("metadata min size whose check does not fit", "tn-run",
         "synthesize {min-8192.onnx} --size 8192x8192 -o {out}/t.png", 2,
         "check at 8192x8192 needs at least", env={"TN_MEMORY_BUDGET": "8G"}, bounded=True),
    case("metadata allows 8192x8192, the runtime cannot fit it", "tn-run",
         "synthesize {max-8192.onnx} --size 8192x8192 -o {out}/t.png", 2,
         "{max-8192.onnx} at 8192x8192 needs at least 27.4 GB", "ask for a smaller size",
         env={"TN_MEMORY_BUDGET": "8G"}, bounded=True),
    case("more --shapes than the count limit", "tn-export",
         f"{EXPORT} {{checkpoint}} --shapes 32x32,64x64,96x96 -o {{out}}", 2,
         "--shapes: the number of sizes 3 is over the limit of 2", env={"TN_MAX_COUNT": "2"},
         bounded=True),
    case("--shapes far over the validation cap", "tn-export",
         f"{EXPORT} {{checkpoint}} --shapes 64x64,8192x8192 -o {{out}}", 2,
         "one run of this model at 8192x8192 needs at least 14.5 GB",
         "lower --max-size or --shapes",
         env={"TN_MEMORY_BUDGET": "8G"}, bounded=True),
    case("--max-size whose run the runtime cannot fit", "tn-export",
         f"{EXPORT} {{checkpoint}} --max-size 8192 -o {{out}}", 2,
         "one run of this model at 8192x8192 needs at least 14.5 GB",
         env={"TN_MEMORY_BUDGET": "8G"}, bounded=True),
    case("--tile-pixels too large to convert", "tn-run",
         f"{STYLE} {{photo}} -o {{out}}/o.png --tile-pixels {10**30}", 2, "--tile-pixels",
         f"at most {MAX_PIXELS}"),
    # clear messages: one line, exit status 2, never a temporary name or an empty reason
    case("output shape that does not follow the input", "tn-run",
         "synthesize {transposed.onnx} --size 32x32 -o {out}/t.png", 2,
         "returns shape (1, 3, 8, 12) for a 8x12 input", "does not follow its input"),
    case("NaN-valued model", "tn-run", "synthesize {nan.onnx} --size 32x32 -o {out}/t.png", 2,
         "{nan.onnx} returns NaN or infinite values"),
    case("NaN-valued checkpoint", "tn-bench", bench("{nan.pt}"), 2,
         "{nan.pt} holds NaN or infinite values in to_rgb.weight"),
    case("--seed out of range", "tn-train", f"{TRAIN} --seed 4294967296", 2, "--seed",
         "at most 4294967295"),
    case("--seed out of range", "tn-run", f"{SYNTH} {{out}}/t.png --seed -1", 2, "--seed",
         "at least 0"),
    case("NaN --lr", "tn-train", f"{TRAIN} --lr nan", 2, "--lr", "finite"),
    case("negative --lr", "tn-train", f"{TRAIN} --lr -0.1", 2, "--lr", "must be over 0"),
    case("negative --lr-decay", "tn-train", f"{TRAIN} --lr-decay -0.5", 2, "--lr-decay",
         "must be over 0"),
    case("NaN --lr-decay", "tn-train", f"{TRAIN} --lr-decay nan", 2, "--lr-decay", "finite"),
    case("infinite weight", "tn-train", f"{TRAIN} --style-weight inf", 2, "--style-weight",
         "finite"),
    case("NaN --cell-budget", "tn-bench", f"{bench()} --cell-budget nan", 2, "--cell-budget",
         "finite"),
    case("infinite --gatys-seconds", "tn-bench", f"{bench()} --gatys-seconds inf", 2,
         "--gatys-seconds", "finite"),
    case("NaN --reference", "tn-bench", "training-curve {run} --reference paper=nan -o {out}/c.png",
         2, "--reference 'paper=nan' is not NAME=DISTANCE (must be a finite number, not nan)"),
    case("-o that is a folder", "tn-run", f"{SYNTH} {{busy}}/t.png", 2,
         "output {busy}/t.png is a folder"),
    case("results.json that is a folder, before the work", "tn-bench", bench(out="{busy}"), 2,
         "output {busy}/results.json is a folder", bounded=True),
    case("model.pt that is a folder, before the work", "tn-train",
         train_on(run="{busy}") + " --overwrite", 2, "output {busy}/model.pt is a folder",
         bounded=True),
    case("an artifact that is a folder, before the work", "tn-export",
         f"{EXPORT} {{checkpoint}} -o {{busy}}", 2, "output {busy}/small.onnx is a folder",
         bounded=True),
    case(".t7 that contains itself", "tn-export", f"{EXPORT} {{itself.t7}} -o {{out}}", 2,
         "{itself.t7} is not a texture_nets v1 pyramid", "nn.Sequential contains itself"),
    case("checkpoint whose metadata is not a mapping", "tn-bench", bench("{list-metadata.pt}"),
         2, "{list-metadata.pt} has metadata that is list, not a mapping"),
    case("state dict with a wrong key", "tn-bench", bench("{wrong-key.pt}"), 2,
         "does not match its generator config (its weights lack 'to_rgb.bias')"),
    # faults while working
    case("NaN loss", "tn-train", f"{RESUME} --resume --iterations 3", 1, "loss became nan",
         "model.pt is kept", "--resume", fault="nan loss", check="iteration 1 kept"),
    case("inf loss", "tn-train", f"{RESUME} --resume --iterations 3", 1, "loss became inf",
         fault="inf loss", check="iteration 1 kept"),
    case("Ctrl-C", "tn-train", f"{RESUME} --resume --iterations 4 --checkpoint-every 100", 130,
         "interrupted", "model.pt is kept", "--resume", fault="ctrl-c",
         check="iteration 2 kept, --resume works"),
    case("full disk while saving a checkpoint", "tn-train",
         f"{RESUME} --resume --iterations 3 --checkpoint-every 1", 1, "could not write",
         "model.pt", "No space left on device", "the existing file is unchanged",
         "free some disk space there (", " MB free now)", fault="full disk (checkpoint)",
         check="iteration 1 kept"),
    case("full disk while saving an image", "tn-run", f"{SYNTH} {{out}}/t.png", 1,
         "{out}/t.png", "No space left on device", "nothing was written", "free some disk space",
         fault="full disk (image)"),
    case("full disk while writing the log", "tn-train", f"{RESUME} --resume --iterations 3", 1,
         "could not write {run} (No space left on device)", "MB free now",
         fault="full disk (log)", check="iteration 1 kept"),
    case("full disk in the export's scratch folder", "tn-export",
         f"{EXPORT} {{checkpoint}} --min-size 32 --max-size 64 -o {{out}}", 1,
         "could not write {out} (No space left on device); nothing was written",
         "MB free now", fault="full disk (export)"),
    case("NaN loss in a run that has no checkpoint yet", "tn-train",
         f"{train_on(run='{folder}')} --iterations 3",
         1, "loss became nan at iteration 1", "no checkpoint was written yet", "run again",
         fault="nan loss", never=("model.pt", "--resume")),
    case("SIGTERM", "tn-train", f"{RESUME} --resume --iterations 4 --checkpoint-every 100", 143,
         "tn-train: terminated", "model.pt is kept", "--resume", fault="sigterm",
         check="iteration 2 kept, --resume works"),
    case("SIGTERM while saving an image", "tn-run", f"{SYNTH} {{out}}/t.png", 143,
         "tn-run: terminated", fault="sigterm (image)"),
]  # fmt: skip


@pytest.fixture(scope="module")
def assets(tmp_path_factory: pytest.TempPathFactory) -> Assets:
    return Assets(tmp_path_factory.mktemp("assets"))


EXPORTING = re.compile(r"tn-export: .+: exporting( and validating)?")  # its progress lines


def error_lines(tool: str, stderr: str) -> list[str]:
    """stderr without tn-train's progress bar (carriage-return updates of 'tn-train texture:')
    and tn-export's progress lines."""
    parts = (p.strip() for line in stderr.splitlines() for p in line.split("\r"))
    return [
        p
        for p in parts
        if p and not p.startswith(f"{tool} texture:") and not EXPORTING.fullmatch(p)
    ]


def run_case(c: Case, files: Files, argv: list[str], capsys) -> tuple[int, str]:
    if c.process:
        command = f"from {MODULES[c.tool]} import main; raise SystemExit(main())"
        proc = subprocess.run(
            [sys.executable, "-c", command, *argv], capture_output=True, text=True, timeout=120
        )
        return proc.returncode, proc.stderr
    with warnings.catch_warnings(record=True) as caught:  # a real process prints them on stderr
        warnings.simplefilter("always")
        status = MAINS[c.tool](argv)
    printed = "".join(f"{w.category.__name__}: {w.message}\n" for w in caught)
    return status, capsys.readouterr().err + printed


def leftovers(folder: Path) -> list[str]:
    """Temporaries of atomic writes and export scratch folders anywhere below `folder`."""
    return [str(p) for p in folder.rglob(".*") if p.name.endswith(".tmp") or ".export-" in p.name]


BOUND_SECONDS, BOUND_BYTES = 5.0, 500 * 10**6
TEMPORARY = re.compile(r"/\.[^/\s]+\.tmp\b|\.export-\d+-")  # atomic writes, export scratch


def _status_kb(key: str) -> int:
    return int(re.search(rf"^{key}:\s+(\d+) kB", Path("/proc/self/status").read_text(), re.M)[1])


def measured(run: Callable[[], tuple[int, str]]) -> tuple[tuple[int, str], float, int | None]:
    """`run()`, the CPU seconds it took (all threads: what other jobs on a loaded machine do not
    inflate) and how far it raised this process's peak memory above its memory before (None
    where Linux's peak cannot be reset: /proc/self/clear_refs)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")  # the peak (VmHWM) := the current RSS
        before = _status_kb("VmRSS")
    except OSError:
        before = None
    start = time.process_time()
    result = run()
    seconds = time.process_time() - start
    peak = None if before is None else (_status_kb("VmHWM") - before) * 1024
    return result, seconds, peak


@pytest.mark.parametrize("c", CASES, ids=lambda c: f"{c.tool} {c.name}")
def test_bad_input_gets_one_clear_line(c: Case, assets, tmp_path, monkeypatch, capsys):
    files = Files(tmp_path, assets)
    argv = [files.fill(a) for a in c.argv]
    says = [files.fill(s) for s in c.says]
    monkeypatch.setattr(train_module, "PyramidGenerator", SmallGenerator)
    if c.fault:
        FAULTS[c.fault](monkeypatch)
    for name, value in c.env.items():
        monkeypatch.setenv(name, value)
    capsys.readouterr()  # what making the inputs printed (a training run) is not the case's
    if c.bounded:  # measured on a second run: the first pays for imports and caches made once
        run_case(c, files, argv, capsys)
    (status, stderr), seconds, peak = measured(lambda: run_case(c, files, argv, capsys))
    monkeypatch.undo()
    lines = error_lines(c.tool, stderr)
    if c.status == 0:
        assert status == 0 and lines == [], stderr
    else:
        assert status == c.status, stderr
        assert len(lines) == 1, stderr
        assert lines[0].startswith(f"{c.tool}: "), lines[0]
        for text in says:
            assert text in lines[0], f"{text!r} not in {lines[0]!r}"
        for text in c.never:
            assert text not in lines[0], f"{text!r} in {lines[0]!r}"
        assert not TEMPORARY.search(lines[0]), lines[0]
        assert not lines[0].rstrip().endswith(":"), lines[0]  # a reason, never an empty one
        assert "Traceback" not in stderr and "Warning" not in stderr
    if c.bounded:
        assert seconds < BOUND_SECONDS, f"answered after {seconds:.1f} s of CPU time"
        assert peak is None or peak < BOUND_BYTES, f"peak memory rose by {peak / 1e6:.0f} MB"
    out = files.path("out")
    if c.status != 0 and out.exists():
        assert [p for p in out.rglob("*") if p.is_file()] == []
    assert leftovers(tmp_path) == []
    if c.check:
        CHECKS[c.check](files)


@pytest.mark.parametrize(
    "name",
    ["empty image", "truncated JPEG", "pickle that would run code", "random bytes checkpoint"],
)
def test_debug_shows_the_traceback(name, assets, tmp_path):
    c = next(c for c in CASES if c.name == name)
    files = Files(tmp_path, assets)
    argv = [files.fill(a) for a in c.argv] + ["--debug"]
    with pytest.raises(UserError):
        MAINS[c.tool](argv)


# --- outputs over inputs: names that differ only in case ----------------------------------------


def test_names_differing_only_in_case_are_one_file_where_the_file_system_ignores_case(
    assets, tmp_path, monkeypatch, capsys
):
    """This file system tells Photo.png from photo.png; where one does not (macOS, Windows),
    two inputs of those names must not be stylized into one folder: the second would replace
    the first. The probe is faked here with a hard link, the only way to have two names for one
    entry on a case-sensitive file system."""
    for folder, name in (("x", "Photo.png"), ("y", "photo.png")):
        picture(20, 20).save(_mkdir(tmp_path / folder) / name)
    outputs = [tmp_path / "out" / "Photo.png", tmp_path / "out" / "photo.png"]
    assert not atomic._ignores_case(tmp_path)
    assert len({atomic.file_key(p) for p in outputs}) == 2
    os.link(tmp_path / "x" / "Photo.png", tmp_path / "x" / "pHOTO.PNG")
    assert atomic._ignores_case(tmp_path / "x")

    monkeypatch.setattr(atomic, "_ignores_case", lambda folder: True)
    assert len({atomic.file_key(p) for p in outputs}) == 1
    argv = ["stylize", str(assets.model("style")), str(tmp_path / "x" / "Photo.png"),
            str(tmp_path / "y" / "photo.png"), "-o", str(tmp_path / "out")]  # fmt: skip
    assert run_main(argv) == 2
    assert "would both be written" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


# --- process-level faults -----------------------------------------------------------------------

# Real processes, forked: they start with torch already imported (a fresh interpreter takes 10 s
# here) and are killed or raced exactly as a separate tn-train or tn-export would be.
FORK = multiprocessing.get_context("fork")
WAIT = 120  # seconds before a child that never answers fails the test (instead of hanging it)


def _forked(target: Callable, *args) -> multiprocessing.Process:
    """A forked child running `target(*args)` on one thread: the parent's OpenMP pool was not
    forked with it, and the child's first parallel torch operation would wait for it for ever."""
    return FORK.Process(target=_one_thread, args=(target, *args))


def _one_thread(target: Callable, *args) -> None:
    torch.set_num_threads(1)
    target(*args)


def _stalled_writer(model: Path, conn) -> None:
    """Save model.pt twice more, as a training loop does; the second write stops halfway and
    waits (for the SIGKILL)."""
    ckpt = load_checkpoint(model)

    def stalled(obj, target, *args, **kwargs):
        buffer = io.BytesIO()
        _SAVE_CHECKPOINT(obj, buffer)
        Path(target).write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
        conn.send(("writing", str(target)))
        conn.recv()  # never answered: the parent kills this process here

    for iteration in (2, 3):
        torch.save = stalled if iteration == 3 else _SAVE_CHECKPOINT
        state = {**ckpt.training_state, "iteration": iteration}
        save_checkpoint(model, ckpt.generator, {**ckpt.metadata, "iteration": iteration}, state)
        conn.send(("saved", iteration))


def test_sigkill_while_writing_a_checkpoint_keeps_the_previous_one(assets, tmp_path):
    """A process killed (kill -9) halfway through writing model.pt: the previous model.pt loads,
    and tn-train --resume continues from it."""
    files = Files(tmp_path, assets)
    model = files.path("run") / "model.pt"
    conn, child_conn = FORK.Pipe()
    child = _forked(_stalled_writer, model, child_conn)
    child.start()
    try:
        assert conn.poll(WAIT) and conn.recv() == ("saved", 2)
        assert conn.poll(WAIT)
        word, partial = conn.recv()
        assert word == "writing" and Path(partial).stat().st_size > 0
        os.kill(child.pid, signal.SIGKILL)
        child.join(WAIT)
        assert child.exitcode == -signal.SIGKILL
    finally:
        child.kill()
    # What a SIGKILL can leave: the hidden temporary beside the intact file, never model.pt.
    assert [p.name for p in model.parent.glob(".model.pt.*.tmp")] == [Path(partial).name]
    _resumes(files, 2)


def _racing_exporter(source: Path, argv: list[str], stderr: Path, conn) -> None:
    """tn-export with the torch export and the PyTorch comparison stood in for; it installs
    when the parent says go."""
    from tn_export.export import cli, pipeline, validate
    from tn_export.export import onnx as onnx_format
    from tn_export.export.reference import Validation

    install = pipeline._Run._install

    def synchronised_install(run, result):
        conn.send("ready")
        conn.recv()  # both exporters install at the same moment
        install(run, result)

    onnx_format.export_onnx = onnx_copier(source)
    validate.validate_onnx = lambda *args, **kwargs: Validation(True, "ok (stood in)")
    pipeline._Run._install = synchronised_install
    with open(stderr, "w") as sys.stderr:
        sys.exit(cli.main(argv))


FAILED = ("tn-export: error: ", "tn-export: failed: ")


def test_two_exports_to_the_same_path_at_once_leave_one_whole_artifact(assets, tmp_path):
    """Two tn-export processes install the same output at the same moment, each a different
    3 MB model. The slow torch export and the PyTorch comparison are stood in for; config,
    checkpoint loading, scratch folders, installation and the record are the real code."""
    out = tmp_path / "out"
    argv = [str(assets.checkpoint), "--format", "onnx", "--min-size", "32", "--max-size", "64",
            "--name", "same", "-o", str(out)]  # fmt: skip
    writers = []
    for who in "AB":
        source = tiny_model(tmp_path / f"{who}.onnx", "texture", doc=who * 3_000_000)
        conn, child_conn = FORK.Pipe()
        args = (source, argv, tmp_path / f"{who}.err", child_conn)
        writers.append((_forked(_racing_exporter, *args), conn, who))
    try:
        for child, _, _ in writers:
            child.start()
        for _, conn, _ in writers:
            assert conn.poll(WAIT) and conn.recv() == "ready"
        for _, conn, _ in writers:
            conn.send("go")
        for child, _, _ in writers:
            child.join(WAIT)
    finally:
        for child, _, _ in writers:
            child.kill()
    for child, _, who in writers:  # each succeeds, or fails cleanly with one line
        stderr = (tmp_path / f"{who}.err").read_text()
        failures = [line for line in stderr.splitlines() if line.startswith(FAILED)]
        status = child.exitcode
        assert (status, failures) == (0, []) or (status in (1, 2) and len(failures) == 1), stderr
    assert 0 in [child.exitcode for child, _, _ in writers]
    parts = ["same.coarse.onnx", "same.fine.onnx"]  # the exact-tiling parts, beside the model
    assert sorted(os.listdir(out)) == sorted([*parts, "same.export.json", "same.onnx"])
    final = onnx.load(out / "same.onnx")
    onnx.checker.check_model(final)
    assert final.doc_string in ("A" * 3_000_000, "B" * 3_000_000)  # one writer's, whole
    assert json.loads((out / "same.export.json").read_text())["artifacts"][0]["installed"]


def _stalled_exporter(argv: list[str], stderr: Path, conn) -> None:
    """tn-export whose ONNX export writes half a file in its scratch folder, says where, and
    waits there (for the signal)."""
    from tn_export.export import cli
    from tn_export.export import onnx as onnx_format

    def stalled(deployable, path, contract, dynamic_batch=True):
        Path(path).write_bytes(b"half an ONNX file")
        conn.send(str(Path(path).parent.parent))  # SCRATCH/onnx-fp32/NAME.onnx
        conn.recv()  # never answered

    onnx_format.export_onnx = stalled
    with open(stderr, "w") as sys.stderr:
        sys.exit(cli.main(argv))


def _killed_while_exporting(argv: list[str], tmp_path: Path, sig: int) -> tuple[Path, int]:
    """Run tn-export in a child, send it `sig` while it works in its scratch folder; returns
    that folder and the child's pid, once the child has ended."""
    conn, child_conn = FORK.Pipe()
    child = _forked(_stalled_exporter, argv, tmp_path / "err", child_conn)
    child.start()
    try:
        assert conn.poll(WAIT)
        scratch = Path(conn.recv())
        assert scratch.is_dir() and scratch.name.startswith(f".small.export-{child.pid}-")
        os.kill(child.pid, sig)
        child.join(WAIT)
    finally:
        child.kill()
    assert child.exitcode == (143 if sig == signal.SIGTERM else -sig)
    return scratch, child.pid


def _export_argv(out: Path, checkpoint: Path) -> list[str]:
    return [str(checkpoint), "--format", "onnx", "--min-size", "32", "--max-size", "64",
            "-o", str(out)]  # fmt: skip


def test_sigterm_during_an_export_removes_its_scratch_folder(assets, tmp_path):
    out = tmp_path / "out"
    _killed_while_exporting(_export_argv(out, assets.checkpoint), tmp_path, signal.SIGTERM)
    stderr = (tmp_path / "err").read_text()
    assert stderr.splitlines()[-1] == "tn-export: terminated" and "Traceback" not in stderr
    assert os.listdir(out) == []


def _scratch_of(out: Path, name: str, pid: int, host: str) -> Path:
    folder = _mkdir(out / f".{name}.export-{pid}-abc123")
    (folder / "owner").write_text(host)
    return folder


def test_the_next_export_removes_the_scratch_folder_a_sigkill_left(assets, tmp_path, monkeypatch):
    """A SIGKILL cannot be caught: the scratch folder stays, and nothing else. The next export
    into the folder removes it, and only scratch folders whose process is gone."""
    from tn_export.export import onnx as onnx_format
    from tn_export.export import validate
    from tn_export.export.reference import Validation

    out = tmp_path / "out"
    argv = _export_argv(out, assets.checkpoint)
    scratch, pid = _killed_while_exporting(argv, tmp_path, signal.SIGKILL)
    assert os.listdir(out) == [scratch.name] and (scratch / "owner").is_file()
    running = _scratch_of(out, "running", os.getpid(), socket.gethostname())
    elsewhere = _scratch_of(out, "elsewhere", pid, "another-host")
    unowned = _mkdir(out / f".unowned.export-{pid}-abc123")  # made, its owner not written yet
    monkeypatch.setattr(onnx_format, "export_onnx", onnx_copier(assets.model("texture")))
    monkeypatch.setattr(validate, "validate_onnx", lambda *args, **kwargs: Validation(True, "ok"))
    assert export_main(argv) == 0
    kept = [running.name, elsewhere.name, unowned.name]
    parts = ["small.coarse.onnx", "small.fine.onnx"]  # the exact-tiling parts, beside the model
    assert sorted(os.listdir(out)) == sorted([*kept, *parts, "small.export.json", "small.onnx"])


# --- image modes and EXIF orientation -----------------------------------------------------------

WHITE, RED = (255, 255, 255), (255, 0, 0)


def _mode_image(mode: str) -> tuple[Image.Image, tuple[int, int, int]]:
    """A 4x4 image in `mode` whose top-left pixel must read back as the given RGB."""
    if mode == "RGBA":
        return Image.new("RGBA", (4, 4), (255, 0, 0, 0)), WHITE  # transparent: on white
    if mode == "LA":
        return Image.new("LA", (4, 4), (0, 255)), (0, 0, 0)
    if mode == "L":
        return Image.new("L", (4, 4), 128), (128, 128, 128)
    if mode == "P":
        return Image.new("RGB", (4, 4), RED).convert("P"), RED
    if mode == "I;16":
        return Image.fromarray(np.full((4, 4), 65535, np.uint16)), WHITE
    return Image.new("CMYK", (4, 4), (255, 0, 0, 0)), (0, 255, 255)  # full cyan


@pytest.mark.parametrize("mode", ["RGBA", "LA", "L", "P", "I;16", "CMYK"])
def test_every_pillow_mode_reads_as_the_right_rgb(mode, tmp_path):
    image, expected = _mode_image(mode)
    assert image.mode == mode
    path = tmp_path / ("in.tif" if mode == "CMYK" else "in.png")
    image.save(path)
    loaded = load_image(path)
    assert loaded.mode == "RGB" and loaded.size == (4, 4)
    assert loaded.getpixel((0, 0)) == pytest.approx(expected, abs=1)


def test_exif_rotation_is_applied(tmp_path):
    """Orientation 6 (shown rotated 90 degrees clockwise): the red left column comes out on top."""
    image = Image.new("RGB", (64, 32), WHITE)
    image.paste(RED, (0, 0, 8, 32))
    exif = Image.Exif()
    exif[0x0112] = 6
    image.save(tmp_path / "rotated.jpg", exif=exif, quality=95)
    loaded = load_image(tmp_path / "rotated.jpg")
    assert loaded.size == (32, 64)
    assert loaded.getpixel((16, 2)) == pytest.approx(RED, abs=12)
    assert loaded.getpixel((16, 60)) == pytest.approx(WHITE, abs=12)


# --- size properties ----------------------------------------------------------------------------

MIN_SIDE = runtime.MIN_SIDE
PROPERTY = settings(
    max_examples=25,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
SIDE = st.one_of(
    st.integers(-(10**9), MIN_SIDE - 1),
    st.integers(MIN_SIDE, MAX_SIDE),
    st.integers(MAX_SIDE + 1, 10**9),
)


@pytest.fixture(scope="module")
def texture_model(assets) -> runtime.Model:
    return runtime.load(assets.model("texture"))


@pytest.fixture(scope="module")
def style_model(assets) -> runtime.Model:
    return runtime.load(assets.model("style"))


@PROPERTY
@given(width=SIDE, height=SIDE)
def test_synthesize_gives_exactly_any_size_within_bounds_and_names_the_bound_outside(
    texture_model, width, height
):
    if min(width, height) < MIN_SIDE:
        bound = MIN_SIDE
    elif max(width, height) > MAX_SIDE:
        bound = MAX_SIDE
    else:
        assert texture_model.synthesize(width, height, seed=0)[0].size == (width, height)
        return
    with pytest.raises(UserError, match=rf"\b{bound}\b") as info:
        texture_model.synthesize(width, height, seed=0)
    assert f"{width}x{height}" in str(info.value)


@PROPERTY
@given(
    size=st.one_of(
        st.tuples(st.integers(1, 3 * MAX_SIDE), st.integers(1, 3 * MAX_SIDE)),
        # Over the pixel limit, in 1-bit mode so that the test itself stays small.
        st.tuples(st.integers(MAX_PIXELS // 8192 + 1, 20_000), st.just(8192)),
    )
)
def test_stylize_keeps_any_size_and_names_the_bound_outside(style_model, size):
    width, height = size
    if min(size) >= MIN_SIDE and width * height <= MAX_PIXELS:
        assert style_model.stylize(picture(width, height)).size == size
        return
    bound = MIN_SIDE if min(size) < MIN_SIDE else MAX_PIXELS
    with pytest.raises(UserError, match=rf"\b{bound}\b"):
        style_model.stylize(Image.new("1", size))


# --- seeded fuzzing -----------------------------------------------------------------------------


def _mutate(data: bytes, rng: random.Random) -> bytes:
    """One to four of: flip a bit, set a byte, cut the tail, insert bytes, copy a span."""
    out = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        kind, at = rng.randrange(5), rng.randrange(len(out) + 1)
        if kind == 0 and at < len(out):
            out[at] ^= 1 << rng.randrange(8)
        elif kind == 1 and at < len(out):
            out[at] = rng.choice([0x00, 0xFF, 0x7F, 0x80, rng.randrange(256)])
        elif kind == 2:
            del out[at:]
        elif kind == 3:
            out[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
        elif len(out) > 8:
            start, n = rng.randrange(len(out)), rng.randint(1, 16)
            out[at : at + n] = out[start : start + n]
    return bytes(out)


def _seed_images() -> list[bytes]:
    small = picture(24, 16)
    exif = Image.Exif()
    exif[0x0112] = 6
    return [
        encoded(small, "PNG"),
        encoded(small.convert("RGBA"), "PNG"),
        encoded(small.convert("P"), "PNG"),
        encoded(small, "JPEG"),
        encoded(small, "JPEG", exif=exif),
        encoded(small, "GIF"),
        encoded(small, "WEBP"),
    ]


FUZZ_IMAGES = 2100
FUZZ_METADATA = 3000


def test_fuzzed_images_load_or_fail_with_one_clear_line(tmp_path):
    rng, seeds = random.Random(6), _seed_images()
    path = tmp_path / "fuzzed.png"
    loaded = refused = 0
    for i in range(FUZZ_IMAGES):
        data = _mutate(seeds[i % len(seeds)], rng)
        path.write_bytes(data)
        try:
            with warnings.catch_warnings(record=True) as caught:  # stderr noise in a real run
                warnings.simplefilter("always")
                image = load_image(path)
            assert caught == [], f"input {i} warned: {caught[0].message}"
        except UserError as e:
            assert "\n" not in str(e) and str(path) in str(e)
            refused += 1
        except Exception as e:  # noqa: BLE001 - the failure this test exists to catch
            crash = tmp_path.parent / f"crash-{i}.bin"
            crash.write_bytes(data)
            pytest.fail(f"input {i} (saved as {crash}) raised {type(e).__name__}: {e}")
        else:
            assert image.mode == "RGB" and min(image.size) > 0
            loaded += 1
    assert loaded > 100 and refused > 100  # the mutations reach both outcomes


FUZZ_VALUES = ["", "0", "-1", "1e3", "nan", "32", "64", "2048", "9" * 5000, "[" * 50_000, "{}",
               "[]", "null", "texture", "style", "\x00", " 32 ", "0x20", "true", "{", "3.5",
               '{"a": [1, {"b": null}]}', "RGB", "NCHW"]  # fmt: skip


def test_fuzzed_metadata_parses_or_fails_with_one_clear_line():
    rng = random.Random(6)
    base = ModelContract(mode="style", training={"descriptor": "vgg16", "loss": 1.5}).to_metadata()
    accepted = 0
    for i in range(FUZZ_METADATA):
        metadata = dict(base)
        for _ in range(rng.randint(1, 4)):
            key, kind = rng.choice(list(base)), rng.randrange(4)
            if kind == 0:
                metadata.pop(key, None)
            elif kind == 1:
                metadata[key] = rng.choice(FUZZ_VALUES)
            elif kind == 2:
                value = metadata.get(key, "")
                metadata[key] = value[: rng.randrange(len(value) + 1)]
            else:
                metadata[key] = "".join(chr(rng.randrange(1, 0x3000)) for _ in range(8))
        try:
            contract = ModelContract.from_metadata(metadata, "model.onnx")
        except UserError as e:
            assert "\n" not in str(e) and "model.onnx" in str(e), str(e)
        except Exception as e:  # noqa: BLE001 - the failure this test exists to catch
            pytest.fail(f"metadata {i} raised {type(e).__name__}: {e}\n{metadata!r:.2000}")
        else:
            # Whatever is accepted is a consistent contract that survives its own round trip.
            assert contract.noise_depth >= 1 and contract.min_size % contract.size_multiple == 0
            assert ModelContract.from_metadata(contract.to_metadata()) == contract
            accepted += 1
    assert 100 < accepted < FUZZ_METADATA - 100


# --- the one budget: its limits and the mechanisms behind the table's cases ---------------------


def test_limits_come_from_the_machine_unless_the_environment_says_otherwise(monkeypatch):
    for name in (budget.MEMORY_ENV, budget.THREADS_ENV, budget.COUNT_ENV, budget.PROBE_ENV):
        monkeypatch.delenv(name, raising=False)
    physical = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    assert budget.memory().value <= physical and "memory" in budget.memory().source
    assert budget.threads().value == os.cpu_count()
    assert budget.count().value == budget.DEFAULT_MAX_COUNT
    for text, value in (("8G", 8e9), ("512M", 512e6), ("1.5g", 1.5e9), ("123456", 123456)):
        monkeypatch.setenv(budget.MEMORY_ENV, text)
        assert budget.memory() == budget.Limit(
            value, f"{budget.MEMORY_ENV}={text}", "TN_MEMORY_BUDGET"
        )
    monkeypatch.setenv(budget.THREADS_ENV, "64")
    assert budget.threads().value == 64
    for name, text in (
        (budget.MEMORY_ENV, "lots"),
        (budget.COUNT_ENV, "-1"),
        (budget.PROBE_ENV, "inf"),
    ):
        monkeypatch.setenv(name, text)
        with pytest.raises(UserError, match=f"{name}='{text}' is not a positive number"):
            {budget.MEMORY_ENV: budget.memory, budget.COUNT_ENV: budget.count,
             budget.PROBE_ENV: budget.probe_seconds}[name]()  # fmt: skip


@pytest.mark.parametrize(
    ("kind", "bounds", "text", "message"),
    [
        (float, {"above": 0}, "nan", "must be a finite number, not nan"),
        (float, {"at_least": 0}, "-inf", "must be a finite number, not -inf"),
        (float, {"above": 0}, "0", "must be over 0, not 0"),
        (float, {"above": 0, "at_most": 1}, "1.5", "must be at most 1, not 1.5"),
        (int, {"at_least": 1}, "0", "must be positive, not 0"),
        (int, {"at_least": 0, "at_most": budget.MAX_SEED}, "4294967296", "at most 4294967295"),
        (int, {"at_least": 1}, "2.5", "'2.5' is not a whole number"),
        (int, {"at_least": 1}, "9" * 5000, "is not a whole number"),  # over Python's digit limit
    ],
)
def test_the_flag_number_type_refuses_nan_infinities_and_out_of_range(kind, bounds, text, message):
    with pytest.raises(argparse.ArgumentTypeError, match=re.escape(message)):
        budget.number(kind, **bounds)(text)


def test_a_limit_from_the_budget_names_itself_and_its_variable(monkeypatch):
    monkeypatch.setenv(budget.THREADS_ENV, "4")
    with pytest.raises(argparse.ArgumentTypeError) as info:
        budget.number(int, 1, budget.threads())("5")
    assert (
        str(info.value)
        == "must be at most 4 (TN_MAX_THREADS=4; set TN_MAX_THREADS to change it), not 5"
    )


@pytest.mark.parametrize(
    "config",
    [
        {},
        {"scales": 3, "channels": 4},
        {"mode": "style"},
        {"scales": 2, "channels": 3, "noise_depth": 5},
    ],
)
def test_the_cost_of_a_pyramid_is_its_exact_parameter_count(config):
    generator = PyramidGenerator(**config)
    c = generator.config
    scale_in = c.noise_depth + (3 if c.mode == "style" else 0)
    parameters = sum(p.numel() for p in generator.parameters())
    assert budget.generator_parameters(c.scales, c.channels, scale_in) == parameters


def test_absurd_layer_sizes_are_refused_before_a_weight_is_allocated():
    """What a .t7 or model.pt declares reaches PyramidGenerator, which checks it first: a
    generator of 100000 channels (1.6 TB of weights) is refused in no time and memory."""
    (_, seconds, peak) = measured(
        lambda: pytest.raises(UserError, PyramidGenerator, channels=100_000)
    )
    assert seconds < BOUND_SECONDS and (peak is None or peak < BOUND_BYTES)
    with pytest.raises(UserError, match="6 scales x 100000 channels with noise depth 3"):
        PyramidGenerator(channels=100_000)


def test_a_t7_declaring_absurd_layer_sizes_is_refused_before_its_generator_is_built():
    """A Torch7 tensor view declares its own shape; one of 100000 x 3 x 3 x 3 over a single
    float (stride 0) takes no memory, and the generator it would size is never built."""
    from tn_export import torch7

    view = np.lib.stride_tricks.as_strided(np.zeros(1, np.float32), (100_000, 3, 3, 3), (0,) * 4)
    conv = torch7.torchfile.TorchObject(b"nn.SpatialConvolution")
    conv._obj = {b"weight": view}
    pyramid = torch7._Pyramid([1], [[(conv, None)]], [], None)
    with pytest.raises(UserError, match="1 scales x 100000 channels"):
        torch7._build(pyramid, torch7._Storages({}))


def test_the_load_time_check_stops_a_graph_that_loops_for_ever(tmp_path, monkeypatch):
    """onnxruntime's terminate flag, set by a timer, interrupts the Loop between iterations:
    the refusal comes at the time limit, not never."""
    monkeypatch.setenv(budget.PROBE_ENV, "1")
    path = endless_loop(tmp_path / "loop.onnx")
    start = time.perf_counter()
    with pytest.raises(UserError, match="did not finish one run at 8x12 within 1 s"):
        runtime.load(path)
    assert 1.0 <= time.perf_counter() - start < BOUND_SECONDS


def test_outputs_get_the_usual_modes_whatever_their_writer_made(tmp_path):
    """coremltools writes its package with 0700 folders and 0600 files; installed, it has the
    modes of every other output (the umask's), like export.json beside it."""
    with atomic.atomic_path(tmp_path / "m.mlpackage") as tmp:
        (tmp / "Data").mkdir(mode=0o700, parents=True)
        tmp.chmod(0o700)
        (tmp / "Data" / "weights.bin").write_bytes(b"w")
        (tmp / "Data" / "weights.bin").chmod(0o600)
    with atomic.atomic_path(tmp_path / "m.export.json") as tmp:
        tmp.write_text("{}")
    mask = atomic._umask()
    package = tmp_path / "m.mlpackage"
    for folder in (package, package / "Data"):
        assert folder.stat().st_mode & 0o777 == 0o777 & ~mask
    for file in (package / "Data" / "weights.bin", tmp_path / "m.export.json"):
        assert file.stat().st_mode & 0o777 == 0o666 & ~mask


def test_results_json_never_holds_nan(tmp_path):
    from benchmarks.report import write_results

    write_results({"a": math.nan, "b": [math.inf, 1.5], "c": {"d": -math.inf}}, tmp_path / "r.json")
    text = (tmp_path / "r.json").read_text()
    strict = json.loads(text, parse_constant=lambda name: pytest.fail(f"{name} in results.json"))
    assert strict == {"a": None, "b": [None, 1.5], "c": {"d": None}}


def test_a_failure_without_a_message_still_says_what_it_was(capsys):
    @cli_entry("tn-test")
    def main(argv):
        raise RuntimeError()

    assert main([]) == 1
    assert capsys.readouterr().err == (
        "tn-test: failed: RuntimeError: no message (rerun with --debug for details)\n"
    )
