"""The training loop of Texture Networks: a generator learns a descriptor's Gram statistics."""

from __future__ import annotations

import json
import math
import time
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TextIO

import torch
from torch.nn import functional as F
from tqdm import tqdm

from tn_export import budget
from tn_export.checkpoint import Metadata, TrainingState, load_checkpoint, save_checkpoint
from tn_export.descriptor import CONTENT_LAYER, STYLE_LAYERS, TEXTURE_LAYERS, load_descriptor
from tn_export.errors import UserError
from tn_export.export.graph import delivered
from tn_export.generator import GeneratorConfig, PyramidGenerator
from tn_export.images import MAX_PIXELS, from_array, save_image
from tn_export.losses import content_loss, diversity_loss, gram_matrix, texture_loss, tv_loss

from .data import ContentCrops, load_exemplar, sha256
from .distributed import Ranks


class TrainingError(RuntimeError):
    """The run failed while working (e.g. the loss diverged); the last good checkpoint stays."""


# Upstream texture_nets v1 (texture_train.lua): Adam, lr 0.1 x0.8 every 300 iterations, batch 16,
# 1500 iterations, the absolute Gram loss.
PAPER = {
    "batch_size": 16,
    "iterations": 1500,
    "lr": 0.1,
    "lr_decay": 0.8,
    "lr_step": 300,
    "clamp_last": 0,
    "image_size": 256,
    "finish_last": 0,
}
# Each mode's recipe: the TrainConfig fields left None take their mode's value. Textures train
# with normalized gradients on 128 px crops at batch 4, a quarter of a 256 px step, and finish
# on 256 px crops, the size they are judged at (docs/training.md, "Gradient normalisation" and
# "Finishing at 256 px"). Style keeps the settings its weights were tuned with.
RECIPES = {
    "texture": {"image_size": 128, "batch_size": 4, "iterations": 3600, "lr": 0.1,
                "clamp_last": 800, "finish_size": 256, "finish_last": 400,
                "relative_loss": False, "normalize_gradients": True},
    "style": {"image_size": 256, "batch_size": 2, "iterations": 5200, "lr": 0.05,
              "clamp_last": 400, "finish_size": 256, "finish_last": 0,
              "relative_loss": True, "normalize_gradients": False},
}  # fmt: skip
PARTS = ("descriptor", "generator")  # each autocasts to bf16 or not, as --PART-precision says


