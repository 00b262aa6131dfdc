"""Checkpoints: weights, config and metadata, written atomically, read without running code."""

from __future__ import annotations

import os
import pickle
import platform
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypedDict

import torch

from . import __version__
from .atomic import atomic_path
from .budget import check_memory, unpacked_size
from .contract import TrainingSummary
from .errors import UserError
from .generator import GeneratorConfig, PyramidGenerator

FORMAT = "tn-export/checkpoint"
VERSION = 1
MODELS = Path(__file__).parent / "models"  # the bundled checkpoints, by name
DEFAULT_MODEL = MODELS / "red_peppers.pt"


def bundled_model(name: str) -> Path | None:
    """The bundled checkpoint called `name` ("red_peppers", "starry"), or None."""
    path = MODELS / f"{name}.pt"
    return path if name and Path(name).name == name and path.is_file() else None


class Metadata(TypedDict, total=False):
    """What a checkpoint says about the generator beside its weights: the one list of its keys,
    written by tn-train (and the .t7 reader), read by tn-export and tn-bench. Every key is
    optional: a checkpoint written by hand, or by an older tn-train, may lack any of them."""

    mode: str  # "texture" | "style"
    descriptor: str  # "vgg19", "vgg16", "random"; "vgg19 (upstream)" for a .t7
    layers: list[str]  # the descriptor layers of the texture loss
    exemplar: str  # the texture's or style image's file name (several styles: ", "-separated)
    exemplar_sha256: str
    styles: list[str]  # conditional norms: the style names, in the order of the style weights
    train_config: dict  # TrainConfig as plain values
    world_size: int  # training processes under torchrun
    precision: dict[str, str]  # {"descriptor": "bf16" | "fp32", "generator": ...}
    iteration: int  # iterations trained
    loss: float  # the loss at that iteration
    # Batch norms recalibrated after training: the bundled red_peppers says so; tn-train now
    # always recalibrates at the end of a run and does not write it.
    recalibrated_norms: bool
    source: str  # where a converted generator comes from ("texture_nets v1 (Lua Torch)")
    file: str  # the file it was converted from
    versions: dict[str, str]  # library_versions() of the writer, added by save_checkpoint


class TrainingState(TypedDict):
    """What `tn-train --resume` continues from: kept whole, so that a resumed run is the same as
    an uninterrupted one. `iteration` is also in the Metadata, which other tools read."""

    iteration: int
    optimizer: dict  # Adam's state_dict
    schedule: dict  # the learning-rate schedule's state_dict
    rng: torch.Tensor  # torch.get_rng_state()


def training_summary(metadata: Metadata) -> TrainingSummary:
    """What an exported model's contract records of its training (ModelContract.training)."""
    summary = {
        "descriptor": metadata.get("descriptor"),
        "exemplar": metadata.get("exemplar"),
        "iterations": metadata.get("iteration"),
        "loss": metadata.get("loss"),
        "source": metadata.get("source"),
    }
    return TrainingSummary(**{k: v for k, v in summary.items() if v is not None})


@dataclass
class Checkpoint:
    """A loaded checkpoint; `training_state` serves --resume only."""

    generator: PyramidGenerator
    metadata: Metadata = field(default_factory=Metadata)
    training_state: TrainingState | None = None

    @property
    def config(self) -> GeneratorConfig:
        return self.generator.config


def library_versions() -> dict[str, str]:
    # str(): torch.__version__ is a str subclass that weights_only loading would refuse.
    return {
        "tn_export": __version__,
        "torch": str(torch.__version__),
        "python": platform.python_version(),
    }


