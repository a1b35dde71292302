"""The CuPy backend: fused CUDA kernels, cuBLAS GEMMs on raw rows, time loops as CUDA graphs.

Importing this module never imports CuPy; :func:`available` and :class:`CupyBackend` do.
Buffers, gradients and the parameter copies the kernels read come from a pool kept per backend
(per compiled model), so a run of the same shape reuses the same device addresses: a loop is
run step by step the first time it is seen, captured as a CUDA graph (``Stream.begin_capture``)
the second time and replayed from then on. The graph's key includes every address it touches,
so a replay never writes memory the current run does not own. ``GRAPHRNN_CUDA_GRAPHS=0`` turns
graphs off; ``GRAPHRNN_POOL_MB`` bounds the pool (default 8192).
"""

from __future__ import annotations

import os
from collections import OrderedDict

import numpy as np

from graphrnn import config
from graphrnn.backends.base import Backend, BufferPool
from graphrnn.backends.codegen import expand_includes, generate
from graphrnn.backends.cuda_ops import device_kernel

_STATUS: list = []
_OPS = {"N": 0, "T": 1}  # cublasOperation_t
_MAX_GRAPHS = 32


def why_not() -> str | None:
    """Why the CuPy backend cannot run here (``None`` when it can). Probed once."""
    if not _STATUS:
        _STATUS.append(_probe())
    return _STATUS[0]


def available() -> bool:
    """Whether CuPy is installed and a CUDA device answers."""
    return why_not() is None


def _probe() -> str | None:
    try:
        import cupy
    except Exception as exc:  # ImportError, or a CuPy built for another CUDA
        return f"CuPy is not importable ({type(exc).__name__}: {exc}); pip install graphrnn[cuda]"
    try:
        if cupy.cuda.runtime.getDeviceCount() < 1:
            return "CuPy found no CUDA device"
        cupy.asnumpy(cupy.zeros(1) + 1)
    except Exception as exc:
        return f"no usable CUDA device ({type(exc).__name__}: {exc})"
    return None


def _direct_cublas():
    """``(cublasSetStream_v2, cublasSgemm_v2, cublasDgemm_v2)`` of the libcublas this process has
    loaded (CuPy's), through ctypes; None where it cannot be found.

    CuPy's own bindings cannot be captured: since CuPy 10 ``cupy_backends.cuda.libs.cublas
    .setStream`` (which every GEMM wrapper calls) raises ``NotImplementedError("calling cuBLAS
    API during stream capture is currently unsupported")`` while the stream captures, although
    cuBLAS itself records GEMMs in a graph (host-pointer alpha/beta are captured by value).
    """
    import ctypes

    try:
        with open("/proc/self/maps") as maps:  # the very library (and handle type) CuPy uses
            paths = sorted({line.split()[-1] for line in maps if "/libcublas.so" in line})
    except OSError:
        return None
    files = {}
    for path in paths:
        try:
            st = os.stat(path)
        except OSError:
            continue
        files.setdefault((st.st_dev, st.st_ino), path)
    if len(files) != 1:  # none, or two copies (CuPy's and another's): which owns the handle?
        config.debug(1, f"[graphrnn] cuBLAS through CuPy's bindings (libcublas loaded: "
                        f"{sorted(files.values()) or 'none found'}); loops with GEMMs are "
                        "not captured as CUDA graphs")
        return None
    (path,) = files.values()
    ptr, i32 = ctypes.c_void_p, ctypes.c_int
    try:
        lib = ctypes.CDLL(path)
        fns = (lib.cublasSetStream_v2, lib.cublasSgemm_v2, lib.cublasDgemm_v2)
    except (OSError, AttributeError):
        return None
    fns[0].argtypes = [ptr, ptr]
    for fn in fns[1:]:
        fn.argtypes = [ptr, i32, i32, i32, i32, i32, ptr, ptr, i32, ptr, i32, ptr, ptr, i32]
    for fn in fns:
        fn.restype = i32
    return fns


class _Module:
    """A CUDA source compiled by CuPy (NVRTC, cached on disk by CuPy); functions by name."""

    def __init__(self, cupy, source: str):
        self.raw = cupy.RawModule(code=expand_includes(source))
        self.functions: dict = {}

    def launch(self, name: str, grid: tuple, block: tuple, args: tuple) -> None:
        fn = self.functions.get(name)
        if fn is None:
            fn = self.functions[name] = self.raw.get_function(name)
        fn(grid, block, args)