@dataclass
class TrainConfig:
    """One tn-train run. Defaults are this project's recipe (docs/training.md), RECIPES where
    it differs by mode; PAPER holds upstream texture_nets v1's settings (`--preset paper`)."""

    mode: str  # "texture" | "style"
    exemplar: Path  # the texture (texture mode) or style image (style mode); the first style
    out: Path
    content: list[str] = field(default_factory=list)
    # tn-train styles: the styles after the first, learnt together by conditional norms (one
    # scale and shift per style, the rest shared); each batch mixes them.
    more_styles: list[Path] = field(default_factory=list)
    image_size: int | None = None
    batch_size: int | None = None
    iterations: int | None = None
    lr: float | None = None
    lr_decay: float = 0.8
    lr_step: int = 400
    # The last clamp_last iterations score the output clamped to [0, 1], as users receive it,
    # with the gradient passed straight through (docs/training.md: the raw output's values
    # outside [0, 1] cost the delivered image a quarter of its quality).
    clamp_last: int | None = None
    # Progressive resolution: the last finish_last iterations train on finish_size crops, so
    # that the coarse scales see the noise of the size samples are judged at. A --image-size
    # given without --finish-size is the size throughout.
    finish_size: int | None = None
    finish_last: int | None = None
    layers: tuple[str, ...] | None = None  # None: TEXTURE_LAYERS or STYLE_LAYERS by mode
    content_layer: str = CONTENT_LAYER
    style_weight: float = 1.0
    # Divide each layer's Gram error by its target's mean square: off for textures (upstream's
    # loss, the yardstick), on for style, whose weights were tuned with it.
    relative_loss: bool | None = None
    # Upstream's -normalize_gradients: each layer's Gram term sends its activations a gradient
    # of unit L1 norm (docs/training.md, "Gradient normalisation").
    normalize_gradients: bool | None = None
    content_weight: float = 1.0
    tv_weight: float = 0.0
    diversity_weight: float = 0.0
    norm: str = "batch"
    padding: str = "circular"
    descriptor: str = "vgg19"
    descriptor_weights: str | None = None
    descriptor_precision: str = "auto"  # "bf16" | "fp32" | "auto": bf16 where it is native
    generator_precision: str = "auto"  # the same for the generator (weights stay fp32)
    seed: int = 0
    device: str = "cpu"
    checkpoint_every: int = 100
    sample_every: int = 100
    log_every: int = 10
    resume: bool = False

    @property
    def exemplars(self) -> list[Path]:
        """Every style (or the texture), in the order of the style weights."""
        return [self.exemplar, *self.more_styles]

    @property
    def styles(self) -> int:
        """The generator's `styles`: how many its conditional norms hold (0: no style input)."""
        return len(self.exemplars) if self.norm == "conditional" else 0

    def size_at(self, it: int) -> int:
        """The side of iteration `it`'s training crops (the last one's is the judged size)."""
        return self.finish_size if it > self.iterations - self.finish_last else self.image_size

    def _sizes(self) -> dict[str, int]:
        """The crop sides this run trains on, by the flag that sets each."""
        sizes = {"--image-size": self.image_size}
        if self.finish_last and self.finish_size != self.image_size:
            sizes["--finish-size"] = self.finish_size
        return sizes

    def __post_init__(self) -> None:
        if self.mode not in RECIPES:
            raise UserError(f"mode {self.mode!r} is neither texture nor style")
        if self.finish_size is None and self.image_size is not None:
            self.finish_size = self.image_size
        for name, value in RECIPES[self.mode].items():
            if getattr(self, name) is None:
                setattr(self, name, value)
        if self.layers is None:
            self.layers = TEXTURE_LAYERS if self.mode == "texture" else STYLE_LAYERS
        if (self.more_styles or self.norm == "conditional") and self.mode != "style":
            raise UserError("several styles (conditional norms) are for style models")
        if self.more_styles and self.norm != "conditional":
            raise UserError("several styles need conditional norms (tn-train styles)")
        for name in (
            "image_size",
            "finish_size",
            "batch_size",
            "iterations",
            "lr_step",
            "checkpoint_every",
            "sample_every",
            "log_every",
        ):
            if getattr(self, name) <= 0:
                raise UserError(f"--{name.replace('_', '-')} must be positive")
        for name in ("clamp_last", "finish_last"):
            if getattr(self, name) < 0:
                raise UserError(f"--{name.replace('_', '-')} must be 0 or more")
        if len(self._sizes()) > 1 and self.mode == "style":
            raise UserError("--finish-size is for textures: style crops are drawn at one size")
        for flag, size in self._sizes().items():
            if self.batch_size * size**2 > MAX_PIXELS:
                raise UserError(
                    f"--batch-size {self.batch_size} x {flag} {size} squared is over the limit "
                    f"of {MAX_PIXELS} pixels per step; lower them"
                )
            if self.device == "cpu":  # a GPU's memory is its own
                g = GeneratorConfig(self.mode)
                per_pixel = budget.training_bytes_per_pixel(g.scales, g.channels, g.input_channels)
                what = f"a training step of --batch-size {self.batch_size} x {flag} {size}"
                budget.check_memory(self.batch_size * size**2 * per_pixel, what, "lower them")
            if size % 32:
                raise UserError(f"{flag} {size} is not a multiple of 32; use e.g. 128, 256 or 512")
        for part in PARTS:
            if getattr(self, f"{part}_precision") not in ("auto", "fp32", "bf16"):
                raise UserError(f"--{part}-precision must be auto, fp32 or bf16")
        if self.diversity_weight and self.batch_size < 2:
            raise UserError("--diversity-weight needs --batch-size of at least 2")
        if self.batch_size < len(self.exemplars):
            raise UserError(
                f"--batch-size {self.batch_size} is smaller than the {len(self.exemplars)} "
                "styles: every batch holds each style at least once"
            )
        if self.device == "cuda" and not torch.cuda.is_available():
            raise UserError(
                "--device cuda asked for, but no CUDA GPU is available; use --device cpu"
            )


