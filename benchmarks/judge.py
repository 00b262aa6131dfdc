"""tn-bench quality: draw a model's delivered samples (any file tn-export or tn-run takes), score
them with benchmarks/quality.py, and write DIR/quality.json, DIR/quality.png and a table."""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from tn_export.atomic import atomic_path
from tn_export.checkpoint import load_model
from tn_export.descriptor import (
    CONTENT_LAYER,
    STYLE_LAYERS,
    TEXTURE_LAYERS,
    VGGDescriptor,
    load_descriptor,
)
from tn_export.errors import UserError
from tn_export.export.graph import Deployable, delivered
from tn_export.export.pipeline import style_names
from tn_export.images import from_array, load_image, save_image, to_array
from tn_export.runtime.styles import style_weights

from . import gatys, quality
from .config import QualityConfig

RUNTIME_SUFFIXES = (".onnx", ".ort")  # run by tn_export.runtime, as an app would
TILE = 192  # side of each picture in quality.png
GENERATOR_RUNS = 3  # timed stylizations of each photo against Gatys
GATYS_ITERATIONS = 1000  # L-BFGS iterations at most; the time budget (--gatys) usually ends first


class Sampler:
    """A model's delivered outputs, through PyTorch (checkpoints, bundled names, `.t7`) or
    through onnxruntime exactly as tn-run runs it (`.onnx`, `.ort`)."""

    def __init__(self, model: str, style: str | None = None) -> None:
        self.name, self.style = model, style
        if Path(model).suffix.lower() in RUNTIME_SUFFIXES:
            from tn_export import runtime

            self.runtime = runtime.load(model)
            self.mode, self.padding = self.runtime.contract.mode, self.runtime.contract.padding
            styles = self.runtime.contract.styles
            self.train = None  # an export does not carry its training loss
        else:
            self.runtime = None
            ckpt = load_model(model)[0]
            generator = ckpt.generator
            self.generator, self.model = generator, Deployable(generator)
            self.mode, self.padding = generator.config.mode, generator.config.padding
            styles = style_names(generator.config, ckpt.metadata)
            self.train = ckpt.metadata.get("train_config", {})
        self.weights = style_weights(styles, style, model)  # empty for one style

    def textures(self, count: int, size: tuple[int, int], seed: int) -> torch.Tensor:
        w, h = size
        if self.runtime is not None:
            images = [self.runtime.synthesize(w, h, seed=seed + i)[0] for i in range(count)]
            return torch.from_numpy(np.stack([to_array(im) for im in images]))
        return quality.generator_samples(self.generator, count, h, w, seed)

    @torch.no_grad()
    def stylize(self, photo: Image.Image) -> torch.Tensor:
        if self.runtime is not None:
            return torch.from_numpy(to_array(self.runtime.stylize(photo, style=self.style)))
        x = torch.from_numpy(to_array(photo))[None]
        h, w = x.shape[-2:]
        m = self.generator.config.size_multiple
        ph, pw = -h % m, -w % m  # pad by reflection to the size the model runs, then crop back
        padded = torch.nn.functional.pad(x, (0, pw, 0, ph), mode="reflect")
        style = torch.from_numpy(self.weights)[None] if len(self.weights) else None
        return delivered(self.model(padded, style))[0, :, :h, :w]


def _image(path: Path) -> torch.Tensor:
    return torch.from_numpy(to_array(load_image(path)))[None]


