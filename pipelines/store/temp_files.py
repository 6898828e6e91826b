"""Files made safely in a directory others may write to (a shared `runs/`): temporary files with a name no one
can guess, created with O_CREAT | O_EXCL | O_NOFOLLOW (`tempfile.mkstemp`), so a planted file or symbolic link is
never opened and nothing it points at is truncated; and lock files opened without following a link. Files get
an ordinary file's mode (0666 less the umask), not mkstemp's 0600."""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

from ..errors import DiskFullError, DistillError, disk_full


def _read_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


UMASK = _read_umask()  # read once, at import (os.umask can only be read by setting it)


def temp_beside(path: Path) -> Path:
    """A new empty file in `path`'s directory, named `.NAME.tmp-RANDOM`, for writing and then renaming onto
    `path`."""
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.tmp-", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~UMASK)
    finally:
        os.close(fd)
    return Path(name)


@contextlib.contextmanager
def naming_a_full_disk(path: Path) -> Iterator[None]:
    """A full disk (or quota) met inside the block raised as `DiskFullError` naming `path`."""
    try:
        yield
    except OSError as e:
        if disk_full(e):
            raise DiskFullError(path) from e
        raise


@contextlib.contextmanager
def replacing(path: Path) -> Iterator[Path]:
    """A temporary file beside `path` to write; renamed onto `path` when the block ends, removed if it fails
    (a full disk raised as `DiskFullError` naming `path`)."""
    with naming_a_full_disk(path):
        tmp = temp_beside(path)
        try:
            yield tmp
            os.replace(tmp, path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()


def open_lock_file(path: Path) -> int:
    """The lock file at `path`, opened read-write (created if missing) without following a symbolic link, and
    only if it is a regular file with no other name (a hard link to another file is refused too)."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    except OSError as e:
        if e.errno != errno.ELOOP:
            raise
        raise DistillError(f"{path}: the lock file is a symbolic link, which distill never follows; remove it "
                           "(and check who made it)") from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1:
        os.close(fd)
        raise DistillError(f"{path}: the lock file is not a plain file of its own (a hard link or a special "
                           "file); remove it (and check who made it)")
    return fd
