"""The benchmark plan and its execution: export, measure every backend of the pyramid and its peer
at every size in its own process, score the images users receive, run the Gatys baseline, and
collect everything into one results dict."""

from __future__ import annotations

import datetime
import math
import os
import shlex
import sys
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from tn_export import __version__
from tn_export.checkpoint import load_checkpoint, load_model
from tn_export.descriptor import TEXTURE_LAYERS, load_descriptor
from tn_export.errors import UserError
from tn_export.export.formats import FORMATS
from tn_export.export.graph import Deployable
from tn_export.export.pipeline import missing_libraries
from tn_export.images import load_image, save_image, to_array
from tn_export.losses import gram_matrix

from . import gatys, peers, quality, tiling
from .analysis import JOHNSON, PYRAMID, TILED, gatys_baseline
from .backends import BACKENDS, LIBRARIES, PEER_BACKENDS, Cell, coreml_unavailable_reason
from .config import BenchConfig
from .flops import count_flops, generator_flops
from .isolated import IsolatedError, run_isolated
from .machine import load_snapshot, machine_info
from .schema import SCHEMA_VERSION

REFERENCE = ("onnxruntime-fp32", "torch")  # outputs are compared with the first one measured
MEMORY_ITERATIONS = gatys.LBFGS_HISTORY + 2  # long enough to fill L-BFGS's history
# The export's parameters that tn-bench derives from its own options (Run.export_sizes).
EXPORT_FLAGS = {"max_size": "the largest of --sizes (or 2048)"}
TILING_STYLE = "starry_bn"  # the bundled style model a texture benchmark's photo runs use


@dataclass
class Plan:
    """Named steps run in order under one progress bar."""

    steps: list[tuple[str, Callable[[], None]]] = field(default_factory=list)

    def add(self, label: str, step: Callable[[], None]) -> None:
        self.steps.append((label, step))

    def run(self) -> None:
        with tqdm(total=len(self.steps), desc="tn-bench", unit="step", dynamic_ncols=True) as bar:
            for label, step in self.steps:
                bar.set_postfix_str(label)
                step()
                bar.update()


def latency_stats(times_s: list[float]) -> dict:
    ms = np.asarray(times_s) * 1e3
    return {
        "median_ms": float(np.median(ms)),
        "p10_ms": float(np.percentile(ms, 10)),
        "p90_ms": float(np.percentile(ms, 90)),
        "mean_ms": float(ms.mean()),
        "times_ms": [round(float(t), 3) for t in ms],
    }


def compare(output: np.ndarray, reference: np.ndarray) -> dict:
    """PSNR (peak 1) and max absolute error of one backend's output against the reference's."""
    mse = float(np.mean((output.astype(np.float64) - reference) ** 2))
    return {
        "psnr_db": 10 * math.log10(1 / mse) if mse > 0 else None,  # None: identical
        "max_abs": float(np.max(np.abs(output - reference))),
    }


def peer_backends(cfg: BenchConfig) -> list[str]:
    """The chosen backends the peer runs on (none without --peer)."""
    return [b for b in cfg.backends if b in PEER_BACKENDS] if cfg.peer else []


def load_png(path: Path) -> torch.Tensor:
    """(1, 3, H, W) in [0, 1] from an image file: scores are recomputed from what was saved."""
    return torch.from_numpy(to_array(load_image(path))).unsqueeze(0)


