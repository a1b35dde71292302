"""Gradient checkpointing (``remat``): loops run in windows, recomputed in BPTT, rows released."""

from __future__ import annotations

import ctypes
import mmap
import sys

import numpy as np

from graphrnn.compiler.ir import MatMul, NodeUpdate, Program, StageKind, TermKind
from graphrnn.ops.matmul import MatMulKernel


def run_steps(stage, kernels, lo: int, hi: int, backward: bool) -> None:
    """Steps ``[lo, hi)`` of a loop stage, forward in its direction, backward against it."""
    if whole(stage, kernels):
        for k in (reversed(kernels) if backward else kernels):
            (k.backward if backward else k.forward)(lo, hi)
        return
    down = backward != stage.reverse
    for t in (range(hi - 1, lo - 1, -1) if down else range(lo, hi)):
        for k in (reversed(kernels) if backward else kernels):
            (k.backward if backward else k.forward)(t, t + 1)


def whole(stage, kernels) -> bool:
    """Whether the stage's kernels each take all steps in one call (batched, or a compiled
    loop), rather than one step at a time."""
    return stage.kind == StageKind.BATCHED or all(getattr(k, "whole_loop", False) for k in kernels)


class Recompute:
    """How one Run recomputes: its loops in windows of ``k`` steps, each loop's feeder (the
    batched MatMul stage before it whose products only the loop reads, e.g. the hoisted input
    projection) run, differentiated and its weight gradients summed per window alongside it,
    and the rows nothing needs any more given back after each window (:func:`release_rows`)."""

    def __init__(self, run, k: int):
        self.run, self.k = run, max(1, int(k))
        prog = run.prog
        self.own = stage_own_buffers(prog)
        stages = [s for s, _ in run.kernels]
        #: loop stage id -> (feeder stage, its kernels); feeders' ids: skipped where they stand
        self.feeder: dict = {}
        for i, (stage, _) in enumerate(run.kernels[1:], start=1):
            prev, prev_kernels = run.kernels[i - 1]
            if stage.kind == StageKind.LOOP and _feeds_only(prog, stages, prev, stage) and all(
                    isinstance(k, MatMulKernel) for k in prev_kernels):
                self.feeder[id(stage)] = (prev, prev_kernels)
        self.fed = {id(s) for s, _ in self.feeder.values()}
        #: loop stage ids whose kernels (and feeder's) all sum weight gradients per window:
        #: their gradients are given back window by window too
        self.windowed = {id(stage) for stage, kernels in run.kernels
                         if stage.kind == StageKind.LOOP and _windowed(kernels)
                         and _windowed(self.feeder.get(id(stage), (None, []))[1])}
        #: gradients that are final once a window's backward is done and that nothing reads
        #: after it: the loop's node values', its feeder's and its windowed MatMuls' products'
        self.done_grads = {}
        for stage in stages:
            if stage.kind != StageKind.LOOP:
                continue
            names = {w for op in stage.ops for m in (*getattr(op, "ops", ()), op)
                     for w in m.writes if w in prog.buffers and prog.buffers[w].role == "node"}
            names.update(op.out for op in stage.ops if isinstance(op, MatMul))
            if id(stage) in self.feeder:
                names.update(_writes(self.feeder[id(stage)][0]))
            self.done_grads[id(stage)] = tuple(sorted(names - set(prog.outputs)))

    def segments(self, reverse: bool) -> list[tuple[int, int]]:
        """The loop's windows of ``k`` steps in the order the forward pass runs them."""
        steps = self.run.steps
        spans = [(lo, min(lo + self.k, steps)) for lo in range(0, steps, self.k)]
        return spans[::-1] if reverse else spans

    def forward(self, stage, kernels) -> None:
        """A loop's forward pass, window by window (its feeder's window first)."""
        fed = self.feeder.get(id(stage))
        for lo, hi in self.segments(stage.reverse):
            if fed is not None:
                for k in fed[1]:
                    k.forward(lo, hi)
            run_steps(stage, kernels, lo, hi, backward=False)
            self._release(stage, lo, hi)

    def backward(self, stage, kernels) -> None:
        """A loop's BPTT, window by window against its direction: the window recomputed from
        its checkpoint rows, then differentiated (and its feeder's window, whose weight
        gradients are summed per window); the loop's weight gradients too where its kernels take
        windows (then the gradients done with are given back), else after the last window."""
        fed = self.feeder.get(id(stage))
        for lo, hi in reversed(self.segments(stage.reverse)):
            if fed is not None:
                for k in fed[1]:
                    k.forward(lo, hi)
            run_steps(stage, kernels, lo, hi, backward=False)
            run_steps(stage, kernels, lo, hi, backward=True)
            if fed is not None:
                for k in reversed(fed[1]):
                    k.backward(lo, hi)
                for k in fed[1]:
                    k.param_grads(lo, hi)
            self._release(stage, lo, hi)
            if id(stage) in self.windowed:
                for k in kernels:
                    k.param_grads(lo, hi)
                for name in self._releasable_grads(stage):
                    release_rows(self.run.rows(name, lo, hi, grad=True))
        if id(stage) not in self.windowed:
            for k in kernels:
                k.param_grads()

    def _releasable_grads(self, stage) -> list[str]:
        """The stage's :attr:`done_grads` that exist and share no memory with a gradient the
        weight gradients after the loop read (a node's ``d net``, maybe a view of a product's
        gradient or the same array)."""
        run = self.run
        grads, aliases = run.grads, run.grad_aliases
        done = self.done_grads[id(stage)]
        # another gradient's memory, one maybe read after the window: kept
        shared = {n for pair in aliases.items() if not set(pair) <= set(done) for n in pair}
        kept = [grads[op.net] for op in _node_updates(stage) if op.net in grads]
        return [n for n in done if n in grads and n not in shared
                and not any(np.may_share_memory(grads[n], a) for a in kept)]

    def _release(self, stage, lo: int, hi: int) -> None:
        """Give the memory of steps ``[lo, hi)`` of the stage's own buffers (written by it,
        read by no other stage, not outputs) and of its feeder's products back to the system,
        but for the rows the next window reads (its history: the last ``pad`` rows, the first
        ``tail`` ones) and, with ``lengths``, the rows of each sequence's final state: the
        backward pass recomputes the rest. NumPy on Linux only."""
        run = self.run
        names = list(self.own.get(id(stage), ()))
        if id(stage) in self.feeder:
            names += sorted(_writes(self.feeder[id(stage)][0]))
        plan = run.lengths_plan  # sequences of different lengths: their final rows stay
        ends = () if plan is None else sorted(int(n) for n in plan.groups)
        for name in names:
            b = run.prog.buffers[name]
            a, z = lo + b.tail, hi - b.pad
            kept = sorted({n - k for n in ends for k in range(1, b.pad + 1)} & set(range(a, z)))
            for x, y in zip([a, *(r + 1 for r in kept)], [*kept, z], strict=True):
                if y > x:
                    release_rows(run.rows(name, x, y))