class CupyBackend(Backend):
    """Runs Programs on an NVIDIA GPU with CuPy.

    MatMuls are cuBLAS calls on rows of the time-major buffers (no copies); Fused ops and
    element-wise NodeUpdates are generated kernels (:mod:`graphrnn.backends.codegen`); softmax and
    asynchronous nodes use ``kernels/softmax.cu`` and ``kernels/hopfield_async.cu``. Loop
    stages are replayed as CUDA graphs; nothing in a step synchronises with the host.
    """

    name = "cupy"

    def __init__(self):
        import cupy

        try:
            from cupy_backends.cuda.libs import cublas
        except ImportError:  # older layouts
            from cupy.cuda import cublas

        self.xp = cupy
        self._cublas = cublas
        self._handle = cupy.cuda.device.get_cublas_handle()
        self._direct = _direct_cublas()
        self._stream = None
        self._setup()

    def _setup(self) -> None:
        self.pool = BufferPool(self.xp, int(config.POOL_MB * 2**20))
        self._modules: dict[str, object] = {}
        self._sources: dict = {}
        self._graphs: OrderedDict = OrderedDict()
        self._seen: OrderedDict = OrderedDict()
        self._scalars: dict = {}
        self.graphs = config.CUDA_GRAPHS
        self._said: set[str] = set()

    # -- arrays ------------------------------------------------------------------------------

    def passes(self):
        """The standard pipeline, then normalised nodes grouped with the element-wise ones after
        them (one row kernel a step: :class:`~graphrnn.backends.cuda_norm.LayerNormRunKernel`)."""
        from graphrnn.compiler.fusion import group_normalised
        from graphrnn.compiler.passes import PASSES
        return [*PASSES, group_normalised]

    def asarray(self, array, dtype):
        return self.xp.asarray(array, dtype=dtype)

    def to_numpy(self, array) -> np.ndarray:
        return self.xp.asnumpy(array)

    def ptr(self, array) -> int:
        return array.data.ptr

    def synchronize(self) -> None:
        self.xp.cuda.get_current_stream().synchronize()

    def export(self, array) -> np.ndarray:
        return self.to_numpy(array)  # a host copy already

    def ones(self, n: int, dtype):
        """A pool vector of ``n`` ones (for bias GEMMs)."""
        fresh = not self.pool.has(("ones", n), (n,), dtype)
        array = self.empty(("ones", n), (n,), dtype)
        if fresh:
            array.fill(1)
        return array

    def stable(self, key, array):
        """A pool copy of ``array`` (parameters, noise): same address in every run of a shape."""
        out = self.empty(key, array.shape, array.dtype)
        out[...] = array
        return out

    # -- kernels -----------------------------------------------------------------------------

    def generated(self, op, buffers, dtype: str, no_grad: frozenset, net_only: bool):
        """:func:`~graphrnn.backends.codegen.generate` once per op (the Program outlives runs),
        keyed on its uid (an op of a replaced Program under the same uid is generated anew)."""
        key = (op.uid, dtype, no_grad, net_only)
        hit = self._sources.get(key)
        if hit is None or hit[0] != op:
            hit = self._sources[key] = (op, generate(op, buffers, dtype, no_grad, net_only))
        return hit[1]

    def module(self, source: str):
        """``source`` compiled (once per backend; CuPy also caches the binary on disk)."""
        mod = self._modules.get(source)
        if mod is None:
            mod = self._modules[source] = _Module(self.xp, source)
        return mod

    def gemm(self, transa: str, transb: str, m: int, n: int, k: int, a, lda: int, b, ldb: int,
             beta: float, c, ldc: int) -> None:
        """Column-major ``C = op(A) op(B) + beta C`` (cuBLAS); ``a``, ``b``, ``c`` are
        ``(array, element offset)`` pairs, so rows of a buffer need no view or copy."""
        (av, ao), (bv, bo), (cv, co) = a, b, c
        item = cv.itemsize
        args = (self._handle, _OPS[transa], _OPS[transb], m, n, k,
                self._scalar(cv.dtype, 1.0).ctypes.data, av.data.ptr + int(ao) * item, lda,
                bv.data.ptr + int(bo) * item, ldb, self._scalar(cv.dtype, beta).ctypes.data,
                cv.data.ptr + int(co) * item, ldc)
        stream = self.xp.cuda.get_current_stream().ptr
        if self._direct is not None:  # cuBLAS itself, so a stream capture records the GEMM
            set_stream, sgemm, dgemm = self._direct
            status = set_stream(self._handle, stream) or \
                (sgemm if cv.dtype == np.float32 else dgemm)(*args)
            if status:
                raise RuntimeError(f"cuBLAS GEMM failed (cublasStatus_t {status})")
            return
        # CuPy's bindings (which raise NotImplementedError while the stream captures)
        self._cublas.setStream(self._handle, stream)
        (self._cublas.sgemm if cv.dtype == np.float32 else self._cublas.dgemm)(*args)

    def _scalar(self, dtype, value: float) -> np.ndarray:
        key = (np.dtype(dtype).str, value)
        s = self._scalars.get(key)
        if s is None:
            s = self._scalars[key] = np.array(value, dtype=dtype)
        return s

    def kernel(self, op, run):
        k = device_kernel(op, run, self)
        return k if k is not None else super().kernel(op, run)

    # -- the time loop -----------------------------------------------------------------------

    def loop(self, steps_fns, steps: int, reverse: bool) -> None:
        """Run the steps; replay a CUDA graph of them when this loop was seen before."""
        kernels = [getattr(fn, "__self__", None) for fn in steps_fns]
        if not (self.graphs and steps > 1
                and all(getattr(k, "capturable", False) for k in kernels)):
            if self.graphs and steps > 1:
                self._say("[graphrnn] cuda graph: a loop op has no capturable kernel; "
                          "launching step by step")
            return super().loop(steps_fns, steps, reverse)
        ops = tuple(k.op for k in kernels)  # a replaced Program's ops may reuse the uids
        key = (steps, reverse, kernels[0].batch,
               tuple((k.op.uid, fn.__name__) for k, fn in zip(kernels, steps_fns, strict=True)),
               tuple(k.pointers(fn.__name__ == "backward")
                     for k, fn in zip(kernels, steps_fns, strict=True)))
        hit = self._graphs.get(key)
        if hit is None or hit[0] != ops:
            if self._seen.get(key) != ops:  # first sight: run plainly (compiles, loads modules)
                self._remember(self._seen, key, ops)
                return super().loop(steps_fns, steps, reverse)
            graph = self._capture(steps_fns, steps, reverse)
            if graph is None:
                return super().loop(steps_fns, steps, reverse)
            self._remember(self._graphs, key, (ops, graph))
        else:
            graph = hit[1]
            self._graphs.move_to_end(key)
        self._replay(graph)

    def _replay(self, graph) -> None:
        graph.launch(stream=self.xp.cuda.get_current_stream())

    def _capture(self, steps_fns, steps: int, reverse: bool):
        cupy = self.xp
        if self._stream is None:
            self._stream = cupy.cuda.Stream(non_blocking=True)
        stream, outer = self._stream, cupy.cuda.get_current_stream()
        try:
            with stream:
                stream.begin_capture()
                try:
                    Backend.loop(self, steps_fns, steps, reverse)
                finally:
                    graph = stream.end_capture()
        except Exception as exc:  # an op that cannot be captured: plain launches instead
            self.graphs = False
            config.debug(1, f"[graphrnn] cuda graph capture failed ({type(exc).__name__}: "
                            f"{exc}); launching step by step from now on")
            return None
        finally:  # later cuBLAS calls (CuPy's too) go to the caller's stream again
            self._cublas.setStream(self._handle, outer.ptr)
        config.debug(1, f"[graphrnn] cuda graph: captured a loop of {steps} steps "
                        f"({len(steps_fns)} ops a step)")
        return graph

    def _remember(self, table: OrderedDict, key, value) -> None:
        table[key] = value
        while len(table) > _MAX_GRAPHS:
            table.popitem(last=False)

    def _say(self, message: str) -> None:
        if message not in self._said:
            self._said.add(message)
            config.debug(1, message)
