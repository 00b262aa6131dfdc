"""int8's accuracy/speed curve: one row per quantization setting of tn-export's int8 (which
convolutions, range equalization, range search), with its PSNR against fp32 on what users
receive (clamped, 8-bit) and its onnxruntime latency against fp32, through the runtime's session
options (what apps run)."""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx

import tn_export
from tn_export.atomic import atomic_path
from tn_export.checkpoint import load_model
from tn_export.contract import ModelContract
from tn_export.export.graph import Deployable, delivered, example_input
from tn_export.export.onnx import export_onnx
from tn_export.export.precision import to_int8
from tn_export.export.reference import psnr
from tn_export.runtime.session import session_options

# (label, to_int8 keyword arguments); the last is tn-export's default, which picks "fine" or
# "heavy" (the record says which).
SETTINGS = (
    ("all convs, MinMax", {"layers": "all", "equalize_alpha": 0.0, "search": False}),
    ("all convs, equalized", {"layers": "all", "equalize_alpha": 0.5, "search": False}),
    ("heavy convs, equalized, range search", {"layers": "heavy"}),
    ("fine joins, MinMax", {"layers": "fine", "equalize_alpha": 0.0, "search": False}),
    ("fine joins, equalized", {"layers": "fine", "equalize_alpha": 0.5, "search": False}),
    ("tn-export's default (auto)", {}),
)
SEEDS = range(5000, 5004)  # inputs neither calibration (0..) nor the range search (1000..) saw


def _session(path: Path):
    import onnxruntime as ort

    return ort.InferenceSession(str(path), session_options(), providers=["CPUExecutionProvider"])


def _latencies(sessions: list, feed: dict, repeats: int) -> list[list[float]]:
    """ms per run of each session, taking turns, so that a busy machine slows all alike."""
    for session in sessions:
        session.run(None, feed)  # warm-up
    times: list[list[float]] = [[] for _ in sessions]
    for _ in range(repeats):
        for session, kept in zip(sessions, times, strict=True):
            start = time.perf_counter()
            session.run(None, feed)
            kept.append((time.perf_counter() - start) * 1000)
    return times


def int8_curve(
    model: str | None = None, side: int = 256, speed_side: int = 512, repeats: int = 5
) -> dict:
    """Every SETTINGS row for `model` (a checkpoint or bundled name; None: the default):
    PSNR at side x side over SEEDS (min and median), latency at speed_side (median and min,
    ms, every setting timed in turn with fp32) and the speed-up over fp32 of each."""
    with tempfile.TemporaryDirectory(prefix="tn-bench-int8-") as tmp:
        folder = Path(tmp)
        (fp32,) = tn_export.export(
            model, [("onnx", "fp32")], folder, validate=False, tiling_parts=False
        )
        meta = {p.key: p.value for p in onnx.load(fp32.path).metadata_props}
        contract = ModelContract.from_metadata(meta, str(fp32.path))
        # int8 quantizes what tn-export quantizes: the export that keeps the Join's norms.
        joins = folder / "joins.onnx"
        export_onnx(Deployable(load_model(model)[0].generator), joins, contract, True, False)
        feeds = [{contract.input_name: _input(contract, side, seed).numpy()} for seed in SEEDS]
        timed = {contract.input_name: _input(contract, speed_side, 7).numpy()}
        sessions = [_session(fp32.path)]
        expected = [_delivered(sessions[0].run(None, f)[0]) for f in feeds]
        outputs, details = [expected], [{}]
        for i, (_, kwargs) in enumerate(SETTINGS):
            path = folder / f"int8-{i}.onnx"
            details.append(to_int8(joins, path, contract, **kwargs)["int8"])
            sessions.append(_session(path))
            outputs.append([_delivered(sessions[-1].run(None, f)[0]) for f in feeds])
        times = _latencies(sessions, timed, repeats)
        labels = ["fp32", *(label for label, _ in SETTINGS)]
        rows = [
            _row(*row, expected, times[0])
            for row in zip(labels, outputs, times, details, strict=True)
        ]
    return {
        "model": model or "default",
        "psnr_side": side,
        "speed_side": speed_side,
        "repeats": repeats,
        "rows": rows,
    }


def _input(contract: ModelContract, side: int, seed: int):
    x = example_input(contract, side, side, seed=seed)
    return delivered(x) if contract.mode == "style" else x


def _delivered(y: np.ndarray) -> np.ndarray:
    """onnxruntime's output as users receive it: clamped, 8-bit."""
    return np.round(np.clip(y, 0, 1) * 255) / 255


def _row(label, got, times, details, expected, base) -> dict:
    values = [psnr(g, e) for g, e in zip(got, expected, strict=True)]
    finite = [v for v in values if np.isfinite(v)]
    return {
        "setting": label,
        "psnr_db_min": min(finite) if finite else None,
        "psnr_db_median": statistics.median(finite) if finite else None,
        "ms_median": statistics.median(times),
        "ms_min": min(times),
        "speedup_median": statistics.median(base) / statistics.median(times),
        "speedup_min": min(base) / min(times),
        "quantized_convs": details.get("quantized_convs"),
    }


def table(curve: dict) -> str:
    """The curve as a markdown table."""
    lines = [
        f"| setting | int8 convs | PSNR dB min / median ({curve['psnr_side']}px, "
        f"{len(SEEDS)} inputs) | ms median / min ({curve['speed_side']}px) | "
        "speed-up median / min |",
        "| --- | --- | --- | --- | --- |",
    ]
    for r in curve["rows"]:
        quality = (
            "exact"
            if r["psnr_db_min"] is None
            else f"{r['psnr_db_min']:.1f} / {r['psnr_db_median']:.1f}"
        )
        lines.append(
            f"| {r['setting']} | {r['quantized_convs'] or '-'} | {quality} | "
            f"{r['ms_median']:.0f} / {r['ms_min']:.0f} | "
            f"{r['speedup_median']:.2f}x / {r['speedup_min']:.2f}x |"
        )
    return "\n".join(lines) + "\n"


def plot(curve: dict) -> bytes:
    """PSNR (min over inputs) against speed-up (medians), one point per setting."""
    from .plots import _png, plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for r in curve["rows"][1:]:
        ax.scatter(r["speedup_median"], r["psnr_db_min"])
        ax.annotate(r["setting"], (r["speedup_median"], r["psnr_db_min"]), fontsize=7)
    ax.axhline(35, color="grey", linestyle="--", linewidth=0.8)
    ax.axvline(1.8, color="grey", linestyle=":", linewidth=0.8)
    ax.set_xlabel(f"speed-up over fp32 onnxruntime at {curve['speed_side']}px (median)")
    ax.set_ylabel(f"PSNR vs fp32, dB (worst of {len(SEEDS)} inputs)")
    ax.set_title(f"int8 settings: {curve['model']}")
    return _png(fig)


def write(curve: dict, out: Path) -> list[Path]:
    """DIR/int8.json, DIR/int8.md and DIR/int8.png."""
    out.mkdir(parents=True, exist_ok=True)
    contents = {
        "int8.json": (json.dumps(curve, indent=2) + "\n").encode(),
        "int8.md": table(curve).encode(),
        "int8.png": plot(curve),
    }
    for name, data in contents.items():
        with atomic_path(out / name) as tmp:
            tmp.write_bytes(data)
    return [out / name for name in contents]