def run_quality(cfg: QualityConfig) -> dict:
    """Score the model, write quality.json and quality.png into cfg.out, return the result."""
    sampler = Sampler(cfg.model, cfg.style)
    if sampler.mode == "style" and not cfg.photos:
        raise UserError(f"{cfg.model} is a style model: pass --photos IMG ... to stylize")
    if cfg.gatys_seconds and (sampler.mode != "style" or sampler.train is None):
        raise UserError(
            f"{cfg.model}: --gatys compares a style model's checkpoint (model.pt or a bundled "
            "name, which hold the training loss) with Gatys et al.; tn-bench run does textures"
        )
    layers = TEXTURE_LAYERS if sampler.mode == "texture" else STYLE_LAYERS
    descriptor = load_descriptor(cfg.descriptor, [*layers, CONTENT_LAYER], cfg.descriptor_weights)
    exemplar = _image(cfg.exemplar)
    result: dict = {
        "model": cfg.model,
        **({"style": cfg.style} if cfg.style else {}),
        "mode": sampler.mode,
        "exemplar": str(cfg.exemplar),
        "descriptor": cfg.descriptor,
        "delivered": "clamped to [0, 1], 8 bits",
    }
    if sampler.mode == "texture":
        samples = sampler.textures(cfg.samples, cfg.size, cfg.seed)
        against = {p.name: _image(p) for p in cfg.against}
        result.update(
            quality.texture_quality(
                descriptor, layers, samples, exemplar, against, sampler.padding == "circular"
            )
        )
        strip = [("exemplar", exemplar[0]), *((f"seed {cfg.seed + i}", s) for i, s in
                 enumerate(samples))]  # fmt: skip
        rows = [strip, [(name, image[0]) for name, image in against.items()]]
    else:
        photos = [load_image(p) for p in cfg.photos]
        stylized = [sampler.stylize(p) for p in photos]
        arrays = [torch.from_numpy(to_array(p)) for p in photos]
        result.update(
            quality.style_quality(descriptor, layers, CONTENT_LAYER, exemplar, arrays, stylized)
        )
        rows = [
            [
                ("style", exemplar[0]),
                *((p.name, a) for p, a in zip(cfg.photos, arrays, strict=True)),
            ],
            [("", torch.ones(3, 8, 8)), *(("stylized", s) for s in stylized)],
        ]
        if cfg.gatys_seconds:
            result["gatys"], images = against_gatys(
                cfg, sampler, descriptor, exemplar, photos, stylized
            )
            rows.append([("", torch.ones(3, 8, 8)), *(("Gatys et al.", g) for g in images)])
    cfg.out.mkdir(parents=True, exist_ok=True)
    with atomic_path(cfg.out / "quality.json") as tmp:
        tmp.write_text(json.dumps(result, indent=2) + "\n")
    save_image(contact_sheet([r for r in rows if r]), cfg.out / "quality.png")
    return result


def against_gatys(
    cfg: QualityConfig,
    sampler: Sampler,
    descriptor: VGGDescriptor,
    style: torch.Tensor,
    photos: list[Image.Image],
    stylized: list[torch.Tensor],
) -> tuple[dict, list[torch.Tensor]]:
    """Gatys et al.'s transfer of each photo, run until its delivered image reaches the loss the
    generator was trained on at the generator's own delivered image (parity), against the
    generator's time for that photo (the median of GENERATOR_RUNS, after the scored run), both
    on the same threads: the records and the Gatys images."""
    records, images = [], []
    for path, photo, out in zip(cfg.photos, photos, stylized, strict=True):
        x = torch.from_numpy(to_array(photo))[None]
        objective = gatys.style_objective(descriptor, sampler.train, style, x)
        with torch.no_grad():
            target = float(objective(out[None]))
        times = []
        for _ in range(GENERATOR_RUNS):
            start = time.perf_counter()
            sampler.stylize(photo)
            times.append(time.perf_counter() - start)
        run = gatys.GatysRun(
            texture=str(cfg.exemplar), descriptor=cfg.descriptor,
            descriptor_weights=cfg.descriptor_weights, layers=list(STYLE_LAYERS),
            height=x.shape[-2], width=x.shape[-1], optimizer="lbfgs", pixels=gatys.PIXELS[0],
            iterations=GATYS_ITERATIONS, seconds=cfg.gatys_seconds,
            threads=torch.get_num_threads(), target_loss=target, seeds=[0], image_dir=None,
        )  # fmt: skip
        record, image = gatys.stylize(objective, x, run)
        records.append(
            {"photo": path.name, "generator_loss": target,
             "generator_s": statistics.median(times), **record}
        )  # fmt: skip
        images.append(image[0])
    arrays = [torch.from_numpy(to_array(p)) for p in photos]
    scores = quality.style_quality(descriptor, STYLE_LAYERS, CONTENT_LAYER, style, arrays, images)
    summary = {k: scores[k] for k in ("style_distance", "content_distance")}
    return {"photos": records, **summary}, images


