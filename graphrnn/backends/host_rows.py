"""Few-row GEMMs and finite scans in C (``kernels/host_rows.c``) for the NumPy backend."""

from __future__ import annotations

import ctypes
from functools import cache

import numpy as np

from graphrnn import config
from graphrnn.backends import native
from graphrnn.ops.matmul import MatMulKernel

#: a batched MatMul over ``ROWS_GEMM[0]..ROWS_GEMM[1]`` rows (steps x batch) runs as dot
#: products of its rows with the weights read in place (``gr_rows_gemm``); other counts: BLAS
#: (OpenBLAS packs the whole weight panel on every call, which on few rows costs more than the
#: product: measured on an Intel Xeon, K = 256, N = 1024, 1 thread: 0.28x BLAS's time at 5
#: rows, 0.41x at 10, 0.67x at 20, 0.83x at 32, 1.25x at 50; 1.1x at 2, 1.0-1.2x, a GEMV, at
#: 1, taken there too: its products check the weights, see :class:`RowsMatMulKernel`)
ROWS_GEMM = (1, 40)
#: up to this many rows, more than :data:`ROWS_GEMM` takes, one BLAS GEMM per block into its
#: columns (the parameters read in place): the blocks stacked would be a copy refreshed on
#: every call (~80 us for 1 MB), more than one GEMM over them saves on so few rows
BLOCKWISE_ROWS = 96
#: fused multiply-adds (C11 mode turns their contraction off), as BLAS does
FLAGS = ("-ffp-contract=fast",)
_PTR = ctypes.c_void_p
#: :func:`all_finite` scans arrays of at least this many values in C (a call through ctypes
#: costs ~7 us more than ``np.isfinite(a).all()`` on 10k values; at 200k values C is faster)
SCAN_MIN = 2**17


@cache
def _library(dtype: str):
    """``kernels/host_rows.c`` built for ``dtype`` (float32, float64), or None where it
    cannot be (no C compiler: callers keep NumPy)."""
    if dtype not in native.LANES or not native.available():
        return None
    extra = "#define GR_DOUBLE 1\n" if dtype == "float64" else ""
    try:
        lib = native.build_typed("host_rows.c", dtype, flags=FLAGS, defines=extra)
    except RuntimeError as exc:
        config.debug(1, f"[graphrnn] no compiled few-row GEMMs: {exc}")
        return None
    lib.gr_rows_gemm.argtypes = [_PTR, ctypes.c_long, ctypes.c_int, ctypes.c_int, _PTR,
                                 ctypes.c_int, _PTR, _PTR, ctypes.c_long]
    lib.gr_rows_gemm.restype = None
    lib.gr_rows_matmul.argtypes = [_PTR, ctypes.c_long, ctypes.c_int, ctypes.c_int,
                                   ctypes.c_int, _PTR, _PTR, _PTR, _PTR, _PTR, ctypes.c_long,
                                   ctypes.c_int]
    lib.gr_rows_matmul.restype = ctypes.c_int
    lib.gr_first_nonfinite.argtypes = [_PTR, _PTR, ctypes.c_int]
    lib.gr_first_nonfinite.restype = ctypes.c_int
    return lib


def rows_gemm_applies(op, run) -> bool:
    """Whether a MatMul runs as :class:`RowsMatMulKernel`: batched (not in a loop), the
    library built for the run's dtype."""
    return not run.looped(op) and _library(np.dtype(run.dtype).name) is not None


def _scannable(a) -> bool:
    """Whether the C scan takes ``a`` whole: a contiguous float32/float64 ndarray."""
    return (isinstance(a, np.ndarray) and a.dtype.name in native.LANES
            and (a.flags.c_contiguous or a.flags.f_contiguous))


class FiniteScan:
    """A check that every value of fixed arrays is finite, exact, in one C call a dtype over
    their memory (no temporaries); made once for arrays a caller checks on every call.
    Arrays C cannot scan (other dtypes, strided views) are checked with ``np.isfinite``."""

    def __init__(self, arrays):
        self.arrays = list(arrays)  # held: their memory stays where the tables point
        self.tables, self.rest = [], []
        by_dtype: dict = {}
        for a in self.arrays:
            lib = _library(a.dtype.name) if _scannable(a) else None
            if lib is None:
                if a.dtype.kind in "fc":
                    self.rest.append(a)
            elif a.size:
                by_dtype.setdefault(a.dtype.name, (lib, []))[1].append(a)
        for lib, group in by_dtype.values():
            ptrs = (_PTR * len(group))(*(a.ctypes.data for a in group))
            sizes = (ctypes.c_long * len(group))(*(a.size for a in group))
            self.tables.append((lib.gr_first_nonfinite, ptrs, sizes, len(group)))

    def __call__(self) -> bool:
        """Whether every value of every array is finite now."""
        for fn, ptrs, sizes, count in self.tables:
            if fn(ptrs, sizes, count) >= 0:
                return False
        return all(bool(np.isfinite(a).all()) for a in self.rest)


def all_finite(a: np.ndarray) -> bool:
    """Whether every value of one array is finite (exact): one C scan over a large one's
    memory, ``np.isfinite`` for a small one (a C call costs more there)."""
    if a.dtype.kind not in "fc":
        return True
    lib = _library(a.dtype.name) if a.size >= SCAN_MIN and _scannable(a) else None
    if lib is None:
        return bool(np.isfinite(a).all())
    table = (_PTR * 1)(a.ctypes.data)
    return lib.gr_first_nonfinite(table, ctypes.byref(ctypes.c_long(a.size)), 1) < 0


