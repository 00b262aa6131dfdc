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
from .budget import check_memory, unpacked_size
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
                "an earlier checkpoint or retrain with a lower --lr"
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
