"""Checkpoints: round trip, atomic replacement, and refusal of unsafe or foreign files."""

from __future__ import annotations

import os
import pickle

import pytest
import torch

from tn_export.checkpoint import (
    MODELS,
    Metadata,
    TrainingState,
    load_checkpoint,
    save_checkpoint,
    training_summary,
)
from tn_export.contract import TrainingSummary
from tn_export.errors import UserError
from tn_export.generator import PyramidGenerator


def test_round_trip_restores_config_weights_and_metadata(tmp_path):
    g = PyramidGenerator(mode="style", norm="instance", padding="reflect").eval()
    path = tmp_path / "model.pt"
    save_checkpoint(path, g, {"mode": "style", "loss": 1.5})
    ckpt = load_checkpoint(path)
    assert ckpt.config == g.config
    assert ckpt.metadata["loss"] == 1.5 and "torch" in ckpt.metadata["versions"]
    x = torch.rand(1, 3, 64, 64)
    assert torch.equal(ckpt.generator(x), g(x))
    assert not ckpt.generator.training


def test_a_failed_save_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "model.pt"
    g = PyramidGenerator()
    save_checkpoint(path, g, {"iteration": 1})

    def full_disk(obj, f, *args, **kwargs):
        with open(f, "wb") as fh:
            fh.write(b"half a checkpoint")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(OSError):
        save_checkpoint(path, g, {"iteration": 2})
    monkeypatch.undo()
    assert load_checkpoint(path).metadata["iteration"] == 1
    assert sorted(os.listdir(tmp_path)) == ["model.pt"]  # no temporary left behind


class _Payload:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_a_pickle_that_would_run_code_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    with open(path, "wb") as f:
        pickle.dump({"format": "tn-export/checkpoint", "x": _Payload(str(marker))}, f)
    with pytest.raises(UserError, match="not a readable tn-export checkpoint"):
        load_checkpoint(path)
    assert not marker.exists()


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "not a readable"),
        (os.urandom(256), "not a readable"),
    ],
)
def test_garbage_files_are_refused(tmp_path, content, message):
    path = tmp_path / "model.pt"
    path.write_bytes(content)
    with pytest.raises(UserError, match=message):
        load_checkpoint(path)


def test_truncated_foreign_and_mismatched_checkpoints(tmp_path):
    good = tmp_path / "good.pt"
    save_checkpoint(good, PyramidGenerator())
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[:5000])
    with pytest.raises(UserError, match="not a readable"):
        load_checkpoint(truncated)

    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(3)}, foreign)
    with pytest.raises(UserError, match="not written by tn-train"):
        load_checkpoint(foreign)

    payload = torch.load(good, weights_only=True)
    payload["config"]["channels"] = 16
    other = tmp_path / "other.pt"
    torch.save(payload, other)
    with pytest.raises(UserError, match="does not match its generator config"):
        load_checkpoint(other)

    payload["version"] = 99
    newer = tmp_path / "newer.pt"
    torch.save(payload, newer)
    with pytest.raises(UserError, match="format version 99"):
        load_checkpoint(newer)


def test_missing_path_and_folder(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.pt")
    with pytest.raises(UserError, match="is a folder"):
        load_checkpoint(tmp_path)


@pytest.mark.parametrize("name", ["red_peppers", "starry", "starry_bn"])
def test_bundled_checkpoints_hold_only_the_typed_metadata_keys(name):
    ckpt = load_checkpoint(MODELS / f"{name}.pt")
    assert {"mode", "exemplar", "iteration", "loss"} <= set(ckpt.metadata)
    assert set(ckpt.metadata) <= set(Metadata.__annotations__)
    assert ckpt.training_state is None or set(ckpt.training_state) == set(
        TrainingState.__annotations__
    )


def test_the_contract_records_the_iterations_a_checkpoint_was_trained_for():
    metadata: Metadata = {"descriptor": "vgg16", "exemplar": "bricks.png", "iteration": 7,
                          "loss": 1.5, "layers": ["relu1_1"], "world_size": 2}  # fmt: skip
    summary = training_summary(metadata)
    assert summary == {"descriptor": "vgg16", "exemplar": "bricks.png", "iterations": 7,
                       "loss": 1.5}  # fmt: skip
    assert set(summary) <= set(TrainingSummary.__annotations__)
    assert training_summary({}) == {}
