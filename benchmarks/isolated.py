"""Run one measurement in a fresh interpreter, so its peak memory and imports belong to it alone.

The parent calls `run_isolated("module:function", kwargs, threads)`; the child imports the module,
calls the function, adds its own peak RSS and writes the result as JSON to a file the parent reads.
Only the standard library is imported here, so an idle child costs no more than Python itself.
"""

from __future__ import annotations

import importlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import traceback
from pathlib import Path

# Errors that mean "this backend is not available here" rather than "it broke while measuring".
UNAVAILABLE = ("ImportError", "ModuleNotFoundError", "Unavailable")


class Unavailable(RuntimeError):
    """The backend cannot run on this machine (wrong OS, missing runtime); reported as skipped."""


class IsolatedError(RuntimeError):
    """The child failed; `unavailable` says whether that means "skipped" rather than "failed"."""

    def __init__(self, message: str, unavailable: bool) -> None:
        super().__init__(message)
        self.unavailable = unavailable


def thread_env(threads: int) -> dict[str, str]:
    """Pin every math library's thread pool, so all backends use the same number of threads."""
    n = str(threads)
    return {"OMP_NUM_THREADS": n, "MKL_NUM_THREADS": n, "OPENBLAS_NUM_THREADS": n}


def peak_rss_bytes() -> int:
    """This process's peak resident set size.

    On Linux it is VmHWM of /proc/self/status: ru_maxrss would also count the parent's pages, which
    the forked child held for an instant before exec. Elsewhere ru_maxrss (bytes on macOS).
    """
    status = Path("/proc/self/status")
    if status.is_file():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024  # kB
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def idle(modules: list[str]) -> dict:
    """An idle interpreter that imported the given modules: the baseline for memory increases."""
    for name in modules:
        importlib.import_module(name)
    return {}


def run_isolated(target: str, kwargs: dict, threads: int, timeout: float = 3600) -> dict:
    """Call `module:function(**kwargs)` in a child interpreter; its result plus `peak_rss_bytes`."""
    with tempfile.TemporaryDirectory(prefix="tn-bench-") as tmp:
        result = Path(tmp) / "result.json"
        spec = json.dumps({"target": target, "kwargs": kwargs, "result": str(result)})
        try:
            proc = subprocess.run(
                [sys.executable, "-m", "benchmarks.isolated", spec],
                env={**os.environ, **thread_env(threads)},
                capture_output=True,
                text=True,
                timeout=timeout,
            )
        except subprocess.TimeoutExpired as e:
            raise IsolatedError(f"timed out after {timeout:.0f} s", unavailable=False) from e
        if not result.is_file():
            lines = (proc.stderr or proc.stdout or "").strip().splitlines()
            last = lines[-1] if lines else f"exit status {proc.returncode}"
            raise IsolatedError(f"child process died: {last}", unavailable=False)
        data = json.loads(result.read_text())
    if "error" in data:
        raise IsolatedError(data["error"], unavailable=data["error_type"] in UNAVAILABLE)
    return data


def _child(spec: dict) -> int:
    module, _, function = spec["target"].partition(":")
    try:
        out = getattr(importlib.import_module(module), function)(**spec["kwargs"])
        out["peak_rss_bytes"] = peak_rss_bytes()
        status = 0
    except Exception as e:  # noqa: BLE001 - every failure goes back to the parent as data
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        out = {"error": f"{type(e).__name__}: {first}", "error_type": type(e).__name__}
        traceback.print_exc()
        status = 1
    Path(spec["result"]).write_text(json.dumps(out))
    return status


if __name__ == "__main__":
    sys.exit(_child(json.loads(sys.argv[1])))
