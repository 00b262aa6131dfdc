"""The JSON schema of results.json and its validation: reports render only from sound data."""

from __future__ import annotations

import json
import os
from pathlib import Path

from tn_export.errors import UserError

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
    "required": ["backend", "width", "height", "pixels", "status"],
    "properties": {
        **_SKIPPABLE["properties"],
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
_GATYS_RUN = {
    "type": "object",
    "required": ["size", "elapsed_s", "iterations", "evaluations", "peak_rss_bytes", "curve"],
    "properties": {
        "parity_s": _NUMBER_OR_NULL,
        "curve": {
            "type": "object",
            "required": ["t_s", "loss"],
            "properties": {
                "t_s": {"type": "array", "items": {"type": "number"}},
                "loss": {"type": "array", "items": {"type": "number"}},
            },
        },
    },
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
    ],
    "properties": {
        "schema_version": {"const": 1},
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
                "required": ["width", "height", "flops"],
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
                "parity": _GATYS_RUN,
                "memory": _GATYS_RUN,
                "target_loss": {"type": "number"},
            },
        },
        "images": {"type": "object"},
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
    """Read and validate a results.json."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"results file {path} does not exist; pass the results.json tn-bench wrote")
    try:
        results = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:  # nested too deep
        raise UserError(f"{path} is not JSON ({e}); pass the results.json tn-bench wrote") from e
    validate(results)
    return results
