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


FULL = (errno.ENOSPC, errno.EDQUOT)


def _write_error(path: Path, error: OSError, kept: str) -> WriteError:
    """One line for a failed write of `path` (never a temporary name): for a full disk, how
    much room is left on that file system, so that the user knows what to free."""
    if error.errno in FULL:
        folder = next((p for p in (path, *path.parents) if p.is_dir()), Path("."))
        free = shutil.disk_usage(folder).free
        fix = f"free some disk space there ({free / 1e6:.0f} MB free now)"
    else:
        fix = "check the folder and its permissions"
    written = WriteError(
        f"could not write {path} ({error.strerror or error}); {kept}: {fix} and retry"
    )
    written.errno = error.errno
    return written


@contextlib.contextmanager
def full_disk_names(folder: Path, kept: str = "nothing was written") -> Iterator[None]:
    """Turn a full disk met while writing anywhere in `folder` (scratch files, logs) into a
    WriteError that names `folder`, not the scratch file being written when it filled."""
    try:
        yield
    except OSError as e:
        if isinstance(e, WriteError) or e.errno not in FULL:
            raise
        raise _write_error(folder, e, kept) from e


def check_outputs(files: Iterable[Path], folders: Iterable[Path] = ()) -> None:
    """Before any work: each output file must be a regular file if it exists (not a folder, a
    device, a FIFO), each output folder (a Core ML package, plots/) a folder if it exists, and
    the folders they go into writable. Otherwise the work would fail only once done."""
    for path in map(Path, files):
        if path.is_dir():
            raise UserError(f"output {path} is a folder; choose another -o or remove it")
        if path.exists() and not path.is_file():
            raise UserError(f"output {path} is not a regular file; choose another -o")
        check_writable_dir(path.parent)
    for path in map(Path, folders):
        if path.exists() and not path.is_dir():
            raise UserError(f"output {path} is a file where a folder goes; choose another -o")
        check_writable_dir(path.parent)


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


def _kept(path: Path) -> str:
    return "the existing file is unchanged" if path.exists() else "nothing was written"


def _umask() -> int:
    try:
        with open("/proc/self/status") as f:  # Linux: read it without changing it
            return next(int(line.split()[1], 8) for line in f if line.startswith("Umask:"))
    except (OSError, StopIteration, ValueError):
        mask = os.umask(0o022)
        os.umask(mask)
        return mask


def _usual_modes(path: Path) -> None:
    """Give what was written the modes of a file or folder made normally (the umask's), as
    writers that work in private temporary folders (coremltools: 0600 / 0700) do not."""
    mask = _umask()
    if not path.is_dir():
        os.chmod(path, 0o666 & ~mask)
        return
    for folder, _, files in os.walk(path):  # links are left alone: chmod would follow them
        os.chmod(folder, 0o777 & ~mask)
        for name in files:
            if not os.path.islink(os.path.join(folder, name)):
                os.chmod(os.path.join(folder, name), 0o666 & ~mask)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary sibling of `path`; on success it replaces `path`, on error it vanishes.

    The sibling lives in the same folder so the final rename never crosses file systems. Works
    for files and for folders such as `.mlpackage` bundles. Two writers to the same path each
    write their own temporary and the last rename wins whole; neither sees a half-written file.
    """
    path = Path(path)
    check_writable_dir(path.parent)
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as e:  # no room even for an empty file: the message names `path`, not it
        raise _write_error(path, e, _kept(path)) from e
    os.close(fd)
    os.unlink(tmp_name)
    tmp = Path(tmp_name)
    try:
        yield tmp
        _usual_modes(tmp)
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
        raise _write_error(path, e, _kept(path)) from e
    finally:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        elif tmp.exists():
            tmp.unlink()
