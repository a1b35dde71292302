"""Every knob in one place, read from the environment once at import."""

from __future__ import annotations

import os
import sys
import time
from contextlib import contextmanager, nullcontext


def _number(name: str, default: float, kind=int):
    """Environment variable ``name`` as a ``kind`` number; unset or empty: ``default``; not a
    number: ``default`` too, with one line on stderr saying so (a bad knob never stops an
    import)."""
    text = os.environ.get(name, "")
    try:
        return kind(text) if text else default
    except ValueError:
        print(f"[graphrnn] ignoring {name}={text!r}: not a number", file=sys.stderr)
        return default


#: 0 silent; 1 passes and timings, backend choice; 2 + the schedule; 3 + the IR after each
#: pass; 4 + generated kernel source (CUDA, or C for the CPU) and compiler commands.
DEBUG = _number("GRAPHRNN_DEBUG", 0)

#: The seed used when a caller gives none (stochastic units, asynchronous orders).
DEFAULT_SEED = _number("GRAPHRNN_SEED", 0)

#: Run the IR checker after every compiler pass (the tests switch it on).
CHECK_IR = os.environ.get("GRAPHRNN_CHECK_IR", "0") not in ("", "0")

#: CuPy backend: capture each time loop as a CUDA graph and replay it (``GRAPHRNN_CUDA_GRAPHS=0``
#: launches kernels step by step instead).
CUDA_GRAPHS = os.environ.get("GRAPHRNN_CUDA_GRAPHS", "1") not in ("", "0")

#: Megabytes of run buffers a compiled model keeps for reuse by calls of the same shape (device
#: memory on CuPy, host memory on NumPy).
POOL_MB = _number("GRAPHRNN_POOL_MB", 8192.0, float)

def _bytes(name: str) -> int | None:
    """Environment variable ``name`` as a number of bytes (``8G``, ``512M``, ``1e9``); unset or
    empty: ``None``; unreadable: ``None`` too, with one line on stderr saying so."""
    text = os.environ.get(name, "").strip()
    if not text:
        return None
    scale = {"K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}.get(text[-1:].upper(), 1)
    try:
        value = float(text[:-1] if scale > 1 else text) * scale
        if not value > 0 or value != value or value == float("inf"):
            raise ValueError(text)
        return int(value)
    except ValueError:
        print(f"[graphrnn] ignoring {name}={text!r}: not a size such as 8G or 512M",
              file=sys.stderr)
        return None


#: The most memory (bytes; ``8G``, ``512M`` also read) one model call, or a spec's parameters
#: and history, may need; unset: the memory available when the call starts (``MemAvailable``).
MAX_MEMORY = _bytes("GRAPHRNN_MAX_MEMORY")

#: The most vertices :func:`graphrnn.unroll` (and ``graphrnn inspect``) builds.
MAX_VERTICES = _number("GRAPHRNN_MAX_VERTICES", 100_000)

#: NumPy backend: run fused element-wise chains as C compiled on first use (vectorised loops,
#: one call a step) when a C compiler works; ``GRAPHRNN_NATIVE=0`` keeps them in NumPy ufuncs.
NATIVE = os.environ.get("GRAPHRNN_NATIVE", "1") not in ("", "0")

#: The C compiler for those kernels (default: the first of cc, gcc, clang on the PATH).
CC = os.environ.get("GRAPHRNN_CC", "")

#: Where compiled kernels are kept between processes (default: ~/.cache/graphrnn).
CACHE_DIR = os.environ.get("GRAPHRNN_CACHE", "") or os.path.join(
    os.environ.get("XDG_CACHE_HOME", "") or os.path.join(os.path.expanduser("~"), ".cache"),
    "graphrnn")


#: OpenBLAS's idle threads busy-wait 2**N CPU cycles after each call (N = 28 by default,
#: ~0.1 s), holding a core that a compiled loop's threads need; N comes from
#: ``OPENBLAS_THREAD_TIMEOUT`` when OpenBLAS loads. Imported before NumPy, graphrnn sets it
#: to 20 (~0.5 ms: still spanning the gaps between a step-by-step loop's GEMMs) unless set.
if "numpy" not in sys.modules:
    os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "20")
BLAS_SPIN_LOG2 = _number("OPENBLAS_THREAD_TIMEOUT", 28)


def _cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (
        os.cpu_count() or 1)


_THREADS = _number("GRAPHRNN_THREADS", -1)
_SPINS = BLAS_SPIN_LOG2 > 22 and _cpus() > 1 and _THREADS < 0
#: Threads a compiled CPU time loop runs on (``GRAPHRNN_THREADS``; 0: loops run step by step).
#: By default the CPUs this process may use, or 1 where OpenBLAS's idle threads spin for long
#: (see :data:`BLAS_SPIN_LOG2`): a second thread would share a core with them.
LOOP_THREADS = _THREADS if _THREADS >= 0 else (1 if _SPINS else _cpus())
#: The most GEMM multiply-adds a compiled loop's step may take (None: any). Where OpenBLAS's
#: idle threads spin for long, a loop with bigger steps runs faster stepped from Python, its
#: GEMMs on all of BLAS's threads, than compiled on one thread.
LOOP_MAX_MACS = 2**22 if _SPINS else None


@contextmanager
def loop_max_macs(value: int | None):
    """:data:`LOOP_MAX_MACS` set to ``value`` for the block (a packed call whose loops compute
    few enough rows: :func:`graphrnn.packed.loop_cap`); the knob as it was after it."""
    global LOOP_MAX_MACS
    before, LOOP_MAX_MACS = LOOP_MAX_MACS, value
    try:
        yield
    finally:
        LOOP_MAX_MACS = before


def debug(level: int, message: str) -> None:
    """Print ``message`` to stderr when ``GRAPHRNN_DEBUG >= level``."""
    if DEBUG >= level:
        print(message, file=sys.stderr)


def timed(level: int, what: str):
    """Report how long the block took when ``GRAPHRNN_DEBUG >= level`` (else a context that
    does nothing: a model's every call goes through one)."""
    return _timed(level, what) if DEBUG >= level else _UNTIMED


_UNTIMED = nullcontext()


@contextmanager
def _timed(level: int, what: str):
    start = time.perf_counter()
    yield
    debug(level, f"[graphrnn] {what}: {1e3 * (time.perf_counter() - start):.2f} ms")
