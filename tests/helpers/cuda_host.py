"""Test helpers: the CUDA code compiled for the host, and the CuPy backend run on NumPy with it.

:class:`HostBackend` is :class:`~graphrnn.backends.cupy_backend.CupyBackend` with NumPy arrays:
its kernels are the same CUDA sources (hand-written and generated) compiled by g++ with
``cuda_host_shim.h`` and launched thread by thread through ctypes; its GEMM is the cuBLAS call
emulated on raw addresses; its "CUDA graphs" record every launch with its addresses and scalars
baked in and replay them later, as a real graph does. So everything of the GPU backend but CuPy
itself runs, and is compared, on a machine without a GPU.
"""

from __future__ import annotations

import ctypes
import hashlib
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from graphrnn.backends.base import Backend
from graphrnn.backends.codegen import KERNEL_DIR, expand_includes
from graphrnn.backends.cupy_backend import CupyBackend

SHIM = Path(__file__).with_name("cuda_host_shim.h")
CXX = shutil.which("g++") or shutil.which("c++")
_BUILD: list[Path] = []
_LIBS: dict[str, ctypes.CDLL] = {}


def compile_host(source: str) -> ctypes.CDLL:
    """``source`` (CUDA C with ``kernels/`` includes) compiled as a host shared library."""
    digest = hashlib.sha1(source.encode()).hexdigest()[:16]
    if digest not in _LIBS:
        if not _BUILD:
            _BUILD.append(Path(tempfile.mkdtemp(prefix="graphrnn-host-")))
        src, lib = _BUILD[0] / f"{digest}.cu", _BUILD[0] / f"{digest}.so"
        src.write_text(expand_includes(source))
        cmd = [CXX, "-x", "c++", "-std=c++14", "-O1", "-shared", "-fPIC", "-include", str(SHIM),
               "-I", str(KERNEL_DIR), "-o", str(lib), str(src)]
        done = subprocess.run(cmd, capture_output=True, text=True)
        assert done.returncode == 0, f"host compile failed:\n{done.stderr}"
        _LIBS[digest] = ctypes.CDLL(str(lib))
    return _LIBS[digest]


def c_arg(value):
    """A kernel argument as ctypes: arrays by address, NumPy scalars by their exact type."""
    if isinstance(value, np.ndarray):
        assert value.flags.c_contiguous, "kernels take whole contiguous arrays"
        return ctypes.c_void_p(value.ctypes.data)
    kinds = {np.int32: ctypes.c_int, np.int64: ctypes.c_longlong, np.float32: ctypes.c_float,
             np.float64: ctypes.c_double}
    return kinds[type(value)](value.item())


class HostModule:
    """A compiled source whose ``launch`` runs a grid thread by thread (block-cooperative
    kernels, which synchronise, with one thread per block)."""

    def __init__(self, source: str, backend: HostBackend):
        self.lib, self.backend = compile_host(source), backend

    def launch(self, name: str, grid: tuple, block: tuple, args: tuple) -> None:
        fn, set_dims = getattr(self.lib, name), self.lib.gr_host_set
        cargs = [c_arg(a) for a in args]
        threads = block[0] if name.startswith("gr_fused") else 1

        def run() -> None:
            for b in range(grid[0]):
                for t in range(threads):
                    set_dims(b, t, threads, grid[0])
                    fn(*cargs)
        self.backend.submit(run)


def _colmajor(ptr: int, rows: int, cols: int, ld: int, dtype) -> np.ndarray:
    item = np.dtype(dtype).itemsize
    count = ld * (cols - 1) + rows
    flat = np.frombuffer((ctypes.c_char * (count * item)).from_address(ptr), dtype, count)
    return np.lib.stride_tricks.as_strided(flat, (rows, cols), (item, ld * item))


class _Graph:
    def __init__(self, calls: list):
        self.calls = calls

    def launch(self) -> None:
        for call in self.calls:
            call()


class HostBackend(CupyBackend):
    """The CuPy backend's logic on NumPy arrays and host-compiled kernels (see the module)."""

    name = "cupy-host"

    def __init__(self, graphs: bool = True):
        self.xp = np
        self._setup()
        self.graphs = graphs
        self._recording: list | None = None
        self.captures = 0
        self.replays = 0

    def asarray(self, array, dtype):
        return np.asarray(array, dtype=dtype)

    def to_numpy(self, array) -> np.ndarray:
        return np.asarray(array)

    def export(self, array) -> np.ndarray:
        return np.array(array)  # pool memory: the next run overwrites it

    def ptr(self, array) -> int:
        return array.ctypes.data

    def synchronize(self) -> None:
        return None

    def submit(self, call) -> None:
        """Run a launch now, or record it while "capturing"."""
        if self._recording is None:
            call()
        else:
            self._recording.append(call)

    def module(self, source: str):
        mod = self._modules.get(source)
        if mod is None:
            mod = self._modules[source] = HostModule(source, self)
        return mod

    def gemm(self, transa, transb, m, n, k, a, lda, b, ldb, beta, c, ldc) -> None:
        (av, ao), (bv, bo), (cv, co) = a, b, c
        item, dtype = cv.itemsize, cv.dtype
        pa, pb, pc = (av.ctypes.data + int(ao) * item, bv.ctypes.data + int(bo) * item,
                      cv.ctypes.data + int(co) * item)

        def run() -> None:
            A = _colmajor(pa, *((m, k) if transa == "N" else (k, m)), lda, dtype)
            B = _colmajor(pb, *((k, n) if transb == "N" else (n, k)), ldb, dtype)
            C = _colmajor(pc, m, n, ldc, dtype)
            prod = (A if transa == "N" else A.T) @ (B if transb == "N" else B.T)
            C[...] = prod if beta == 0 else prod + dtype.type(beta) * C
        self.submit(run)

    def _capture(self, steps_fns, steps, reverse):
        self._recording = []
        try:
            Backend.loop(self, steps_fns, steps, reverse)
        finally:
            calls, self._recording = self._recording, None
        self.captures += 1
        return _Graph(calls)

    def _replay(self, graph) -> None:
        self.replays += 1
        graph.launch()
