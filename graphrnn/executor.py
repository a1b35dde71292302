"""Runs a Program on a backend: the arrays of one run, the forward pass and BPTT backward."""

from __future__ import annotations

import numpy as np

from graphrnn.backends.recompute import Recompute, run_steps, whole
from graphrnn.compiler.ir import Combine, Fused, NodeUpdate, Program, StageKind, TermKind
from graphrnn.noise import Noise
from graphrnn.ops.fused import FusedKernel
from graphrnn.ops.init_state import InitStateKernel
from graphrnn.ops.node_update import NodeUpdateKernel


class Run:
    """The arrays of one execution of a Program: ``steps`` steps on a batch of ``batch``.

    Buffers are allocated once, time-major ``(pad + steps + tail, batch, size)``; kernels read and
    write windows of rows (:meth:`rows`), so the time loop allocates nothing. ``given_rows``:
    the history rows ``(buffer, k)`` (row ``-k``) the caller fills, which an
    :class:`~graphrnn.compiler.ir.InitState` then leaves alone.

    A Run serves many calls of the same shapes (:meth:`rebind`): kernels, pointer tables and
    buffers stay; the parameters are read in place, and copies made of them are refreshed.
    ``input_grads``: BPTT also computes the inputs' gradients (a recorded call's tape asks).
    """

    #: called as ``fn(run, i)`` once stage ``i`` of ``prog.stages`` has added its parameters'
    #: gradients in BPTT (data-parallel training starts their all-reduce there); None: none
    stage_grads_done = None

    def __init__(self, prog: Program, backend, params: dict, steps: int, batch: int, dtype,
                 noise: Noise, trainable=frozenset(), given_rows=frozenset(),
                 input_grads: bool = False):
        self.prog, self.backend, self.xp = prog, backend, backend.xp
        self.params, self.steps, self.batch, self.dtype = params, steps, batch, dtype
        self.trainable = frozenset(trainable)
        self.given_rows = frozenset(given_rows)
        self.pads = {name: b.pad for name, b in prog.buffers.items()}
        self.arrays = {name: backend.empty(("buf", name), (b.pad + steps + b.tail, batch,
                                                          b.size), dtype)
                       for name, b in prog.buffers.items()}
        self.grads: dict = {}
        self.param_grads: dict = {}
        #: buffers whose gradient BPTT needs (the inputs only where ``input_grads`` asks)
        self.grads_wanted = frozenset(n for n, b in prog.buffers.items()
                                      if input_grads or b.role != "input")
        #: whether a tape leases this Run, its key and whether it may serve another call
        self.lease_key, self.keepable = None, False
        #: gradients a kernel assigns whole in BPTT before anything reads them: not zeroed
        self.grads_assigned: set[str] = set()
        #: gradients that are another buffer's (equal by construction): name -> that buffer
        self.grad_aliases: dict[str, str] = {}
        self.uniforms = {k: backend.asarray(v, dtype) for k, v in noise.uniforms.items()}
        self.orders = noise.orders
        self._looped = {o.uid for s in prog.stages if s.kind == StageKind.LOOP for op in s.ops
                        for o in (*getattr(op, "ops", ()), op)}
        self._step_views: dict = {}
        #: buffers whose values nothing reads once the forward pass is over: their memory
        #: holds gradient arrays (:meth:`grad_array`), so BPTT needs no memory of its own
        #: for them (off where a backward pass recomputes forward rows: ``remat``)
        self.donors = dead_after_forward(prog)
        #: segment length of the recomputed loop steps in BPTT (None: every row is kept)
        self.remat: int | None = None
        self._donated: list = []  # (donor array, elements given away)
        #: a call's :class:`~graphrnn.lengths.LengthPlan` (sequences of different lengths)
        self.lengths_plan = None
        self._make_kernels()

    def _make_kernels(self) -> None:
        self.kernels = [(stage, self.backend.stage_kernels(stage, self))
                        for stage in self.prog.stages]
        self._refresh = _refreshers(k for _, ks in self.kernels for k in ks)
        self._recompute = None  # it holds the kernels

    def rebind(self, params: dict) -> None:
        """Take another call's parameters (same names and shapes): where they are the very
        arrays of the last call, kernels keep their pointer tables and bring the copies they
        made of them up to date (the values may have changed in place); other arrays, or a
        kernel that cannot refresh, get kernels made anew."""
        same = len(params) == len(self.params) and all(
            params.get(k) is v for k, v in self.params.items())
        self.params, self.param_grads = params, {}
        if not same or self._refresh is None:
            self._make_kernels()
            return
        for fn in self._refresh:
            fn()

    def rows(self, name: str, lo: int, hi: int, delay: int = 0, grad: bool = False):
        """Steps ``[lo - delay, hi - delay)`` of a buffer (or of its gradient): a view."""
        p = self.pads[name] - delay
        return (self.grads if grad else self.arrays)[name][p + lo:p + hi]

    def looped(self, op) -> bool:
        """Whether ``op`` (or the Fused op holding it) runs inside a time loop."""
        return op.uid in self._looped

    def window(self, name: str, delay: int = 0, grad: bool = False, looped: bool = False):
        """A getter ``get(lo, hi)`` of steps ``[lo - delay, hi - delay)`` of a buffer.

        In a loop (``looped``) it returns the 2-D ``(B, size)`` view of step ``lo - delay``
        from a list of views made once per run, so a step costs a list index; elsewhere the
        3-D slab of rows. Gradient getters need :meth:`zero_grads` first.
        """
        offset = self.pads[name] - delay
        if not looped:
            array = (self.grads if grad else self.arrays)[name]
            return lambda lo, hi: array[offset + lo:offset + hi]
        views = self._step_views.get((name, grad))
        if views is None:
            views = self._step_views[(name, grad)] = list((self.grads if grad
                                                           else self.arrays)[name])
        return lambda lo, hi: views[offset + lo]

    def size(self, name: str) -> int:
        """A buffer's width (features)."""
        return self.prog.buffers[name].size

    def order_at(self, node: str, t: int):
        """The order in which an asynchronous node updates its neurons at step ``t``."""
        return self.orders[node][t]

    def add_param_grad(self, name: str, g) -> None:
        """Accumulate by summing: a parameter shared by edges or steps gets every share."""
        if name in self.param_grads:
            self.param_grads[name] += g
        else:
            self.param_grads[name] = g.copy() if g.base is not None else g

    def donated(self, shape: tuple):
        """A contiguous ``shape`` array in the memory of a buffer that is dead once the
        forward pass is over (:func:`dead_after_forward`), or None where none has room left.
        Gradients are made after the forward pass (:meth:`zero_grads`), so lending that
        memory to them is safe; a later call's forward overwrites it before its own
        ``zero_grads``."""
        if self.remat is not None:
            return None
        count = int(np.prod(shape))
        align = max(1, 64 // np.dtype(self.dtype).itemsize)
        for i, name in enumerate(self.donors):
            flat = self.arrays[name].reshape(-1)
            used = self._donated[i] if i < len(self._donated) else 0
            if used + count <= flat.size:
                while len(self._donated) <= i:
                    self._donated.append(0)
                self._donated[i] = used + -(-count // align) * align
                return flat[used:used + count].reshape(shape)
        return None

    def forward(self) -> None:
        """Run every stage: batched ops once over all steps, loops step by step (each in its
        direction)."""
        with np.errstate(over="ignore"):  # exp overflowing to inf is how sigmoid reaches 0
            self._forward()

    def _forward(self) -> None:
        plan, remat = self.lengths_plan, self._recomputing()
        for stage, kernels in self.kernels:
            if remat is not None and id(stage) in remat.fed:
                continue  # run window by window with the loop it feeds
            if remat is not None and stage.kind == StageKind.LOOP:
                remat.forward(stage, kernels)
            elif plan is not None and stage.kind == StageKind.LOOP and stage.reverse:
                if _per_step_rows(plan, kernels):  # one call: every boundary placed first
                    plan.place(_writes(stage))
                    for k in kernels:
                        k.forward(0, self.steps)
                    plan.place(_writes(stage))
                    continue
                for lo, hi, length in plan.segments(self.steps, reverse=True):
                    run_steps(stage, kernels, lo, hi, backward=False)
                    if length is not None:
                        plan.place(_writes(stage), length)
                continue
            elif plan is not None and stage.kind == StageKind.BATCHED:
                for k in kernels:  # a later op of the stage may read ahead what k wrote
                    k.forward(0, self.steps)
                    plan.place(_op_writes(k.op) if hasattr(k, "op") else _writes(stage))
                continue
            elif whole(stage, kernels):
                for k in kernels:
                    k.forward(0, self.steps)
            else:
                self.backend.loop([k.forward for k in kernels], self.steps,
                                  reverse=stage.reverse)
            if plan is not None:
                plan.place(_writes(stage))

    def zero_grads(self) -> None:
        """Fresh zero gradients for the buffers BPTT needs (the loss then seeds the outputs),
        each made on first use: a compiled kernel keeps some gradients in registers only.
        A Run serving another call zeroes the arrays it made before, in place: kernels hold
        windows and pointer tables into them."""
        if isinstance(self.grads, _ZeroGrads):
            for name, array in self.grads.items():
                if name not in self.grads_assigned and name not in self.grad_aliases:
                    array.fill(0)
            return
        self.grads = _ZeroGrads(self)
        self._donated = []
        self._step_views = {k: v for k, v in self._step_views.items() if not k[1]}

    def backward(self) -> None:
        """BPTT: stages in reverse, each loop against its direction (a causal loop from the
        last step down, an anti-causal one from step 0 up), weight gradients after."""
        with np.errstate(over="ignore"):
            self._backward()

    def _backward(self) -> None:
        plan, remat = self.lengths_plan, self._recomputing()
        for i in range(len(self.kernels) - 1, -1, -1):
            stage, kernels = self.kernels[i]
            if remat is not None and id(stage) in remat.fed:
                self._stage_done(i)  # differentiated window by window with its loop
                continue
            if plan is not None and stage.kind == StageKind.BATCHED:
                for k in reversed(kernels):
                    plan.take(_op_writes(k.op) if hasattr(k, "op") else _writes(stage))
                    k.backward(0, self.steps)
                for k in kernels:
                    k.param_grads()
                self._stage_done(i)
                continue
            if plan is not None:
                plan.take(_writes(stage))
            if remat is not None and stage.kind == StageKind.LOOP:
                remat.backward(stage, kernels)  # and its weight gradients
                self._stage_done(i)
                continue
            elif plan is not None and stage.kind == StageKind.LOOP and stage.reverse and \
                    not _per_step_rows(plan, kernels):
                for lo, hi, length in plan.segments(self.steps, reverse=False):
                    if length is not None:
                        plan.take(_writes(stage), length)
                    run_steps(stage, kernels, lo, hi, backward=True)
            elif whole(stage, kernels):
                for k in reversed(kernels):
                    k.backward(0, self.steps)
            else:
                self.backend.loop([k.backward for k in reversed(kernels)], self.steps,
                                  reverse=not stage.reverse)
            for k in kernels:
                k.param_grads()
            self._stage_done(i)
        if plan is not None:
            plan.take(n for n, b in self.prog.buffers.items() if b.role == "input")

    def _stage_done(self, i: int) -> None:
        """Stage ``i``'s weight gradients are final: tell :attr:`stage_grads_done`."""
        if self.stage_grads_done is not None:
            self.stage_grads_done(self, i)

    def _recomputing(self) -> Recompute | None:
        """How this Run recomputes (:mod:`graphrnn.backends.recompute`); None without remat."""
        if self.remat is None:
            return None
        if self._recompute is None or self._recompute.k != self.remat:
            self._recompute = Recompute(self, self.remat)
        return self._recompute


def _per_step_rows(plan, kernels) -> bool:
    """Whether a loop runs in one call computing only the going rows of each step (a batch
    sorted by length, a compiled loop: :attr:`graphrnn.lengths.LengthPlan.rows`)."""
    return plan.rows is not None and all(getattr(k, "per_step_rows", False) for k in kernels)


def _writes(stage) -> set[str]:
    """The buffers the ops of a stage write."""
    return {name for op in stage.ops for name in _op_writes(op)}


def _op_writes(op) -> set[str]:
    """The buffers an op (or the ops of a Fused one) writes."""
    return {o.out for o in (*getattr(op, "ops", ()), op) if getattr(o, "out", None) is not None}


def _refreshers(kernels) -> list | None:
    """What brings each kernel's copies of the parameters up to date (none for a kernel that
    reads them in place at every call), or None where some kernel cannot."""
    fns, todo = [], list(kernels)
    while todo:
        k = todo.pop()
        if hasattr(k, "refresh"):
            fns.append(k.refresh)
        elif isinstance(k, FusedKernel):
            todo.extend(k.members)
        elif isinstance(k, NodeUpdateKernel):
            if k.op.own or any(t.kind == "diagonal" for t in k.op.terms):
                return None  # its factors are copies, made at construction
        elif not isinstance(k, InitStateKernel):
            return None
    return fns


def dead_after_forward(prog: Program) -> tuple[str, ...]:
    """The GEMM buffers whose values the backward pass never reads: not outputs nor history,
    read only as ``full`` terms of sums (whose gradient is ``d net`` itself, without the
    term's value), by NodeUpdates alone (a MatMul's backward would read its source)."""
    readers: dict[str, list] = {}
    for _, op in prog.ops():
        for member in (op.ops if isinstance(op, Fused) else (op,)):
            for name, _ in member.reads:
                readers.setdefault(name, []).append(member)
    dead = []
    for name, b in prog.buffers.items():
        if b.role != "gemm" or name in prog.outputs or b.pad or b.tail:
            continue
        ok = True
        for m in readers.get(name, ()):
            terms = [t for t in m.terms if t.src == name] if isinstance(m, NodeUpdate) else ()
            ok = ok and isinstance(m, NodeUpdate) and not m.own and bool(terms) and all(
                t.kind == TermKind.FULL for t in terms) and (
                m.combine == Combine.SUM or len(m.terms) == 1)
        if ok:
            dead.append(name)
    return tuple(dead)


class _ZeroGrads(dict):
    """A run's gradient arrays by buffer name, zeros made when first asked for."""

    def __init__(self, run: Run):
        super().__init__()
        self.run = run

    def __missing__(self, name: str):
        run = self.run
        if name not in run.grads_wanted:
            raise KeyError(name)
        if name in run.grad_aliases:
            array = self[name] = self[run.grad_aliases[name]]
            return array
        shape = run.arrays[name].shape
        array = run.donated(shape)
        if array is None:
            make = run.backend.empty if name in run.grads_assigned else run.backend.zeros
            array = make(("grad", name), shape, run.dtype)
        elif name not in run.grads_assigned:
            array.fill(0)
        self[name] = array
        return array


def final_rows(steps: int, k: int) -> tuple[int, int]:
    """The rows ``(lo, hi)`` whose value is the final state of boundary ``k``
    (:attr:`Network.boundaries`): step ``steps - k`` for the past (k > 0), step ``-k - 1`` for
    the boundary after the end (k < 0: an anti-causal loop ends at the first steps)."""
    return (steps - k, steps - k + 1) if k > 0 else (-k - 1, -k)