class RowsMatMulKernel(MatMulKernel):
    """A batched (not looped) MatMul whose windows have few rows: each block's product by C
    dot products over the weight read in place, the bias added in the same pass; windows of
    more rows (or a strided one) go to BLAS as :class:`MatMulKernel` does.

    Its C products multiply every weight by every row of the source, so on finite sources a
    NaN or inf weight makes its output column NaN or inf: over all the steps at once
    (:attr:`vouches`: the parameters whose finite check this product stands for), the output
    is scanned after the product (a few values) and, where it is not finite,
    ``run.param_check`` (the caller's exact check: the first non-finite parameter named,
    nothing where an overflow of finite values did it) runs.
    """

    def __init__(self, op, run):
        super().__init__(op, run)
        lib = _library(np.dtype(run.dtype).name)
        self._matmul = lib.gr_rows_matmul
        self._k, self._n = run.size(op.src), run.size(op.out)
        self._blocks = []
        for part, b in zip(self.parts, op.blocks, strict=True):
            bias = None if self.bias is None else self.bias[b.cols[0]:b.cols[1]]
            self._blocks.append((part, bias, b.cols[0], b.cols[1] - b.cols[0]))
        self._tables: dict = {}
        self._copies = (len(op.blocks) > 1 and self.bias is not None) or any(
            part is not run.params[b.param] for part, b in zip(self.parts, op.blocks,
                                                               strict=True))
        whole = (0, run.steps)
        if ROWS_GEMM[0] <= run.steps * run.batch <= ROWS_GEMM[1]:
            self._tables[whole] = self._table(*whole)
        #: the parameters whose values a call over every step multiplies in C (see above)
        self.vouches = (frozenset(b.param for b in op.blocks)
                        if self._tables.get(whole) is not None else frozenset())

    def refresh(self) -> None:
        """:meth:`MatMulKernel.refresh` where this kernel holds copies of the parameters (a
        scaled or transposed block, stacked biases or weights; the same arrays as when it
        was made, as :meth:`Run.rebind` calls it for): else nothing to do."""
        if self._copies or "weight" in self.__dict__ or "weight_t" in self.__dict__:
            super().refresh()

    def _table(self, lo: int, hi: int):
        """The arrays the C call's pointers point into and its arguments (``gr_rows_matmul``:
        every block, then the scan) for the window ``[lo, hi)``, fixed for the run; None where
        an array is strided."""
        src, out = self.src(lo, hi), self.out(lo, hi)
        rows = src.shape[0] * src.shape[1]
        if not (src.flags.c_contiguous and out.flags.c_contiguous):
            return None
        count = len(self._blocks)
        weights, biases = (_PTR * count)(), (_PTR * count)()
        widths, cols = (ctypes.c_int * count)(), (ctypes.c_int * count)()
        for i, (part, bias, col, width) in enumerate(self._blocks):
            if not part.flags.c_contiguous or (bias is not None
                                                and not bias.flags.c_contiguous):
                return None
            weights[i], widths[i], cols[i] = part.ctypes.data, width, col
            biases[i] = None if bias is None else bias.ctypes.data
        args = (src.ctypes.data, self._k, rows, self._k, count, weights, widths, biases, cols,
                out.ctypes.data, self._n)
        return (src, out, tuple(self._blocks), weights, widths, biases, cols), args

    def forward(self, lo: int, hi: int) -> None:
        rows = (hi - lo) * self.run.batch
        if not ROWS_GEMM[0] <= rows <= ROWS_GEMM[1]:
            if rows > BLOCKWISE_ROWS or len(self.parts) == 1 or "weight" in self.__dict__:
                return super().forward(lo, hi)  # (the blocks stacked for BPTT: one GEMM)
            self._blockwise(lo, hi)
            return None
        key = (lo, hi)
        if key not in self._tables:
            self._tables[key] = self._table(lo, hi)
        entry = self._tables[key]
        if entry is None:  # a strided window or weight: BLAS
            return super().forward(lo, hi)
        check = getattr(self.run, "param_check", None) if self.vouches else None
        if not self._matmul(*entry[1], check is not None):
            check()  # raises where a parameter is NaN or inf; else the values overflowed
        return None

    def _blockwise(self, lo: int, hi: int) -> None:
        """One BLAS GEMM per block into its columns, the parameters read in place."""
        src, out = self.src(lo, hi), self.out(lo, hi)
        a, c = src.reshape(-1, src.shape[-1]), out.reshape(-1, out.shape[-1])
        for part, b in zip(self.parts, self.op.blocks, strict=True):
            np.matmul(a, part.T, out=c[:, b.cols[0]:b.cols[1]])
        if self.bias is not None:
            out += self.bias


def vouched_params(run) -> frozenset:
    """The parameters whose finite check a forward pass of ``run`` makes by its products
    (:attr:`RowsMatMulKernel.vouches`); none for a Run recomputing rows (``remat``: its
    products run in windows)."""
    if run.remat is not None:
        return frozenset()
    found = [k.vouches for _, ks in run.kernels for k in ks if isinstance(k, RowsMatMulKernel)]
    return frozenset().union(*found)
