"""C source for a layer-normalised NodeUpdate on the CPU: a row pass for the mean and variance.

A ``norm: layer`` node mixes its row, so it is not one of the element-wise members of
:mod:`graphrnn.backends.codegen`; its host kernels loop over ``(t, b)`` rows and run the ``j``
loop twice per row. Forward: the combined terms go to ``net`` while one pass sums them (shifted
by the row's first value, for a stable variance); the second pass writes ``x̂`` over them
(``net`` holds ``x̂``), then ``γ·x̂ + bias``, the activation and the leak, and ``1/σ`` goes to a
``(T, B)`` scratch. Backward: the steps of :func:`~graphrnn.ops.node_update_vjp.vjp_steps`;
the first pass takes ``d out`` to ``dy`` (kept in a ``(T, B, size)`` scratch for the bias and
gain gradients) and sums ``dy·γ`` and ``dy·γ·x̂``; the second writes ``d net`` (of the combined
terms) and adds the terms' shares. A call computes whole rows, or nothing when its column
range ``[j0, j1)`` is empty (a compiled loop gives a normalised node to one thread).
"""

from __future__ import annotations

import hashlib

from graphrnn import config
from graphrnn.backends.codegen import (
    CTYPES,
    FusedSource,
    _activation,
    _Emitter,
    _local_grad,
    _share,
    _term_value,
)
from graphrnn.backends.kernel_plan import KernelPlan
from graphrnn.compiler.ir import Buffer, Fused, NodeUpdate, op_label
from graphrnn.frontend.network import NORM_EPS
from graphrnn.ops import node_update_vjp
from graphrnn.ops.node_update_vjp import LeakSplit, LocalGrad, NormGrad, RecomputeValue


def _head(e: _Emitter, name: str) -> str:
    """The function's head down to the body of row ``(tt, b)``."""
    params = ["const int t0", "const int steps", "const int B"]
    decls = [f"{'' if a in e.written else 'const '}{e.ctype}* __restrict__ p{i}"
             for i, a in enumerate(e.args)]
    unpack = "".join(f"\n  {d} = ({d.split(' __restrict__')[0]})P[{i}];"
                     for i, d in enumerate(decls))
    return f"""void {name}({", ".join(params)}, void* const* P,
    const int j0, const int j1) {{{unpack}
  for (int tt = t0; tt < t0 + steps; ++tt)
  for (int b = j0; b < j1; ++b) {{
    const gr_index row = (gr_index)tt * B + b;"""


def _combined(e: _Emitter, op: NodeUpdate) -> list[str]:
    """``x = combine(terms)`` at column ``j`` (no bias)."""
    if not op.terms:
        return [f"      {e.ctype} x = 0;"]
    lines = []
    for i, term in enumerate(op.terms):
        value = _term_value(e, term, {})
        lines.append(f"      {e.ctype} x = {value};" if i == 0 else
                     f"      x {'*=' if op.combine == 'product' else '+='} {value};")
    return lines


def _forward(e: _Emitter, op: NodeUpdate) -> list[str]:
    ct, size = e.ctype, e.size
    net = f"{e.ptr('buf', op.net, True)}[{e.index(op.net, 0)}]"
    lines = [f"    // {op_label(op)}", f"    {ct} shift = 0, s1 = 0, s2 = 0;",
             f"    for (int j = 0; j < {size}; ++j) {{", *_combined(e, op),
             "      if (j == 0) shift = x;", f"      {net} = x;",
             "      const " + ct + " d = x - shift;", "      s1 += d; s2 += d * d;", "    }",
             f"    const {ct} m1 = s1 / {size};",
             f"    {ct} var = s2 / {size} - m1 * m1;",
             "    if (var < 0) var = 0;",
             f"    const {ct} mean = shift + m1;",
             f"    const {ct} rstd = 1 / sqrt(var + {e.lit(NORM_EPS)});",
             f"    {e.ptr('rstd', op.node, True)}[row] = rstd;",
             "    GR_VECTORIZE", f"    for (int j = 0; j < {size}; ++j) {{",
             f"      const {ct} xh = ({net} - mean) * rstd;", f"      {net} = xh;",
             f"      {ct} n = xh * {e.ptr('param', op.gain)}[j];"]
    if op.bias:
        lines.append(f"      n += {e.ptr('param', op.bias)}[j];")
    lines.append(f"      {ct} v = {_activation(e, op, 'n')};")
    if op.leak is not None:
        prev = f"{e.ptr('buf', op.out)}[{e.index(op.out, 1)}]"
        lines.append(f"      v = v * {e.lit(op.leak)} + {prev} * {e.lit(1 - op.leak)};")
    lines += [f"      {e.ptr('buf', op.out, True)}[{e.index(op.out, 0)}] = v;", "    }"]
    return lines


