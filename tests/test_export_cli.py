"""tn-export end to end: what it writes, what it prints, what it refuses, and that nothing that
failed its check is left behind."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import onnx
import pytest
import torch
from conftest import REPO, onnx_copier

import tn_export
from tn_export import checkpoint
from tn_export.checkpoint import bundled_model, load_model, save_checkpoint
from tn_export.errors import UserError
from tn_export.export import cli, coreml, pipeline, reference, validate
from tn_export.export import onnx as onnx_format
from tn_export.export.formats import FORMATS
from tn_export.export.reference import Validation
from tn_export.export.validate import session
from tn_export.generator import PyramidGenerator
from tn_export.sizes import parse_sizes

TN_EXPORT = str(Path(sys.executable).parent / "tn-export")
OPENVINO = importlib.util.find_spec("openvino") is not None
EXECUTORCH = importlib.util.find_spec("executorch") is not None
SMALL = ["--min-size", "32", "--max-size", "64"]  # sizes for the 3-scale generator (multiple 4)
METADATA = {"mode": "texture", "descriptor": "random", "exemplar": "bricks.png",
            "iteration": 7, "loss": 1.5}  # fmt: skip


def _env(tmp: Path) -> dict:
    return {**os.environ, "XDG_CACHE_HOME": str(tmp / "xdg-cache")}


def _files(folder: Path) -> list[str]:
    """Everything in `folder`, hidden scratch folders included."""
    return sorted(os.listdir(folder)) if folder.exists() else []


@pytest.fixture(scope="module")
def small_checkpoint(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("runs") / "bricks" / "model.pt"
    save_checkpoint(path, PyramidGenerator(scales=3, channels=4), METADATA)
    return path


@pytest.fixture(scope="module")
def full_checkpoint(tmp_path_factory) -> Path:
    """The default six-scale generator (size multiple 32), for the size errors."""
    path = tmp_path_factory.mktemp("full") / "model.pt"
    save_checkpoint(path, PyramidGenerator(), METADATA)
    return path


@pytest.fixture(scope="module")
def everything(tmp_path_factory, small_checkpoint):
    """One real `tn-export --format all` in a subprocess: ONNX, ORT and Core ML."""
    out = tmp_path_factory.mktemp("export") / "out"
    cmd = [TN_EXPORT, "--format", "all", str(small_checkpoint), "-o", str(out), *SMALL,
           "--batch", "1"]  # fmt: skip
    proc = subprocess.run(
        cmd, capture_output=True, text=True, env=_env(out.parent), timeout=900, check=False
    )
    return proc, out


def test_format_all_writes_every_artifact_and_its_record(everything, small_checkpoint):
    proc, out = everything
    assert proc.returncode == 0, proc.stderr[-2000:]
    openvino = ["bricks.bin", "bricks.xml"] if OPENVINO else []
    executorch = ["bricks.pte"] if EXECUTORCH else []
    assert _files(out) == sorted(
        [
            "bricks.coarse.onnx",
            "bricks.export.json",
            "bricks.fine.onnx",
            "bricks.mlpackage",
            "bricks.onnx",
            "bricks.ort",
            "bricks.usability.txt",
            *openvino,
            *executorch,
        ]
    )  # named after the run folder; no scratch left behind
    record = json.loads((out / "bricks.export.json").read_text())
    assert record["checkpoint"] == str(small_checkpoint)
    contract = record["contract"]
    assert contract["name"] == "bricks" and contract["size_multiple"] == 4
    assert (contract["min_size"], contract["max_size"]) == (32, 64)
    assert contract["training"] == {
        "descriptor": "random",
        "exemplar": "bricks.png",
        "iterations": 7,
        "loss": 1.5,
    }
    assert [a["format"] for a in record["artifacts"]] == list(FORMATS)  # all: every format
    arts = {a["format"]: a for a in record["artifacts"]}
    assert [arts[f]["precision"] for f in ("onnx", "ort", "coreml")] == ["fp32", "fp32", "fp16"]
    if not OPENVINO:  # skipped, with the reason, and not a failure
        assert arts.pop("openvino")["skipped"].startswith("format openvino needs openvino")
    if not EXECUTORCH:
        assert arts.pop("executorch")["skipped"].startswith("format executorch needs executorch")
    for a in arts.values():
        assert a["installed"] and a["validation"]["ok"] is True
        assert a["bytes"] == pipeline.disk_size(Path(a["path"])) > 0
    assert arts["ort"]["side_files"] == [str(out / "bricks.usability.txt")]
    assert arts["onnx"]["io"]["noise"][0] == "1"  # --batch 1
    assert session(out / "bricks.ort").get_inputs()[0].shape[0] == 1


def test_the_table_shows_each_artifact_with_size_dims_validation_and_time(everything):
    proc, out = everything
    lines = proc.stdout.strip().splitlines()
    assert lines[0].split()[:3] == ["Format", "Precision", "Artifact"]
    formats = [("ONNX", ".onnx"), ("ORT", ".ort"), ("Core", ".mlpackage")]
    formats += [("OpenVINO", ".xml")] if OPENVINO else []
    formats += [("ExecuTorch", ".pte")] if EXECUTORCH else []
    for label, suffix in formats:
        row = next(line for line in lines[1:] if line.startswith(label))
        assert str(out / f"bricks{suffix}") in row
        assert "noise (" in row and "ok" in row and row.endswith(" s")
        assert " KB " in row or " MB " in row


def test_the_exported_onnx_carries_the_contract_the_record_shows(everything):
    _, out = everything
    record = json.loads((out / "bricks.export.json").read_text())
    meta = {p.key: p.value for p in onnx.load(out / "bricks.onnx").metadata_props}
    assert meta["tn_export.name"] == "bricks"
    assert json.loads(meta["tn_export.training"]) == record["contract"]["training"]


# --- errors: one line, exit 2, nothing written --------------------------------------------------


def _bad_checkpoints(tmp: Path) -> dict[str, Path]:
    garbage = tmp / "garbage.pt"
    garbage.write_bytes(b"this is not a checkpoint")
    foreign = tmp / "foreign.pt"
    torch.save({"weights": torch.zeros(3)}, foreign)
    t7 = tmp / "bricks_model.t7"
    t7.write_bytes(b"not torch7 either")
    return {"garbage": garbage, "foreign": foreign, "t7": t7, "missing": tmp / "none.pt"}


ERRORS = {
    "unknown format": (["--format", "tensorrt"], "invalid choice"),
    "unreadable checkpoint": (["--format", "onnx", "{garbage}"], "garbage.pt"),
    "foreign checkpoint": (["--format", "onnx", "{foreign}"], "foreign.pt"),
    "missing checkpoint": (["--format", "onnx", "{missing}"], "none.pt"),
    "foreign .t7": (["--format", "onnx", "{t7}"], "bricks_model.t7"),
    "min > max": (["--format", "onnx", "{full}", "--min-size", "512", "--max-size", "256"],
                  "larger than"),
    "min not a multiple": (["--format", "onnx", "{full}", "--min-size", "100"], "multiple of 32"),
    "max not a multiple": (["--format", "onnx", "{full}", "--max-size", "1000"], "multiple of 32"),
    "shape not a multiple": (["--format", "onnx", "{full}", "--shapes", "256x256,256x200"],
                             "multiple of 32"),
    "malformed shapes": (["--format", "onnx", "{full}", "--shapes", "256x256,512by384"],
                         "WIDTHxHEIGHT"),
    "one size only": (["--format", "onnx", "{full}", "--shapes", "256x256"], "range"),
    "shapes and max": (["--format", "onnx", "{full}", "--shapes", "256x256", "--max-size", "512"],
                       "--shapes"),
    "int8 Core ML": (["--format", "coreml", "{full}", "--precision", "int8"], "Core ML"),
    "int8 for all": (["--format", "all", "{full}", "--precision", "int8"], "Core ML"),
    "image io without Core ML": (["--format", "onnx", "{full}", "--image-io"], "Core ML"),
    "bad name": (["--format", "onnx", "{full}", "--name", "../x"], "--name"),
    "unwritable output": (["--format", "onnx", "{full}", "-o", "{blocked}"], "output folder"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(ERRORS))
def test_bad_input_is_one_line_exit_2_and_nothing_written(case, tmp_path, full_checkpoint, capsys):
    argv, expected = ERRORS[case]
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    paths = {**_bad_checkpoints(tmp_path), "full": full_checkpoint, "blocked": blocker / "out"}
    out = tmp_path / "out"
    argv = [a.format(**paths) for a in argv]
    if "-o" not in argv:
        argv += ["-o", str(out)]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("tn-export: error: "), err
    assert expected in err and "Traceback" not in err
    assert _files(out) == []


def test_without_a_checkpoint_the_missing_default_model_is_a_clear_error(
    tmp_path, monkeypatch, capsys
):
    monkeypatch.setattr(checkpoint, "DEFAULT_MODEL", tmp_path / "models" / "red_peppers.pt")
    assert cli.main(["--format", "onnx", "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "bundled default model" in err and "CHECKPOINT" in err and err.count("\n") == 1
    assert _files(tmp_path / "out") == []


def test_a_bundled_model_is_found_by_its_name_and_a_file_of_that_name_wins(tmp_path, monkeypatch):
    ckpt, source = load_model(Path("red_peppers"))
    assert source == checkpoint.DEFAULT_MODEL and ckpt.config.mode == "texture"
    assert bundled_model("../models/red_peppers") is None and bundled_model("no_such") is None
    monkeypatch.chdir(tmp_path)
    (tmp_path / "red_peppers").write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match="red_peppers is not a readable"):
        load_model(Path("red_peppers"))


def test_an_error_from_the_installed_command_is_one_line_without_traceback(tmp_path):
    proc = subprocess.run(
        [TN_EXPORT, "--format", "onnx", str(tmp_path / "none.pt"), "-o", str(tmp_path / "o")],
        capture_output=True, text=True, env=_env(tmp_path), timeout=300, check=False,
    )  # fmt: skip
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "none.pt" in proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "o").exists()


# --- in-process runs on the ONNX the real export wrote ------------------------------------------


@pytest.fixture
def copied_onnx(everything, monkeypatch):
    """Stand in for the (slow) torch.export step with the ONNX graph the real run exported from
    the same checkpoint, carrying the contract this run asks for. Everything after it is real."""
    _, out = everything
    source = out / "bricks.onnx"
    monkeypatch.setattr(onnx_format, "export_onnx", onnx_copier(source))
    return source


def test_int8_ort_export_passes_on_psnr_and_is_recorded(copied_onnx, small_checkpoint, tmp_path):
    out = tmp_path / "out"
    argv = ["--format", "ort", str(small_checkpoint), "-o", str(out), *SMALL,
            "--precision", "int8", "--name", "tiny"]  # fmt: skip
    assert cli.main(argv) == 0
    assert _files(out) == ["tiny.export.json", "tiny.ort", "tiny.usability.txt"]
    (art,) = json.loads((out / "tiny.export.json").read_text())["artifacts"]
    assert art["precision"] == "int8"
    assert min(art["validation"]["details"]["psnr_db"].values()) >= reference.MIN_PSNR_DB["int8"]


def test_a_validation_failure_exits_1_and_leaves_nothing_behind(
    copied_onnx, small_checkpoint, tmp_path, monkeypatch, capsys
):
    out = tmp_path / "out"
    out.mkdir()
    (out / "bricks.onnx").write_bytes(b"an earlier good export")
    monkeypatch.setitem(reference.MAX_ABS_ERROR, "fp32", 0.0)  # no real model can meet it
    assert cli.main(["--format", "onnx", str(small_checkpoint), "-o", str(out), *SMALL]) == 1
    captured = capsys.readouterr()
    assert "FAILED" in captured.out and "(not written)" in captured.out
    assert "failed: ONNX" in captured.err
    assert _files(out) == ["bricks.onnx"]  # no export.json, no scratch folder
    assert (out / "bricks.onnx").read_bytes() == b"an earlier good export"


def test_a_tampered_model_is_caught_and_nothing_is_written(
    copied_onnx, small_checkpoint, tmp_path, monkeypatch
):
    def tampered(generator, path, contract, dynamic_batch=True):
        model = onnx.load(copied_onnx)
        bias = next(t for t in model.graph.initializer if t.name == "generator.to_rgb.bias")
        shifted = onnx.numpy_helper.to_array(bias) + 0.01
        bias.CopyFrom(onnx.numpy_helper.from_array(shifted, bias.name))
        onnx.save(model, path)  # the contract stays: only the numbers are wrong

    monkeypatch.setattr(onnx_format, "export_onnx", tampered)
    out = tmp_path / "out"
    for fmt in ("onnx", "ort"):
        assert cli.main(["--format", fmt, str(small_checkpoint), "-o", str(out), *SMALL]) == 1
        assert _files(out) == []


def test_format_all_skips_a_format_whose_library_is_missing_and_says_why(
    copied_onnx, small_checkpoint, tmp_path, capsys
):
    gone = dataclasses.replace(FORMATS["openvino"], requires=("no_such_module_here",))
    # "all" of a smaller table, ONNX and the missing one; the table, in its order, put back after.
    original = dict(FORMATS)
    FORMATS.clear()
    FORMATS.update(onnx=original["onnx"], openvino=gone)
    try:
        _export_all_without_openvino(small_checkpoint, tmp_path, capsys)
    finally:
        FORMATS.clear()
        FORMATS.update(original)


def _export_all_without_openvino(small_checkpoint, tmp_path, capsys):
    out = tmp_path / "out"
    assert cli.main(["--format", "all", str(small_checkpoint), "-o", str(out), *SMALL]) == 0
    row = next(r for r in capsys.readouterr().out.splitlines() if r.startswith("OpenVINO"))
    assert "skipped: format openvino needs no_such_module_here, which is not installed" in row
    assert _files(out) == [
        "bricks.coarse.onnx",
        "bricks.export.json",
        "bricks.fine.onnx",
        "bricks.onnx",
    ]
    arts = json.loads((out / "bricks.export.json").read_text())["artifacts"]
    assert [(a["format"], a["installed"], bool(a["skipped"])) for a in arts] == [
        ("onnx", True, False),
        ("openvino", False, True),
    ]
    with pytest.raises(UserError, match="pip install no_such_module_here"):
        tn_export.export(small_checkpoint, "openvino", tmp_path / "named", sizes=(32, 64))


def test_tflite_is_refused_in_one_line_that_says_what_to_use(tmp_path, capsys):
    assert cli.main(["--format", "tflite", "-o", str(tmp_path / "out")]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "--format tflite is refused" in line and "nearest upsampling" in line
    assert "--format ort (ONNX Runtime Mobile)" in line and "ExecuTorch" in line
    assert not (tmp_path / "out").exists()
    with pytest.raises(UserError, match="tflite is refused") as e:
        tn_export.export(None, "tflite", tmp_path / "out")
    assert e.value.params == ("format",)


def _unverified_coreml(everything, monkeypatch):
    _, out = everything

    def export(generator, path, contract, **options):
        shutil.copytree(out / "bricks.mlpackage", path)

    def check(*args):
        return Validation(None, "not verified: the evaluator has no op 'mystery'", {})

    monkeypatch.setattr(coreml, "export_coreml", export)
    monkeypatch.setattr(validate, "validate_coreml", check)


def test_an_unverified_core_ml_model_is_not_installed(
    everything, small_checkpoint, tmp_path, monkeypatch, capsys
):
    _unverified_coreml(everything, monkeypatch)
    out = tmp_path / "out"
    assert cli.main(["--format", "coreml", str(small_checkpoint), "-o", str(out), *SMALL]) == 1
    captured = capsys.readouterr()
    assert "NOT VERIFIED" in captured.out and "(not written)" in captured.out
    assert "NOT VERIFIED" in captured.err and "--allow-unverified" in captured.err
    assert _files(out) == []


def test_allow_unverified_installs_it_and_says_so(
    everything, small_checkpoint, tmp_path, monkeypatch, capsys
):
    _unverified_coreml(everything, monkeypatch)
    out = tmp_path / "out"
    argv = ["--format", "coreml", str(small_checkpoint), "-o", str(out), *SMALL,
            "--allow-unverified"]  # fmt: skip
    assert cli.main(argv) == 0
    assert "NOT VERIFIED" in capsys.readouterr().out
    assert _files(out) == ["bricks.export.json", "bricks.mlpackage"]
    (art,) = json.loads((out / "bricks.export.json").read_text())["artifacts"]
    assert art["installed"] is True and art["validation"]["ok"] is None


@pytest.mark.parametrize(
    ("text", "shapes"),
    [("256x256", [(256, 256)]), ("256x256, 512X384,256x256", [(256, 256), (512, 384)])],
)
def test_parse_sizes_reads_width_by_height(text, shapes):
    assert parse_sizes(text) == shapes


def test_default_name_is_the_run_folder_for_model_pt_else_the_stem(tmp_path):
    assert pipeline.default_name(tmp_path / "bricks" / "model.pt") == "bricks"
    assert pipeline.default_name(tmp_path / "bricks.png_model.t7") == "bricks"
    assert pipeline.default_name(tmp_path / "pebble.t7") == "pebble"
    assert pipeline.default_name(tmp_path / "red_peppers.pt") == "red_peppers"


def test_shapes_are_the_sizes_validated(copied_onnx, small_checkpoint, tmp_path):
    out = tmp_path / "out"
    argv = ["--format", "onnx", str(small_checkpoint), "-o", str(out), "--shapes", "32x64,48x32"]
    assert cli.main(argv) == 0
    record = json.loads((out / "bricks.export.json").read_text())
    assert (record["contract"]["min_size"], record["contract"]["max_size"]) == (32, 64)
    assert record["size_order"] == "WIDTHxHEIGHT"
    (art,) = record["artifacts"]
    assert set(art["validation"]["details"]["max_abs_error"]) == {"32x64", "48x32"}


def test_without_tiling_parts_tn_run_is_told_why_it_cross_fades(
    copied_onnx, small_checkpoint, tmp_path
):
    from tn_export import runtime

    out = tmp_path / "out"
    argv = ["--format", "onnx", str(small_checkpoint), "-o", str(out), *SMALL, "--no-tiling-parts"]
    assert cli.main(argv) == 0
    assert _files(out) == ["bricks.export.json", "bricks.onnx"]
    model = runtime.load(out / "bricks.onnx")
    assert model.tiler is None
    assert model.tiling_note.endswith(f"is not tiled exactly: {pipeline.NO_PARTS}")


def test_the_readme_format_table_is_the_format_table():
    """README.md's table of formats says what FORMATS says, row for row."""
    lines = (REPO / "README.md").read_text().splitlines()
    start = lines.index("| format | `--format` | writes | precision (default first) | needs |")
    rows = lines[start + 2 : lines.index("", start)]
    assert rows == [
        f"| {f.label} | `{f.name}` | "
        + ", ".join(f"`NAME{suffix}`" for suffix in (f.suffix, *f.side_files))
        + f" | {', '.join(f.precisions)} | {', '.join(f.requires)} |"
        for f in FORMATS.values()
    ]


