"""onnxruntime sessions as the runtime opens them: options, providers, and the load-time check
that a model's graph is what its metadata says. Export validation and the ORT conversion use the
same options, so that a model is checked as apps run it."""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort

from .. import budget
from ..contract import ModelContract
from ..errors import UserError
from ..sizes import probe_size
from .styles import style_weights


def session_options(threads: int | None = None, low_memory: bool = True) -> ort.SessionOptions:
    """Every graph optimisation but, with `low_memory`, the NCHWc layout (and no memory
    patterns); `threads` intra-op threads (None: onnxruntime's choice)."""
    options = ort.SessionOptions()
    # The NCHWc layout (ORT_ENABLE_ALL's layout optimisation) keeps blocked copies of the maps:
    # without it the bundled model at 512x512 peaks at 167 MiB over idle instead of 290, and runs
    # in 285 ms instead of 279 (1024x1024: 609 against 1090 MiB, 1.08 against 1.00 s).
    levels = ort.GraphOptimizationLevel
    options.graph_optimization_level = (
        levels.ORT_ENABLE_EXTENDED if low_memory else levels.ORT_ENABLE_ALL
    )
    # Memory patterns pre-plan one big block per input shape: about half the peak RSS without
    # them at the same speed (design.md section 4). The arena stays on: without it, 30-100 % slower.
    options.enable_mem_pattern = not low_memory
    options.log_severity_level = 4  # failures reach the user as our one-line errors instead
    if threads is not None:
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
            raise UserError(f"threads must be a whole number of at least 1, not {threads!r}")
        budget.check_count(threads, "threads", budget.threads())
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    return options


# onnxruntime's default CPU arena starts at 1 MiB and doubles each time it runs out, so the coarse
# scales' maps sit in small regions that the full-resolution maps cannot reuse: at 512x512 the
# bundled model's live tensors peak at 96 MiB but its arena touches 155 MiB. One arena whose first
# region holds the largest whole run lets best fit place every map of a run in that region.
_arena_lock = threading.Lock()
_arena_registered = False


def share_arena(first_region: int) -> None:
    """Register, once per process, the CPU arena the runtime's whole-model sessions share
    (onnxruntime's environment allocator), its first region `first_region` bytes: the first
    call's, as an arena cannot be resized. The region's bookkeeping takes 1/32 of its size,
    resident from its first allocation."""
    global _arena_registered
    with _arena_lock:
        if not _arena_registered:
            cpu = ort.OrtMemoryInfo(
                "Cpu", ort.OrtAllocatorType.ORT_ARENA_ALLOCATOR, 0, ort.OrtMemType.DEFAULT
            )
            # Strategy 0 (next power of two): a run that outgrows the region gets doubling ones.
            config = {"arena_extend_strategy": 0, "initial_chunk_size_bytes": int(first_region)}
            ort.create_and_register_allocator(cpu, ort.OrtArenaCfg(config))
            _arena_registered = True


def choose_providers(requested: Sequence[str] | None) -> list[str]:
    """`requested` execution providers if this onnxruntime has them all; None: every local one."""
    available = ort.get_available_providers()
    if requested is None:
        # Azure's provider calls a remote endpoint; every other one is a local device.
        return [p for p in available if p != "AzureExecutionProvider"]
    unknown = [p for p in requested if p not in available]
    if unknown or not requested:
        raise UserError(
            f"execution provider(s) {', '.join(unknown) or '(none)'} not available in this "
            f"onnxruntime; choose from {', '.join(available)}"
        )
    return list(requested)


def first_line(error: Exception) -> str:
    """The first line of an error's message (onnxruntime's run over many), at most 200 chars."""
    text = str(error).strip()
    return text.splitlines()[0][:200] if text else type(error).__name__