def train(cfg: TrainConfig) -> Path:
    """Run (or resume) training; returns the path of the final checkpoint. Under torchrun every
    rank trains on its share of the global batch and rank 0 alone writes (see distributed.py)."""
    ranks = Ranks.start(cfg.device)
    # Denormal floats (tiny activations and gradients) made steps up to 30x slower on this x86
    # CPU; flushing them to zero changes nothing that matters at these magnitudes.
    torch.set_flush_denormal(True)
    try:
        return _train(cfg, ranks)
    finally:
        torch.set_flush_denormal(False)
        ranks.close()


def _train(cfg: TrainConfig, ranks: Ranks) -> Path:
    """The loop: one step per iteration, then the periodic actions that are due."""
    run = _setup(cfg, ranks)
    main = ranks.is_main
    iterations = range(run.start + 1, cfg.iterations + 1)
    with (
        _open_log(cfg, main) as log,
        tqdm(
            iterations,
            initial=run.start,
            total=cfg.iterations,
            desc=f"tn-train {cfg.mode}",
            dynamic_ncols=True,
            disable=not main,
        ) as bar,
    ):
        try:
            for it in bar:
                x, terms = _step(run, it)
                bar.set_postfix(loss=f"{run.loss:.4g}")
                last, quality = it == cfg.iterations, {}
                if main and (it % cfg.sample_every == 0 or last):
                    quality = _sample(run, x, it)
                if log and (it % cfg.log_every == 0 or last or quality):
                    _log(log, run, {**terms, **quality})
                if main and last and cfg.norm == "batch":
                    _recalibrate_norms(run.generator, lambda: run.next_input(cfg.iterations))
                if main and (it % cfg.checkpoint_every == 0 or last):
                    _save(run)
        except KeyboardInterrupt:  # Ctrl-C or SIGTERM: keep the last finished iteration, stop
            if main and run.done > run.start:
                _save(run)
            raise
    ranks.barrier()  # every rank returns once rank 0's final checkpoint is written
    return run.checkpoint


