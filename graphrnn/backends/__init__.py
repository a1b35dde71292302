"""Backends: one small file per array library, all behind the interface in ``base``."""

from __future__ import annotations

import numpy as np

from graphrnn import config


def array_module(array):
    """NumPy, or CuPy for a CuPy array (without importing CuPy otherwise)."""
    if isinstance(array, np.ndarray) or type(array).__module__.split(".")[0] != "cupy":
        return np
    import cupy
    return cupy


def to_numpy(array) -> np.ndarray:
    """A host (NumPy) copy of a CuPy array; NumPy arrays and array-likes as NumPy arrays."""
    return np.asarray(array.get() if array_module(array) is not np else array)


#: the names :func:`get_backend` (and ``gr.compile``, ``--backend``) take
BACKENDS = ("numpy", "numpy-ufuncs", "cupy", "auto")


def get_backend(name: str = "numpy"):
    """The backend called ``name``: "numpy" (element-wise chains compiled to C where a C
    compiler works), "numpy-ufuncs" (NumPy alone), "cupy", or "auto" (CuPy when a GPU is
    usable, else "numpy")."""
    if name in ("numpy", "numpy-ufuncs"):
        from graphrnn.backends.numpy_backend import NumpyBackend
        return NumpyBackend(compiled=False if name == "numpy-ufuncs" else None)
    if name in ("cupy", "auto"):
        from graphrnn.backends import cupy_backend
        if cupy_backend.available():
            config.debug(1, "[graphrnn] backend: cupy")
            return cupy_backend.CupyBackend()
        if name == "cupy":
            raise ValueError(f"backend 'cupy' is not usable here: {cupy_backend.why_not()}")
        from graphrnn.backends.numpy_backend import NumpyBackend
        config.debug(1, f"[graphrnn] backend: numpy ({cupy_backend.why_not()})")
        return NumpyBackend()
    raise ValueError(f"unknown backend {name!r}; choose one of "
                     f"{', '.join(repr(b) for b in BACKENDS)}")
