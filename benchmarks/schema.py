"""The JSON schema of results.json and its validation: reports render only from sound data."""

from __future__ import annotations

import json
import os
from pathlib import Path

from tn_export.errors import UserError

# 2: quality on delivered (clamped, 8-bit) images, Gatys per parametrisation and seed, the peer
# network beside the pyramid. Version 1 judged Gatys on its unbounded pixels: not re-rendered.
SCHEMA_VERSION = 2
_NUMBER_OR_NULL = {"type": ["number", "null"]}
_SKIPPABLE = {
    "type": "object",
    "required": ["status"],
    "properties": {
        "status": {"enum": ["ok", "skipped", "failed"]},
        "reason": {"type": "string"},
    },
    "if": {"properties": {"status": {"enum": ["skipped", "failed"]}}},
    "then": {"required": ["reason"]},
}
_CELL = {
    **_SKIPPABLE,
    "required": ["network", "backend", "width", "height", "pixels", "status"],
    "properties": {
        **_SKIPPABLE["properties"],
        "network": {"type": "string"},
        "backend": {"type": "string"},
        "width": {"type": "integer", "minimum": 1},
        "height": {"type": "integer", "minimum": 1},
        "pixels": {"type": "integer", "minimum": 1},
        "median_ms": {"type": "number", "exclusiveMinimum": 0},
        "p10_ms": {"type": "number", "exclusiveMinimum": 0},
        "p90_ms": {"type": "number", "exclusiveMinimum": 0},
        "times_ms": {"type": "array", "items": {"type": "number"}},
        "runs": {"type": "integer", "minimum": 1},
        "load_s": {"type": "number", "minimum": 0},
        "peak_rss_bytes": {"type": "integer", "minimum": 0},
        "idle_rss_bytes": {"type": ["integer", "null"]},
        "rss_increase_bytes": {"type": ["integer", "null"]},
        "vs_reference": {
            "type": "object",
            "required": ["reference", "psnr_db", "max_abs"],
            "properties": {"psnr_db": _NUMBER_OR_NULL, "max_abs": {"type": "number"}},
        },
    },
    "then": {"required": ["reason"]},
    "else": {"required": ["median_ms", "p10_ms", "p90_ms", "times_ms", "runs", "peak_rss_bytes"]},
}
_QUALITY_SET = {
    "type": "object",
    "required": ["count", "texture_loss", "pixel_distance", "gram_distance", "seam_error"],
    "properties": {
        "count": {"type": "integer", "minimum": 1},
        "texture_loss": {"type": "number"},
        "pixel_distance": _NUMBER_OR_NULL,
        "gram_distance": _NUMBER_OR_NULL,
        "seam_error": {"type": "number"},
    },
}
_CURVE = {
    "type": "object",
    "required": ["t_s", "loss", "optimiser_loss"],
    "properties": {
        k: {"type": "array", "items": {"type": "number"}} for k in ("t_s", "loss", "optimiser_loss")
    },
}
_GATYS_RUN = {  # one seed
    "type": "object",
    "required": ["seed", "elapsed_s", "iterations", "evaluations", "parity_s", "loss", "curve"],
    "properties": {"parity_s": _NUMBER_OR_NULL, "loss": {"type": "number"}, "curve": _CURVE},
}
_GATYS_CHILD = {  # one interpreter: a parametrisation's seeds, or the memory run
    "type": "object",
    "required": ["pixels", "setup_s", "runs", "peak_rss_bytes"],
    "properties": {
        "pixels": {"enum": ["sigmoid", "unbounded"]},
        "runs": {"type": "array", "minItems": 1, "items": _GATYS_RUN},
        "peak_rss_bytes": {"type": "integer", "minimum": 0},
        "rss_increase_bytes": {"type": ["integer", "null"]},
    },
}

