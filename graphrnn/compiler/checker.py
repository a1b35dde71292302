"""The IR checker: verify a Program's invariants, or raise IRError naming the broken one."""

from __future__ import annotations

from graphrnn.compiler.ir import (
    BufferRole,
    Fused,
    Gather,
    InitState,
    MatMul,
    NodeUpdate,
    Op,
    Program,
    Stage,
    StageKind,
    TermKind,
    all_ops,
    op_label,
)


class IRError(AssertionError):
    """A Program that breaks an IR invariant (a compiler bug, never a user error)."""


def check_program(prog: Program) -> Program:
    """Verify a Program's invariants; return it unchanged or raise :class:`IRError`.

    Each buffer is filed under its name and has a known role; every op has a uid no other op
    has; stage and term kinds are known; Fused ops hold NodeUpdates only. Each buffer is
    written by exactly one op (inputs by none); every read names a known buffer; a same-step
    read (delay 0) comes after the write, in the same stage or an earlier one; a delayed read
    stays within the buffer's history (``delay <= pad``, ``-delay <= tail``) and, inside the
    loop that writes it, in the loop's direction (past reads forward, future reads reverse).
    An initial state sits in a batched stage, fills at most its buffer's history, once,
    before any op reads that history. MatMul blocks tile ``out`` exactly; a Gather reads a
    token input and writes a gemm buffer; term columns stay in their buffer. Every output is
    written.
    """
    _check_buffers_and_uids(prog)
    written: dict[str, int] = {name: -1 for name in prog.inputs}
    history_read: set[str] = set()
    initialised: set[str] = set()
    for i, (stage, op) in enumerate(prog.ops()):
        if stage.kind not in _STAGE_KINDS:
            raise IRError(f"unknown stage kind {stage.kind!r}")
        for name in op.history:
            _check_init(prog, stage, op, name, history_read, initialised)
        stage_writes = {w for o in stage.ops for w in o.writes}
        for name, delay in op.reads:
            if name not in prog.buffers:
                raise IRError(f"{op_label(op)} reads unknown buffer {name!r}")
            if delay > prog.buffers[name].pad:
                raise IRError(f"{op_label(op)} reads {name}@-{delay} beyond its history")
            if -delay > prog.buffers[name].tail:
                raise IRError(f"{op_label(op)} reads {name}@+{-delay} beyond its boundary")
            if delay == 0 and name not in written:
                raise IRError(f"{op_label(op)} reads {name} before it is written")
            if delay != 0 and name not in written and stage.kind != StageKind.LOOP:
                raise IRError(f"{op_label(op)} reads {name}@{-delay:+d} before it is written")
            if (delay != 0 and name not in written and name in stage_writes
                    and (delay < 0) != stage.reverse):
                raise IRError(f"{op_label(op)} reads {name}@{-delay:+d} against its loop's "
                              f"direction ({stage.direction})")
            if delay > 0:
                history_read.add(name)
        for name in op.writes:
            if name not in prog.buffers:
                raise IRError(f"{op_label(op)} writes unknown buffer {name!r}")
            if name in prog.inputs:
                raise IRError(f"{op_label(op)} writes the input {name!r}")
            if name in written:
                raise IRError(f"buffer {name!r} is written twice")
            written[name] = i
        for inner in (op.ops if isinstance(op, Fused) else (op,)):
            _check_columns(prog, inner)
    missing = [o for o in prog.outputs if o not in written]
    if missing:
        raise IRError(f"outputs never written: {missing}")
    return prog


_STAGE_KINDS = frozenset(StageKind)
_TERM_KINDS = frozenset(TermKind)
_ROLES = frozenset(BufferRole)


def _check_buffers_and_uids(prog: Program) -> None:
    for key, buf in prog.buffers.items():
        if key != buf.name:
            raise IRError(f"buffer {buf.name!r} is filed as {key!r}")
        if buf.role not in _ROLES:
            raise IRError(f"buffer {key!r} has unknown role {buf.role!r}")
    owners: dict[int, Op] = {}
    for _, op in prog.ops():
        if isinstance(op, Fused) and not all(isinstance(m, NodeUpdate) for m in op.ops):
            raise IRError(f"a fused op holds a {type(_first_other(op)).__name__}, "
                          "not only NodeUpdates")
    for op in all_ops(prog):
        if op.uid in owners:
            raise IRError(f"uid {op.uid} belongs to two ops: {op_label(owners[op.uid])} "
                          f"and {op_label(op)}")
        owners[op.uid] = op
        for term in getattr(op, "terms", ()) + getattr(op, "own", ()):
            if term.kind not in _TERM_KINDS:
                raise IRError(f"{op_label(op)} has a term of unknown kind {term.kind!r}")


def _first_other(op: Fused):
    return next(m for m in op.ops if not isinstance(m, NodeUpdate))


def _check_init(prog: Program, stage: Stage, op: InitState, name: str, history_read: set,
                initialised: set) -> None:
    if name not in prog.buffers:
        raise IRError(f"{op_label(op)} writes unknown buffer {name!r}")
    if stage.kind != StageKind.BATCHED:
        raise IRError(f"{op_label(op)} is in a {stage.kind} stage, not a batched one")
    if not 1 <= op.rows <= prog.buffers[name].pad:
        raise IRError(f"{op_label(op)} writes {op.rows} rows of {name}'s history of "
                      f"{prog.buffers[name].pad}")
    if name in initialised:
        raise IRError(f"the initial state of {name!r} is written twice")
    if name in history_read:
        raise IRError(f"{op_label(op)} comes after an op that reads {name}'s history")
    initialised.add(name)


def _check_columns(prog: Program, op) -> None:
    if isinstance(op, Gather):
        if op.src not in prog.inputs or prog.buffers[op.src].size != 1:
            raise IRError(f"{op_label(op)} reads {op.src!r}, not a token input of width 1")
        if prog.buffers[op.out].role != BufferRole.GEMM:
            raise IRError(f"{op_label(op)} writes {op.out!r}, not a gemm buffer")
        return
    if isinstance(op, MatMul):
        edges = [b.cols for b in op.blocks]
        if not edges or edges[0][0] != 0 or edges[-1][1] != prog.buffers[op.out].size or any(
                a[1] != b[0] for a, b in zip(edges, edges[1:], strict=False)):
            raise IRError(f"{op_label(op)} blocks {edges} do not tile {op.out}")
        return
    for term in getattr(op, "terms", ()) + getattr(op, "own", ()):
        if term.cols and term.cols[1] > prog.buffers[term.src].size:
            raise IRError(f"{op_label(op)} reads columns {term.cols} outside {term.src}")