def test_the_python_api_exports_a_generator_at_several_precisions(
    copied_onnx, small_checkpoint, tmp_path
):
    generator = load_model(small_checkpoint)[0].generator
    out = tmp_path / "out"
    formats = ["onnx", ("onnx", "int8"), "ort"]
    results = tn_export.export(generator, formats, out, sizes=(32, 64), name="api")
    assert [(r.format, r.precision) for r in results] == [
        ("onnx", "fp32"),
        ("onnx", "int8"),
        ("ort", "fp32"),
    ]
    assert _files(out) == [
        "api.export.json",
        "api.fp32.coarse.onnx",
        "api.fp32.fine.onnx",
        "api.fp32.onnx",
        "api.int8.onnx",
        "api.ort",
        "api.usability.txt",
    ]  # a format asked at two precisions names each; the ORT file comes from the fp32 ONNX
    for r in results:
        assert r.installed and r.accepted and r.path.is_file()
        assert set(r.timings) == {"build", "validate"} and r.seconds > 0
    record = json.loads((out / "api.export.json").read_text())
    assert record["checkpoint"] is None and record["command"] is None
    assert [a["path"] for a in record["artifacts"]] == [str(r.path) for r in results]


# What the Python API says of a bad argument, and what tn-export says of the same flag.
WORDED = {
    "min > max": ({"sizes": (512, 256)}, ["--min-size", "512", "--max-size", "256"],
                  "min_size 512 is larger than max_size 256",
                  "--min-size 512 is larger than --max-size 256"),
    "not a multiple": ({"sizes": (100, 2048)}, ["--min-size", "100"],
                       "min_size/max_size: 100 is not a positive multiple of 32",
                       "--min-size/--max-size: 100 is not a positive multiple of 32"),
    "one size": ({"sizes": [(256, 256)]}, ["--shapes", "256x256"],
                 "e.g. min_size 64 and max_size 2048, or two different shapes",
                 "e.g. --min-size 64 and --max-size 2048, or two different --shapes"),
    "precision": ({"formats": "coreml", "precision": "int8"}, ["--precision", "int8"],
                  "precision int8 is not available for Core ML",
                  "--precision int8 is not available for Core ML"),
    "image io": ({"image_io": True}, ["--image-io"],
                 "image_io applies to Core ML only; use format coreml or all",
                 "--image-io applies to Core ML only; use --format coreml or all"),
    "name": ({"name": "../x"}, ["--name", "../x"], "name '../x' must be plain",
             "--name '../x' must be plain"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(WORDED))
def test_the_api_names_its_parameters_and_tn_export_its_flags(
    case, full_checkpoint, tmp_path, capsys
):
    kwargs, flags, says, cli_says = WORDED[case]
    with pytest.raises(UserError) as info:
        tn_export.export(full_checkpoint, output_dir=tmp_path, **{"formats": "onnx", **kwargs})
    assert says in str(info.value) and "--" not in str(info.value)
    fmt = kwargs.get("formats", "onnx")
    assert cli.main(["--format", fmt, str(full_checkpoint), *flags, "-o", str(tmp_path)]) == 2
    assert cli_says in capsys.readouterr().err


def test_the_python_api_needs_the_contract_of_a_network_that_is_not_a_generator(tmp_path):
    with pytest.raises(UserError, match="contract="):
        tn_export.export(torch.nn.Identity(), "onnx", tmp_path / "out")
    assert _files(tmp_path / "out") == []
