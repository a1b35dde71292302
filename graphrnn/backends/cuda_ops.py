"""The GPU backend's kernels: generated fused kernels, the hand-written ones, and BLAS GEMMs.

Written against a small device interface (``backend.xp``, ``backend.module(source)``,
``backend.gemm(...)``, ``backend.stable(key, array)``, ``backend.ptr(array)``) so the same
wrappers run on CuPy and, in the tests, on host-compiled copies of the CUDA code over NumPy
arrays. No wrapper allocates or synchronises inside a step: every array it touches is a run
buffer or backend-owned (stable across runs of one shape), so a time loop can be captured as a
CUDA graph and replayed.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from graphrnn.backends.activation_c import codes
from graphrnn.backends.codegen import KERNEL_DIR, Arg
from graphrnn.compiler.fusion import elementwise
from graphrnn.compiler.ir import Fused, Gather, MatMul, NodeUpdate
from graphrnn.ops.activations import REGISTRY
from graphrnn.ops.fused import FusedKernel
from graphrnn.ops.matmul import MatMulKernel
from graphrnn.ops.node_update import NodeUpdateKernel

BLOCK = 256
#: ``GR_ACT_*`` of ``hopfield_async.cu``: the records' codes (the CUDA defines come from them too)
ACT_CODES = codes()
SUFFIX = {"float32": "f32", "float64": "f64"}


def hand_written(name: str) -> str:
    """The text of ``kernels/NAME`` (its includes are expanded by the backend's loader)."""
    return (KERNEL_DIR / name).read_text()


def _pow2_block(n: int) -> int:
    block = 32
    while block < n and block < BLOCK:
        block *= 2
    return block


def step_windows(lo: int, hi: int, reverse: bool, per_step: bool) -> list[tuple[int, int]]:
    """The launches' step windows over ``[lo, hi)``: one, or a step each (in the pass's order)
    where a step reads the one before (a leak)."""
    if not per_step:
        return [(lo, hi)]
    return [(t, t + 1) for t in (range(hi - 1, lo - 1, -1) if reverse else range(lo, hi))]


class _Kernel:
    """Shared plumbing: the run, its dtype and scalar constructor, the backend."""

    capturable = True

    def __init__(self, op, run, backend):
        self.op, self.run, self.backend = op, run, backend
        self.dtype = np.dtype(run.dtype).name
        self.real = np.dtype(run.dtype).type
        self.batch = run.batch

    def offset(self, name: str, t: int, delay: int = 0) -> np.int64:
        """Element offset of row ``t - delay`` of a buffer (``(pad + T, B, size)`` layout)."""
        buf = self.run.prog.buffers[name]
        return np.int64((buf.pad + t - delay) * self.batch * buf.size)


class FusedCudaKernel(_Kernel):
    """A Fused op (or one element-wise NodeUpdate) as one generated kernel per direction.

    ``net_only`` (softmax and asynchronous nodes): the kernel computes ``net`` forward and
    sends ``d net`` to the terms backward; the activation runs in a hand-written kernel.
    """

    def __init__(self, op, run, backend, net_only: bool = False):
        super().__init__(op, run, backend)
        prog = run.prog
        members = op.ops if isinstance(op, Fused) else (op,)
        no_grad = frozenset(n for n in prog.buffers if n not in run.grads_wanted)
        self.src = backend.generated(op, prog.buffers, self.dtype, no_grad, net_only)
        self.module = backend.module(self.src.source)
        self.store: dict[Arg, object] = {}
        for arg in self.src.forward_args + self.src.backward_args:
            if arg.kind == "param" and arg not in self.store:
                self.store[arg] = backend.stable(("param", arg.name), run.params[arg.name])
            elif arg.kind == "noise" and arg not in self.store:
                self.store[arg] = backend.stable(("noise", arg.name), run.uniforms[arg.name])
        self.members, self.generic = members, None
        self.fwd_args = self._arrays(self.src.forward_args)
        self.bwd_args = None

    def _arrays(self, args) -> tuple:
        run = self.run
        table = {"buf": run.arrays, "grad": run.grads}
        return tuple(self.store[a] if a in self.store else table[a.kind][a.name] for a in args)

    def pointers(self, backward: bool) -> tuple:
        """The device addresses the kernel reads and writes (a CUDA graph's identity)."""
        arrays = self._backward_args() if backward else self.fwd_args
        return tuple(self.backend.ptr(a) for a in arrays)

    def _backward_args(self) -> tuple:
        if self.bwd_args is None:
            self.bwd_args = self._arrays(self.src.backward_args)
        return self.bwd_args

    def _launch(self, name: str, arrays: tuple, lo: int, hi: int, reverse: bool) -> None:
        n = hi - lo
        windows = ([(lo, n)] if n == 1 or self.src.window_safe else
                   [(t, 1) for t in (range(hi - 1, lo - 1, -1) if reverse else range(lo, hi))])
        per_step = self.batch * self.src.size
        for t0, steps in windows:
            grid = (steps * per_step + BLOCK - 1) // BLOCK
            self.module.launch(name, (grid,), (BLOCK,),
                               (np.int32(t0), np.int32(steps), np.int32(self.batch)) + arrays)

    def forward(self, lo: int, hi: int) -> None:
        self._launch(self.src.forward, self.fwd_args, lo, hi, reverse=False)

    def backward(self, lo: int, hi: int) -> None:
        if self.src.backward is not None:  # None: nothing to send (net-only, input terms)
            self._launch(self.src.backward, self._backward_args(), lo, hi, reverse=True)

    def param_grads(self) -> None:
        """Bias and diagonal-weight gradients: the generic reductions over all steps."""
        if self.generic is None:
            self.generic = FusedKernel(Fused(tuple(self.members)), self.run)
        self.generic.param_grads()


class SoftmaxNodeKernel(_Kernel):
    """A softmax NodeUpdate: generated net kernel plus ``kernels/softmax.cu`` (one block a row)."""

    def __init__(self, op: NodeUpdate, run, backend):
        super().__init__(op, run, backend)
        self.net = FusedCudaKernel(op, run, backend, net_only=True)
        self.module = backend.module(hand_written("softmax.cu"))
        self.size = run.prog.buffers[op.out].size
        self.block = _pow2_block(self.size)
        self.leak = op.leak is not None
        self.consts = (np.int32(self.size), self.real(op.leak if self.leak else 1.0),
                       self.real(1 - op.leak if self.leak else 0.0), np.int32(self.leak))
        self.generic = NodeUpdateKernel(op, run)

    def pointers(self, backward: bool) -> tuple:
        run, op = self.run, self.op
        arrays = [run.arrays[op.net], run.arrays[op.out]]
        if backward:
            arrays += [run.grads[op.out], run.grads[op.net]]
        return self.net.pointers(backward) + tuple(self.backend.ptr(a) for a in arrays)

    def forward(self, lo: int, hi: int) -> None:
        run, op = self.run, self.op
        name = f"gr_softmax_forward_{SUFFIX[self.dtype]}"
        for a, b in step_windows(lo, hi, False, self.leak):
            self.net.forward(a, b)
            out = run.arrays[op.out]
            args = (run.arrays[op.net], self.offset(op.net, a), out, self.offset(op.out, a),
                    out, self.offset(op.out, a, 1 if self.leak else 0),
                    np.int32((b - a) * self.batch)) + self.consts
            self.module.launch(name, ((b - a) * self.batch,), (self.block,), args)

    def backward(self, lo: int, hi: int) -> None:
        run, op = self.run, self.op
        name = f"gr_softmax_backward_{SUFFIX[self.dtype]}"
        for a, b in step_windows(lo, hi, True, self.leak):
            gout = run.grads[op.out]
            args = (run.arrays[op.net], self.offset(op.net, a), run.arrays[op.out],
                    self.offset(op.out, a), gout, self.offset(op.out, a), run.grads[op.net],
                    self.offset(op.net, a), gout, self.offset(op.out, a, 1 if self.leak else 0),
                    np.int32((b - a) * self.batch)) + self.consts
            self.module.launch(name, ((b - a) * self.batch,), (self.block,), args)
            self.net.backward(a, b)

    def param_grads(self) -> None:
        self.generic.param_grads()


class AsyncNodeKernel(_Kernel):
    """An asynchronous NodeUpdate: generated net kernel plus ``kernels/hopfield_async.cu``."""

    def __init__(self, op: NodeUpdate, run, backend):
        super().__init__(op, run, backend)
        self.net = FusedCudaKernel(op, run, backend, net_only=True)
        self.module = backend.module(hand_written("hopfield_async.cu"))
        self.size = n = run.prog.buffers[op.out].size
        generic = NodeUpdateKernel(op, run)
        xp = run.xp
        self.own = backend.stable(("own", op.node), xp.ascontiguousarray(generic.own))
        order = np.ascontiguousarray(run.orders[op.node], dtype=np.int32)
        self.order = backend.stable(("order", op.node), backend.asarray(order, np.int32))
        u = run.uniforms.get(op.node)
        self.u = None if u is None else backend.stable(("noise", op.node), u)
        leak = op.leak is not None
        p = REGISTRY[op.activation].params(op.alpha, op.beta, op.temperature)
        self.consts = (np.int32(self.batch), np.int32(n), np.int32(ACT_CODES[op.activation]),
                       self.real(1.0 / op.temperature), self.real(op.leak if leak else 1.0),
                       self.real(1 - op.leak if leak else 0.0), np.int32(leak),
                       self.real(p.alpha), self.real(p.beta))
        self.block = _pow2_block(n)

    def pointers(self, backward: bool) -> tuple:
        run, op = self.run, self.op
        arrays = [run.arrays[op.out], run.arrays[op.net], self.own, self.order]
        arrays += [] if self.u is None else [self.u]
        return self.net.pointers(False) + tuple(self.backend.ptr(a) for a in arrays)

    def forward(self, lo: int, hi: int) -> None:
        run, op = self.run, self.op
        name = f"gr_hopfield_async_{SUFFIX[self.dtype]}"
        buf = run.prog.buffers[op.out]
        for t in range(lo, hi):
            self.net.forward(t, t + 1)
            u = self.u if self.u is not None else run.arrays[op.out]
            args = (run.arrays[op.out], np.int64(buf.pad + t), run.arrays[op.net], np.int64(t),
                    self.own, self.order, np.int64(t * self.size), u, np.int64(t),
                    np.int32(self.u is not None)) + self.consts
            self.module.launch(name, (self.batch,), (self.block,), args)

    def backward(self, lo: int, hi: int) -> None:
        raise NotImplementedError("gradients through asynchronous updates are not supported")

    def param_grads(self) -> None:
        return None


class GemmKernel(_Kernel):
    """A MatMul as BLAS calls on raw rows: ``out[t] = src[t-d] @ W.T``; backward
    ``dsrc[t-d] += dout[t] @ W`` (beta = 1, no temporary); weight gradients as
    :class:`~graphrnn.ops.matmul.MatMulKernel` (one GEMM over all steps, after the loop)."""

    def __init__(self, op: MatMul, run, backend):
        super().__init__(op, run, backend)
        xp = run.xp
        parts = [b.scale * (run.params[b.param].T if b.transpose else run.params[b.param])
                 for b in op.blocks]
        self.weight = backend.stable(("weight", op.out),
                                     xp.ascontiguousarray(xp.concatenate(parts, axis=0)))
        self.k = run.prog.buffers[op.src].size
        self.n = run.prog.buffers[op.out].size
        self.grad_src = op.src in run.grads_wanted
        self.bias = None
        if any(b.bias for b in op.blocks):
            self.bias = backend.stable(("bias", op.out), xp.concatenate([
                run.params[b.bias] if b.bias else xp.zeros(b.cols[1] - b.cols[0], run.dtype)
                for b in op.blocks]))

    def pointers(self, backward: bool) -> tuple:
        run, op = self.run, self.op
        arrays = [self.weight, run.arrays[op.src], run.arrays[op.out]]
        if self.bias is not None:  # a loop runs one step: ones(B)
            arrays += [self.bias, self.backend.ones(self.batch, run.dtype)]
        if backward:
            arrays = [self.weight, run.grads[op.out]] + (
                [run.grads[op.src]] if self.grad_src else [])
        return tuple(self.backend.ptr(a) for a in arrays)

    def forward(self, lo: int, hi: int) -> None:
        run, op = self.run, self.op
        rows = (hi - lo) * self.batch
        self.backend.gemm("T", "N", self.n, rows, self.k, (self.weight, 0), self.k,
                          (run.arrays[op.src], self.offset(op.src, lo, op.delay)), self.k, 0.0,
                          (run.arrays[op.out], self.offset(op.out, lo)), self.n)
        if self.bias is not None:  # out += ones(rows) x bias: a rank-1 GEMM, no temporary
            ones = self.backend.ones(rows, run.dtype)
            self.backend.gemm("N", "N", self.n, rows, 1, (self.bias, 0), self.n, (ones, 0), 1,
                              1.0, (run.arrays[op.out], self.offset(op.out, lo)), self.n)

    def backward(self, lo: int, hi: int) -> None:
        if not self.grad_src:
            return
        run, op = self.run, self.op
        rows = (hi - lo) * self.batch
        self.backend.gemm("N", "N", self.k, rows, self.n, (self.weight, 0), self.k,
                          (run.grads[op.out], self.offset(op.out, lo)), self.n, 1.0,
                          (run.grads[op.src], self.offset(op.src, lo, op.delay)), self.k)

    param_grads = MatMulKernel.param_grads


def sorted_segments(xp, ids) -> tuple:
    """``order`` (the rows sorted by token, a stable sort) and ``starts`` (where each distinct
    token's run begins in it, then ``len(ids)``), both int32, for ``gr_gather_grad``."""
    order = xp.argsort(ids, kind="stable")  # CuPy accepts only None or "stable"
    ordered = ids[order]
    inner = xp.flatnonzero(ordered[1:] != ordered[:-1]) + 1
    starts = xp.concatenate((xp.zeros(1, xp.int64), inner, xp.full(1, ids.size, xp.int64)))
    return order.astype(xp.int32), starts.astype(xp.int32)


class GatherCudaKernel(_Kernel):
    """A Gather as ``kernels/embedding.cu``: forward one thread per (row, column); the table
    gradient one block per distinct token summing its rows in sorted order (deterministic:
    the same bits in every run, no atomics)."""

    def __init__(self, op: Gather, run, backend):
        super().__init__(op, run, backend)
        self.module = backend.module(hand_written("embedding.cu"))
        self.table = run.xp.ascontiguousarray(run.params[op.param], dtype=run.dtype)
        self.cols = run.prog.buffers[op.out].size
        self.sfx = SUFFIX[self.dtype]

    def pointers(self, backward: bool) -> tuple:
        run, op = self.run, self.op
        return tuple(self.backend.ptr(a) for a in (run.arrays[op.src], self.table,
                                                   run.arrays[op.out]))

    def forward(self, lo: int, hi: int) -> None:
        run, op = self.run, self.op
        rows = (hi - lo) * self.batch
        grid = min(max(1, (rows * self.cols + BLOCK - 1) // BLOCK), 65535)  # grid-stride loop
        self.module.launch(f"gr_gather_forward_{self.sfx}", (grid,), (BLOCK,), (
            run.arrays[op.src], self.offset(op.src, lo), self.table, run.arrays[op.out],
            self.offset(op.out, lo), np.int64(rows), np.int32(self.cols), self.real(op.scale)))

    def backward(self, lo: int, hi: int) -> None:
        """Nothing to send on: tokens have no gradient."""

    def param_grads(self) -> None:
        run, op = self.run, self.op
        if op.param not in run.trainable or run.steps * self.batch == 0:
            return
        xp = run.xp
        ids = run.rows(op.src, 0, run.steps).reshape(-1).astype(xp.int64)
        order, starts = sorted_segments(xp, ids)
        grad = xp.zeros(self.table.shape, dtype=run.dtype)
        segments = int(starts.size) - 1
        self.module.launch(f"gr_gather_grad_{self.sfx}", (segments,), (_pow2_block(self.cols),), (
            run.arrays[op.src], self.offset(op.src, 0), run.grads[op.out],
            self.offset(op.out, 0), order, starts, np.int32(segments), np.int32(self.cols),
            self.real(op.scale), grad))
        run.add_param_grad(op.param, grad)


def device_kernel(op, run, backend):
    """The wrapper for ``op``, or None where the generic NumPy-style kernel must do."""
    buffers = run.prog.buffers
    if isinstance(op, MatMul):
        return GemmKernel(op, run, backend)
    if isinstance(op, Fused):
        if any(m.norm for m in op.ops):  # normalised nodes grouped for the CPU: one by one
            from graphrnn.backends.cuda_norm import LayerNormRunKernel
            return LayerNormRunKernel(op, run, backend)
        return FusedCudaKernel(op, run, backend)
    if isinstance(op, Gather):
        return GatherCudaKernel(op, run, backend)
    if isinstance(op, NodeUpdate):
        if op.norm:  # a row reduction: one block a row (graphrnn.backends.cuda_norm)
            from graphrnn.backends.cuda_norm import LayerNormNodeKernel
            plain = replace(op, norm=None, gain=None)
            return LayerNormNodeKernel(op, run, backend) if elementwise(plain, buffers) else None
        if op.own:
            ok = op.activation in ACT_CODES and elementwise(replace(op, own=()), buffers)
            return AsyncNodeKernel(op, run, backend) if ok else None
        if op.activation == "softmax":
            ok = elementwise(replace(op, activation="identity"), buffers)
            return SoftmaxNodeKernel(op, run, backend) if ok else None
        if elementwise(op, buffers):
            return FusedCudaKernel(op, run, backend)
    return None
