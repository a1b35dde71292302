"""Shared fixtures: the backends every results test runs on, and the IR checker switched on."""

from __future__ import annotations

import pytest

from graphrnn import config
from graphrnn.backends import cupy_backend

config.CHECK_IR = True

BACKENDS = ["numpy"] + (["cupy"] if cupy_backend.available() else [])


@pytest.fixture(params=BACKENDS)
def backend(request) -> str:
    """Each available backend in turn (NumPy always; CuPy where a GPU is usable)."""
    return request.param