_TILED_RUN = {  # one run of the tiling step (benchmarks/tiling.py)
    **_SKIPPABLE,
    "required": ["role", "input", "size", "max_memory_mb", "status"],
    "properties": {
        **_SKIPPABLE["properties"],
        "role": {"enum": ["bounds", "latency", "large"]},
        "input": {"enum": ["noise", "photo"]},
        "size": {"type": "integer", "minimum": 1},
        "max_memory_mb": _NUMBER_OR_NULL,
        "tiles": {"type": ["string", "null"]},
        "median_ms": {"type": "number", "exclusiveMinimum": 0},
        "peak_rss_bytes": {"type": "integer", "minimum": 0},
        "rss_increase_bytes": {"type": ["integer", "null"]},
        "vs_whole": {
            "type": "object",
            "required": ["max_level_diff", "differing_pixels"],
            "properties": {
                "max_level_diff": {"type": "integer", "minimum": 0},
                "differing_pixels": {"type": "number", "minimum": 0, "maximum": 1},
            },
        },
    },
    "else": {"required": ["tiles", "median_ms", "times_ms", "peak_rss_bytes"]},
}

RESULTS_SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "tn-bench results",
    "type": "object",
    "required": [
        "schema_version",
        "tool",
        "created",
        "command",
        "machine",
        "load",
        "config",
        "model",
        "peak",
        "idle",
        "flops",
        "cells",
        "quality",
        "gatys",
        "images",
        "peers",
    ],
    "properties": {
        "schema_version": {"const": SCHEMA_VERSION},
        "command": {"type": "string"},
        "machine": {
            "type": "object",
            "required": ["cpu", "logical_cores", "threads", "memory_gb", "os", "versions"],
        },
        "load": {"type": "object"},
        "config": {"type": "object", "required": ["sizes", "backends", "runs", "threads"]},
        "model": {"type": "object", "required": ["path", "config", "parameters"]},
        "peak": {
            "type": ["object", "null"],
            "required": ["gflops_best", "n", "threads"],
        },
        "idle": {"type": "object"},
        "flops": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["network", "width", "height", "flops"],
                "properties": {"flops": {"type": "integer", "minimum": 0}},
            },
        },
        "cells": {"type": "array", "items": _CELL},
        "quality": {
            **_SKIPPABLE,
            "properties": {
                **_SKIPPABLE["properties"],
                "sets": {"type": "object", "additionalProperties": _QUALITY_SET},
            },
        },
        "gatys": {
            **_SKIPPABLE,
            "properties": {
                **_SKIPPABLE["properties"],
                "size": {"type": "integer", "minimum": 1},
                "target_loss": {"type": "number"},
                "variants": {"type": "object", "additionalProperties": _GATYS_CHILD},
                "memory": {  # the baseline at the larger size: parity and peak memory
                    **_GATYS_CHILD,
                    "required": [*_GATYS_CHILD["required"], "size", "target_loss"],
                },
                "image": {"type": "object", "required": ["path", "pixels", "seed", "loss"]},
            },
            "else": {"required": ["size", "target_loss", "variants", "image"]},
        },
        "tiling": {  # absent from results of before the step
            **_SKIPPABLE,
            "properties": {
                **_SKIPPABLE["properties"],
                "photo": {"type": ["string", "null"]},
                "runs": {"type": "array", "items": _TILED_RUN},
            },
            "else": {"required": ["runs"]},
        },
        "images": {"type": "object"},
        "peers": {
            "type": "object",
            "additionalProperties": {
                "type": "object",
                "required": ["parameters", "description"],
                "properties": {"parameters": {"type": "integer", "minimum": 1}},
            },
        },
    },
}


def validate(results: dict) -> None:
    """Raise UserError naming the first problem when `results` does not fit the schema."""
    import jsonschema

    try:
        jsonschema.validate(results, RESULTS_SCHEMA)
    except jsonschema.ValidationError as e:
        where = "/".join(str(p) for p in e.absolute_path) or "(top level)"
        raise UserError(
            f"results do not fit the tn-bench schema at {where}: {e.message}; "
            "re-run tn-bench to regenerate them"
        ) from e


def load_results(path: str | os.PathLike) -> dict:
    """Read and validate a results.json; one written by an older tn-bench is refused."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"results file {path} does not exist; pass the results.json tn-bench wrote")
    try:
        results = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:  # nested too deep
        raise UserError(f"{path} is not JSON ({e}); pass the results.json tn-bench wrote") from e
    version = results.get("schema_version") if isinstance(results, dict) else None
    if isinstance(version, int) and version < SCHEMA_VERSION:
        raise UserError(
            f"{path} is a tn-bench results file of schema {version}, whose Gatys baseline was "
            f"judged on unbounded pixels; this tn-bench renders schema {SCHEMA_VERSION}: re-run "
            "tn-bench to measure again"
        )
    validate(results)
    return results
