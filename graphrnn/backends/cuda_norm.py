"""The GPU backend's layer-normalised nodes: one block a row (``kernels/reduce.cuh``).

A group of the grouping pass (normalised nodes and the element-wise ones after them: a
LayerNorm LSTM's whole step) is one generated row kernel each way (:class:`LayerNormRunKernel`,
the source of :func:`~graphrnn.backends.codegen_norm.generate_norm`). A lone normalised node:
forward, the net-only kernel of :mod:`graphrnn.backends.codegen` writes the combined terms to
``net`` (no bias); the row kernel overwrites them with ``x̂``, keeps ``1/σ`` per row and writes
``out = act(γ·x̂ + bias)`` (leaked). Backward: the row kernel takes ``d out`` through the steps
of :func:`~graphrnn.ops.node_update_vjp.vjp_steps` down to ``d net`` of the combined terms
(keeping ``dy``, the gradient of ``γ·x̂ + bias``, for the bias and gain gradients); then the
net-only kernel sends ``d net`` to the terms. Same math as the CPU's
:mod:`graphrnn.backends.codegen_norm`, except that the CPU kernel sums the bias and gain
gradients a row at a time itself: here a launch of a window-safe group spans several steps,
whose blocks would add to one row's sums at once, so ``dy`` is kept and reduced after.
"""

from __future__ import annotations

import hashlib
from dataclasses import replace

import numpy as np

from graphrnn.backends.codegen import CTYPES, _activation, _Emitter
from graphrnn.backends.codegen_norm import generate_norm, local_grad_lines
from graphrnn.backends.cuda_ops import FusedCudaKernel, _Kernel, _pow2_block, step_windows
from graphrnn.compiler.ir import NodeUpdate, op_label
from graphrnn.frontend.network import NORM_EPS
from graphrnn.ops import node_update_vjp
from graphrnn.ops.node_update import NodeUpdateKernel


def _head(e: _Emitter, name: str, size: int) -> str:
    params = ["const int t0", "const int B", *(
        f"{'' if a in e.written else 'const '}{e.ctype}* __restrict__ p{i}"
        for i, a in enumerate(e.args))]
    return f"""extern "C" __global__ void {name}(
    {(", " + chr(10) + "    ").join(params)}) {{
  __shared__ {e.ctype} red[GR_BLOCK];
  const int tt = t0 + (int)(blockIdx.x / B);
  const int b = (int)(blockIdx.x % B);
  const gr_index row = (gr_index)tt * B + b;
  {e.ctype} s1 = 0, s2 = 0;
  for (int j = threadIdx.x; j < {size}; j += blockDim.x) {{"""


