"""Shared fixtures: the backends every results test runs on, and the IR checker switched on."""

from __future__ import annotations

import pytest

from graphrnn import config
from graphrnn.backends import cupy_backend, host_loop

config.CHECK_IR = True
#: compiled CPU loops split over two threads on any machine, however small the loop: every
#: results test then checks the split (columns and GEMM panels cut anywhere)
config.LOOP_THREADS, config.LOOP_MAX_MACS = 2, None
host_loop.MIN_COLUMNS = host_loop.MIN_MACS = 1

BACKENDS = ["numpy", "numpy-ufuncs"] + (["cupy"] if cupy_backend.available() else [])


@pytest.fixture(params=BACKENDS)
def backend(request) -> str:
    """Each available backend in turn: NumPy with compiled element-wise kernels (where a C
    compiler works), NumPy alone, and CuPy where a GPU is usable."""
    return request.param
