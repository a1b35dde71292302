"""Writing files atomically: a temp file in the same folder, then ``os.replace``."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import numpy as np


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def atomic_file(path: str | os.PathLike) -> Iterator:
    """A binary file handle whose content replaces ``path`` only when the block succeeds.

    A reader never sees a half-written file, and a failure (or Ctrl-C) leaves the old file
    as it was. The folder must exist. The file gets the usual permissions (0666 less umask).
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
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
