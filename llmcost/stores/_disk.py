"""Changes to the file system that survive a crash: fsynced files and directories, atomic writes, durable mkdir."""

from __future__ import annotations

import contextlib
import errno
import os
import uuid

__all__ = ["check_creatable", "fsync_dir", "fsync_file", "make_dirs", "write_atomic"]


def fsync_dir(path: str) -> None:
    """Make a rename or unlink in directory ``path`` durable (a no-op where directories cannot be opened)."""
    if os.name == "nt":  # pragma: no cover - NTFS journals metadata; directories cannot be fsynced
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_file(path: str) -> None:
    """Flush the contents of the file at ``path`` to disk."""
    fd = os.open(path, os.O_RDONLY if os.name != "nt" else os.O_RDWR)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def make_dirs(path: str) -> None:
    """Create directory ``path`` (and parents) durably; nothing happens if it exists."""
    if os.path.isdir(path):
        return
    parent = os.path.dirname(path)
    if parent and parent != path:
        make_dirs(parent)
    with contextlib.suppress(FileExistsError):
        os.mkdir(path)
        fsync_dir(parent or ".")


def check_creatable(path: str) -> None:
    """Raise ``PermissionError`` (or ``NotADirectoryError``) if ``make_dirs(path)`` could not create ``path``: its
    nearest existing ancestor is not a directory this user may write. Creates nothing, so a store that creates its
    files on first write still fails at once when opened somewhere it never could write.

    >>> check_creatable("/tmp/llmcost-never-made/sub")
    """
    ancestor = os.path.dirname(path)
    while ancestor and not os.path.exists(ancestor) and os.path.dirname(ancestor) != ancestor:
        ancestor = os.path.dirname(ancestor)
    ancestor = ancestor or "."
    if not os.path.isdir(ancestor):
        raise NotADirectoryError(errno.ENOTDIR, "Not a directory", ancestor)
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise PermissionError(errno.EACCES, "Permission denied", ancestor)


def write_atomic(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the whole new one, never a part.

    The bytes go to a hidden temporary name in the same directory, are fsynced, then renamed over ``path``, and the
    directory is fsynced so the rename survives a crash.

    Example::

        write_atomic("/data/costs/_llmcost.json", b'{"schema_version": 1}')
    """
    directory = os.path.dirname(path) or "."
    tmp = os.path.join(directory, f".{uuid.uuid4().hex}.tmp")
    try:
        with open(tmp, "xb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_dir(directory)