class Benchmark:
    """Holds the run's state while the plan's steps fill in `results`."""

    def __init__(self, cfg: BenchConfig, work: Path) -> None:
        self.cfg, self.work = cfg, work
        self.checkpoint = load_checkpoint(cfg.model)
        self.config = self.checkpoint.config
        # What the exports accept: any size from two size multiples up to the largest benchmarked.
        m, largest = self.config.size_multiple, max(max(s) for s in cfg.sizes)
        self.export_sizes = (2 * m, max(2048 // m, math.ceil(largest / m)) * m)
        self.peer = peers.johnson() if cfg.peer else None
        meta = self.checkpoint.metadata
        self.layers = list(meta.get("layers") or TEXTURE_LAYERS)
        # Model files by (network, model key); why a file could not be made, likewise.
        self.models: dict[tuple[str, str], str] = {(PYRAMID, "checkpoint"): str(cfg.model)}
        self.model_errors: dict[tuple[str, str], str] = {}
        self.outputs: dict[tuple[str, str, int, int], Path] = {}
        self.tiled_outputs: dict[tuple[str, str, int], list[tuple[dict, Path]]] = {}
        self.idle: dict[str, dict] = {}
        params = sum(p.numel() for p in self.checkpoint.generator.parameters())
        self.results: dict = {
            "schema_version": SCHEMA_VERSION,
            "tool": f"tn-bench {__version__}",
            "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "command": cfg.command,
            "machine": machine_info(cfg.threads),
            "load": {},
            "config": _config_record(cfg),
            "model": {
                "path": str(cfg.model),
                "config": self.config.as_dict(),
                "parameters": params,
                "metadata": {
                    k: meta.get(k)
                    for k in ("exemplar", "descriptor", "layers", "iteration", "loss")
                },
            },
            "peers": {},
            "peak": None,
            "idle": {},
            "flops": [],
            "cells": [],
            "quality": {"status": "skipped", "reason": ""},
            "gatys": {"status": "skipped", "reason": "--no-gatys"},
            "tiling": {"status": "skipped", "reason": "--no-tiling"},
            "images": {},
        }
        if self.peer is not None:
            self.results["peers"][JOHNSON] = {
                "parameters": sum(p.numel() for p in self.peer.parameters()),
                "description": "Johnson et al. (2016) feed-forward transformer (pytorch/examples' "
                "fast_neural_style design), random weights",
            }

    # --- steps -----------------------------------------------------------------------------

    def export(self) -> None:
        """The files the backends need, exported by tn_export.export: the pyramid's ONNX fp32
        (always: apps run it, and the quality samples come from it) with the fp16 / int8 and the
        OpenVINO IR (fp16 weights, where openvino is installed) converted from it, the ExecuTorch
        program (where executorch is installed), a Core ML package where Core ML can run; the
        peer's weights and ONNX fp32. Not validated: every cell's output is compared with
        PyTorch's instead (and int8 misses its tolerance on trained models, yet is measured). A
        failure skips what needs those files."""
        exported = self._exported
        wanted = {BACKENDS[b].model_key for b in self.cfg.backends} | {"onnx-fp32"}
        keys = [k for k in ("onnx-fp32", "onnx-fp16", "onnx-int8") if k in wanted]
        formats = [("onnx", k.removeprefix("onnx-")) for k in keys]
        if "openvino" in wanted:  # converted from the same ONNX model, in the same export
            missing = missing_libraries(FORMATS["openvino"])
            if missing:
                self.model_errors[PYRAMID, "openvino"] = missing
            else:
                keys.append("openvino")
                formats.append(("openvino", "fp16"))
        pyramid = partial(  # whole images only: export_tiling has the tiles
            exported,
            self.checkpoint.generator,
            sizes=self.export_sizes,
            name="model",
            tiling_parts=False,
        )
        self._build(PYRAMID, keys, partial(pyramid, formats))
        if "executorch" in wanted:  # lowered from the module, in an export of its own
            missing = missing_libraries(FORMATS["executorch"])
            if missing:
                self.model_errors[PYRAMID, "executorch"] = missing
            else:
                self._build(PYRAMID, ["executorch"], partial(pyramid, ["executorch"]))
        if "coreml" in wanted and sys.platform == "darwin":
            self._build(PYRAMID, ["coreml"], partial(pyramid, ["coreml"]))
        peer_keys = {BACKENDS[b].model_key for b in peer_backends(self.cfg)}
        if "checkpoint" in peer_keys:
            self._build(JOHNSON, ["checkpoint"], self._save_peer)
        if "onnx-fp32" in peer_keys:
            contract = peers.contract(self.export_sizes[1])
            self._build(
                JOHNSON, ["onnx-fp32"], partial(exported, self.peer, ["onnx"], contract=contract)
            )

    def _exported(self, network, formats, **options) -> list[Path]:
        from tn_export.export import export

        results = export(network, formats, self.work, validate=False, **options)
        return [r.path for r in results]

    def export_tiling(self) -> None:
        """The fp32 ONNX models with their exact-tiling parts, apart from the cells' models
        (whose sessions are the whole-image ones an app loads): the benchmarked model and, for
        a texture model's photo runs, the bundled style model TILING_STYLE."""
        cfg = self.cfg
        self.results["tiling"] = {
            "status": "ok",
            "photo": str(cfg.tiling_photo) if cfg.tiling_photo else None,
            "runs": [],
        }
        texture = self.config.mode == "texture"
        sources = {"noise" if texture else "photo": self.checkpoint.generator}
        if texture and cfg.tiling_photo:
            sources["photo"] = load_model(TILING_STYLE)[0].generator
            self.results["tiling"]["style_model"] = TILING_STYLE
        largest = max(cfg.tiling_size, cfg.tiling_latency_size, cfg.gatys_memory_size, 2048)
        for kind, generator in sources.items():
            m = generator.config.size_multiple
            sizes = (2 * m, math.ceil(largest / m) * m)
            onnx = [("onnx", "fp32")]
            make = partial(self._exported, generator, onnx, sizes=sizes, name=f"tiled-{kind}")
            self._build(TILED, [kind], make)

    def tiled(self, r: tiling.TiledRun) -> None:
        """One run of the tiling step in its own process; a whole-image run is the reference
        of the tiled runs of its role and size before it."""
        record = {**asdict(r), "loadavg_1m": os.getloadavg()[0]}
        self.results["tiling"]["runs"].append(record)
        model = self.models.get((TILED, r.input))
        photo = self.cfg.tiling_photo
        if r.input == "photo" and photo is None:
            reason = "no photo to stylize: pass --tiling-photo PATH"
        elif model is None:
            reason = self.model_errors.get((TILED, r.input), f"no tiled {r.input} model")
        elif r.max_memory_mb is None and r.role == "large":
            reason = tiling.whole_refusal(model, r)
        else:
            reason = None
        if reason:
            record.update(status="skipped", reason=reason)
            return
        output = self.work / f"{r.role}-{r.input}-{r.size}-{r.max_memory_mb}.png"
        kwargs = {
            "model": model,
            "run": asdict(r),
            "photo": str(photo) if photo else None,
            "threads": self.cfg.threads,
            "output": str(output),
        }
        try:
            data = run_isolated("benchmarks.tiling:run", kwargs, self.cfg.threads)
        except IsolatedError as e:
            record.update(status="skipped" if e.unavailable else "failed", reason=str(e))
            return
        idle = self.idle.get("onnxruntime", {}).get("peak_rss_bytes")
        record.update(
            status="ok",
            tiles=data["tiles"],
            peak_rss_bytes=data["peak_rss_bytes"],
            idle_rss_bytes=idle,
            rss_increase_bytes=data["peak_rss_bytes"] - idle if idle else None,
            **latency_stats(data["times_s"]),
        )
        earlier = self.tiled_outputs.setdefault((r.role, r.input, r.size), [])
        if r.max_memory_mb is None:
            for tiled, path in earlier:
                if tiled["tiles"]:
                    tiled["vs_whole"] = tiling.vs_whole(path, output)
        else:
            earlier.append((record, output))

    def _save_peer(self) -> list[Path]:
        path = self.work / "johnson.pt"
        peers.save(self.peer, path)
        return [path]

    def _build(self, network: str, keys: list[str], make: Callable[[], list[Path]]) -> None:
        """Run `make`, which writes the files of `keys` and returns their paths in that order.
        A failure skips those keys' backends only."""
        try:
            paths = make()
        except Exception as e:  # noqa: BLE001 - a failed export skips those backends only
            # The export's bounds come from --sizes, so its errors are worded with that flag.
            text = e.worded(EXPORT_FLAGS) if isinstance(e, UserError) else str(e)
            first = text.strip().splitlines()[0] if text.strip() else ""
            for key in keys:
                self.model_errors[network, key] = f"export failed: {type(e).__name__}: {first}"
            return
        self.models.update({(network, k): str(p) for k, p in zip(keys, paths, strict=True)})

    def peak(self) -> None:
        target = "benchmarks.flops:matmul_peak"
        kwargs = {"n": self.cfg.peak_n, "threads": self.cfg.threads}
        self.results["peak"] = run_isolated(target, kwargs, self.cfg.threads)

    def idle_baseline(self, key: str) -> None:
        modules = LIBRARIES[key]
        try:
            data = run_isolated("benchmarks.isolated:idle", {"modules": list(modules)}, 1)
            self.idle[key] = {"modules": list(modules), "peak_rss_bytes": data["peak_rss_bytes"]}
        except IsolatedError as e:
            self.idle[key] = {"modules": list(modules), "peak_rss_bytes": None, "reason": str(e)}
        self.results["idle"] = self.idle

    def cell(self, network: str, backend: str, width: int, height: int) -> None:
        b = BACKENDS[backend]
        record = {
            "network": network,
            "backend": backend,
            "width": width,
            "height": height,
            "pixels": width * height,
            "loadavg_1m": os.getloadavg()[0],
        }
        reason = self._skip_reason(network, backend, width, height)
        self.results["cells"].append(record)
        if reason:
            record.update(status="skipped", reason=reason)
            return
        output = self.work / f"{network}-{backend}-{width}x{height}.npy"
        style = network != PYRAMID or self.config.mode == "style"
        cell = Cell(
            model=self.models[network, b.model_key],
            mode="style" if style else "texture",
            channels=3 if style else self.config.input_channels,
            height=height,
            width=width,
            runs=self.cfg.runs,
            warmup=self.cfg.warmup,
            threads=self.cfg.threads,
            output=str(output),
            network=network,
        )
        try:
            data = run_isolated(b.function, {"cell": asdict(cell)}, self.cfg.threads)
        except IsolatedError as e:
            record.update(status="skipped" if e.unavailable else "failed", reason=str(e))
            return
        self.outputs[network, backend, width, height] = output
        idle = self.idle.get(b.runtime, {}).get("peak_rss_bytes")
        record.update(
            status="ok",
            runs=self.cfg.runs,
            warmup=self.cfg.warmup,
            load_s=data["load_s"],
            settings=data["settings"],
            peak_rss_bytes=data["peak_rss_bytes"],
            idle_rss_bytes=idle,
            rss_increase_bytes=data["peak_rss_bytes"] - idle if idle else None,
            **latency_stats(data["times_s"]),
        )

    def _skip_reason(self, network: str, backend: str, width: int, height: int) -> str | None:
        b = BACKENDS[backend]
        if backend == "coreml" and sys.platform != "darwin":
            return coreml_unavailable_reason()
        if (network, b.model_key) in self.model_errors:
            return self.model_errors[network, b.model_key]
        if (network, b.model_key) not in self.models:
            return f"no {network} {b.model_key} model was built"
        done = [
            c
            for c in self.results["cells"]
            if (c["network"], c["backend"], c["status"]) == (network, backend, "ok")
        ]
        if done:
            last = max(done, key=lambda c: c["pixels"])
            per_run = last["median_ms"] / 1e3 * width * height / last["pixels"]
            estimate = per_run * (self.cfg.runs + self.cfg.warmup)
            if estimate > self.cfg.cell_budget_s:
                return (
                    f"estimated {estimate:.0f} s ({per_run:.1f} s per run, scaled from "
                    f"{last['width']}x{last['height']}) exceeds --cell-budget "
                    f"{self.cfg.cell_budget_s:.0f} s"
                )
        return None

    def compare_outputs(self) -> None:
        """Each backend's output for the fixed input against the reference backend's, within
        each network."""
        for record in self.results["cells"]:
            network, size = record["network"], (record["width"], record["height"])
            key = (network, record["backend"], *size)
            if key not in self.outputs:
                continue
            for ref in REFERENCE:
                ref_key = (network, ref, *size)
                if ref_key in self.outputs and ref != record["backend"]:
                    out, expected = np.load(self.outputs[key]), np.load(self.outputs[ref_key])
                    record["vs_reference"] = {"reference": ref, **compare(out, expected)}
                    break

    def flops(self) -> None:
        records = [
            {
                "network": PYRAMID,
                "width": w,
                "height": h,
                "flops": generator_flops(self.config, h, w),
            }
            for w, h in self.cfg.sizes
        ]
        if self.peer is not None:
            records += [
                {
                    "network": JOHNSON,
                    "width": w,
                    "height": h,
                    "flops": count_flops(Deployable(peers.JohnsonTransformer()), (1, 3, h, w)),
                }
                for w, h in self.cfg.sizes
            ]
        self.results["flops"] = records

    def quality_and_target(self) -> None:
        """Score what users receive: the generator's images as tn-run makes them (the exported
        ONNX through tn_export.runtime, seed s saved as images/generator_s.png, the score
        recomputed from that file), 8-bit noise and the texture itself. The generator's mean
        loss is the level Gatys must reach."""
        from tn_export.runtime import load

        cfg, size = self.cfg, self.cfg.gatys_size
        onnx = self.models.get((PYRAMID, "onnx-fp32"))
        if onnx is None:
            reason = self.model_errors.get((PYRAMID, "onnx-fp32"), "no ONNX model")
            self.results["quality"] = {
                "status": "failed",
                "reason": f"needs the ONNX model: {reason}",
            }
            return
        texture = load_png(self.texture_path)
        descriptor = load_descriptor(self.descriptor_name, self.layers, cfg.descriptor_weights)
        with torch.no_grad():
            targets = {k: gram_matrix(v) for k, v in descriptor(texture).items()}
        model = load(onnx, threads=cfg.threads)

        def generated(side: int, name: str) -> tuple[list[str], torch.Tensor]:
            paths = [f"images/{name}_{seed}.png" for seed in range(cfg.samples)]
            for seed, path in enumerate(paths):
                save_image(model.synthesize(side, side, seed=seed)[0], cfg.out / path)
            return paths, torch.cat([load_png(cfg.out / p) for p in paths])

        paths, samples = generated(size, "generator")
        noise = torch.rand(cfg.samples, 3, size, size, generator=torch.Generator().manual_seed(0))
        self.quality_state = (descriptor, targets)
        sets = {
            "generator": quality.evaluate(descriptor, targets, self.layers, samples),
            "noise": quality.evaluate(descriptor, targets, self.layers, quality.delivered(noise)),
            "texture": quality.evaluate(descriptor, targets, self.layers, texture),
        }
        large = cfg.gatys_memory_size
        if cfg.gatys and large != size:  # the level Gatys must reach at the larger size
            name = f"generator_{large}"
            sets[name] = quality.evaluate(
                descriptor, targets, self.layers, generated(large, name)[1]
            )
        self.results["quality"] = {
            "status": "ok",
            "size": size,
            "circular": self.config.padding == "circular",
            "sets": sets,
        }
        save_image(load_image(self.texture_path), cfg.out / "images" / "texture.png")
        self.results["images"] = {"texture": "images/texture.png", "samples": paths}

    def gatys_runs(self) -> None:
        """Each parametrisation over the seeds, each in its own interpreter; the fastest to
        parity is the baseline, whose image is saved and whose memory is measured at the larger
        size."""
        cfg = self.cfg
        if self.results["quality"]["status"] != "ok":
            self.results["gatys"]["reason"] = "no generator quality to reach (quality step failed)"
            return
        target = self.results["quality"]["sets"]["generator"]["texture_loss"]
        size = cfg.gatys_size
        record: dict = {
            "optimizer": cfg.gatys_optimizer,
            "size": size,
            "target_loss": target,
            "variants": {},
        }
        self.results["gatys"] = record
        idle = self.idle.get("torch", {}).get("peak_rss_bytes")

        def measure(run: gatys.GatysRun) -> dict:
            data = run_isolated("benchmarks.gatys:synthesize", {"run": asdict(run)}, cfg.threads)
            increase = data["peak_rss_bytes"] - idle if idle else None
            return {**data, "idle_rss_bytes": idle, "rss_increase_bytes": increase}

        try:
            for pixels in cfg.gatys_pixels:
                run = gatys.GatysRun(
                    texture=str(self.texture_path),
                    descriptor=self.descriptor_name,
                    descriptor_weights=cfg.descriptor_weights,
                    layers=self.layers,
                    height=size,
                    width=size,
                    optimizer=cfg.gatys_optimizer,
                    pixels=pixels,
                    iterations=cfg.gatys_iterations,
                    seconds=cfg.gatys_seconds,
                    threads=cfg.threads,
                    target_loss=target,
                    seeds=list(range(cfg.gatys_seeds)),
                    image_dir=str(self.work),
                )
                record["variants"][pixels] = measure(run)
            best = gatys_baseline(record)
            large = cfg.gatys_memory_size
            if large != size:
                # One seed of the baseline at the larger size: its time to the generator's
                # quality there, and its peak memory once L-BFGS's history is full.
                large_target = self.results["quality"]["sets"][f"generator_{large}"]["texture_loss"]
                large_run = gatys.GatysRun(
                    **{
                        **asdict(run),
                        "pixels": best,
                        "height": large,
                        "width": large,
                        "target_loss": large_target,
                        "seeds": [0],
                        "min_iterations": MEMORY_ITERATIONS,
                    }
                )
                record["memory"] = {
                    **measure(large_run),
                    "size": large,
                    "target_loss": large_target,
                }
        except IsolatedError as e:
            record.update(status="failed", reason=str(e))
            return
        record["status"] = "ok"
        # The image compared: the baseline's first seed at parity, else its first seed's last.
        runs = record["variants"][best]["runs"]
        shown = next((r for r in runs if r["parity_s"] is not None), runs[0])
        path = "images/gatys_parity.png"
        save_image(
            load_image(self.work / gatys.image_name(best, shown["seed"], size)), cfg.out / path
        )
        record["image"] = {
            "path": path,
            "pixels": best,
            "seed": shown["seed"],
            "at_parity": shown["parity_s"] is not None,
            "loss": shown["loss"],
        }
        descriptor, targets = self.quality_state
        self.results["quality"]["sets"]["gatys"] = quality.evaluate(
            descriptor, targets, self.layers, load_png(cfg.out / path)
        )
        self.results["images"]["gatys"] = path
        if "memory" in record:
            large = record["memory"]["size"]
            path = f"images/gatys_parity_{large}.png"
            save_image(load_image(self.work / gatys.image_name(best, 0, large)), cfg.out / path)
            self.results["images"][f"gatys_{large}"] = path

    # --- inputs of the quality and Gatys steps -----------------------------------------------

    @property
    def descriptor_name(self) -> str:
        return self.checkpoint.metadata.get("descriptor") or "vgg16"

    @property
    def texture_path(self) -> Path:
        return self.cfg.texture  # resolved (and checked) by the CLI before the plan starts


def _config_record(cfg: BenchConfig) -> dict:
    record = {k: v for k, v in asdict(cfg).items() if k not in ("out", "command")}
    record["model"], record["texture"] = str(cfg.model), str(cfg.texture) if cfg.texture else None
    record["tiling_photo"] = str(cfg.tiling_photo) if cfg.tiling_photo else None
    record["sizes"] = [list(s) for s in cfg.sizes]
    return record


def run_benchmark(cfg: BenchConfig) -> dict:
    """Run the whole plan; returns the results (the caller writes and renders them)."""
    with tempfile.TemporaryDirectory(prefix="tn-bench-work-") as tmp:
        bench = Benchmark(cfg, Path(tmp))
        plan = Plan()
        plan.add("load", lambda: bench.results["load"].update(start=load_snapshot()))
        plan.add("export models", bench.export)
        plan.add("peak fp32 matmul", bench.peak)
        runtimes = dict.fromkeys(
            BACKENDS[b].runtime for b in cfg.backends if b != "coreml" or sys.platform == "darwin"
        )
        if cfg.gatys:
            runtimes["torch"] = None
        if cfg.tiling:
            runtimes["onnxruntime"] = None
        for key in runtimes:
            plan.add(f"idle {key}", lambda k=key: bench.idle_baseline(k))
        networks = [(PYRAMID, cfg.backends), (JOHNSON, peer_backends(cfg))]
        for network, backends in networks:
            for backend in backends:
                for w, h in sorted(cfg.sizes, key=lambda s: s[0] * s[1]):
                    plan.add(
                        f"{network} {backend} {w}x{h}",
                        lambda n=network, b=backend, w=w, h=h: bench.cell(n, b, w, h),
                    )
        plan.add("compare outputs", bench.compare_outputs)
        if cfg.tiling:
            plan.add("export tiling parts", bench.export_tiling)
            for r in tiling.plan(cfg, bench.config.mode == "texture"):
                plan.add(r.label, lambda r=r: bench.tiled(r))
        plan.add("count FLOPs", bench.flops)
        if bench.config.mode != "texture":
            skip = "the Gatys texture baseline and texture metrics apply to texture models"
        elif cfg.texture is None:
            skip = "no texture image: pass --texture PATH"
        else:
            skip = None
            plan.add("quality", bench.quality_and_target)
            if cfg.gatys:
                plan.add("Gatys baseline", bench.gatys_runs)
        if skip:
            bench.results["quality"]["reason"] = skip
            if cfg.gatys:
                bench.results["gatys"]["reason"] = skip
        plan.add("load", lambda: bench.results["load"].update(end=load_snapshot()))
        plan.run()
        return bench.results


def command_line(argv: list[str]) -> str:
    return shlex.join(["tn-bench", *argv])