def open_session(
    path: Path,
    providers: Sequence[str] | None,
    threads: int | None,
    low_memory: bool,
    arena: bool = True,
    shared_region: int | None = None,
) -> ort.InferenceSession:
    """A session on the model file `path`; a file onnxruntime cannot load is one UserError.
    Without `arena` every run gives its memory back (slower: only for light parts); with
    `shared_region` (bytes) it runs in the process's shared arena (share_arena)."""
    if not path.is_file():
        what = "is a folder" if path.is_dir() else "does not exist"
        raise UserError(f"model {path} {what}; pass an .onnx file exported by tn-export")
    if path.stat().st_size == 0:
        raise UserError(f"model {path} is empty (0 bytes); export it again with tn-export")
    budget.check_memory(path.stat().st_size, f"model {path}", "pass a model exported by tn-export")
    options = session_options(threads, low_memory)
    options.enable_cpu_mem_arena = arena
    if arena and shared_region:
        share_arena(shared_region)
        options.add_session_config_entry("session.use_env_allocators", "1")
    chosen = choose_providers(providers)
    try:
        return ort.InferenceSession(os.fspath(path), options, providers=chosen)
    except Exception as e:  # noqa: BLE001 - onnxruntime raises its own unrelated classes
        raise UserError(
            f"model {path} cannot be loaded by onnxruntime ({first_line(e)}); it is not a valid "
            "ONNX file: export it again with tn-export"
        ) from e


def check_graph(session: ort.InferenceSession, contract: ModelContract, source: str) -> None:
    """The graph must match what the metadata says: names, rank, channels, and a real run."""
    c = contract
    inputs, outputs = session.get_inputs(), session.get_outputs()
    if [i.name for i in inputs] != c.input_names:
        names = ", ".join(i.name for i in inputs)
        raise UserError(
            f"{source} has inputs ({names}) but its metadata names {', '.join(c.input_names)}; "
            "re-export it with tn-export"
        )
    if c.styles and inputs[1].shape[1:] != [len(c.styles)]:
        raise UserError(
            f"{source} input {c.style_input!r} has shape {inputs[1].shape}, not (N, "
            f"{len(c.styles)}) for the {len(c.styles)} styles its metadata names; re-export it"
        )
    shape = inputs[0].shape
    if len(shape) != 4 or (isinstance(shape[1], int) and shape[1] != c.input_channels):
        raise UserError(
            f"{source} input {c.input_name!r} has shape {shape}, not (N, {c.input_channels}, H, W) "
            "as its metadata says; re-export it with tn-export"
        )
    if c.output_name not in [o.name for o in outputs]:
        raise UserError(
            f"{source} has no output {c.output_name!r} named in its metadata; re-export it"
        )
    if c.layout != "NCHW" or c.channel_order != "RGB":
        raise UserError(
            f"{source} uses layout {c.layout} / {c.channel_order}; this runtime reads NCHW RGB "
            "models: re-export it with tn-export"
        )
    _check_probe_run(session, c, source)


def _check_probe_run(session: ort.InferenceSession, c: ModelContract, source: str) -> None:
    """One run at the probe size, stopped after budget.probe_seconds(): finite, the right shape."""
    h, w = probe_size(c)
    budget.check_memory(h * w * c.bytes_per_pixel, f"{source}'s check at {w}x{h}", "re-export it")
    probe = {c.input_name: np.zeros((1, c.input_channels, h, w), np.float32)}
    if c.styles:
        probe[c.style_input] = style_weights(c.styles, None, source)[None]  # the first style
    limit = budget.probe_seconds()
    options = ort.RunOptions()
    options.log_severity_level = 4
    # The terminate flag stops a run between kernels (a Loop checks it every iteration).
    timer = threading.Timer(limit.value, setattr, (options, "terminate", True))
    timer.start()
    try:
        result = session.run([c.output_name], probe, options)[0]
    except Exception as e:  # noqa: BLE001 - any failure here means the file is not what it claims
        if options.terminate:
            raise UserError(
                f"{source} did not finish one run at {w}x{h} within {limit.value:g} s "
                f"({limit.source}; set {limit.env} to change it): its graph may loop without "
                "end; re-export it with tn-export"
            ) from e
        raise UserError(
            f"{source} fails at {w}x{h} although its metadata allows multiples of "
            f"{c.size_multiple} from {c.min_size} to {c.max_size}, so its metadata is wrong "
            f"({first_line(e)}); re-export it with tn-export"
        ) from e
    finally:
        timer.cancel()
    if result.shape != (1, 3, h, w):
        raise UserError(
            f"{source} returns shape {result.shape} for a {w}x{h} input (WIDTHxHEIGHT), not "
            f"(1, 3, {h}, {w}): its output does not follow its input; re-export it with tn-export"
        )
    if not np.isfinite(result).all():
        raise UserError(
            f"{source} returns NaN or infinite values; its weights are broken: re-export it "
            "from a checkpoint that trained well"
        )
