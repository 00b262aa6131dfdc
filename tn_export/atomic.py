"""Write files and folders under a temporary name and rename them into place only when complete."""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
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


def file_key(path: str | os.PathLike) -> tuple:
    """What `path` names, to tell whether two paths are one file however they are spelt.

    An existing path is its device and inode, which every spelling, symbolic or hard link, and
    (on a case-insensitive file system) every case of its name share. A path not written yet is
    its real folder and its name, the name case-folded where that file system ignores case.
    """
    try:
        info = os.stat(path)
    except (OSError, ValueError):
        folder = Path(os.path.realpath(Path(path).parent))
        name = Path(path).name
        return ("new", str(folder), name.casefold() if _ignores_case(folder) else name)
    return ("file", info.st_dev, info.st_ino)


def _ignores_case(folder: Path) -> bool:
    """Whether the file system of `folder` (or of its nearest existing ancestor) ignores case:
    one of its entries, looked up with the case of its name swapped, is the entry itself."""
    while not folder.is_dir() and folder != folder.parent:
        folder = folder.parent
    try:
        with os.scandir(folder) as entries:
            for entry in entries:
                swapped = entry.name.swapcase()
                if swapped != entry.name:
                    other, mine = os.lstat(folder / swapped), entry.stat(follow_symlinks=False)
                    return (other.st_dev, other.st_ino) == (mine.st_dev, mine.st_ino)
    except OSError:  # the swapped name does not exist (or the folder cannot be read)
        return False
    return False


def refuse_overwriting_inputs(
    outputs: Iterable[str | os.PathLike],
    inputs: Iterable[str | os.PathLike],
    fix: str = "choose another -o",
) -> None:
    """Refuse, before anything is written, an output that is one of the command's own inputs,
    or a folder that holds one: writing it would destroy that input. Paths are compared by
    `file_key`, so no spelling, link or case of the name gets past."""
    sources = [Path(p) for p in inputs]
    holders: dict[Path, Path] = {}  # every folder that holds an input, by name or by link
    for source in sources:
        for spelling in (os.path.abspath(source), os.path.realpath(source)):
            for folder in Path(spelling).parents:
                holders.setdefault(folder, source)
    folders = {file_key(folder): source for folder, source in holders.items()}
    files = {file_key(source): source for source in sources}
    for target in map(Path, outputs):
        key = file_key(target)
        if key in files:
            other = "" if target == files[key] else f" ({files[key]})"
            raise UserError(f"output {target} is the input itself{other}; {fix}")
        if key in folders:
            raise UserError(
                f"output {target} is a folder that holds the input {folders[key]}; {fix}"
            )


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
