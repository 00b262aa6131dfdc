"""Write files and folders under a temporary name and rename them into place only when complete."""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from .errors import UserError


class WriteError(OSError):
    """Writing an output failed while working (a full disk, say); what was at the path before is
    untouched. One line that names the file and the fix."""


def check_writable_dir(path: Path) -> None:
    """Fail early, with the fix, when an output folder cannot be created or written."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(
            f"cannot create output folder {path}: {e.strerror}; choose another -o"
        ) from e
    if not os.access(path, os.W_OK | os.X_OK):
        raise UserError(f"output folder {path} is not writable; choose another -o")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary sibling of `path`; on success it replaces `path`, on error it vanishes.

    The sibling lives in the same folder so the final rename never crosses file systems. Works
    for files and for folders such as `.mlpackage` bundles. Two writers to the same path each
    write their own temporary and the last rename wins whole; neither sees a half-written file.
    """
    path = Path(path)
    check_writable_dir(path.parent)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    os.unlink(tmp_name)
    tmp = Path(tmp_name)
    try:
        yield tmp
        if tmp.is_file():
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
        if tmp.is_dir() and path.is_dir():
            old = path.with_name(f".{path.name}.old-{os.getpid()}")
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except OSError as e:
        kept = "the existing file is unchanged" if path.exists() else "nothing was written"
        full = e.errno in (errno.ENOSPC, errno.EDQUOT)
        fix = "free some disk space" if full else "check the folder and its permissions"
        error = WriteError(f"could not write {path} ({e.strerror or e}); {kept}: {fix} and retry")
        error.errno = e.errno
        raise error from e
    finally:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        elif tmp.exists():
            tmp.unlink()
