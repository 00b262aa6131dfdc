"""The hidden scratch folder an export builds and checks its artifacts in, inside the output
folder, and the atomic rename that installs a checked one. A crash or a failed check leaves the
output folder as it was."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

from ..atomic import atomic_path

# Scratch folders: .NAME.export-PID-RANDOM, holding OWNER, the name of the host PID runs on.
SCRATCH = re.compile(r"\..+\.export-(\d+)-\w+")
OWNER = "owner"


@contextlib.contextmanager
def scratch_folder(out: Path, name: str) -> Iterator[Path]:
    """A hidden scratch folder in `out`, removed when the export ends, on SIGTERM too (cli_entry
    raises it as an exception). A SIGKILL leaves it; the next export into `out` removes it."""
    _sweep(out)
    with tempfile.TemporaryDirectory(prefix=f".{name}.export-{os.getpid()}-", dir=out) as tmp:
        (Path(tmp) / OWNER).write_text(socket.gethostname())
        yield Path(tmp)


def _sweep(out: Path) -> None:
    """Remove the scratch folders of killed exports from `out`: those whose process, on this
    host, is gone. A running export's, another host's, or one without its OWNER file yet (just
    made) stay."""
    host = socket.gethostname()
    for entry in out.iterdir():
        match = SCRATCH.fullmatch(entry.name)
        if match is None or entry.is_symlink() or not entry.is_dir():
            continue
        try:
            owner = (entry / OWNER).read_text()
        except OSError:
            continue
        if owner == host and not _running(int(match[1])):
            shutil.rmtree(entry, ignore_errors=True)


def _running(pid: int) -> bool:
    """Whether process `pid` exists. A pid taken again by another process keeps its old scratch
    folder: the safe side."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (OSError, OverflowError):  # another user's process; a number no pid can be
        return True
    return True


def install(src: Path, dst: Path) -> None:
    """Rename a checked file or folder from scratch into place, atomically."""
    with atomic_path(dst) as tmp:
        os.replace(src, tmp)