@dataclass
class _Objective:
    """The loss of a batch: the descriptor under its autocast, the exemplar's Gram targets and
    the weights of the terms."""

    cfg: TrainConfig
    descriptor: torch.nn.Module
    cast: torch.autocast
    content: bool  # style mode: a content term on the descriptor's content layer
    targets: dict[str, torch.Tensor] = field(default_factory=dict)

    def describe(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """Named activations, bf16 under bf16 autocast (the Gram matrices then are bf16 too)."""
        with self.cast:
            return self.descriptor(images)

    @torch.no_grad()
    def aim_at(self, exemplars: list[torch.Tensor]) -> None:
        """Set the targets: the exemplars' Gram matrices on the texture layers, (styles, C, C)."""
        grams = [
            {k: gram_matrix(v.float()) for k, v in self.describe(e).items() if k in self.cfg.layers}
            for e in exemplars
        ]
        self.targets = {k: torch.cat([g[k] for g in grams]) for k in self.cfg.layers}

    def terms(
        self, x: torch.Tensor, out: torch.Tensor, styles: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        """The weighted loss terms of the generator's output `out` for its input `x`; `styles`:
        the style index of each sample (several styles), whose targets it is scored against."""
        cfg, feats = self.cfg, self.describe(out)
        targets = (
            self.targets if styles is None else {k: t[styles] for k, t in self.targets.items()}
        )
        terms = {
            "texture": cfg.style_weight
            * texture_loss(feats, targets, cfg.layers, cfg.relative_loss, cfg.normalize_gradients)
        }
        if self.content:
            with torch.no_grad():
                target = self.describe(x)[cfg.content_layer].float()
            content = content_loss(feats[cfg.content_layer].float(), target)
            terms["content"] = cfg.content_weight * content
        if cfg.tv_weight:
            terms["tv"] = cfg.tv_weight * tv_loss(out)
        if cfg.diversity_weight:
            diversity = diversity_loss(feats[cfg.layers[-1]].float())
            terms["diversity"] = cfg.diversity_weight * diversity
        return terms


@dataclass
class _Run:
    """A run's state: what the step uses and the periodic actions record."""

    cfg: TrainConfig
    ranks: Ranks
    checkpoint: Path  # OUT/model.pt
    share: slice  # this rank's part of the global batch
    objective: _Objective
    crops: ContentCrops | None  # style mode's content images
    generator: PyramidGenerator
    model: torch.nn.Module  # the generator, wrapped in DDP under torchrun
    generate_cast: torch.autocast
    optimizer: torch.optim.Optimizer
    schedule: torch.optim.lr_scheduler.StepLR
    metadata: Metadata
    start: int  # the iteration resumed from; 0 for a new run
    done: int = 0  # the last iteration whose optimiser step is taken
    loss: float = math.nan  # its loss, averaged over ranks
    started: float = field(default_factory=time.perf_counter)

    def next_input(self, it: int) -> torch.Tensor:
        """This rank's share of iteration `it`'s global batch: noise, or content crops."""
        cfg = self.cfg
        if self.crops is None:
            size = cfg.size_at(it)
            x = self.generator.sample_input(cfg.batch_size, size, size)
            x = x[self.share]
        else:
            x = self.crops.batch(cfg.batch_size, self.share)
        return x.to(self.ranks.device)

    def styles_of(self, it: int) -> torch.Tensor | None:
        """The style index of each sample of this rank's share at iteration `it` (several
        styles: they take turns through the global batch, shifted by one every iteration), or
        None."""
        if not self.cfg.styles:
            return None
        count = self.cfg.styles
        return (
            (torch.arange(self.cfg.batch_size) + it)[self.share]
            .remainder(count)
            .to(self.ranks.device)
        )


def _setup(cfg: TrainConfig, ranks: Ranks) -> _Run:
    """The objective, the generator and its optimiser, resumed from OUT/model.pt if asked."""
    share = ranks.share(cfg.batch_size)
    if cfg.diversity_weight and share.stop - share.start < 2:
        raise UserError("--diversity-weight needs at least 2 samples per process in --batch-size")
    device = ranks.device
    torch.manual_seed(cfg.seed)
    exemplars = [load_exemplar(path).to(device) for path in cfg.exemplars]
    crops = ContentCrops(cfg.content, cfg.image_size) if cfg.mode == "style" else None
    needs = list(cfg.layers) + ([cfg.content_layer] if crops else [])
    descriptor = load_descriptor(cfg.descriptor, needs, cfg.descriptor_weights)
    # Channels-last: oneDNN's convolutions skip a layout conversion per layer (6-13 % here).
    descriptor = descriptor.to(device, memory_format=torch.channels_last)
    bf16 = {part: _bf16(getattr(cfg, f"{part}_precision"), device) for part in PARTS}
    cast = {part: torch.autocast(device.type, torch.bfloat16, enabled=bf16[part]) for part in PARTS}
    objective = _Objective(cfg, descriptor, cast["descriptor"], content=crops is not None)
    objective.aim_at(exemplars)
    generator = PyramidGenerator(cfg.mode, norm=cfg.norm, padding=cfg.padding, styles=cfg.styles)
    generator = generator.to(device)
    model = ranks.wrap(generator)
    optimizer = torch.optim.Adam(generator.parameters(), lr=cfg.lr)
    schedule = torch.optim.lr_scheduler.StepLR(optimizer, cfg.lr_step, gamma=cfg.lr_decay)
    checkpoint, start = cfg.out / "model.pt", 0
    if cfg.resume:
        start = _resume(checkpoint, generator, optimizer, schedule, ranks)
    metadata: Metadata = {
        "mode": cfg.mode,
        "descriptor": cfg.descriptor,
        "layers": list(cfg.layers),
        "exemplar": ", ".join(path.name for path in cfg.exemplars),
        "exemplar_sha256": ", ".join(sha256(path) for path in cfg.exemplars),
        "train_config": json.loads(json.dumps(asdict(cfg), default=str)),
        "world_size": ranks.world_size,
        "precision": {part: "bf16" if on else "fp32" for part, on in bf16.items()},
    }
    if cfg.styles:
        metadata["styles"] = [path.stem for path in cfg.exemplars]
    generator.train()
    return _Run(
        cfg=cfg,
        ranks=ranks,
        checkpoint=checkpoint,
        share=share,
        objective=objective,
        crops=crops,
        generator=generator,
        model=model,
        generate_cast=cast["generator"],
        optimizer=optimizer,
        schedule=schedule,
        metadata=metadata,
        start=start,
        done=start,
    )


def _step(run: _Run, it: int) -> tuple[torch.Tensor, dict[str, float]]:
    """One optimiser step on the next batch: its input and its loss terms (the global batch's,
    the same on every rank, so that all ranks stop together on a NaN)."""
    cfg = run.cfg
    x, styles = run.next_input(it), run.styles_of(it)
    weights = None if styles is None else F.one_hot(styles, cfg.styles).float()
    with run.generate_cast, run.ranks.own_noise(cfg.seed, it) if run.crops else nullcontext():
        out = (run.model(x) if weights is None else run.model(x, weights)).float()
    if it > cfg.iterations - cfg.clamp_last:
        out = straight_through_clamp(out)
    terms = run.objective.terms(x, out, styles)
    loss = sum(terms.values())
    means = run.ranks.mean(torch.stack(list(terms.values()))).tolist()
    averaged = dict(zip(terms, means, strict=True))
    loss_value = sum(averaged.values())
    if not math.isfinite(loss_value):
        lower = f"lower --lr (now {cfg.lr})"
        # This run has a checkpoint if it resumed one or saved one before this iteration.
        if cfg.resume or it > cfg.checkpoint_every:
            kept = f"the last good checkpoint {run.checkpoint} is kept: {lower} and --resume"
        else:
            kept = f"no checkpoint was written yet: {lower} and run again"
        raise TrainingError(f"loss became {loss_value} at iteration {it}; {kept}")
    run.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    run.optimizer.step()
    run.schedule.step()
    run.done, run.loss = it, loss_value
    return x, averaged


def straight_through_clamp(images: torch.Tensor) -> torch.Tensor:
    """The images clamped to [0, 1], with the gradient of the identity: a plain clamp gives the
    clamped pixels no gradient, and they stay out of range for good."""
    return images + (images.clamp(0, 1) - images).detach()


def _sample(run: _Run, x: torch.Tensor, it: int) -> dict[str, float]:
    """Save a sample of the batch's first input; for textures, return the quality yardstick on
    what a user would get now (docs/training.md)."""
    _save_sample(
        run.generator, x, run.cfg.out / "samples" / f"iter_{it:06d}.png", run.styles_of(it)
    )
    if run.crops is not None:
        return {}
    return {"eval_distance": _eval_distance(run.generator, run.objective)}


def _log(log: TextIO, run: _Run, values: dict[str, float]) -> None:
    """One row of log.jsonl: the loss, the learning rate, the time so far and `values`."""
    row = {
        "iteration": run.done,
        "loss": run.loss,
        "lr": run.schedule.get_last_lr()[0],
        "seconds": round(time.perf_counter() - run.started, 3),
        **values,
    }
    log.write(json.dumps(row) + "\n")
    log.flush()


def _save(run: _Run) -> None:
    """Checkpoint the last finished iteration, atomically, with the state --resume needs."""
    state: TrainingState = {
        "iteration": run.done,
        "optimizer": run.optimizer.state_dict(),
        "schedule": run.schedule.state_dict(),
        "rng": torch.get_rng_state(),
    }
    metadata: Metadata = {**run.metadata, "iteration": run.done, "loss": run.loss}
    save_checkpoint(run.checkpoint, run.generator, metadata, state)


def _open_log(cfg: TrainConfig, main: bool) -> AbstractContextManager[TextIO | None]:
    """Rank 0's log.jsonl (other ranks log nothing). A new run (tn-train --overwrite) starts a
    new log; a resumed one continues its own."""
    if not main:
        return nullcontext()
    cfg.out.mkdir(parents=True, exist_ok=True)
    return open(cfg.out / "log.jsonl", "a" if cfg.resume else "w")


def _bf16(choice: str, device: torch.device) -> bool:
    """Whether to autocast to bf16: asked for, or "auto" on hardware that computes bf16 natively
    (CUDA GPUs from Ampere on; x86 CPUs with AVX512-BF16 or AMX). Elsewhere bf16 is emulated and
    slower than fp32."""
    if choice != "auto":
        return choice == "bf16"
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    cpuinfo = Path("/proc/cpuinfo")
    flags = cpuinfo.read_text().split() if cpuinfo.exists() else []
    return "avx512_bf16" in flags or "amx_bf16" in flags


def _resume(path: Path, generator, optimizer, schedule, ranks: Ranks) -> int:
    state = ranks.from_main(lambda: _resume_state(path, generator.config))
    generator.load_state_dict(state["generator"])
    optimizer.load_state_dict(state["optimizer"])
    schedule.load_state_dict(state["schedule"])
    torch.set_rng_state(state["rng"])
    return int(state["iteration"])


def _resume_state(path: Path, config) -> dict:
    """Weights and training state of the checkpoint to resume from (any number of ranks wrote it:
    the state is the same on every rank)."""
    if not path.exists():
        raise UserError(f"--resume: there is no checkpoint {path} yet; run without --resume")
    ckpt = load_checkpoint(path)
    if ckpt.config != config:
        raise UserError(f"--resume: {path} was trained with {ckpt.config}, not {config}")
    if not ckpt.training_state:
        raise UserError(f"--resume: {path} holds no optimizer state; start a new run")
    return {"generator": ckpt.generator.state_dict(), **ckpt.training_state}


RECALIBRATION_BATCHES = 50


@torch.no_grad()
def _recalibrate_norms(generator: PyramidGenerator, draw) -> None:
    """Replace the batch norms' running statistics, a moving average over the last ~10 batches
    of weights that kept changing, by the exact average over RECALIBRATION_BATCHES batches
    (`draw()` gives one) of the final weights. Sampling uses them; on the first bundled model
    this alone lowered the Gram distance from 71,000 to 53,000 (docs/training.md). The global
    random stream is left as it was, so a resumed run continues as an uninterrupted one."""
    norms = [m for m in generator.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    was_training = generator.training
    with torch.random.fork_rng(devices=[]):
        for m in norms:
            m.reset_running_stats()
            m.momentum = None  # None: a cumulative average of every batch seen
        generator.train()
        for _ in range(RECALIBRATION_BATCHES):
            generator(draw())
    for m in norms:
        m.momentum = 0.1
    generator.train(was_training)


@torch.no_grad()
def _eval_distance(generator: PyramidGenerator, objective: _Objective) -> float:
    """Mean absolute Gram distance of two delivered eval-mode samples (fixed seeds) at the
    final training size: the yardstick of `tn-bench quality`, in the training descriptor."""
    cfg, targets = objective.cfg, objective.targets
    size = cfg.size_at(cfg.iterations)
    was_training = generator.training
    generator.eval()
    total = 0.0
    for seed in (1, 2):
        noise = generator.sample_input(1, size, size, torch.Generator().manual_seed(seed))
        image = delivered(generator(noise.to(targets[cfg.layers[0]].device)).float())
        feats = {k: v.float() for k, v in objective.describe(image).items()}
        total += float(texture_loss(feats, targets, cfg.layers))
    generator.train(was_training)
    return total / 2


@torch.no_grad()
def _save_sample(
    generator: PyramidGenerator, x: torch.Tensor, path: Path, styles: torch.Tensor | None
) -> None:
    """Save one eval-mode output of the current batch's first input, in its style (keeps the RNG
    untouched)."""
    was_training = generator.training
    generator.eval()
    args = () if styles is None else (F.one_hot(styles[:1], generator.config.styles).float(),)
    image = generator(x[:1], *args).squeeze(0).float().cpu().numpy()
    generator.train(was_training)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_image(from_array(image), path)
