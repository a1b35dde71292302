"""The NumPy backend's compiled kernels: each fused element-wise chain as one C call a window."""

from __future__ import annotations

import ctypes
from dataclasses import replace

import numpy as np

from graphrnn.backends import native
from graphrnn.backends.codegen import generate
from graphrnn.compiler.fusion import elementwise
from graphrnn.compiler.ir import Fused, NodeUpdate
from graphrnn.ops.node_update import NodeUpdateKernel


def compiled_kernel_applies(op, buffers) -> bool:
    """Whether ``op`` runs as a generated C kernel: a Fused chain, or one element-wise
    NodeUpdate (not softmax, not asynchronous), or a layer-normalised one that would be."""
    return isinstance(op, Fused) or (isinstance(op, NodeUpdate) and elementwise(
        replace(op, norm=None, gain=None), buffers))


def _function(lib, name: str):
    """A generated kernel of ``lib``: ``(int t0, int steps, int B, void* const* pointers,
    int j0, int j1, int n_rows)``."""
    fn = getattr(lib, name)
    fn.argtypes = [ctypes.c_int] * 3 + [ctypes.c_void_p] + [ctypes.c_int] * 3
    fn.restype = None
    return fn


def read_elsewhere(prog, op) -> frozenset[str]:
    """The buffers that something besides ``op`` reads: other ops, the caller (outputs) and
    the next call (history rows, the final state)."""
    names = {name for _, other in prog.ops() if other.uid != op.uid
             for name, _ in other.reads}
    names.update(prog.outputs)
    names.update(name for name, b in prog.buffers.items() if b.pad > 0 or b.tail > 0)
    return frozenset(names)