def norm_source(op: NodeUpdate, buffers, dtype: str) -> tuple[str, str, str, tuple, tuple]:
    """The CUDA source of ``op``'s row kernels: ``(source, forward, backward, forward_args,
    backward_args)``, args as :class:`~graphrnn.backends.codegen.Arg` (kinds buf, grad, param,
    noise, and the scratch ``rstd`` ``(T, B)`` and ``dy`` ``(T, B, size)``)."""
    ct, size = CTYPES[dtype], buffers[op.out].size
    f, g = _Emitter(buffers, ct, size, "cuda"), _Emitter(buffers, ct, size, "cuda")
    net = f"{f.ptr('buf', op.net, True)}[{f.index(op.net, 0)}]"
    fwd = [f"    s1 += {net};", "  }", f"  const {ct} mean = gr_block_sum(s1, red) / {size};",
           f"  for (int j = threadIdx.x; j < {size}; j += blockDim.x) {{",
           f"    const {ct} d = {net} - mean; s2 += d * d;", "  }",
           f"  const {ct} rstd = 1 / sqrt(gr_block_sum(s2, red) / {size} + {f.lit(NORM_EPS)});",
           f"  if (threadIdx.x == 0) {f.ptr('rstd', op.node, True)}[row] = rstd;",
           f"  for (int j = threadIdx.x; j < {size}; j += blockDim.x) {{",
           f"    const {ct} xh = ({net} - mean) * rstd;", f"    {net} = xh;",
           f"    {ct} n = xh * {f.ptr('param', op.gain)}[j]"
           + (f" + {f.ptr('param', op.bias)}[j];" if op.bias else ";"),
           f"    {ct} v = {_activation(f, op, 'n')};"]
    if op.leak is not None:
        fwd.append(f"    v = v * {f.lit(op.leak)} + {f.ptr('buf', op.out)}"
                   f"[{f.index(op.out, 1)}] * {f.lit(1 - op.leak)};")
    fwd += [f"    {f.ptr('buf', op.out, True)}[{f.index(op.out, 0)}] = v;", "  }", "}"]
    steps = node_update_vjp.vjp_steps(op)
    xh, gain = f"{g.ptr('buf', op.net)}[{g.index(op.net, 0)}]", f"{g.ptr('param', op.gain)}[j]"
    dy = f"{g.ptr('dy', op.node, True)}[row * {size} + j]"
    bwd = local_grad_lines(g, op, steps, xh, gain, "    ", host=False)
    bwd += [f"    {dy} = dn;", f"    s1 += dn * {gain}; s2 += dn * {gain} * xh;", "  }",
            f"  const {ct} m1 = gr_block_sum(s1, red) / {size};",
            f"  const {ct} m2 = gr_block_sum(s2, red) / {size};",
            f"  const {ct} rstd = {g.ptr('rstd', op.node)}[row];",
            f"  for (int j = threadIdx.x; j < {size}; j += blockDim.x)",
            f"    {g.ptr('grad', op.net, True)}[{g.index(op.net, 0)}] = "
            f"rstd * ({dy} * {gain} - m1 - {xh} * m2);", "}"]
    digest = hashlib.sha1("\n".join([ct, *fwd, *bwd]).encode()).hexdigest()[:12]
    fname, bname = f"gr_norm_{digest}_fwd", f"gr_norm_{digest}_bwd"
    source = "\n".join([f"// graphrnn layer norm of {op_label(op)} ({dtype})",
                        '#include "reduce.cuh"', "", _head(f, fname, size), *fwd, "",
                        _head(g, bname, size), *bwd, ""])
    return source, fname, bname, tuple(f.args), tuple(g.args)


class _RowKernel(_Kernel):
    """What the row kernels share: their scratch (``rstd``, ``dy``) and parameter arrays, the
    arrays of an argument list, and a normalised node's bias, gain and diagonal gradients."""

    def _keep_arrays(self, args, size: int) -> None:
        run, backend = self.run, self.backend
        shapes = {"rstd": (run.steps, run.batch), "dy": (run.steps, run.batch, size)}
        self.store = {}
        for a in args:
            if a in self.store:
                continue
            if a.kind in shapes:
                self.store[a] = backend.empty((f"norm-{a.kind}", a.name), shapes[a.kind],
                                              run.dtype)
            elif a.kind in ("param", "noise"):
                table = run.params if a.kind == "param" else run.uniforms
                self.store[a] = backend.stable((a.kind, a.name), table[a.name])

    def _arrays(self, args) -> tuple:
        table = {"buf": self.run.arrays, "grad": self.run.grads}
        return tuple(self.store[a] if a in self.store else table[a.kind][a.name] for a in args)

    def _normalised_grads(self, op: NodeUpdate) -> None:
        """``op``'s bias and gain gradients from its ``dy`` and ``x̂``; diagonal weights' from
        ``d net``."""
        run = self.run
        dy = next(v for a, v in self.store.items() if a.kind == "dy" and a.name == op.node)
        if op.bias in run.trainable:
            run.add_param_grad(op.bias, dy.sum(axis=(0, 1)))
        if op.gain in run.trainable:
            run.add_param_grad(op.gain, (dy * run.rows(op.net, 0, run.steps)).sum(axis=(0, 1)))
        if any(t.kind == "diagonal" for t in op.terms):
            NodeUpdateKernel(replace(op, bias=None, norm=None, gain=None), run).param_grads()


