"""The NumPy backend's compiled time loops: a recurrent stage run whole in C, on threads.

A loop stage of GEMMs reading earlier steps (``h[t - 1] @ W``) followed by one element-wise
chain (an LSTM, GRU-less Elman or any such cell) runs as one call of ``kernels/host_loop.c``
per pass instead of two Python calls a step. Each of ``config.THREADS`` threads owns a range
of the chain's columns and computes only the GEMM columns its range reads (all four gates of
its LSTM units), so a step needs one barrier forward and two backward, and no BLAS call: the
weights are packed once per call for a register-tiled GEMM. :func:`plan_loop` says which
stages qualify and how they split; other stages run step by step as before.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass
from functools import cache
from itertools import pairwise

import numpy as np

from graphrnn import config, native
from graphrnn.backends.host_ops import compiled_kernel_applies
from graphrnn.ir import Fused, MatMul, Program, Stage

#: columns of the chain a thread gets at least (fewer: fewer threads)
MIN_COLUMNS = 32
#: GEMM multiply-adds a thread gets per step at least (~4 us of work: a step's barrier and
#: the threads' start are then small beside it)
MIN_MACS = 2**17
#: thread ranges start at multiples of this (whole vectors for the chain and the GEMM)
ALIGN = 16
#: at most this many threads (kernels/host_loop.h's GR_MAX_THREADS)
MAX_THREADS = 64
LANES = {"float32": 8, "float64": 4}
#: for the loop library only: fused multiply-adds in the GEMM (the chains keep each rounding
#: step, so fused and unfused chains agree bit for bit), and threads
LOOP_FLAGS = ("-ffp-contract=fast", "-pthread")


@dataclass(frozen=True)
class LoopPlan:
    """How a loop stage splits over threads. ``bounds``: thread ``i`` computes the chain's
    columns ``[bounds[i], bounds[i + 1])``; ``forward``: ``(thread, gemm, col, count)``, the
    GEMM buffer columns each thread computes (those its chain columns read); ``backward``: the
    same over each GEMM's source columns (the source gradient, a share per thread); ``macs``:
    the GEMM multiply-adds of a step."""

    threads: int
    bounds: tuple[int, ...]
    forward: tuple[tuple[int, int, int, int], ...]
    backward: tuple[tuple[int, int, int, int], ...]
    macs: int


def _split(n: int, parts: int) -> list[int]:
    """Bounds cutting ``range(n)`` into at most ``parts`` near-equal, non-empty pieces starting
    at multiples of :data:`ALIGN` (where ``n`` allows)."""
    step = -(-n // parts)
    if n >= parts * ALIGN:
        step = -(-step // ALIGN) * ALIGN
    return list(range(0, n, step)) + [n]


def plan_loop(stage: Stage, prog: Program, threads: int, batch: int) -> LoopPlan | None:
    """The split of ``stage`` over up to ``threads`` threads for a batch of ``batch``, or None
    when it does not run as one compiled loop: it must be a loop of MatMuls reading earlier
    steps (no folded biases) and then one compiled element-wise chain, the only reader of those
    MatMuls' outputs, each read at fixed column offsets that do not overlap. Small steps get
    fewer threads (:data:`MIN_COLUMNS`, :data:`MIN_MACS`)."""
    if stage.kind != "loop" or len(stage.ops) < 2:
        return None
    *gemms, chain = stage.ops
    if not all(isinstance(g, MatMul) and g.delay >= 1 and not any(b.bias for b in g.blocks)
               for g in gemms) or not compiled_kernel_applies(chain, prog.buffers):
        return None
    index = {g.out: i for i, g in enumerate(gemms)}
    if any(op is not chain and any(name in index for name, _ in op.reads)
           for _, op in prog.ops()) or any(name in index for name in prog.outputs):
        return None
    members = chain.ops if isinstance(chain, Fused) else (chain,)
    offsets: dict[int, list[int]] = {i: [] for i in range(len(gemms))}
    for m in members:
        for t in m.terms:
            if t.src in index:
                if t.kind != "full":
                    return None
                offsets[index[t.src]].append(t.cols[0])
    size = prog.buffers[members[0].out].size
    if not all(offsets.values()) or any(
            b - a < size for offs in offsets.values() for a, b in pairwise(sorted(offs))):
        return None  # a GEMM the chain does not read, or two reads sharing columns
    macs = batch * sum(prog.buffers[g.src].size * prog.buffers[g.out].size for g in gemms)
    bounds = _split(size, max(1, min(threads, MAX_THREADS, size // MIN_COLUMNS,
                                     macs // MIN_MACS)))
    count = len(bounds) - 1
    forward = tuple((p, i, off + bounds[p], bounds[p + 1] - bounds[p])
                    for p in range(count) for i, offs in offsets.items() for off in offs)
    backward = []
    for i, g in enumerate(gemms):
        cols = _split(prog.buffers[g.src].size, count)
        backward += [(p, i, lo, hi - lo) for p, (lo, hi) in enumerate(pairwise(cols))]
    return LoopPlan(count, tuple(bounds), forward, tuple(backward), macs)


class _Gemm(ctypes.Structure):
    _fields_ = [("a", ctypes.c_void_p), ("c", ctypes.c_void_p), ("weight", ctypes.c_void_p),
                ("packed", ctypes.c_void_p), ("a_step", ctypes.c_long),
                ("c_step", ctypes.c_long), ("k", ctypes.c_int), ("n", ctypes.c_int),
                ("transposed", ctypes.c_int), ("accumulate", ctypes.c_int)]


class _Range(ctypes.Structure):
    _fields_ = [("thread", ctypes.c_int), ("gemm", ctypes.c_int), ("col", ctypes.c_int),
                ("count", ctypes.c_int), ("offset", ctypes.c_long)]


class _Loop(ctypes.Structure):
    _fields_ = [("chain", ctypes.c_void_p), ("chain_args", ctypes.c_void_p),
                ("bounds", ctypes.POINTER(ctypes.c_int)), ("gemms", ctypes.POINTER(_Gemm)),
                ("ranges", ctypes.POINTER(_Range)), ("threads", ctypes.c_int),
                ("batch", ctypes.c_int), ("nranges", ctypes.c_int), ("backward", ctypes.c_int)]


@cache
def _library(dtype: str):
    """``kernels/host_loop.c`` built for ``dtype``; its ``gr_loop_run``."""
    ctype = "float" if dtype == "float32" else "double"
    lib = native.build(f'#define GR_T {ctype}\n#define GR_LANES {LANES[dtype]}\n'
                       '#include "host_loop.c"\n', flags=LOOP_FLAGS)
    fn = lib.gr_loop_run
    fn.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_int]
    fn.restype = ctypes.c_int
    return fn


class CompiledLoopKernel:
    """A loop stage (see :func:`plan_loop`) run by one C call per pass.

    ``kernels`` are the stage's own kernels (MatMulKernels, then the chain's FusedHostKernel):
    they provide the weights and the chain's compiled functions and argument tables, compute
    the weight and bias gradients after the loop (one GEMM or reduction each, as always), and
    run the steps one by one should the system refuse threads.
    """

    #: forward/backward take the whole ``[0, T)`` and loop themselves
    whole_loop = True

    def __init__(self, plan: LoopPlan, run, kernels: list):
        self.plan, self.run, self.kernels = plan, run, kernels
        self.gemms, self.chain = [k.op for k in kernels[:-1]], kernels[-1]
        self.loop_run = _library(np.dtype(run.dtype).name)
        #: (out, src) weights, contiguous in the run's dtype
        self.weights = [np.ascontiguousarray(k.weight, dtype=run.dtype) for k in kernels[:-1]]
        self._keep: list = []  # what the C structures point into
        self.forward_loop = self._loop(False)
        self.backward_loop, self._grads = None, None

    def _base(self, array, name: str, delay: int = 0) -> int:
        """The address of step 0 (read at ``delay``) of a run buffer or gradient."""
        run = self.run
        row = run.pads[name] - delay
        return array.ctypes.data + row * run.batch * array.shape[-1] * array.itemsize

    def _loop(self, backward: bool) -> _Loop:
        """The C description of one pass over this run's arrays (backward: its gradients);
        the GEMMs of a source without a gradient are left out."""
        run, plan = self.run, self.plan
        panel = 2 * LANES[np.dtype(run.dtype).name]
        table = run.grads if backward else run.arrays
        ranges = plan.backward if backward else plan.forward
        if backward:
            ranges = tuple(r for r in ranges if self.gemms[r[1]].src in run.grads_wanted)
        gemms = (_Gemm * len(self.gemms))()
        offsets = [0] * len(self.gemms)
        entries = []
        for thread, i, col, count in ranges:
            k = run.size(self.gemms[i].out) if backward else run.size(self.gemms[i].src)
            entries.append((thread, i, col, count, offsets[i]))
            offsets[i] += -(-count // panel) * panel * k
        for i, g in enumerate(self.gemms):
            src, out = (g.out, g.src) if backward else (g.src, g.out)
            a_delay, c_delay = (0, g.delay) if backward else (g.delay, 0)
            packed = run.backend.empty(("packed", g.out, backward), (max(offsets[i], 1),),
                                       run.dtype)
            self._keep.append(packed)
            wanted = not backward or g.src in run.grads_wanted
            c = self._base(table[out], out, c_delay) if wanted else None
            gemms[i] = _Gemm(self._base(table[src], src, a_delay), c,
                             self.weights[i].ctypes.data, packed.ctypes.data,
                             run.batch * run.size(src), run.batch * run.size(out),
                             run.size(src), run.size(out), int(not backward), int(backward))
        table_ranges = (_Range * max(len(entries), 1))(*(_Range(*e) for e in entries))
        bounds = (ctypes.c_int * len(plan.bounds))(*plan.bounds)
        fn, args = ((self.chain.bwd, self.chain.backward_args()) if backward
                    else (self.chain.fwd, self.chain.fwd_args))
        self._keep += [gemms, table_ranges, bounds]
        return _Loop(ctypes.cast(fn, ctypes.c_void_p), args[1], bounds, gemms, table_ranges,
                     plan.threads, run.batch, len(entries), int(backward))

    def forward(self, lo: int, hi: int) -> None:
        if self.loop_run(ctypes.byref(self.forward_loop), lo, hi - lo) != 0:
            self._steps(lo, hi, backward=False)

    def backward(self, lo: int, hi: int) -> None:
        if self._grads is not self.run.grads:  # zero_grads made fresh gradient arrays
            self._grads = self.run.grads
            self.backward_loop = self._loop(True)
        if self.loop_run(ctypes.byref(self.backward_loop), lo, hi - lo) != 0:
            self._steps(lo, hi, backward=True)

    def _steps(self, lo: int, hi: int, backward: bool) -> None:
        """The loop step by step in Python (where the system would not start threads)."""
        config.debug(1, "[graphrnn] no threads for a compiled loop: running it step by step")
        kernels = self.kernels[::-1] if backward else self.kernels
        for t in (range(hi - 1, lo - 1, -1) if backward else range(lo, hi)):
            for k in kernels:
                (k.backward if backward else k.forward)(t, t + 1)

    def param_grads(self) -> None:
        for k in self.kernels:
            k.param_grads()
