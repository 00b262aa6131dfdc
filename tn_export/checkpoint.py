"""Checkpoints: weights, config and metadata, written atomically, read without running code."""

from __future__ import annotations

import os
import pickle
import platform
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch

from . import __version__
from .atomic import atomic_path
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


@dataclass
class Checkpoint:
    """A loaded checkpoint; `training_state` (optimizer, RNG, iteration) serves --resume only."""

    generator: PyramidGenerator
    metadata: dict = field(default_factory=dict)
    training_state: dict | None = None

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
    metadata: dict | None = None,
    training_state: dict | None = None,
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
    try:
        generator = PyramidGenerator.from_config(payload["config"])
        generator.load_state_dict(payload["state_dict"])
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        first = str(e).strip().splitlines()[0][:160]
        raise UserError(f"checkpoint {path} does not match its generator config ({first})") from e
    generator.eval()
    return Checkpoint(generator, payload.get("metadata", {}), payload.get("training_state"))


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