def _windowed(kernels) -> bool:
    return all(getattr(k, "windowed_grads", False) for k in kernels)


def _node_updates(stage) -> list:
    return [m for op in stage.ops for m in (*getattr(op, "ops", ()), op)
            if isinstance(m, NodeUpdate)]


def _writes(stage) -> set[str]:
    return {o.out for op in stage.ops for o in (*getattr(op, "ops", ()), op)
            if getattr(o, "out", None) is not None}


def _feeds_only(prog: Program, stages: list, batched, loop) -> bool:
    """Whether a batched stage is plain MatMuls whose products (no history rows, not outputs)
    only ``loop`` reads, at no delay, and reading nothing the loop writes."""
    if batched.kind != StageKind.BATCHED or not all(isinstance(op, MatMul) for op in batched.ops):
        return False
    outs = {op.out for op in batched.ops}
    loop_writes = {w for op in loop.ops for m in (*getattr(op, "ops", ()), op) for w in m.writes}
    if any(op.src in loop_writes or op.src in outs for op in batched.ops):
        return False
    for name in outs:
        b = prog.buffers[name]
        if b.pad or b.tail or name in prog.outputs:
            return False
    for stage in stages:
        for op in stage.ops:
            for m in (*getattr(op, "ops", ()), op):
                for name, delay in m.reads:
                    if name in outs and (stage is not loop or delay):
                        return False
    return True


def stage_own_buffers(prog: Program) -> dict:
    """Per loop stage (by ``id``), the buffers it writes that no other stage reads and that are
    not outputs: the rows recomputation may drop."""
    read_by: dict[str, set] = {}
    for stage in prog.stages:
        for op in stage.ops:
            for name, _ in op.reads:
                read_by.setdefault(name, set()).add(id(stage))
    own = {}
    for stage in prog.stages:
        if stage.kind == StageKind.LOOP:
            written = {w for op in stage.ops for m in (*getattr(op, "ops", ()), op)
                       for w in m.writes}
            # what the weight gradients after the loop read stays: MatMul sources, the terms
            # of nodes with diagonal weights, a normalised node's net (it holds x̂: the gain's)
            after = {op.src for op in stage.ops if isinstance(op, MatMul)}
            after.update(m.net for m in _node_updates(stage) if getattr(m, "norm", None))
            after.update(t.src for op in stage.ops for m in (*getattr(op, "ops", ()), op)
                         if isinstance(m, NodeUpdate)
                         and any(t.kind == TermKind.DIAGONAL for t in m.terms) for t in m.terms)
            own[id(stage)] = tuple(sorted(
                n for n in written if n in prog.buffers and n not in prog.outputs
                and n not in after and read_by.get(n, set()) <= {id(stage)}))
    return own


def release_rows(array) -> None:
    """Drop the pages wholly inside a NumPy array's memory (``madvise(MADV_DONTNEED)``): they
    read as zeros until written again. A no-op off Linux and for other array types."""
    if not isinstance(array, np.ndarray) or _MADVISE is None or not array.flags.c_contiguous:
        return
    page = mmap.PAGESIZE
    start = -(-array.ctypes.data // page) * page
    end = (array.ctypes.data + array.nbytes) // page * page
    if end > start:
        _MADVISE(ctypes.c_void_p(start), ctypes.c_size_t(end - start), 4)  # MADV_DONTNEED


def _madvise():
    if not sys.platform.startswith("linux"):
        return None
    try:
        fn = ctypes.CDLL(None, use_errno=True).madvise
    except (OSError, AttributeError):  # pragma: no cover - every Linux libc has it
        return None
    fn.argtypes, fn.restype = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int], ctypes.c_int
    return fn


_MADVISE = _madvise()
