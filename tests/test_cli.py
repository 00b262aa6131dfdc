"""The conventions every command line follows (issue 15): one size order, WIDTHxHEIGHT; each
option's help with its default; --version; tn-bench's subcommands; defaults taken from the
config each command fills; the converters quiet unless --verbose."""

from __future__ import annotations

import argparse
import inspect
import logging
import sys
import warnings
from importlib import metadata
from pathlib import Path

import pytest

from benchmarks import cli as bench_cli
from benchmarks.config import QUICK, BenchConfig, QualityConfig
from tn_export.checkpoint import save_checkpoint
from tn_export.export import cli as export_cli
from tn_export.export import pipeline, quiet
from tn_export.generator import PyramidGenerator
from tn_export.runtime import cli as run_cli
from tn_export.sizes import format_sizes, parse_size, parse_sizes
from training import cli as train_cli
from training.train import TrainConfig

PARSERS = {
    "tn-train": train_cli._parser,
    "tn-export": export_cli._parser,
    "tn-run": run_cli._parser,
    "tn-bench": bench_cli.parser,
}
MAINS = {
    "tn-train": train_cli.main,
    "tn-export": export_cli.main,
    "tn-run": run_cli.main,
    "tn-bench": bench_cli.main,
}
FLAGS = (argparse._StoreTrueAction, argparse._HelpAction, argparse._VersionAction)


