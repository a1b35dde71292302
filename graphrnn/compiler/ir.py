"""The IR: buffers, five primitive ops, stages and the Program, with a printer.

Every buffer is a time-major array ``(pad + T + tail, B, size)`` whose first ``pad`` rows hold
the initial state and last ``tail`` rows the boundary after the last step (read through
negative delays); row ``pad + t`` holds step ``t``. An op runs over a *window* of steps
``[lo, hi)``: a ``batched`` stage runs each op once over ``[0, T)``, a ``loop`` stage runs its
ops in order for every ``t`` over ``[t, t + 1)``, from the first step up (``forward``) or the
last down (``reverse``: an anti-causal loop). An op reading ``src`` at ``delay`` d reads rows
``[lo - d, hi - d)``. So the same op means the same thing in either stage, and nothing in a
Program depends on T. Ops declare what they read and write; the checker
(``compiler/checker.py``) verifies the order.
Every op carries a ``uid``, unique in its Program, that backends key their caches on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class StageKind(StrEnum):
    """How a stage runs its ops: ``batched`` each once over all steps, ``loop`` step by step."""

    BATCHED = "batched"
    LOOP = "loop"


class Direction(StrEnum):
    """Which way a loop stage walks time: ``forward`` from step 0 (it reads the past), or
    ``reverse`` from the last step (it reads the future). Its BPTT runs the other way."""

    FORWARD = "forward"
    REVERSE = "reverse"


class TermKind(StrEnum):
    """What an in-term applies: a GEMM's columns (``full``), ``diagonal`` weights, or none."""

    FULL = "full"
    DIAGONAL = "diagonal"
    IDENTITY = "identity"


class BufferRole(StrEnum):
    """What a buffer holds: an ``input``, a ``node``'s values, its pre-activation (``net``),
    or a MatMul's product (``gemm``)."""

    INPUT = "input"
    NODE = "node"
    NET = "net"
    GEMM = "gemm"


class Combine(StrEnum):
    """How a node combines its terms."""

    SUM = "sum"
    PRODUCT = "product"


@dataclass(frozen=True)
class Buffer:
    """A named time-major array. ``role``: a :class:`BufferRole`; ``pad``/``tail``: the
    boundary rows before step 0 and after the last step."""

    name: str
    size: int
    pad: int = 0
    role: BufferRole = BufferRole.NODE
    tail: int = 0


@dataclass(frozen=True)
class Block:
    """One parameter's share of a MatMul: ``scale * (P.T if transpose else P)``, rows ``cols``,
    plus the vector ``bias`` on those columns when one was folded in."""

    param: str
    scale: float
    transpose: bool
    cols: tuple[int, int]
    bias: str | None = None


@dataclass(frozen=True)
class MatMul:
    """``out[t] = src[t - delay] @ concat(blocks).T (+ biases)``: one GEMM into all blocks'
    columns."""

    src: str
    delay: int
    blocks: tuple[Block, ...]
    out: str
    uid: int = 0

    @property
    def reads(self) -> tuple[tuple[str, int], ...]:
        return ((self.src, self.delay),)

    @property
    def writes(self) -> tuple[str, ...]:
        return (self.out,)

    history = ()


@dataclass(frozen=True)
class Term:
    """One in-term of a node. ``kind`` full: columns ``cols`` of a MatMul's ``src`` buffer read
    at the same step (or, in ``NodeUpdate.own``, ``scale * P`` applied to the node itself);
    diagonal: ``scale * P * src[t - delay]``; identity: ``scale * src[t - delay]``."""

    kind: TermKind
    src: str
    delay: int = 0
    param: str | None = None
    scale: float = 1.0
    cols: tuple[int, int] | None = None
    transpose: bool = False


@dataclass(frozen=True)
class NodeUpdate:
    """``out[t] = leak-mix(act(combine(terms) + bias))``; ``net`` holds the pre-activation
    where BPTT needs it (leaky, bernoulli and asynchronous nodes) and its gradient always.

    ``asynchronous`` nodes also apply ``own`` (their delay-1 self-edges) one neuron at a time
    in the run's seeded order, each neuron seeing the newest values.
    """

    node: str
    out: str
    net: str
    terms: tuple[Term, ...]
    combine: Combine = Combine.SUM
    bias: str | None = None
    activation: str = "identity"
    leak: float | None = None
    temperature: float = 1.0
    own: tuple[Term, ...] = ()
    #: the activation's ``alpha``/``beta`` node keys (``None``: its default)
    alpha: float | None = None
    beta: float | None = None
    uid: int = 0
    #: ``"layer"``: the combined terms are layer-normalised over the node's units and scaled
    #: by the gain parameter ``gain`` before the bias (``None``: no normalisation)
    norm: str | None = None
    gain: str | None = None

    @property
    def asynchronous(self) -> bool:
        return bool(self.own)

    @property
    def reads(self) -> tuple[tuple[str, int], ...]:
        past = ((self.out, 1),) if self.leak is not None or self.own else ()
        return tuple((t.src, t.delay) for t in self.terms) + past

    @property
    def writes(self) -> tuple[str, ...]:
        return (self.out, self.net)

    history = ()


@dataclass(frozen=True)
class Fused:
    """Element-wise NodeUpdates of one size run as one kernel (same meaning as in sequence)."""

    ops: tuple[NodeUpdate, ...]
    uid: int = 0

    @property
    def reads(self) -> tuple[tuple[str, int], ...]:
        inner = {w for op in self.ops for w in op.writes}
        return tuple(r for op in self.ops for r in op.reads if r[0] not in inner or r[1] > 0)

    @property
    def writes(self) -> tuple[str, ...]:
        return tuple(w for op in self.ops for w in op.writes)

    history = ()


