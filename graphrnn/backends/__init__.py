"""Backends: one small file per array library, all behind the interface in ``base``."""

from __future__ import annotations

from graphrnn import config


def get_backend(name: str = "numpy"):
    """The backend called ``name`` ("numpy", "cupy" or "auto": CuPy when a GPU is usable)."""
    if name == "numpy":
        from graphrnn.backends.numpy_backend import NumpyBackend
        return NumpyBackend()
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
    raise ValueError(f"unknown backend {name!r}; choose one of 'numpy', 'cupy', 'auto'")
