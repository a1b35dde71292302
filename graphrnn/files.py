"""Writing files atomically: a temp file in the same folder, then ``os.replace``.

What a write does with what is already at the path (every writer of graphrnn comes here):

* nothing there, or a regular file: written atomically (a reader never sees half a file, and
  a failure leaves the old file as it was);
* ``/dev/null``, ``/dev/stdout``, ``/dev/stderr``, ``/dev/fd/N``: written through, unbuffered
  by us (streams a user names on purpose; there is nothing to replace atomically);
* anything else (a symbolic link, a FIFO, a device, a socket, a folder): refused with an
  ``OSError`` of one line. A link is neither followed nor replaced: following it would let a
  link planted in a shared folder make a root user overwrite any file (``/etc/shadow``), and
  replacing it would silently destroy the user's link; who means the target can name it.
"""

from __future__ import annotations

import errno
import os
import re
import stat
import sys
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import numpy as np

#: Paths written through (not replaced): the process's streams by name, and /dev/null.
STREAMS = {"/dev/stdout": 1, "/dev/stderr": 2}
_FD_PATH = re.compile(r"^/(?:dev|proc/self)/fd/(\d+)$")

_KINDS = ((stat.S_ISLNK, "a symbolic link"), (stat.S_ISDIR, "a folder"),
          (stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def stream_fd(path: str | os.PathLike) -> int | None:
    """The file descriptor a stream path names (``/dev/stdout`` -> 1), else ``None``."""
    text = os.fspath(path)
    if text in STREAMS:
        return STREAMS[text]
    match = _FD_PATH.match(text)
    return int(match.group(1)) if match else None


def is_stream(path: str | os.PathLike) -> bool:
    """Whether ``path`` is written through as a stream (``/dev/stdout``, ``/dev/null``, ...):
    a command then cannot read its output back, and prints its report to stderr."""
    return stream_fd(path) is not None or os.fspath(path) == os.devnull


def check_writable(path: str | os.PathLike) -> None:
    """Raise ``OSError`` (one line) when ``path`` exists and is not a regular file.

    Stream paths (see :data:`STREAMS`, ``/dev/fd/N``, ``/dev/null``) pass: they are written
    through.
    """
    if is_stream(path):
        return
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if stat.S_ISREG(mode):
        return
    kind = next((name for test, name in _KINDS if test(mode)), "not a regular file")
    raise FileExistsError(errno.EEXIST, f"is {kind}, not a regular file; refusing to write "
                          "there (remove it, or name a regular file)", os.fspath(path))


@contextmanager
def _write_through(path: str | os.PathLike) -> Iterator:
    fd = stream_fd(path)
    if fd is None:  # /dev/null
        with open(path, "wb") as handle:
            yield handle
        return
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (AttributeError, OSError, ValueError):
            pass
    with os.fdopen(os.dup(fd), "wb") as handle:  # shares the stream's offset
        yield handle


@contextmanager
def atomic_file(path: str | os.PathLike) -> Iterator:
    """A binary file handle whose content replaces ``path`` only when the block succeeds.

    A reader never sees a half-written file, and a failure (or Ctrl-C) leaves the old file
    as it was. The folder must exist. The file gets the usual permissions (0666 less umask).
    What is at ``path`` must be nothing or a regular file (else ``OSError``, checked before
    anything is written); stream paths are written through (see the module's docstring).
    """
    check_writable(path)
    if is_stream(path):
        with _write_through(path) as handle:
            yield handle
        return
    path = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as e:  # name the file asked for, not the temp file
        raise type(e)(e.errno, e.strerror, os.fspath(path)) from None
    try:
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        check_writable(path)  # again, just before the rename: it may have appeared meanwhile
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_atomic(path: str | os.PathLike, data: str | bytes) -> Path:
    """Write text or bytes to ``path`` atomically (see :func:`atomic_file`)."""
    with atomic_file(path) as handle:
        handle.write(data.encode() if isinstance(data, str) else data)
    return Path(path)


def save_npz(path: str | os.PathLike, arrays: Mapping[str, np.ndarray]) -> Path:
    """Write ``arrays`` as an ``.npz`` file at exactly ``path``, atomically."""
    with atomic_file(path) as handle:
        np.savez(handle, **{k: np.asarray(v) for k, v in arrays.items()})
    return Path(path)