@dataclass(frozen=True)
class InitState:
    """A learned initial state: ``out``'s history rows ``-rows .. -1`` (those the caller passes
    no state for) are the vector ``param`` for every batch row. It writes no step, so it runs
    once, in a batched stage before every reader of ``out``; BPTT sums those rows' gradient
    over the batch into ``param``'s."""

    out: str
    param: str
    rows: int
    uid: int = 0

    reads = ()
    writes = ()

    @property
    def history(self) -> tuple[str, ...]:
        """The buffers whose initial rows (not steps) this op writes."""
        return (self.out,)


@dataclass(frozen=True)
class Gather:
    """An embedding: ``out[t, b] = scale * param[src[t, b]]``, a row of the ``(V, size)`` table
    per token. ``src`` is a token input (a buffer of width 1 holding the token ids); ``out`` a
    ``gemm`` buffer that its node reads through a ``full`` term, as a MatMul's product. BPTT
    scatter-adds ``d out`` into ``param``'s rows (deterministically on the CPU)."""

    src: str
    param: str
    scale: float
    out: str
    uid: int = 0

    @property
    def reads(self) -> tuple[tuple[str, int], ...]:
        return ((self.src, 0),)

    @property
    def writes(self) -> tuple[str, ...]:
        return (self.out,)

    history = ()


Op = MatMul | NodeUpdate | Fused | InitState | Gather


@dataclass(frozen=True)
class Stage:
    """``batched``: each op once over all steps; ``loop``: the ops in order, step by step, in
    ``direction`` (a batched stage's is ``forward`` and means nothing)."""

    kind: StageKind
    ops: tuple[Op, ...]
    direction: Direction = Direction.FORWARD

    @property
    def reverse(self) -> bool:
        """Whether this is a loop from the last step down."""
        return self.kind == StageKind.LOOP and self.direction == Direction.REVERSE

    def with_ops(self, ops) -> Stage:
        """The same stage (kind, direction) with other ops."""
        return Stage(self.kind, tuple(ops), self.direction)


@dataclass(frozen=True)
class Program:
    """What a backend runs: buffers, stages in order, and the names the caller sees."""

    buffers: dict[str, Buffer]
    stages: tuple[Stage, ...]
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    meta: dict = field(default_factory=dict, compare=False)

    def ops(self):
        """Every op with its stage, in execution order."""
        return [(stage, op) for stage in self.stages for op in stage.ops]

    def replace(self, **changes) -> Program:
        """A copy with some fields replaced."""
        fields = dict(buffers=self.buffers, stages=self.stages, inputs=self.inputs,
                      outputs=self.outputs, meta=self.meta)
        return Program(**{**fields, **changes})


def all_ops(prog: Program) -> list[Op]:
    """Every op of ``prog`` and every member of its Fused ops, in execution order."""
    return [o for _, op in prog.ops() for o in (op, *(op.ops if isinstance(op, Fused) else ()))]


def next_uid(prog: Program) -> int:
    """A uid no op of ``prog`` has: for the ops a pass creates (count up from it)."""
    return max((op.uid for op in all_ops(prog)), default=-1) + 1


def op_label(op: Op) -> str:
    """A one-line description of an op."""
    if isinstance(op, MatMul):
        params = ", ".join(b.param + (".T" if b.transpose else "")
                           + (f" +{b.bias}" if b.bias else "") for b in op.blocks)
        return f"{op.out} = gemm({op.src}{_at(op.delay)}, [{params}])"
    if isinstance(op, Fused):
        return "fused{" + "; ".join(op_label(o) for o in op.ops) + "}"
    if isinstance(op, InitState):
        return f"{op.out}@-{op.rows}..-1 = init({op.param})"
    if isinstance(op, Gather):
        scale = f"{op.scale:g}*" if op.scale != 1 else ""
        return f"{op.out} = {scale}gather({op.param}[{op.src}])"
    terms = " ".join((f"{t.scale:g}*" if t.scale != 1 else "") + f"{t.kind}({t.src}"
                     + (_at(t.delay) if t.delay else "")
                     + (f"[{t.cols[0]}:{t.cols[1]}]" if t.cols else "") + ")" for t in op.terms)
    extra = "".join([f" layernorm*{op.gain}" if op.norm else "",
                     f" +{op.bias}" if op.bias else "", f" leak={op.leak}" if op.leak else "",
                     " async" if op.own else ""])
    return f"{op.out} = {op.activation}({op.combine}: {terms}){extra}"


def _at(delay: int) -> str:
    """How a read ``delay`` steps back is printed: ``@-1`` (the past), ``@+1`` (the future)."""
    return f"@{-delay:+d}" if delay else "@-0"


def format_program(prog: Program) -> str:
    """The Program as text: buffers, then each stage and its ops, each op with its uid
    (``inspect --schedule``, ``GRAPHRNN_DEBUG=2``/``3``)."""
    lines = ["buffers:"]
    for b in prog.buffers.values():
        pad = (f" pad={b.pad}" if b.pad else "") + (f" tail={b.tail}" if b.tail else "")
        lines.append(f"  {b.name:<16} {b.role:<6} size={b.size}{pad}")
    for i, stage in enumerate(prog.stages):
        head = ("once over all T steps:" if stage.kind != StageKind.LOOP
                else "for t in T-1..0:" if stage.reverse else "for t in 0..T-1:")
        lines.append(f"stage {i} {head}")
        for op in stage.ops:
            if isinstance(op, Fused):
                lines.append(f"  #{op.uid:<3} fused kernel:")
                lines += [f"    #{o.uid:<3} {op_label(o)}" for o in op.ops]
            else:
                lines.append(f"  #{op.uid:<3} {op_label(op)}")
    return "\n".join(lines)