def contact_sheet(rows: list[list[tuple[str, torch.Tensor]]]) -> Image.Image:
    """Labelled pictures in rows, each scaled to TILE pixels high."""
    label_h, gap = 14, 4
    cells = [
        [(label, from_array(t.numpy())) for label, t in row] for row in rows
    ]  # fmt: skip
    widths = [sum(round(im.width * TILE / im.height) + gap for _, im in row) for row in cells]
    sheet = Image.new("RGB", (max(widths), len(cells) * (TILE + label_h + gap)), "white")
    draw = ImageDraw.Draw(sheet)
    for r, row in enumerate(cells):
        x, y = 0, r * (TILE + label_h + gap)
        for label, im in row:
            w = round(im.width * TILE / im.height)
            sheet.paste(im.resize((w, TILE), Image.Resampling.LANCZOS), (x, y + label_h))
            draw.text((x + 2, y + 1), label, fill="black")
            x += w + gap
    return sheet


def gatys_table(result: dict) -> list[str]:
    """The Gatys et al. comparison's lines of the style table."""
    g = result["gatys"]
    lines = [
        "",
        "Gatys et al. (L-BFGS from the photo) until its delivered image reaches the generator's "
        "training loss on that photo:",
        "",
        "| photo | generator | Gatys et al. to parity | ratio | style distance, generator / "
        "Gatys | content distance, generator / Gatys |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    distances = (
        result[k]["values"] for k in ("style_distance", "content_distance")
    )  # the generator's, then Gatys'
    gatys_distances = (g[k]["values"] for k in ("style_distance", "content_distance"))
    for r, style, content, s, c in zip(g["photos"], *distances, *gatys_distances, strict=True):
        best = r["variants"][r["baseline"]]
        parity = best["parity_s"]
        reached = (
            f"{parity:.1f} s ({best['evaluations']} evaluations, {r['baseline']} pixels)"
            if parity is not None
            else f"not within {best['elapsed_s']:.0f} s (loss {best['loss']:.3g} "
            f"against {r['generator_loss']:.3g})"
        )
        ratio = f"{parity / r['generator_s']:,.0f}x" if parity is not None else "-"
        lines.append(
            f"| {r['photo']} | {r['generator_s']:.2f} s | {reached} | {ratio} | "
            f"{style:.4g} / {s:.4g} | {content:.3g} / {c:.3g} |"
        )
    return lines


def quality_table(result: dict) -> str:
    """The result as a markdown table for the terminal and the README."""
    if result["mode"] == "style":
        s, p, c = (
            result[k] for k in ("style_distance", "photo_style_distance", "content_distance")
        )
        return "\n".join([
            f"Style quality of {result['model']}"
            + (f" in style {result['style']}" if "style" in result else "")
            + f" ({result['count']} photos, VGG-16, delivered "
            "8-bit images)",
            "",
            "| | mean | sd |",
            "| --- | --- | --- |",
            f"| style distance, stylized | {s['mean']:.4g} | {s['sd']:.3g} |",
            f"| style distance, the photo itself | {p['mean']:.4g} | {p['sd']:.3g} |",
            f"| content distance (relu4_2, relative) | {c['mean']:.3g} | {c['sd']:.3g} |",
            *(gatys_table(result) if "gatys" in result else []),
        ])  # fmt: skip
    g, layers = result["gram_distance"], result["layers"]
    w, h = result["size"][1], result["size"][0]
    lines = [
        f"Quality of {result['model']} against {Path(result['exemplar']).name}: "
        f"{result['count']} samples at {w}x{h}, VGG-16 Gram distance on delivered 8-bit images",
        "",
        "| Gram distance (mean ± sd) | " + " | ".join(layers) + " | relative |",
        "| --- | " + " | ".join("---" for _ in layers) + " | --- |",
        f"| {g['mean']:,.0f} ± {g['sd']:,.0f} | "
        + " | ".join(f"{result['per_layer'][k]:,.1f}" for k in layers)
        + f" | {result['relative_distance']:.3g} |",
        "",
    ]
    if "separation" in result:
        lines.append(
            f"nearest other texture: {result['nearest_other']} at "
            f"{result['against'][result['nearest_other']]:,.0f} "
            f"({result['separation']:.1f}x the exemplar's distance)"
        )
    if "pixel_diversity" in result:
        lines.append(
            f"diversity between seeds: pixel RMS {result['pixel_diversity']:.3f}, "
            f"Gram distance {result['gram_diversity']:,.0f}"
        )
    e = result["element_size"]
    lines.append(
        f"element size: samples {e['samples']:.1f} px, exemplar {e['exemplar']:.1f} px "
        f"(ratio {e['ratio']:.2f})"
    )
    if "seam_error" in result:
        lines.append(f"wrap-around seam error: {result['seam_error']:.2f} (1 = seamless)")
    return "\n".join(lines)