def save_checkpoint(
    path: str | os.PathLike,
    generator: PyramidGenerator,
    metadata: Metadata | None = None,
    training_state: TrainingState | None = None,
) -> None:
    """Write atomically: a crash or a full disk mid-write leaves the previous checkpoint intact."""
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "config": generator.config.as_dict(),
        "state_dict": {k: v.detach().cpu() for k, v in generator.state_dict().items()},
        "metadata": {**(metadata or {}), "versions": library_versions()},
    }
    if training_state is not None:
        payload["training_state"] = training_state
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def load_checkpoint(path: str | os.PathLike, map_location: str = "cpu") -> Checkpoint:
    """Load a tn-train checkpoint with `weights_only=True`: a file that tries to run code on
    unpickling is refused, never executed. The generator comes back in eval mode."""
    path = Path(path)
    if not path.is_file():
        what = "is a folder" if path.is_dir() else "does not exist"
        raise UserError(f"checkpoint {path} {what}; pass the model.pt that tn-train wrote")
    unpacked = f"checkpoint {path} (unpacked)"
    check_memory(unpacked_size(path), unpacked, "pass the model.pt tn-train wrote")
    try:
        with warnings.catch_warnings():  # torch warns about foreign pickles: our error says it
            warnings.simplefilter("ignore")
            payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # noqa: BLE001 - any load failure means a bad or unsafe file
        unsafe = isinstance(e, pickle.UnpicklingError) and "Weights only load" in str(e)
        reason = "it holds Python objects that could run code" if unsafe else type(e).__name__
        raise UserError(
            f"checkpoint {path} is not a readable tn-export checkpoint ({reason}); "
            "it may be truncated, not a checkpoint, or unsafe to load; retrain or re-download it"
        ) from e
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise UserError(f"checkpoint {path} was not written by tn-train; pass a tn-train model.pt")
    if payload.get("version") != VERSION:
        raise UserError(
            f"checkpoint {path} has format version {payload.get('version')}, this tn-export "
            f"reads version {VERSION}; export it with the tn-export version that trained it"
        )
    metadata, state = payload.get("metadata", {}), payload.get("training_state")
    for name, value, kinds in (
        ("config", payload.get("config"), dict),
        ("state dict", payload.get("state_dict"), dict),
        ("metadata", metadata, dict),
        ("training state", state, (dict, type(None))),
    ):
        if not isinstance(value, kinds):
            raise UserError(
                f"checkpoint {path} has {name} that is {type(value).__name__}, not a mapping; "
                "it was not written by tn-train: retrain or pass another model.pt"
            )
    try:
        generator = PyramidGenerator.from_config(payload["config"])
    except UserError as e:  # a config too large for the memory budget, refused before building
        raise UserError(f"checkpoint {path}: {e}") from e
    except (TypeError, ValueError) as e:
        raise UserError(f"checkpoint {path} does not match its generator config ({e})") from e
    problem = _state_dict_problem(payload["state_dict"], generator.state_dict())
    if problem:
        raise UserError(f"checkpoint {path} does not match its generator config ({problem})")
    generator.load_state_dict(payload["state_dict"])
    check_finite(generator, f"checkpoint {path}")
    generator.eval()
    return Checkpoint(generator, metadata, state)


def _state_dict_problem(given: dict, wanted: dict) -> str:
    """What is wrong with a state dict for the generator whose own is `wanted`, naming the
    first wrong key ("" when nothing is)."""
    missing = [k for k in wanted if k not in given]
    if missing:
        more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
        return f"its weights lack {missing[0]!r}{more}"
    unexpected = [k for k in given if k not in wanted]
    if unexpected:
        return f"its weights have an unexpected key {unexpected[0]!r}"
    for key, tensor in given.items():
        if not isinstance(tensor, torch.Tensor) or tensor.shape != wanted[key].shape:
            shape = (
                tuple(tensor.shape) if isinstance(tensor, torch.Tensor) else type(tensor).__name__
            )
            return f"{key!r} is {shape}, the config needs {tuple(wanted[key].shape)}"
    return ""


def check_finite(generator: PyramidGenerator, source: str) -> None:
    """Refuse a generator holding NaN or infinite weights: its every output would be NaN."""
    for name, tensor in generator.state_dict().items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise UserError(
                f"{source} holds NaN or infinite values in {name}: its training diverged; use "
                "an earlier checkpoint or retrain with a lower learning rate (tn-train --lr)"
            )


def load_model(path: str | os.PathLike | None = None) -> tuple[Checkpoint, Path]:
    """Any generator tn-export takes: a tn-train checkpoint, a bundled model's name, one of the
    paper's released `.t7` files, or (None) the bundled default. Returns it and its file."""
    if path is None:
        if not DEFAULT_MODEL.is_file():
            raise UserError(
                f"the bundled default model {DEFAULT_MODEL} is not there (not trained yet?); "
                "pass a CHECKPOINT such as runs/bricks/model.pt"
            )
        path = DEFAULT_MODEL
    path = Path(path)
    if not path.exists() and (bundled := bundled_model(str(path))):
        path = bundled
    if path.suffix.lower() == ".t7":
        from .torch7 import load_torch7  # the Lua Torch reader is only needed for .t7 files

        return load_torch7(path), path
    return load_checkpoint(path), path
