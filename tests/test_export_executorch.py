"""ExecuTorch: the XNNPACK form is exact in PyTorch; a tiny random generator exported to a `.pte`
runs with ExecuTorch's runtime at a size it was not validated at, with all of its work delegated;
a broken conversion is caught before anything is written; the bundled model passes and runs a
size it was not validated at (its lowering takes about 3 minutes; README.md gives its figures)."""

from __future__ import annotations

import dataclasses
import json
import os

import pytest
import torch

import tn_export
from tn_export.export import cli, pipeline
from tn_export.export.graph import Deployable
from tn_export.generator import PyramidGenerator

pytest.importorskip("executorch", reason="executorch is not installed (pip install executorch)")
from tn_export.export import executorch as executorch_format  # noqa: E402 - needs executorch

SIZES = (8, 16)  # a 2-scale generator (multiple 2): validated at 8x8, 12x12 and 14x16


def _generator(seed: int = 0, **config) -> PyramidGenerator:
    """A random generator whose norms matter: running statistics and affines drawn too."""
    torch.manual_seed(seed)
    generator = PyramidGenerator(**config)
    for norm in generator.modules():
        if isinstance(norm, torch.nn.BatchNorm2d):
            norm.running_mean.normal_()
            norm.running_var.uniform_(0.5, 2.0)
            norm.weight.data.normal_()
    return generator.eval()


@pytest.mark.parametrize(
    ("config", "longest", "shapes"),
    [
        ({}, 256, [(64, 64), (96, 160), (32, 256)]),
        ({"scales": 3, "channels": 2, "norm": "instance"}, 64, [(8, 8), (12, 64), (64, 8)]),
    ],
)
def test_the_xnnpack_form_equals_the_generator_bit_for_bit(config, longest, shapes):
    deployable = Deployable(_generator(**config))
    form = executorch_format.xnnpack_form(deployable, longest)
    names = {type(m).__name__ for m in form.modules()}
    assert {"Wrap", "NearestUp2"} <= names and not names & {"CircularPad", "Upsample"}
    with torch.no_grad():
        for h, w in shapes:
            x = torch.randn(1, 3, h, w)
            assert torch.equal(form(x), deployable(x)), (h, w)
    assert {type(m).__name__ for m in deployable.modules()} >= {"CircularPad", "Upsample"}


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """The tiny generator as a .pte, and the lowered program (reused by the broken conversion)."""
    out = tmp_path_factory.mktemp("executorch")
    lowered = []
    lower = executorch_format.lower
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(executorch_format, "lower", lambda *a: lowered.append(lower(*a)) or lowered[0])
        (result,) = tn_export.export(
            _generator(scales=2, channels=2), "executorch", out, sizes=SIZES, name="tiny"
        )
    return out, result, lowered[0]


def test_the_pte_passes_and_xnnpack_runs_all_of_it(exported):
    out, result, _ = exported
    assert sorted(os.listdir(out)) == ["tiny.export.json", "tiny.pte"]
    assert result.accepted, result.validation.summary
    assert max(result.validation.details["max_abs_error"].values()) <= 1e-4
    assert result.io == {
        "noise": ["1", "3", "8..16", "8..16"],
        "image": ["1", "3", "8..16", "8..16"],
    }
    record = json.loads((out / "tiny.export.json").read_text())
    details = record["artifacts"][0]["validation"]["details"]
    delegation = details["delegation"]
    assert details["delegate"] == "XNNPACK" and delegation["flops_delegated"] >= 0.95
    # One subgraph: outside it only layout copies (NCHW <-> NHWC) of the input and the output.
    assert delegation["subgraphs"] == 1, delegation
    portable = delegation["portable_ops"]
    assert all("_to_dim_order_copy" in op for op in portable), delegation
    assert delegation["ops_portable"] == sum(portable.values()) <= 2


def test_a_model_of_several_styles_takes_its_style_weights_in_the_pte(tmp_path):
    torch.manual_seed(1)
    g = PyramidGenerator("style", scales=2, channels=2, norm="conditional", styles=3)
    for m in g.modules():
        if hasattr(m, "num_features") and m.weight.dim() == 2:  # the conditional norms
            m.weight.data.uniform_(0.8, 1.2)
            m.bias.data.normal_(0, 0.3)
    (result,) = tn_export.export(g.eval(), "executorch", tmp_path, sizes=SIZES, name="three")
    assert result.accepted, result.validation.summary
    assert result.io["style"] == ["1", "3"] and result.io["content"][1] == "3"
    forward = executorch_format.load(result.path).load_method("forward")
    photo = torch.rand(1, 3, 10, 14, generator=torch.Generator().manual_seed(2))
    outputs = []
    for weights in ([[1.0, 0, 0]], [[0, 0, 1.0]], [[0.2, 0.5, 0.3]]):
        style = torch.tensor(weights)
        (got,) = forward.execute([photo, style])
        with torch.no_grad():
            expected = Deployable(g)(photo, style)
        assert float((got - expected).abs().max()) <= 1e-4
        outputs.append(got)
    assert float((outputs[0] - outputs[1]).abs().mean()) > 0.01


