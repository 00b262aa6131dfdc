"""What the numbers were measured on: CPU, cores, memory, OS, library versions, and the load from
other processes (a shared machine makes every latency longer)."""

from __future__ import annotations

import contextlib
import os
import platform
from importlib import metadata
from pathlib import Path

import psutil

LIBRARIES = ("tn-export", "torch", "onnxruntime", "onnx", "numpy", "coremltools", "matplotlib")


def cpu_model() -> str:
    """The CPU's marketing name (Linux /proc/cpuinfo; elsewhere what platform knows)."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def library_versions() -> dict[str, str | None]:
    """Installed versions, read from package metadata (nothing is imported)."""
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def machine_info(threads: int) -> dict:
    return {
        "cpu": cpu_model(),
        "physical_cores": psutil.cpu_count(logical=False),
        "logical_cores": psutil.cpu_count(logical=True),
        "threads": threads,
        "memory_gb": psutil.virtual_memory().total / 1e9,
        "os": platform.platform(),
        "versions": library_versions(),
    }


def load_snapshot(interval: float = 1.0, top: int = 3) -> dict:
    """Load averages, CPU busy % over `interval` seconds and the busiest other processes then."""
    procs = [p for p in psutil.process_iter(["name"]) if p.pid != os.getpid()]
    for p in procs:
        with contextlib.suppress(psutil.Error):
            p.cpu_percent(None)  # the first call only starts the process's clock
    busy = psutil.cpu_percent(interval=interval)
    usage = []
    for p in procs:
        with contextlib.suppress(psutil.Error):
            usage.append((p.cpu_percent(None), p.info["name"]))
    return {
        "loadavg": list(os.getloadavg()),
        "cpu_busy_percent": busy,
        "busiest": [
            {"name": name, "cpu_percent": cpu} for cpu, name in sorted(usage, reverse=True)[:top]
        ],
    }
