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
    def members(op):
        return (op,) if isinstance(op, NodeUpdate) and elementwise(op, prog.buffers) else None

    return _merge_runs(prog, members, lambda run: len(run) >= 2)


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
    def row_members(op):
        members = op.ops if isinstance(op, Fused) else (op,)
        return members if all(row_local(m, prog.buffers) for m in members) else None

    return _merge_runs(prog, row_members,
                       lambda members: len(members) >= 2 and any(m.norm for m in members))


def _merge_runs(prog: Program, members_of, wanted) -> Program:
    """Each maximal run of consecutive ops of a loop stage whose members (``members_of(op)``:
    its NodeUpdates, a Fused chain's members; None: not to merge) are of one size and clash in
    no GEMM columns, as one Fused op of those members where ``wanted(members)``, else as it
    was (a clash: two GPU threads of a row would add to one gradient element). Members keep
    their order; each new Fused op gets a fresh uid."""
    stages, uids = [], count(next_uid(prog))
    for stage in prog.stages:
        if stage.kind != StageKind.LOOP:
            stages.append(stage)
            continue
        ops: list = []
        run: list = []  # the ops of the current run
        taken: list[NodeUpdate] = []  # their members

        def flush(ops=ops, run=run, taken=taken) -> None:
            if wanted(taken):
                ops.append(Fused(tuple(taken), next(uids)))
            else:
                ops.extend(run)
            run.clear()
            taken.clear()

        for op in stage.ops:
            members = members_of(op)
            if members is None:
                flush()
                ops.append(op)
                continue
            if taken and (prog.buffers[taken[0].out].size != prog.buffers[members[0].out].size
                          or any(_column_clash(taken, m) for m in members)):
                flush()
            run.append(op)
            taken.extend(members)
        flush()
        stages.append(stage.with_ops(tuple(ops)))  # keeps the loop's direction
    return prog.replace(stages=tuple(stages))
