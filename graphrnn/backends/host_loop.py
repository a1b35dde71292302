"""The NumPy backend's compiled time loops: a recurrent stage run whole in C, on threads.

A loop stage of element-wise chains and GEMMs, each GEMM read by one chain (Elman, LSTM, GRU,
Jordan, NARX: ``h[t - 1] @ U`` feeding a cell; an output's GEMM feeding the next chain; or no
GEMM at all, a locally recurrent net's ``d * h[t - 1]``) runs as one call of
``kernels/host_loop.c`` per pass instead of a Python call per op and step. Each of
``config.LOOP_THREADS`` threads owns a range of every chain's columns and computes only the
GEMM columns its ranges read (all four gates of its LSTM units), so the threads meet only
after each chain forward, and after each chain and each run of GEMMs backward; no BLAS call.
The C code reads the weights through a table of their rows, pointers into the parameter
arrays themselves (no copy: an in-place update is seen by the next call), packing them for a
register-tiled GEMM once per call where the call has :data:`PACK_ROWS` rows or more.
:func:`plan_loop` says which stages qualify and how they split; other stages run step by
step as before.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass
from functools import cache
from itertools import pairwise

import numpy as np

from graphrnn import config
from graphrnn.backends import native
from graphrnn.backends.host_ops import compiled_kernel_applies
from graphrnn.backends.loop_rows import GoingRows, Pad
from graphrnn.compiler.ir import Fused, MatMul, Program, Stage, StageKind

#: columns of the chain a thread gets at least (fewer: fewer threads)
MIN_COLUMNS = 32
#: multiply-adds a thread gets per step at least (~4 us of work: a step's barrier and the
#: threads' start are then small beside it)
MIN_MACS = 2**17
#: what one chain column of one row counts as, in multiply-adds, when sizing a step's work
CHAIN_MACS = 8
#: thread ranges start at multiples of this (whole vectors for the chain and the GEMM)
ALIGN = 16
#: at most this many threads (kernels/host_loop.h's GR_MAX_THREADS)
MAX_THREADS = 64
#: a call of at least this many rows (steps x batch) packs its weights first (a pass over
#: them, repaid by the tiled GEMM); fewer read the parameters in place (dot products forward,
#: row updates backward)
PACK_ROWS = 16
#: for the loop library only: fused multiply-adds in the GEMM (the chains keep each rounding
#: step, so fused and unfused chains agree bit for bit), and threads
LOOP_FLAGS = ("-ffp-contract=fast", "-pthread")


@dataclass(frozen=True)
class LoopPlan:
    """How a loop stage splits over threads. ``ops``: the stage's ops in order, ``(1, c)``
    for its ``c``-th chain (``(2, c)``: a layer-normalised chain right after a GEMM, which the
    threads meet before), ``(0, g)`` for its ``g``-th GEMM; ``bounds``: per chain, thread ``i``
    computes its columns ``[b[i], b[i + 1])`` (a layer-normalised chain: its batch rows,
    whatever threads computed their GEMM columns); ``forward``: ``(thread, gemm, col, count)``,
    the GEMM buffer columns each thread computes (those its columns of the reading chain read);
    ``backward``: the same over each GEMM's source columns (the source gradient, a share per
    thread); ``macs``: the GEMM multiply-adds of a step; ``reverse``: the stage is an
    anti-causal loop (forward from the last step down, backward from step 0 up)."""

    threads: int
    ops: tuple[tuple[int, int], ...]
    bounds: tuple[tuple[int, ...], ...]
    forward: tuple[tuple[int, int, int, int], ...]
    backward: tuple[tuple[int, int, int, int], ...]
    macs: int
    reverse: bool = False


def _split(n: int, parts: int) -> list[int]:
    """``parts + 1`` bounds cutting ``range(n)`` into near-equal pieces starting at multiples of
    :data:`ALIGN` (where ``n`` allows); trailing pieces may be empty."""
    step = -(-n // parts)
    if n >= parts * ALIGN:
        step = -(-step // ALIGN) * ALIGN
    return [min(n, i * step) for i in range(parts)] + [n]


def _normalised(chain) -> bool:
    """A layer-normalised node: its kernel computes whole rows (a mean and variance each), so
    its threads split the batch rows, not the columns."""
    return any(getattr(m, "norm", None) for m in _members(chain))


def _members(chain):
    return chain.ops if isinstance(chain, Fused) else (chain,)


def _gemm_readers(gemms, chains) -> dict[int, list[tuple[int, int]]] | None:
    """GEMM -> the ``(chain, column offset)`` of each read of it; None unless every GEMM is
    read, through ``full`` terms only, by one chain, or by several whose reads are all of
    layer-normalised chains (a LayerNorm LSTM's gates: one chain each, one merged GEMM)."""
    index = {g.out: i for i, g in enumerate(gemms)}
    readers: dict[int, list[tuple[int, int]]] = {}
    for c, chain in enumerate(chains):
        for t in (t for m in _members(chain) for t in m.terms if t.src in index):
            if t.kind != "full":
                return None
            readers.setdefault(index[t.src], []).append((c, t.cols[0]))
    for reads in readers.values():
        owners = {c for c, _ in reads}
        if len(owners) > 1 and not all(_normalised(chains[c]) for c in owners):
            return None
    return readers if len(readers) == len(gemms) else None


def plan_loop(stage: Stage, prog: Program, threads: int, batch: int) -> LoopPlan | None:
    """The split of ``stage`` over up to ``threads`` threads for a batch of ``batch``, or None
    when it does not run as one compiled loop: it must be a loop of compiled element-wise
    chains and MatMuls (none, or any number without folded biases), ending with a chain, where
    each MatMul's output is read by one chain alone, at column offsets that do not overlap.
    Small steps get fewer threads (:data:`MIN_COLUMNS`, :data:`MIN_MACS`)."""
    if stage.kind != StageKind.LOOP:
        return None
    gemms = [op for op in stage.ops if isinstance(op, MatMul)]
    chains = [op for op in stage.ops if not isinstance(op, MatMul)]
    if isinstance(stage.ops[-1], MatMul) or any(
            b.bias for g in gemms for b in g.blocks) or not all(
            compiled_kernel_applies(c, prog.buffers) for c in chains):
        return None
    readers = _gemm_readers(gemms, chains)
    outs, position = {g.out for g in gemms}, {op.uid: i for ops in (gemms, chains)
                                               for i, op in enumerate(ops)}
    if readers is None or outs & set(prog.outputs) or any(
            (isinstance(op, MatMul) or op.uid not in position)
            and any(name in outs for name, _ in op.reads) for _, op in prog.ops()):
        return None
    sizes = [prog.buffers[_members(c)[0].out].size for c in chains]
    if any(b[1] - a[1] < sizes[a[0]] for reads in readers.values()
           for a, b in pairwise(sorted(reads, key=lambda r: r[1]))):
        return None  # two reads of one GEMM share columns
    macs = batch * sum(prog.buffers[g.src].size * prog.buffers[g.out].size for g in gemms)
    work = macs + CHAIN_MACS * batch * sum(sizes)
    count = max(1, min(threads, MAX_THREADS, max(sizes) // MIN_COLUMNS, work // MIN_MACS))
    bounds = tuple(tuple(_split(batch, count) if _normalised(c) else _split(size, count))
                   for size, c in zip(sizes, chains, strict=True))
    forward = tuple((p, i, off + lo, hi - lo) for i, reads in sorted(readers.items())
                    for c, off in reads for p, (lo, hi) in enumerate(pairwise(
                        _split(sizes[c], count) if _normalised(chains[c]) else bounds[c]))
                    if hi > lo)
    backward = tuple((p, i, lo, hi - lo) for i, g in enumerate(gemms)
                     for p, (lo, hi) in enumerate(pairwise(_split(prog.buffers[g.src].size,
                                                                  count))) if hi > lo)
    ops = tuple((0 if isinstance(op, MatMul) else 2 if _normalised(op) and k and isinstance(
        stage.ops[k - 1], MatMul) else 1, position[op.uid]) for k, op in enumerate(stage.ops))
    return LoopPlan(count, ops, bounds, forward, backward, macs, stage.reverse)


class _Gemm(ctypes.Structure):
    _fields_ = [("a", ctypes.c_void_p), ("c", ctypes.c_void_p), ("rows", ctypes.c_void_p),
                ("packed", ctypes.c_void_p), ("a_step", ctypes.c_long),
                ("c_step", ctypes.c_long), ("k", ctypes.c_int), ("n", ctypes.c_int),
                ("transposed", ctypes.c_int), ("accumulate", ctypes.c_int)]


class _Range(ctypes.Structure):
    _fields_ = [("thread", ctypes.c_int), ("gemm", ctypes.c_int), ("col", ctypes.c_int),
                ("count", ctypes.c_int), ("offset", ctypes.c_long)]


class _Chain(ctypes.Structure):
    _fields_ = [("fn", ctypes.c_void_p), ("args", ctypes.c_void_p),
                ("bounds", ctypes.POINTER(ctypes.c_int))]


class _Op(ctypes.Structure):
    _fields_ = [("chain", ctypes.c_int), ("index", ctypes.c_int)]


class _Loop(ctypes.Structure):
    _fields_ = [("gemms", ctypes.POINTER(_Gemm)), ("chains", ctypes.POINTER(_Chain)),
                ("ranges", ctypes.POINTER(_Range)), ("ops", ctypes.POINTER(_Op)),
                ("nops", ctypes.c_int), ("nranges", ctypes.c_int), ("threads", ctypes.c_int),
                ("batch", ctypes.c_int), ("backward", ctypes.c_int), ("reverse", ctypes.c_int),
                ("rows", ctypes.c_void_p), ("pads", ctypes.POINTER(Pad)),
                ("npads", ctypes.c_int)]


@cache
def _loop_library(dtype: str):
    """``kernels/host_loop.c`` built for ``dtype``, or None where the C compiler rejects it
    (threads or C11 atomics missing: loops then run step by step)."""
    try:
        return native.build_typed("host_loop.c", dtype, flags=LOOP_FLAGS)
    except RuntimeError as exc:
        config.debug(1, f"[graphrnn] no compiled loops: {exc}")
        return None


@cache
def _library(dtype: str):
    """The loop library's ``gr_loop_run`` for ``dtype``, or None (see :func:`_loop_library`)."""
    return _entry(_loop_library(dtype), "gr_loop_run")


@cache
def _zero_library(dtype: str):
    """The same library's ``gr_loop_zero`` (None where it does not build)."""
    return _entry(_loop_library(dtype), "gr_loop_zero")


def _entry(lib, name: str):
    """``lib``'s function ``name`` taking ``(const gr_loop*, int t0, int steps)`` and
    returning an int, or None without a library."""
    if lib is None:
        return None
    fn = getattr(lib, name)
    fn.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_int]
    fn.restype = ctypes.c_int
    return fn


def available(dtype) -> bool:
    """Whether compiled loops build here for ``dtype`` (once per process)."""
    return _library(np.dtype(dtype).name) is not None


def _row_table(kernel) -> np.ndarray:
    """The addresses of the rows of a MatMulKernel's ``(out, src)`` weight, row ``j`` of the
    GEMM's output in the part of the block holding column ``j``."""
    table = np.zeros(kernel.run.size(kernel.op.out), dtype=np.uintp)
    for part, block in zip(kernel.parts, kernel.op.blocks, strict=True):
        a, b = block.cols
        table[a:b] = part.ctypes.data + np.arange(b - a, dtype=np.uintp) * part.strides[0]
    return table


class CompiledLoopKernel(GoingRows):
    """A loop stage (see :func:`plan_loop`) run by one C call per pass.

    ``kernels`` are the stage's own kernels in order (MatMulKernels and the chains'
    FusedHostKernels): they provide the weights and the chains' compiled functions and argument
    tables, compute the weight and bias gradients after the loop (one GEMM or reduction each,
    as always), and run the steps one by one should the system refuse threads.
    """

    #: forward/backward take the whole ``[0, T)`` and loop themselves
    whole_loop = True
    #: with a batch sorted by length, step t computes only the going rows ``[0, rows[t])``
    #: (:attr:`graphrnn.lengths.LengthPlan.rows`), in one call in either direction
    per_step_rows = True

    def __init__(self, plan: LoopPlan, run, kernels: list):
        self.plan, self.run, self.kernels = plan, run, kernels
        self.gemm_kernels = [k for k in kernels if isinstance(k.op, MatMul)]
        self.chains = [k for k in kernels if not isinstance(k.op, MatMul)]
        self.gemms = [k.op for k in self.gemm_kernels]
        self.loop_run = _library(np.dtype(run.dtype).name)
        #: per GEMM, the addresses of its (out, src) weight's rows: in the blocks' own arrays
        #: (a MatMulKernel's parts, the parameters or copies it refreshes in place)
        self.row_tables = [_row_table(k) for k in self.gemm_kernels]
        self.packs = run.steps * run.batch >= PACK_ROWS
        self._keep: list = []  # what the C structures point into
        #: the buffers the stage writes, and those it reads or writes (their gradients)
        ops = [o for k in kernels for o in (*getattr(k.op, "ops", ()), k.op)]
        self.writes = {o.out for o in ops if getattr(o, "out", None) is not None}
        self.touched = self.writes | {name for o in ops for name, _ in o.reads}
        self.loop_zero = _zero_library(np.dtype(run.dtype).name)
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
        panel = 2 * native.LANES[np.dtype(run.dtype).name]
        table = run.grads if backward else run.arrays
        wanted = [not backward or g.src in run.grads_wanted for g in self.gemms]
        gemms = (_Gemm * len(self.gemms))()
        offsets = [0] * len(self.gemms)
        entries = []
        for thread, i, col, count in plan.backward if backward else plan.forward:
            if wanted[i]:
                g = self.gemms[i]
                k = run.size(g.out) if backward else run.size(g.src)
                entries.append(_Range(thread, i, col, count, offsets[i]))
                offsets[i] += -(-count // panel) * panel * k
        for i, g in enumerate(self.gemms):
            src, out = (g.out, g.src) if backward else (g.src, g.out)
            a_delay, c_delay = (0, g.delay) if backward else (g.delay, 0)
            packed = (run.backend.empty(("packed", g.out, backward), (max(offsets[i], 1),),
                                        run.dtype) if self.packs else None)
            a = self._base(table[src], src, a_delay) if wanted[i] else None
            c = self._base(table[out], out, c_delay) if wanted[i] else None
            gemms[i] = _Gemm(a, c, self.row_tables[i].ctypes.data,
                             None if packed is None else packed.ctypes.data,
                             run.batch * run.size(src), run.batch * run.size(out),
                             run.size(src), run.size(out), int(not backward), int(backward))
            self._keep.append(packed)
        chains = (_Chain * len(self.chains))()
        for c, (kernel, bounds) in enumerate(zip(self.chains, plan.bounds, strict=True)):
            fn, args = ((kernel.bwd, kernel.backward_args()) if backward
                        else (kernel.fwd, kernel.fwd_args))
            bounds = (ctypes.c_int * len(bounds))(*bounds)
            address = ctypes.cast(fn, ctypes.c_void_p) if fn is not None else None
            chains[c] = _Chain(address, args[1], bounds)
            self._keep.append(bounds)
        ranges = (_Range * max(len(entries), 1))(*entries)
        ops = (_Op * len(plan.ops))(*(_Op(int(kind), i) for kind, i in plan.ops))
        pads = self._pads(backward)
        self._keep += [gemms, chains, ranges, ops, pads]
        return _Loop(gemms, chains, ranges, ops, len(ops), len(entries), plan.threads,
                     run.batch, int(backward), int(plan.reverse), None, pads, len(pads))

    def refresh(self) -> None:
        """The parameters' values may have changed in place: the kernels' copies follow (the
        row tables point into the same memory)."""
        for k in self.kernels:
            k.refresh()

    def forward(self, lo: int, hi: int) -> None:
        rows = self._rows()
        self.forward_loop.rows = None if rows is None else rows.ctypes.data
        in_c = self.loop_run(ctypes.byref(self.forward_loop), lo, hi - lo) == 0
        if not in_c:
            self._steps(lo, hi, backward=False)
        if rows is not None:  # the rows past each end were left alone: zeros there
            self._zero(lo, hi, False, in_c)

    def backward(self, lo: int, hi: int) -> None:
        if self._grads is not self.run.grads:  # zero_grads made fresh gradient arrays
            self._grads = self.run.grads
            self.backward_loop = self._loop(True)
        rows = self._rows()
        self.backward_loop.rows = None if rows is None else rows.ctypes.data
        in_c = self.loop_run(ctypes.byref(self.backward_loop), lo, hi - lo) == 0
        if not in_c:
            self._steps(lo, hi, backward=True)
        if rows is not None:
            self._zero(lo, hi, True, in_c)

    def _steps(self, lo: int, hi: int, backward: bool) -> None:
        """The loop step by step in Python (where the system would not start threads)."""
        config.debug(1, "[graphrnn] no threads for a compiled loop: running it step by step")
        kernels = self.kernels[::-1] if backward else self.kernels
        rows = self._rows()
        if rows is not None and backward:  # a GEMM sends every row: the padding's must be 0
            self._zero(lo, hi, True, in_c=False)
        for t in (range(hi - 1, lo - 1, -1) if backward != self.plan.reverse else range(lo, hi)):
            for k in kernels:
                if rows is None or isinstance(k.op, MatMul):  # a GEMM's extra rows: unread
                    (k.backward if backward else k.forward)(t, t + 1)
                    continue
                fn, args = (k.bwd, k.backward_args()) if backward else (k.fwd, k.fwd_args)
                if fn is not None:
                    fn(t, 1, *args[:-1], int(rows[t]))

    @property
    def windowed_grads(self) -> bool:
        """Whether :meth:`param_grads` takes a window of steps."""
        return all(getattr(k, "windowed_grads", False) for k in self.kernels)

    def param_grads(self, lo: int = 0, hi: int | None = None) -> None:
        for k in self.kernels:
            k.param_grads() if hi is None else k.param_grads(lo, hi)