def test_the_pte_runs_a_non_square_size_as_pytorch_does(exported):
    out, _, _ = exported
    generator = Deployable(_generator(scales=2, channels=2))
    noise = torch.randn(1, 3, 10, 14, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        expected = generator(noise)
    program = executorch_format.load(out / "tiny.pte")
    (got,) = program.load_method("forward").execute([noise])
    assert got.shape == (1, 3, 10, 14) and expected.std() > 0.05
    assert float((got - expected).abs().max()) <= 1e-4
    contract = executorch_format.contract_of(program, "tiny.pte")
    assert (contract.name, contract.min_size, contract.max_size) == ("tiny", 8, 16)


def test_the_bundled_model_passes_and_runs_a_non_square_size_as_pytorch_does(tmp_path):
    """The trained red-peppers model (its lowering takes about 3 minutes on 2 cores), judged at a
    size it was not validated at by the same fp32 rule as every export."""
    from tn_export.checkpoint import load_model
    from tn_export.export.reference import Reference

    (result,) = tn_export.export("red_peppers", "executorch", tmp_path, sizes=(64, 256))
    assert result.accepted, result.validation.summary
    assert result.validation.details["delegation"]["flops_delegated"] >= 0.95
    program = executorch_format.load(result.path)
    contract = executorch_format.contract_of(program, str(result.path))
    reference = Reference(load_model("red_peppers")[0].generator, contract, [(96, 160)])
    forward = program.load_method("forward")
    ok, verdict, details = reference.compare(
        lambda feed: forward.execute([torch.from_numpy(x) for x in feed.values()])[0].numpy(),
        "fp32",
    )
    assert ok, verdict
    assert list(details["max_abs_error"]) == ["160x96"]


def test_a_conversion_that_loses_a_norm_is_caught_and_nothing_is_written(
    exported, tmp_path, monkeypatch, capsys
):
    """The program lowered from the tiny generator, handed out for one whose first join norm
    differs (as if the conversion had dropped it): the check fails, nothing is installed."""
    _, _, lowered = exported
    changed = _generator(scales=2, channels=2)
    changed.joins[0].coarse_norm.weight.data *= 2
    monkeypatch.setattr(executorch_format, "lower", lambda *a: lowered)
    monkeypatch.setattr(pipeline, "load_model", _loader(changed))
    folder = tmp_path / "out"
    argv = ["--format", "executorch", "-o", str(folder), "--min-size", "8", "--max-size", "16"]
    assert cli.main([*argv, "--name", "tiny"]) == 1
    captured = capsys.readouterr()
    assert "FAILED: max |err|" in captured.out and "failed: ExecuTorch" in captured.err
    assert not folder.exists() or os.listdir(folder) == []  # no scratch folder either


def _loader(generator):
    """load_model's stand-in: `generator` with no training metadata, from no file."""

    @dataclasses.dataclass
    class Loaded:
        generator: torch.nn.Module
        metadata: dict

    return lambda model: (Loaded(generator, {}), None)


def test_tn_bench_runs_the_pte_as_its_executorch_backend(exported, tmp_path):
    """The child function tn-bench runs in its own process, called here in this one."""
    import numpy as np

    from benchmarks.backends import BACKENDS, Cell, model_input

    out, _, _ = exported
    cell = Cell(str(out / "tiny.pte"), "texture", 3, 10, 14, 2, 1, 1, str(tmp_path / "out.npy"))
    module, function = BACKENDS["executorch"].function.split(":")
    measured = getattr(__import__(module, fromlist=[function]), function)(dataclasses.asdict(cell))
    assert len(measured["times_s"]) == 2 and measured["settings"]["delegate"] == "XNNPACK"
    with torch.no_grad():
        expected = Deployable(_generator(scales=2, channels=2))(torch.from_numpy(model_input(cell)))
    assert float(np.abs(np.load(tmp_path / "out.npy") - expected.numpy()).max()) <= 1e-4
