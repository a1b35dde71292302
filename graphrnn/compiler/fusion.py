"""The element-wise fusion pass: runs of element-wise NodeUpdates in a loop become one Fused op."""

from __future__ import annotations

from dataclasses import replace
from itertools import count

from graphrnn.compiler.ir import (
    Buffer,
    BufferRole,
    Fused,
    NodeUpdate,
    Program,
    StageKind,
    TermKind,
    next_uid,
)


def elementwise(op: NodeUpdate, buffers: dict[str, Buffer]) -> bool:
    """Whether ``op`` computes each output element from the same element of its inputs.

    True when the activation is not ``softmax`` and the node is not normalised (both mix a
    row), the update is synchronous
    (no ``own`` terms), every ``full`` term reads a column range of a GEMM buffer that is as wide
    as the node, and every ``diagonal``/``identity`` term reads a buffer of the node's size (at
    any delay). Such a node is one thread per ``(b, j)`` element in a generated CUDA kernel.
    """
    size = buffers[op.out].size
    if op.activation == "softmax" or op.norm or op.own or buffers[op.net].size != size:
        return False
    for t in op.terms:
        if t.kind == TermKind.FULL:
            if (t.cols is None or buffers[t.src].role != BufferRole.GEMM
                    or t.cols[1] - t.cols[0] != size):
                return False
        elif buffers[t.src].size != size:
            return False
    return True


def _column_clash(members: list[NodeUpdate], op: NodeUpdate) -> bool:
    """Whether ``op`` reads a GEMM buffer at columns that overlap another member's without
    being the same: the fused backward kernel would then add to one gradient element from two
    threads."""
    taken = {}
    for m in members:
        for t in m.terms:
            if t.kind == TermKind.FULL:
                taken.setdefault(t.src, set()).add(t.cols)
    for t in op.terms:
        if t.kind != TermKind.FULL:
            continue
        for cols in taken.get(t.src, ()):
            if cols != t.cols and cols[0] < t.cols[1] and t.cols[0] < cols[1]:
                return True
    return False


def fuse_elementwise(prog: Program) -> Program:
    """Merge each maximal run of consecutive element-wise NodeUpdates of one size in a loop
    stage into one :class:`~graphrnn.compiler.ir.Fused` op (runs of two or more).

    The members keep their order, so the Fused op means exactly what the run meant (the NumPy
    backend runs them in turn). On the GPU the run is one generated kernel per step forward and
    one backward (:mod:`graphrnn.backends.codegen`): the LSTM's nine pointwise nodes after its
    merged gate GEMM become one kernel. Each Fused op gets a fresh uid; its members keep theirs.
    """
    stages, uids = [], count(next_uid(prog))
    for stage in prog.stages:
        if stage.kind != StageKind.LOOP:
            stages.append(stage)
            continue
        ops: list = []
        run: list[NodeUpdate] = []

        def flush(ops=ops, run=run) -> None:
            if len(run) >= 2:
                ops.append(Fused(tuple(run), next(uids)))
            else:
                ops.extend(run)
            run.clear()

        for op in stage.ops:
            if not (isinstance(op, NodeUpdate) and elementwise(op, prog.buffers)):
                flush()
                ops.append(op)
                continue
            if run and (prog.buffers[op.out].size != prog.buffers[run[0].out].size
                        or _column_clash(run, op)):
                flush()
            run.append(op)
        flush()
        stages.append(stage.with_ops(ops))
    return prog.replace(stages=tuple(stages))


def row_local(op, buffers: dict[str, Buffer]) -> bool:
    """Whether ``op`` (a NodeUpdate) is element-wise, or would be but for its layer norm: a
    member of a CPU row kernel (:mod:`graphrnn.backends.codegen_norm`)."""
    return (isinstance(op, NodeUpdate) and not op.own
            and elementwise(replace(op, norm=None, gain=None) if op.norm else op, buffers))


def group_normalised(prog: Program) -> Program:
    """Merge each run of consecutive row-local NodeUpdates (:func:`row_local`; a Fused chain
    counts as its members) of one size in a loop stage that holds a layer-normalised node and
    two or more members into one Fused op: for the CPU's compiled kernels only, which run it
    as one row kernel of a few passes (a LayerNorm LSTM's whole cell step: one kernel and one
    meeting of the threads a step instead of four; on the GPU one launch a step). Members
    keep their order. Not in the standard pipeline: the NumPy backend with compiled kernels
    and the CuPy backend add it."""
    stages, uids = [], count(next_uid(prog))
    for stage in prog.stages:
        if stage.kind != StageKind.LOOP:
            stages.append(stage)
            continue
        ops: list = []
        run: list = []  # the ops of the current run

        def flush(ops=ops, run=run) -> None:
            members = [m for op in run for m in (op.ops if isinstance(op, Fused) else (op,))]
            if len(members) >= 2 and any(m.norm for m in members):
                ops.append(Fused(tuple(members), next(uids)))
            else:
                ops.extend(run)
            run.clear()

        for op in stage.ops:
            members = op.ops if isinstance(op, Fused) else (op,)
            if not all(row_local(m, prog.buffers) for m in members):
                flush()
                ops.append(op)
                continue
            first = run[0].ops[0] if run and isinstance(run[0], Fused) else run[0] if run else None
            taken = [m for r in run for m in (r.ops if isinstance(r, Fused) else (r,))]
            if first is not None and (prog.buffers[first.out].size
                                      != prog.buffers[members[0].out].size
                                      or any(_column_clash(taken, m) for m in members)):
                flush()  # (a clash: two GPU threads of a row would add to one element)
            run.append(op)
        flush()
        stages.append(stage.with_ops(tuple(ops)))  # keeps the loop's direction
    return prog.replace(stages=tuple(stages))