def local_grad_lines(e: _Emitter, op: NodeUpdate, steps, xh: str, gain: str, indent: str,
                     host: bool = True) -> list[str]:
    """C statements of a normalised node's VJP steps before its :class:`NormGrad`, for one
    element ``j`` (the CPU and the CUDA kernels share them): ``g`` from the node's gradient,
    ``net`` rebuilt from ``xh`` where a step reads it, the leak split, the recomputed value
    and the local derivative into ``dn`` (``host``: the CPU kernel, whose pointer to the
    node's gradient counts as written)."""
    ct = e.ctype
    lines = [f"{ct} g = {e.ptr('grad', op.out, host)}[{e.index(op.out, 0)}];",
             f"const {ct} xh = {xh};"]
    if node_update_vjp.reads_net(steps):
        lines.append(f"const {ct} net = xh * {gain}"
                     + (f" + {e.ptr('param', op.bias)}[j];" if op.bias else ";"))
    recomputed = False
    for step in steps:
        if isinstance(step, LeakSplit):
            gprev = f"&{e.ptr('grad', op.out, True)}[{e.index(op.out, 1)}]"
            lines += [f"gr_atomic_add({gprev}, {e.lit(1 - step.leak)} * g);",
                      f"g = g * {e.lit(step.leak)};"]
        elif isinstance(step, RecomputeValue):
            lines.append(f"const {ct} v = {_activation(e, op, 'net')};")
            recomputed = True
        elif isinstance(step, LocalGrad):
            if step.reads == "value" and not recomputed:
                lines.append(f"const {ct} v = {e.ptr('buf', op.out)}[{e.index(op.out, 0)}];")
            lines.append(f"const {ct} dn = {_local_grad(e, op, step, 'g', 'v', 'net')};")
    return [indent + line for line in lines]


def _backward(e: _Emitter, op: NodeUpdate, no_grad: frozenset[str]) -> list[str]:
    ct, size = e.ctype, e.size
    steps = node_update_vjp.vjp_steps(op)
    sends = [s for s in node_update_vjp.shares(steps)
             if s.target.cols is not None or s.target.src not in no_grad]
    xh = f"{e.ptr('buf', op.net)}[{e.index(op.net, 0)}]"
    dy = f"{e.ptr('dy', op.node, True)}[row * {size} + j]"
    gain = f"{e.ptr('param', op.gain)}[j]"
    lines = [f"    // d {op_label(op)}", f"    {ct} s1 = 0, s2 = 0;",
             f"    for (int j = 0; j < {size}; ++j) {{",
             *local_grad_lines(e, op, steps, xh, gain, "      ")]
    for step in steps:
        if isinstance(step, NormGrad):
            lines += [f"      {dy} = dn;", f"      const {ct} gg = dn * {gain};",
                      "      s1 += gg; s2 += gg * xh;", "    }",
                      f"    const {ct} rstd = {e.ptr('rstd', op.node)}[row];",
                      f"    const {ct} m1 = s1 / {size}, m2 = s2 / {size};",
                      "    GR_VECTORIZE", f"    for (int j = 0; j < {size}; ++j) {{",
                      f"      const {ct} dn = rstd * ({dy} * {gain} - m1 - {xh} * m2);",
                      f"      {e.ptr('grad', op.net, True)}[{e.index(op.net, 0)}] = dn;"]
    for i in sorted({j for s in sends for j in s.product_of}):
        lines.append(f"      const {ct} a{i} = {_term_value(e, op.terms[i], {})};")
    plan = KernelPlan(frozenset(), frozenset(), frozenset(), frozenset())
    lines += ["  " + line for s in sends for line in _share(e, s, plan, {})]
    return [*lines, "    }"]


def generate_norm(op: Fused | NodeUpdate, buffers: dict[str, Buffer], dtype: str = "float32",
                  no_grad: frozenset[str] = frozenset()) -> FusedSource:
    """The host kernels of a ``norm: layer`` NodeUpdate, or of a Fused run of them (one row
    loop, the members' row passes in turn; see the module).

    The kernels take ``j0, j1`` as batch rows (``0, B`` for all), not columns. Pointer
    kinds besides :class:`~graphrnn.backends.codegen.Arg`'s: ``rstd`` (``(T, B)``,
    ``1/σ`` per row) and ``dy`` (``(T, B, size)``, the gradient of ``γ·x̂ + bias``), scratch
    arrays of the run's that the caller allocates, one of each per member.
    """
    members = op.ops if isinstance(op, Fused) else (op,)
    size = buffers[members[0].out].size
    for m in members:
        if not m.norm or m.own or buffers[m.out].size != size:
            raise ValueError(f"node {m.node} is not a synchronous normalised node of {size}")
    ctype = CTYPES[dtype]
    fwd, bwd = _Emitter(buffers, ctype, size, "host"), _Emitter(buffers, ctype, size, "host")
    fwd_body = [line for m in members for line in ["    {", *_forward(fwd, m), "    }"]]
    bwd_body = [line for m in reversed(members)
                for line in ["    {", *_backward(bwd, m, no_grad), "    }"]]
    digest = hashlib.sha1("\n".join([ctype, *fwd_body, *bwd_body]).encode()).hexdigest()[:12]
    fname, bname = f"gr_norm_{digest}_fwd", f"gr_norm_{digest}_bwd"
    label = ", ".join(m.node for m in members)
    source = "\n".join([f"// graphrnn generated kernels for layer-normalised {label} "
                        f"({dtype}, {size} wide, host)", '#include "host.h"', "#include <math.h>",
                        "", _head(fwd, fname), *fwd_body, "  }\n}", "",
                        _head(bwd, bname), *bwd_body, "  }\n}", ""])
    config.debug(4, f"[graphrnn] generated C source:\n{source}")
    outs = {m.out for m in members}
    window_safe = not any(m.leak is not None or any(t.src in outs and t.delay > 0
                                                     for t in m.terms) for m in members)
    return FusedSource(source, fname, bname, tuple(fwd.args), tuple(bwd.args), window_safe, size)
