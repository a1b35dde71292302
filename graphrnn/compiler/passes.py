"""Optimisation passes, each a pure function ``Program -> Program``, and the pipeline."""

from __future__ import annotations

from dataclasses import replace
from itertools import count

from graphrnn import config
from graphrnn.compiler.checker import check_program
from graphrnn.compiler.fusion import fuse_elementwise
from graphrnn.compiler.ir import (
    Buffer,
    BufferRole,
    Combine,
    Fused,
    MatMul,
    NodeUpdate,
    Program,
    Stage,
    StageKind,
    Term,
    TermKind,
    format_program,
    next_uid,
)
from graphrnn.compiler.lower import lower
from graphrnn.frontend.network import Network


def hoist_input_projections(prog: Program) -> Program:
    """Move each MatMul in a loop whose source the loop does not write out, before the loop.

    Such a product (the input projection ``U·x`` of an Elman net) does not depend on the
    loop's past, so it becomes one large GEMM over all T steps in a batched stage. The moved
    ops keep their uids.
    """
    stages = []
    for stage in prog.stages:
        if stage.kind != StageKind.LOOP:
            stages.append(stage)
            continue
        written = {w for op in stage.ops for w in op.writes}
        hoisted = tuple(op for op in stage.ops if isinstance(op, MatMul) and op.src not in written)
        if hoisted:
            stages.append(Stage(StageKind.BATCHED, hoisted))
        stages.append(stage.with_ops(op for op in stage.ops if op not in hoisted))
    return prog.replace(stages=tuple(stages))


def merge_shared_input_gemms(prog: Program) -> Program:
    """Merge the MatMuls of a stage that read the same source at the same delay into one.

    The merged GEMM multiplies by the row-concatenation of the weights (the four LSTM gates
    reading ``x``, or ``h[t-1]``, become one product) and writes one wide buffer; the terms
    that read the old buffers read column ranges of the new one. A merged GEMM gets a fresh
    uid; the NodeUpdates keep theirs.
    """
    buffers, renamed, stages, uids = dict(prog.buffers), {}, [], count(next_uid(prog))
    for stage in prog.stages:
        groups: dict[tuple[str, int], list[MatMul]] = {}
        for op in stage.ops:
            if isinstance(op, MatMul):
                groups.setdefault((op.src, op.delay), []).append(op)
        ops = []
        for op in stage.ops:
            if not isinstance(op, MatMul):
                ops.append(op)
                continue
            group = groups[(op.src, op.delay)]
            if len(group) == 1:
                ops.append(op)
            elif op is group[0]:
                ops.append(_merge(group, buffers, renamed, next(uids)))
        stages.append(stage.with_ops(ops))
    for old in renamed:
        del buffers[old]
    stages = [s.with_ops(_rename_terms(op, renamed) for op in s.ops) for s in stages]
    return prog.replace(buffers=buffers, stages=tuple(stages))


def _merge(group: list[MatMul], buffers: dict, renamed: dict, uid: int) -> MatMul:
    blocks, offset = [], 0
    name = f"{group[0].src}@{group[0].delay}->" + "+".join(
        op.out.split("->", 1)[1] for op in group)
    for op in group:
        width = buffers[op.out].size
        for b in op.blocks:
            blocks.append(replace(b, cols=(offset + b.cols[0], offset + b.cols[1])))
        renamed[op.out] = (name, offset)
        offset += width
    buffers[name] = Buffer(name, offset, 0, BufferRole.GEMM)
    return MatMul(group[0].src, group[0].delay, tuple(blocks), name, uid)


def _rename_terms(op, renamed: dict):
    if isinstance(op, Fused):
        return replace(op, ops=tuple(_rename_terms(o, renamed) for o in op.ops))
    if not isinstance(op, NodeUpdate):
        return op
    terms = []
    for t in op.terms:
        if t.kind == TermKind.FULL and t.src in renamed:
            name, offset = renamed[t.src]
            t = Term(TermKind.FULL, name, 0, cols=(offset + t.cols[0], offset + t.cols[1]))
        terms.append(t)
    return replace(op, terms=tuple(terms))


def fold_biases_into_projections(prog: Program) -> Program:
    """Add a summing node's bias in a MatMul of a batched stage that feeds it, not per step.

    The hoisted input projection of a loop node then carries the bias (``U·x + b``, as a
    ``Linear`` layer does), saving one pass over the node's values at every step. Changed ops
    keep their uids.
    """
    batched = {op.out: op for s in prog.stages if s.kind == StageKind.BATCHED for op in s.ops
               if isinstance(op, MatMul)}
    folded: dict[str, dict[tuple[int, int], str]] = {}

    def fold(op: NodeUpdate) -> NodeUpdate:
        if op.bias is None or op.combine != Combine.SUM or op.norm:  # added after the norm
            return op
        for t in op.terms:
            if t.kind == TermKind.FULL and t.src in batched:
                folded.setdefault(t.src, {})[t.cols] = op.bias
                return replace(op, bias=None)
        return op

    stages = [s.with_ops(_map_updates(op, fold) for op in s.ops) for s in prog.stages]

    def with_bias(op):
        if not isinstance(op, MatMul) or op.out not in folded:
            return op
        return replace(op, blocks=tuple(replace(b, bias=folded[op.out].get(b.cols))
                                        for b in op.blocks))

    return prog.replace(stages=tuple(s.with_ops(with_bias(op) for op in s.ops)
                                     for s in stages))


def _map_updates(op, fn):
    """Apply ``fn`` to a NodeUpdate, or to each member of a Fused op."""
    if isinstance(op, Fused):
        return replace(op, ops=tuple(fn(o) for o in op.ops))
    return fn(op) if isinstance(op, NodeUpdate) else op


def merge_batched_stages(prog: Program) -> Program:
    """Join neighbouring batched stages (the initial states and the hoisted projections, say):
    they run back to back anyway. Empty stages go."""
    stages: list[Stage] = []
    for stage in prog.stages:
        if stage.ops and stages and stage.kind == stages[-1].kind == StageKind.BATCHED:
            stages[-1] = Stage(StageKind.BATCHED, stages[-1].ops + stage.ops)
        elif stage.ops:
            stages.append(stage)
    return prog.replace(stages=tuple(stages))


PASSES = [hoist_input_projections, merge_batched_stages, merge_shared_input_gemms,
          fold_biases_into_projections, fuse_elementwise]


def schedule(net: Network, passes=None) -> Program:
    """Lower ``net`` and run the passes, checking the IR after each when asked to."""
    with config.timed(1, "lower"):
        prog = lower(net)
    check = config.CHECK_IR or config.DEBUG >= 3
    if check:
        check_program(prog)
    for p in PASSES if passes is None else passes:
        with config.timed(1, p.__name__):
            prog = p(prog)
        if check:
            check_program(prog)
        config.debug(3, f"--- after {p.__name__}\n{format_program(prog)}")
    config.debug(2, format_program(prog))
    return prog