class FusedHostKernel:
    """A Fused op (or one element-wise NodeUpdate) as C functions over NumPy buffers.

    Forward and backward are one call per window (per step in a loop): the generated loops of
    :func:`~graphrnn.backends.codegen.generate` with ``target="host"``, compiled by
    :mod:`~graphrnn.backends.native`.
    Bias and diagonal-weight gradients are one reduction over all steps each (see
    :meth:`param_grads`).
    """

    def __init__(self, op: Fused | NodeUpdate, run, sources: dict):
        self.op, self.run = op, run
        prog = run.prog
        self.members = op.ops if isinstance(op, Fused) else (op,)
        #: a layer-normalised member: a row kernel (codegen_norm), j0/j1 are batch rows
        self.normalised = any(getattr(m, "norm", None) for m in self.members)
        no_grad = frozenset(n for n in prog.buffers if n not in run.grads_wanted)
        dtype = np.dtype(run.dtype).name
        keep = read_elsewhere(prog, op)
        key = (op.uid, dtype, no_grad, keep)
        hit = sources.get(key)
        if hit is None or hit[0] != op:  # the Program outlives runs: generate once
            src = generate(op, prog.buffers, dtype, no_grad, target="host", keep=keep)
            lib = native.build(src.source)
            hit = sources[key] = (op, src, _function(lib, src.forward),
                                  _function(lib, src.backward) if src.backward else None)
        _, self.src, self.fwd, self.bwd = hit
        run.grads_assigned.update(self.src.overwrites)
        run.grad_aliases.update(self.src.grad_aliases)
        #: parameters and noise as contiguous arrays of the run's dtype (kept alive here)
        self.store = {(a.kind, a.name): self._contiguous(a)
                      for a in self.src.forward_args + self.src.backward_args
                      if a.kind in ("param", "noise", "rstd", "dy", "dbias", "dgain")}
        self._tables: list = []
        self.fwd_args = self._pointers(self.src.forward_args)
        self.bwd_args, self._grads = None, None
        self.generic = None

    def refresh(self) -> None:
        """The parameters' values may have changed in place (same arrays): copies made of them
        (where one was not contiguous) take the new values; the pointer tables stay; a row
        kernel's per-row gain and bias gradient sums start from zero."""
        params = self.run.params
        for (kind, name), array in self.store.items():
            if kind == "param" and array is not params[name]:
                np.copyto(array, params[name])
            elif kind in ("dbias", "dgain"):  # a call that raised may have left sums
                array.fill(0)
        self.generic = None  # param_grads' NodeUpdateKernels hold copies: made again

    def _contiguous(self, arg):
        run = self.run
        if arg.kind == "rstd":  # a normalised node's 1/σ a row, (T, B)
            return np.empty((run.steps, run.batch), dtype=run.dtype)
        if arg.kind in ("dy", "dbias", "dgain"):  # its dy of the row, its gradient sums by row
            make = np.empty if arg.kind == "dy" else np.zeros
            return make((run.batch, run.size(arg.name)), dtype=run.dtype)
        table = self.run.params if arg.kind == "param" else self.run.uniforms
        return np.ascontiguousarray(table[arg.name], dtype=self.run.dtype)

    def _pointers(self, args) -> tuple:
        run = self.run
        table = {"buf": run.arrays, "grad": run.grads}
        arrays = [self.store[(a.kind, a.name)] if (a.kind, a.name) in self.store
                  else table[a.kind][a.name] for a in args]
        for a in arrays:
            if not a.flags.c_contiguous:  # pragma: no cover - runs allocate whole arrays
                raise ValueError("compiled kernels take whole contiguous arrays")
        addresses = (ctypes.c_void_p * len(arrays))(*(a.ctypes.data for a in arrays))
        self._tables.append(addresses)  # the kernel reads them from there: keep it alive
        span = run.batch if self.normalised else self.src.size  # a normalised kernel: rows
        return (run.batch, ctypes.addressof(addresses), 0, span, run.batch)

    def _call(self, fn, args: tuple, lo: int, hi: int, reverse: bool) -> None:
        if hi - lo == 1 or self.src.window_safe:
            fn(lo, hi - lo, *args)
            return
        for t in (range(hi - 1, lo - 1, -1) if reverse else range(lo, hi)):
            fn(t, 1, *args)

    def forward(self, lo: int, hi: int) -> None:
        self._call(self.fwd, self.fwd_args, lo, hi, reverse=False)

    def backward_args(self) -> tuple:
        """The backward kernel's arguments after ``steps`` (``B``, the pointer table, ``j0``,
        ``j1``, ``n_rows``), for this run's gradient arrays."""
        if self._grads is not self.run.grads:  # zero_grads made fresh gradient arrays
            self._grads = self.run.grads
            self.bwd_args = self._pointers(self.src.backward_args)
        return self.bwd_args

    def backward(self, lo: int, hi: int) -> None:
        if self.bwd is None:  # nothing to send (only input terms)
            return
        self._call(self.bwd, self.backward_args(), lo, hi, reverse=True)

    @property
    def windowed_grads(self) -> bool:
        """Whether :meth:`param_grads` takes a window of steps (not normalised: its stores
        are the whole run's)."""
        return not self.normalised

    def param_grads(self, lo: int = 0, hi: int | None = None) -> None:
        """Bias and diagonal-weight gradients: one reduction over every step at once (or the
        steps ``[lo, hi)``), over a GEMM buffer's gradient columns where they equal the
        node's ``d net``."""
        run = self.run
        hi = run.steps if hi is None else hi
        if self.normalised:  # the kernel summed dy and dy·x̂ over the steps, a row each
            for m in self.members:
                if not m.norm:  # an element-wise member of a row kernel: d net in memory
                    if m.bias or any(t.kind == "diagonal" for t in m.terms):
                        NodeUpdateKernel(m, run).param_grads()
                    continue
                for param, kind in ((m.bias, "dbias"), (m.gain, "dgain")):
                    if param:
                        sums = self.store[(kind, m.node)]
                        if param in run.trainable:
                            run.add_param_grad(param, sums.sum(axis=0))
                        sums.fill(0)  # the next backward starts from zero
                if any(t.kind == "diagonal" for t in m.terms):
                    NodeUpdateKernel(replace(m, bias=None, norm=None, gain=None),
                                     run).param_grads()
            return
        for bias, gemm, (a, b) in self.src.bias_from:
            if bias in run.trainable:
                dnet = run.rows(gemm, lo, hi, grad=True)[..., a:b]
                run.add_param_grad(bias, dnet.sum(axis=(0, 1)))
        if self.generic is None:
            done = {bias for bias, _, _ in self.src.bias_from}
            self.generic = [NodeUpdateKernel(m, run) for m in self.members
                            if (m.bias and m.bias not in done)
                            or any(t.kind == "diagonal" for t in m.terms)]
        for k in self.generic:
            k.param_grads(lo, hi)