def _options(parser: argparse.ArgumentParser):
    """(parser, option) for every option of `parser` and of its subcommands' parsers."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield from _options(sub)
        elif action.option_strings:
            yield parser, action


def _cases():
    return [
        pytest.param(parser, action, id=f"{parser.prog} {action.option_strings[-1]}")
        for make in PARSERS.values()
        for parser, action in _options(make())
    ]


@pytest.mark.parametrize(("parser", "action"), _cases())
def test_every_option_has_help_that_states_its_default(parser, action):
    assert action.help, f"{action.option_strings} has no help text"
    if action.required or isinstance(action, FLAGS):
        return
    text = parser._get_formatter()._get_help_string(action)
    assert "default" in text, f"{action.option_strings}: {text!r} does not say its default"


@pytest.mark.parametrize("prog", list(MAINS))
def test_every_command_has_version_from_the_package_metadata(prog, capsys):
    with pytest.raises(SystemExit) as exit:
        MAINS[prog](["--version"])
    assert exit.value.code == 0
    assert capsys.readouterr().out.strip() == f"{prog} {metadata.version('tn-export')}"


def test_the_help_shows_the_defaults_of_the_configs(capsys):
    with pytest.raises(SystemExit):
        bench_cli.main(["run", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "(default: 256,512,1024,768x512; 128,256x128 with --quick)" in text
    assert "(default: 20)" in text  # --runs
    with pytest.raises(SystemExit):
        train_cli.main(["texture", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "(default: 4; 16 with --preset paper)" in text  # --batch-size
    assert "(default: 128; 256 with --preset paper)" in text  # --image-size
    assert "(default: 400; 0 with --preset paper)" in text  # --finish-last
    assert "(default: circular)" in text and "(default: vgg19)" in text


def test_tn_bench_lists_its_subcommands(capsys):
    with pytest.raises(SystemExit):
        bench_cli.main(["--help"])
    out = capsys.readouterr().out
    listed = [line.split()[0] for line in out.splitlines() if line.startswith("    ")]
    assert [c for c in listed if c in bench_cli.COMMANDS] == list(bench_cli.COMMANDS), out


def test_tn_bench_runs_the_benchmark_when_no_command_is_named(tmp_path, capsys):
    for argv in (["--runs", "0", "-o", str(tmp_path)], ["run", "--runs", "0", "-o", str(tmp_path)]):
        assert bench_cli.main(argv) == 2
        err = capsys.readouterr().err
        assert "argument --runs: must be positive" in err and "tn-bench run --help" in err
    assert bench_cli.main([]) == 2
    assert "required: -o/--out (see tn-bench run --help)" in capsys.readouterr().err
    assert bench_cli.main(["paint", "-o", str(tmp_path)]) == 2  # a word: a command mistyped
    err = capsys.readouterr().err
    assert "invalid choice: 'paint'" in err and "tn-bench --help" in err


# --- defaults written once --------------------------------------------------------------------


def test_tn_train_defaults_are_train_configs(tmp_path):
    texture = train_cli._parser().parse_args(["texture", "--texture", "t.png", "-o", "run"])
    assert train_cli.config(texture) == TrainConfig("texture", Path("t.png"), Path("run"))
    argv = ["style", "--style", "s.png", "--content", "c.jpg", "-o", "run"]
    style = train_cli.config(train_cli._parser().parse_args(argv))
    expected = TrainConfig("style", Path("s.png"), Path("run"), ["c.jpg"], padding="reflect")
    assert style == expected
    argv = ["texture", "--texture", "t", "-o", "r", "--tv-weight", "2", "--layers", "relu1_1"]
    given = train_cli.config(train_cli._parser().parse_args(argv))
    assert (given.tv_weight, given.layers) == (2, ("relu1_1",))


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("model") / "model.pt"
    save_checkpoint(path, PyramidGenerator(scales=3, channels=4), {"descriptor": "random"})
    return path


def _bench_config(model: Path, out: Path, *extra: str) -> BenchConfig:
    argv = ["--model", str(model), "--no-gatys", "-o", str(out), *extra]
    return bench_cli.make_config(bench_cli.parser().parse_args(["run", *argv]), argv)


def test_tn_bench_defaults_are_bench_configs(tiny_model, tmp_path):
    got = _bench_config(tiny_model, tmp_path, "--sizes", "64,128x64")
    assert got.sizes == [(64, 64), (128, 64)]
    plain = BenchConfig(tmp_path, tiny_model, gatys=False, sizes=[(64, 64), (128, 64)])
    for name in ("runs", "warmup", "threads", "backends", "gatys_pixels", "samples", "peak_n"):
        assert getattr(got, name) == getattr(plain, name), name
    quick = _bench_config(tiny_model, tmp_path, "--quick", "--warmup", "5")
    assert quick.sizes == QUICK["sizes"] and quick.samples == QUICK["samples"]
    assert quick.warmup == 5  # options given win over --quick


def test_tn_bench_quality_defaults_are_quality_configs():
    args = bench_cli.parser().parse_args(["quality", "m.pt", "--exemplar", "e.png", "-o", "q"])
    defaults = QualityConfig("m.pt", Path("q"), Path("e.png"), None)
    assert (args.size, args.samples, args.seed) == (defaults.size, defaults.samples, defaults.seed)


def test_tn_export_defaults_are_the_apis():
    args = export_cli._parser().parse_args(["--format", "onnx"])
    api = {k: p.default for k, p in inspect.signature(pipeline.export).parameters.items()}
    assert args.out == Path(api["output_dir"]) == Path("exports")
    assert (args.batch == "dynamic") is api["dynamic_batch"] is True
    assert export_cli._sizes(args) == pipeline.DEFAULT_SIZES


# --- one size order ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "size"), [("768x512", (768, 512)), (" 256 ", (256, 256)), ("64 X 32", (64, 32))]
)
def test_a_size_is_width_by_height_or_one_side(text, size):
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["big", "256x", "x256", "-5", "1.5x2", "256x256x3"])
def test_a_malformed_size_names_the_order(text):
    with pytest.raises(argparse.ArgumentTypeError, match="WIDTHxHEIGHT or N"):
        parse_size(text)


def test_sizes_read_and_print_alike():
    sizes = parse_sizes("256, 768x512,256,512x512")
    assert sizes == [(256, 256), (768, 512), (512, 512)]
    assert format_sizes(sizes) == "256,768x512,512"
    with pytest.raises(argparse.ArgumentTypeError):
        parse_sizes(" , ")


def test_tn_export_shapes_are_width_by_height():
    """--shapes 32x64 is 32 wide and 64 tall: the tensor shape (height, width) is (64, 32)."""
    shapes, lo, hi = pipeline._bounds([(32, 64), (96, 32)], None)
    assert shapes == [(64, 32), (32, 96)] and (lo, hi) == (32, 96)
    args = export_cli._parser().parse_args(["--format", "onnx", "--shapes", "32x64,96x32"])
    assert export_cli._sizes(args) == [(32, 64), (96, 32)]


def test_tn_run_size_is_width_by_height():
    args = run_cli._parser().parse_args(["synthesize", "m.onnx", "--size", "1000x744", "-o", "t"])
    assert args.size == (1000, 744)


# --- quiet converters -------------------------------------------------------------------------


def _noisy() -> None:
    print("[torch.onnx] Obtain model graph...")
    print("Running MIL default pipeline: 100%", file=sys.stderr)
    warnings.warn("Torch version 2.14.1 has not been tested with coremltools", stacklevel=1)
    logging.getLogger("coremltools").warning("a converter's log record")


def test_the_converters_are_quiet_unless_verbose(capsys, caplog):
    root = logging.getLogger()
    level = root.level
    with quiet.converters():
        _noisy()
    assert capsys.readouterr() == ("", "") and not caplog.records
    assert root.level == level  # restored
    with pytest.warns(UserWarning, match="not been tested"), quiet.converters(verbose=True):
        _noisy()
    out, err = capsys.readouterr()
    assert "[torch.onnx]" in out and "Running MIL" in err
    assert "a converter's log record" in caplog.text


def test_an_error_inside_the_quiet_converters_still_propagates():
    with pytest.raises(ValueError, match="bad graph"), quiet.converters():
        raise ValueError("bad graph")
