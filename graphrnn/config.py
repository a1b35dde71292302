"""Every knob in one place, read from the environment once at import."""

from __future__ import annotations

import os
import sys
import time
from contextlib import contextmanager

#: 0 silent; 1 passes and timings, backend choice; 2 + the schedule; 3 + the IR after each
#: pass; 4 + generated CUDA source.
DEBUG = int(os.environ.get("GRAPHRNN_DEBUG", "0") or 0)

#: The seed used when a caller gives none (stochastic units, asynchronous orders).
DEFAULT_SEED = int(os.environ.get("GRAPHRNN_SEED", "0") or 0)

#: Run the IR checker after every compiler pass (the tests switch it on).
CHECK_IR = os.environ.get("GRAPHRNN_CHECK_IR", "0") not in ("", "0")

#: CuPy backend: capture each time loop as a CUDA graph and replay it (``GRAPHRNN_CUDA_GRAPHS=0``
#: launches kernels step by step instead).
CUDA_GRAPHS = os.environ.get("GRAPHRNN_CUDA_GRAPHS", "1") not in ("", "0")

#: CuPy backend: megabytes of device buffers kept for reuse across calls of the same shape.
POOL_MB = float(os.environ.get("GRAPHRNN_POOL_MB", "8192") or 8192)


def debug(level: int, message: str) -> None:
    """Print ``message`` to stderr when ``GRAPHRNN_DEBUG >= level``."""
    if DEBUG >= level:
        print(message, file=sys.stderr)


@contextmanager
def timed(level: int, what: str):
    """Report how long the block took when ``GRAPHRNN_DEBUG >= level``."""
    start = time.perf_counter()
    yield
    debug(level, f"[graphrnn] {what}: {1e3 * (time.perf_counter() - start):.2f} ms")
