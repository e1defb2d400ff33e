"""Writing the file a user named (an export, an HTML report) the way shell tools do.

``-`` is standard output. A regular file (or a new one) is written next to its final place and renamed into it at
the end, so a failure leaves neither a half file nor a stray temporary one; a file that existed keeps its
permissions, a new one gets those the user's umask gives any new file. An existing link, named pipe or device
(``/dev/stdout``, a FIFO, a symlink to a file) is written *through*: opened and filled once the content is
complete, never replaced by a plain file. Errors name the path the user gave, never a temporary file.

Example::

    >>> with OutputFile("costs.csv") as tmp:
    ...     _ = tmp.write_text("id,amount\\n")
    >>> Path("costs.csv").read_text()
    'id,amount\\n'
    >>> OutputFile("-").streamed
    True
"""

from __future__ import annotations

import os
import shutil
import stat
import sys
import tempfile
import threading
from pathlib import Path
from types import TracebackType

__all__ = ["OutputFile", "file_mode"]

_umask_lock = threading.Lock()


def file_mode() -> int:
    """The permission bits a new file gets under the process's umask (``0o666 & ~umask``).

    >>> import os
    >>> before = os.umask(0o022)  # (the usual umask, for the example)
    >>> oct(file_mode())
    '0o644'
    >>> _ = os.umask(before)
    """
    try:
        with open("/proc/self/status", encoding="ascii") as status:  # reads the umask without changing it
            for line in status:
                if line.startswith("Umask:"):
                    return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    with _umask_lock:  # elsewhere the only way to read it is to set it and put it back
        mask = os.umask(0o022)
        os.umask(mask)
    return 0o666 & ~mask


class OutputFile:
    """A context manager giving a temporary ``Path`` to write; on a clean exit its content goes to ``path``.

    ``streamed`` is True when the content goes to standard output, a link, a pipe or a device rather than
    replacing a regular file: a command then reports on stderr, keeping stdout for the data.

    Example::

        with OutputFile("report.html") as tmp:
            tmp.write_text(page, encoding="utf-8")
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.name = os.fspath(path)
        self.path = Path(self.name)
        self.stdout = self.name == "-"
        if self.stdout:
            self.streamed = True
        elif self.path.is_dir():
            raise _os_error(IsADirectoryError, f"cannot write {self.name}: it is a directory; give a file name in it")
        else:
            self.streamed = self.path.is_symlink() or (self.path.exists() and not self.path.is_file())
            if not self.streamed and not self.path.parent.exists():
                raise _os_error(
                    FileNotFoundError,
                    f"cannot write {self.name}: no directory {str(self.path.parent)!r} (it does not exist)",
                )
        self._tmp: Path | None = None

    def __enter__(self) -> Path:
        where = None if self.streamed else self.path.parent
        try:
            fd, name = tempfile.mkstemp(prefix=f".{self.path.name or 'llmcost'}.", suffix=".tmp", dir=where)
        except OSError as exc:
            raise self._error(exc) from None
        os.close(fd)
        self._tmp = Path(name)
        return self._tmp

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        tmp, self._tmp = self._tmp, None
        if tmp is None:  # pragma: no cover - __exit__ without __enter__
            return
        try:
            if exc_type is None:
                self._deliver(tmp)
        finally:
            tmp.unlink(missing_ok=True)

    def _deliver(self, tmp: Path) -> None:
        try:
            if self.stdout:
                sys.stdout.flush()
                binary = getattr(sys.stdout, "buffer", None)
                if binary is None:  # a text-only stdout (``redirect_stdout``, a notebook's): the file's text to it
                    self._write_text(tmp)
                    return
                with tmp.open("rb") as data:
                    shutil.copyfileobj(data, binary)
                binary.flush()
            elif self.streamed:
                with tmp.open("rb") as data, open(self.name, "wb") as target:
                    shutil.copyfileobj(data, target)
            else:
                os.chmod(tmp, self._mode())
                os.replace(tmp, self.path)
        except BrokenPipeError:
            raise
        except OSError as exc:
            raise self._error(exc) from None

    def _mode(self) -> int:
        """The permission bits the file ends with: an existing file's own, as shell ``>`` keeps them (a 0600
        export replaced by a 0644 one would show private figures to every user), else a new file's."""
        try:
            return stat.S_IMODE(os.stat(self.path).st_mode)
        except FileNotFoundError:
            return file_mode()

    def _write_text(self, tmp: Path) -> None:
        """``tmp``'s content written to a ``sys.stdout`` that takes text only; a binary file (Parquet) cannot be."""
        try:
            text = tmp.read_bytes().decode("utf-8")
        except UnicodeDecodeError:
            raise _os_error(
                OSError, f"cannot write {self.name}: standard output takes text here, and this format is binary"
            ) from None
        sys.stdout.write(text)
        sys.stdout.flush()

    def _error(self, exc: OSError) -> OSError:
        """``exc`` retold about the path the user gave (not a temporary file), in one line."""
        reason = (exc.strerror or str(exc)).lower()
        return _os_error(type(exc), f"cannot write {self.name}: {reason}")


def _os_error(kind: type[OSError], message: str) -> OSError:
    """An ``OSError`` of ``kind`` whose text is ``message`` alone: no ``[Errno N]``, no repeated file name."""
    return kind(message)