class LayerNormNodeKernel(_RowKernel):
    """A ``norm: layer`` NodeUpdate on the GPU (see the module)."""

    def __init__(self, op: NodeUpdate, run, backend):
        super().__init__(op, run, backend)
        terms = replace(op, bias=None, norm=None, gain=None, activation="identity", leak=None)
        self.net = FusedCudaKernel(terms, run, backend, net_only=True)
        source, self.fname, self.bname, fargs, bargs = norm_source(op, run.prog.buffers,
                                                                   self.dtype)
        self.module = backend.module(source)
        size = run.prog.buffers[op.out].size
        self.block = _pow2_block(size)
        self._keep_arrays(fargs + bargs, size)
        self.fargs, self.bargs = fargs, bargs
        #: one step a launch where a step reads the last one's value (a leak)
        self.per_step = op.leak is not None

    def pointers(self, backward: bool) -> tuple:
        arrays = self._arrays(self.bargs if backward else self.fargs)
        return self.net.pointers(backward) + tuple(self.backend.ptr(a) for a in arrays)

    def forward(self, lo: int, hi: int) -> None:
        arrays = self._arrays(self.fargs)
        for a, b in step_windows(lo, hi, False, self.per_step):
            self.net.forward(a, b)
            self.module.launch(self.fname, ((b - a) * self.batch,), (self.block,),
                               (np.int32(a), np.int32(self.batch)) + arrays)

    def backward(self, lo: int, hi: int) -> None:
        arrays = self._arrays(self.bargs)
        for a, b in step_windows(lo, hi, True, self.per_step):
            self.module.launch(self.bname, ((b - a) * self.batch,), (self.block,),
                               (np.int32(a), np.int32(self.batch)) + arrays)
            self.net.backward(a, b)

    def param_grads(self) -> None:
        """Bias and gain gradients from ``dy`` and ``x̂``; diagonal weights' from ``d net``."""
        self._normalised_grads(self.op)


class LayerNormRunKernel(_RowKernel):
    """A Fused run of normalised and element-wise NodeUpdates (the grouping pass,
    :func:`~graphrnn.compiler.fusion.group_normalised`) as one generated row kernel each way,
    one block a row: :func:`~graphrnn.backends.codegen_norm.generate_norm` for the GPU, its
    passes separated by block sums (``gr_block_sum``), so a LayerNorm LSTM step is one launch
    forward and one backward."""

    def __init__(self, op, run, backend):
        super().__init__(op, run, backend)
        prog = run.prog
        self.members = op.ops
        no_grad = frozenset(n for n in prog.buffers if n not in run.grads_wanted)
        key = ("norm-group", op.uid, self.dtype, no_grad)
        hit = backend._sources.get(key)
        if hit is None or hit[0] != op:  # the Program outlives runs: generate once
            hit = backend._sources[key] = (op, generate_norm(op, prog.buffers, self.dtype,
                                                             no_grad, target="cuda"))
        self.src = hit[1]
        self.module = backend.module(self.src.source)
        size = prog.buffers[self.members[0].out].size
        self.block = _pow2_block(size)
        self._keep_arrays(self.src.forward_args + self.src.backward_args, size)

    def pointers(self, backward: bool) -> tuple:
        """The device addresses the kernel reads and writes (a CUDA graph's identity)."""
        args = self.src.backward_args if backward else self.src.forward_args
        return tuple(self.backend.ptr(a) for a in self._arrays(args))

    def _launch(self, name: str, args, lo: int, hi: int, reverse: bool) -> None:
        arrays = self._arrays(args)
        for a, b in step_windows(lo, hi, reverse, not self.src.window_safe):
            self.module.launch(name, ((b - a) * self.batch,), (self.block,),
                               (np.int32(a), np.int32(self.batch)) + arrays)

    def forward(self, lo: int, hi: int) -> None:
        self._launch(self.src.forward, self.src.forward_args, lo, hi, False)

    def backward(self, lo: int, hi: int) -> None:
        self._launch(self.src.backward, self.src.backward_args, lo, hi, True)

    def param_grads(self) -> None:
        """Normalised members: bias and gain from ``dy`` and ``x̂``, diagonal weights from
        ``d net``; element-wise members from their ``d net``."""
        run = self.run
        for m in self.members:
            if m.norm:
                self._normalised_grads(m)
            elif m.bias or any(t.kind == "diagonal" for t in m.terms):
                NodeUpdateKernel(m, run).param_grads()
