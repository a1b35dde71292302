"""C source for a row group on the CPU: layer-normalised NodeUpdates and the element-wise ones
between them, as one kernel of a few ``j`` passes per ``(t, b)`` row.

A ``norm: layer`` node mixes its row, so it is not one of the element-wise members of
:mod:`graphrnn.backends.codegen`. Its host kernels loop over ``(t, b)`` rows; inside a row the
members are placed in as few ``j`` passes as the data allow (:func:`row_passes`): a normalised
member's first phase (its combined terms into ``net``) goes into the current pass, its second
phase (``x̂`` over ``net``, ``γ·x̂ + bias``, activation, leak) opens the next one, and
element-wise members run in the current pass, same-step values in registers. The row sums:
the mean's in the pass making the combined terms, then (between passes) a centred sum for the
variance, ``1/σ`` to a ``(T, B)`` scratch; on the CPU a pass with sums runs in lanes
(:func:`_columns`), so it vectorises without reassociation. A LayerNorm LSTM step is three
passes: the four gates' sums; their values, the cell and ``c`` for ``tc``; ``tanh(LN(c))``
and ``h``. Backward mirrors it in reverse, each member in the first pass where its gradient
is complete, so gradients members send each other within a pass stay in registers: the first
phase (:func:`~graphrnn.ops.node_update_vjp.vjp_steps` down to ``dy``, to a scratch, and
the sums of ``dy·γ`` and ``dy·γ·x̂`` in the same pass), then ``d net`` and the shares. On the CPU the
scratch ``dy`` is the row's (``(B, size)``) and the kernel adds ``dy`` and ``dy·x̂`` to the
row's bias and gain gradient sums (one thread owns a row); on the GPU, where a launch may
span steps, ``dy`` is ``(T, B, size)`` and the caller reduces it. A call computes whole rows
``[j0, j1)`` (batch rows).
"""

from __future__ import annotations

import hashlib
from dataclasses import replace

from graphrnn import config
from graphrnn.backends.codegen import (
    CTYPES,
    FusedSource,
    _activation,
    _backward_member,
    _Emitter,
    _forward_member,
    _share,
    _term_value,
    local_grad_steps,
)
from graphrnn.backends.kernel_plan import KernelPlan, plan_memory
from graphrnn.compiler.fusion import elementwise
from graphrnn.compiler.ir import Buffer, Fused, NodeUpdate, op_label
from graphrnn.frontend.network import NORM_EPS
from graphrnn.ops import node_update_vjp


def _head(e: _Emitter, name: str) -> str:
    """The function's head down to the body of row ``(tt, b)``: a loop over the rows on the
    host, one block a row on the GPU (``red``: the block's shared scratch for its sums)."""
    decls = [f"{'' if a in e.written else 'const '}{e.ctype}* __restrict__ p{i}"
             for i, a in enumerate(e.args)]
    if e.target == "cuda":
        params = ",\n    ".join(["const int t0", "const int B", *decls])
        return f"""extern "C" __global__ void {name}(
    {params}) {{
  __shared__ {e.ctype} red[GR_BLOCK];
  {{
    const int tt = t0 + (int)(blockIdx.x / B);
    const int b = (int)(blockIdx.x % B);
    const gr_index row = (gr_index)tt * B + b;"""
    params = ["const int t0", "const int steps", "const int B"]
    unpack = "".join(f"\n  {d} = ({d.split(' __restrict__')[0]})P[{i}];"
                     for i, d in enumerate(decls))
    return f"""void {name}({", ".join(params)}, void* const* P,
    const int j0, const int j1, const int n_rows) {{{unpack}
  for (int tt = t0; tt < t0 + steps; ++tt)
  for (int b = j0; b < (j1 < n_rows ? j1 : n_rows); ++b) {{
    const gr_index row = (gr_index)tt * B + b;"""


def _columns(e: _Emitter, body: list[str], totals: list[str]) -> list[str]:
    """A pass's ``j`` loop over ``body``: all columns on the host, the thread's share on the
    GPU. ``totals``: row sums the body adds to (``a_TOTAL[l] += ...``): on the host the loop
    runs in :data:`LANES` partial sums (vectorised without reassociation), on the GPU each
    thread sums its columns and the block adds them up."""
    ct, size, lanes = e.ctype, e.size, LANES
    if e.target == "cuda":
        return [*[f"    {ct} {t} = 0, a_{t}[1] = {{0}};" for t in totals],
                f"    for (int j = threadIdx.x; j < {size}; j += blockDim.x) {{",
                *(["      const int l = 0;"] if totals else []), *body, "    }",
                *[f"    {t} = gr_block_sum(a_{t}[0], red);" for t in totals]]
    if not totals:
        return [f"    GR_VECTORIZE\n    for (int j = 0; j < {size}; ++j) {{", *body, "    }"]
    lines = [*[f"    {ct} {t} = 0, a_{t}[{lanes}] = {{0}};" for t in totals],
             f"    for (int jl = 0; jl + {lanes} <= {size}; jl += {lanes})",
             f"    GR_VECTORIZE\n    for (int l = 0; l < {lanes}; ++l) {{",
             "      const int j = jl + l;", *body, "    }"]
    if size % lanes:
        lines += [f"    for (int j = {size - size % lanes}; j < {size}; ++j) {{",
                  "      const int l = 0;", *body, "    }"]
    return lines + [f"    for (int l = 0; l < {lanes}; ++l) {t} += a_{t}[l];" for t in totals]


def row_passes(members, backward: bool = False) -> list[list[tuple[int, int]]]:
    """The ``j`` passes of a row: lists of ``(k, phase)``, member ``k`` (its index in
    ``members``) in phase 0 (element-wise members; a normalised one's first phase) or 1 (a
    normalised one's second phase, after its row sums).

    Forward: members in order; a pass closes where a member reads a normalised member whose
    second phase is pending, and the next one starts with every pending second phase.
    Backward: members in reverse, each in the earliest pass where every same-step share of its
    gradient is made (an element-wise sender's pass, a normalised sender's second phase), so
    that gradient stays in registers; a pass lists its second phases first."""
    if backward:
        return _backward_passes(members)
    passes: list[list[tuple[int, int]]] = [[]]
    pending: list[int] = []
    for k, m in enumerate(members):
        if any(t.delay == 0 and t.src == members[p].out for p in pending for t in m.terms):
            passes.append([(p, 1) for p in pending])
            pending = []
        passes[-1].append((k, 0))
        if m.norm:
            pending.append(k)
    if pending:
        passes.append([(p, 1) for p in pending])
    return [p for p in passes if p]


def _backward_passes(members) -> list[list[tuple[int, int]]]:
    sends_at: dict[int, int] = {}  # k -> the pass of its shares
    placed: dict[tuple[int, int], int] = {}
    for k in range(len(members) - 1, -1, -1):
        out = members[k].out
        first = max((sends_at[s] for s in sends_at for t in members[s].terms
                     if t.delay == 0 and t.src == out), default=0)
        placed[(k, 0)] = first
        if members[k].norm:
            placed[(k, 1)] = first + 1
        sends_at[k] = first + (1 if members[k].norm else 0)
    passes: list[list[tuple[int, int]]] = [[] for _ in range(max(placed.values()) + 1)]
    for phase in (1, 0):
        for k in range(len(members) - 1, -1, -1):
            if (k, phase) in placed:
                passes[placed[(k, phase)]].append((k, phase))
    return passes


def _share_pass(members, row_pass_of: dict[tuple[int, int], int], k: int) -> int:
    """The backward pass in which member ``k`` sends its terms' shares."""
    return row_pass_of[(k, 1 if members[k].norm else 0)]


def backward_plans(members, plan: KernelPlan, keep: frozenset[str] | None,
                   passes) -> list[KernelPlan]:
    """Each backward pass's :class:`KernelPlan`: a member's gradient in registers where a
    same-pass member sends to it (``g{k}``), in memory where others may add to it (``keep``;
    None: always), a share comes from another pass or step, or its leak splits it."""
    where = {entry: n for n, row_pass in enumerate(passes) for entry in row_pass}
    index = {m.out: k for k, m in enumerate(members)}
    registers: list[set[str]] = [set() for _ in passes]
    memory = {m.out for m in members if keep is None or m.out in keep or m.leak is not None}
    for s, m in enumerate(members):
        for share in node_update_vjp.shares(node_update_vjp.vjp_steps(m)):
            k = index.get(share.target.src)
            if k is None or share.target.cols is not None:
                continue
            n = _share_pass(members, where, s)
            if share.target.delay == 0 and where[(k, 0)] == n:
                registers[n].add(share.target.src)
            else:
                memory.add(share.target.src)
    return [replace(plan, grad_in_memory=frozenset(memory), in_registers=frozenset(regs))
            for regs in registers]


def _combined(e: _Emitter, op: NodeUpdate, x: str, live: dict[str, str]) -> list[str]:
    """``x = combine(terms)`` at column ``j`` (no bias)."""
    if not op.terms:
        return [f"      {e.ctype} {x} = 0;"]
    lines = []
    for i, term in enumerate(op.terms):
        value = _term_value(e, term, live)
        lines.append(f"      {e.ctype} {x} = {value};" if i == 0 else
                     f"      {x} {'*=' if op.combine == 'product' else '+='} {value};")
    return lines


#: a reduction's partial sums: independent lanes vectorise without reassociation; 16 (one
#: 512-bit vector of floats, two of 256 bits) measured faster than 8 on an AVX-512 Xeon
LANES = 16


def _stats(e: _Emitter, k: int, op: NodeUpdate) -> list[str]:
    """Row ``k``'s mean (of the pass's sum ``s{k}``), variance (a centred sum over ``net``)
    and ``1/σ``."""
    ct, size = e.ctype, e.size
    net = f"{e.ptr('buf', op.net)}[{e.index(op.net, 0)}]"
    return [f"    const {ct} mean{k} = s{k} / {size};",
            *_columns(e, [f"      a_q{k}[l] += ({net} - mean{k}) * ({net} - mean{k});"],
                      [f"q{k}"]),
            f"    const {ct} rstd{k} = 1 / sqrt(q{k} / {size} + {e.lit(NORM_EPS)});",
            ("    if (threadIdx.x == 0) " if e.target == "cuda" else "    ")
            + f"{e.ptr('rstd', op.node, True)}[row] = rstd{k};"]


def _forward_phase(e: _Emitter, k: int, op: NodeUpdate, phase: int,
                   live: dict[str, str], plan: KernelPlan) -> list[str]:
    """Member ``k``'s statements in a forward pass at column ``j``."""
    if not op.norm:
        return ["  " + line for line in _forward_member(e, k, op, live, False, plan)]
    ct = e.ctype
    net = f"{e.ptr('buf', op.net, True)}[{e.index(op.net, 0)}]"
    if phase == 0:
        return [f"      // {op_label(op)}: the sum", *_combined(e, op, f"x{k}", live),
                f"      {net} = x{k};", f"      a_s{k}[l] += x{k};"]
    lines = [f"      // {op_label(op)}", f"      const {ct} xh{k} = ({net} - mean{k}) * rstd{k};",
             f"      {net} = xh{k};", f"      {ct} n{k} = xh{k} * {e.ptr('param', op.gain)}[j];"]
    if op.bias:
        lines.append(f"      n{k} += {e.ptr('param', op.bias)}[j];")
    lines.append(f"      {ct} v{k} = {_activation(e, op, f'n{k}')};")
    if op.leak is not None:
        prev = f"{e.ptr('buf', op.out)}[{e.index(op.out, 1)}]"
        lines.append(f"      v{k} = v{k} * {e.lit(op.leak)} + {prev} * {e.lit(1 - op.leak)};")
    lines.append(f"      {e.ptr('buf', op.out, True)}[{e.index(op.out, 0)}] = v{k};")
    live[op.out] = f"v{k}"
    return lines


def local_grad_lines(e: _Emitter, op: NodeUpdate, steps, xh: str, gain: str, indent: str,
                     host: bool = True, g: str | None = None) -> list[str]:
    """C statements of a normalised node's VJP steps before its :class:`NormGrad`, for one
    element ``j`` (the CPU and the CUDA kernels share them): ``g`` from the node's gradient,
    ``net`` rebuilt from ``xh`` where a step reads it, the leak split, the recomputed value
    and the local derivative into ``dn`` (``host``: the CPU kernel, whose pointer to the
    node's gradient counts as written; ``g``: the gradient's C expression where it is not
    only the node's gradient in memory)."""
    ct = e.ctype
    if g is None:
        g = f"{e.ptr('grad', op.out, host)}[{e.index(op.out, 0)}]"
    lines = [f"{ct} g = {g};",
             f"const {ct} xh = {xh};"]
    if node_update_vjp.reads_net(steps):
        lines.append(f"const {ct} net = xh * {gain}"
                     + (f" + {e.ptr('param', op.bias)}[j];" if op.bias else ";"))
    return [indent + line for line in lines + local_grad_steps(e, op, steps)]


def _backward_phase(e: _Emitter, k: int, op: NodeUpdate, phase: int, no_grad: frozenset[str],
                    plan: KernelPlan, index: dict[str, int]) -> list[str]:
    """Member ``k``'s statements in a backward pass at column ``j`` (``plan``: the pass's)."""
    if not op.norm:
        return ["  " + line for line in _backward_member(e, k, op, set(no_grad), False, plan,
                                                         index)]
    ct, size = e.ctype, e.size
    steps = node_update_vjp.vjp_steps(op)
    host = e.target == "host"
    xh = f"{e.ptr('buf', op.net)}[{e.index(op.net, 0)}]"
    dy = f"{e.ptr('dy', op.node, True)}[{'b' if host else 'row'} * {size} + j]"
    gain = f"{e.ptr('param', op.gain)}[j]"
    if phase == 0:
        parts = ([f"{e.ptr('grad', op.out, host)}[{e.index(op.out, 0)}]"]
                 if op.out in plan.grad_in_memory else [])
        parts += [f"g{k}"] if op.out in plan.in_registers else []
        return [f"      {{  // d {op_label(op)}: dy and its sums",
                *local_grad_lines(e, op, steps, xh, gain, "        ", host,
                                  " + ".join(parts) or "0"),
                f"        {dy} = dn;", f"        a_s{k}[l] += dn * {gain};",
                f"        a_q{k}[l] += dn * {gain} * xh;", "      }"]
    sends = [s for s in node_update_vjp.shares(steps)
             if s.target.cols is not None or s.target.src not in no_grad]
    lines = [f"      {{  // d {op_label(op)}",
             f"        const {ct} dn = rstd{k} * ({dy} * {gain} - m{k} - {xh} * mq{k});"]
    if host:  # the row's bias and gain gradients, summed over the steps (one thread a row)
        at = f"[b * {size} + j]"
        lines += [f"        const {ct} dy = {dy};"]
        if op.bias:
            lines.append(f"        {e.ptr('dbias', op.node, True)}{at} += dy;")
        lines.append(f"        {e.ptr('dgain', op.node, True)}{at} += dy * {xh};")
    if any(t.kind == "diagonal" for t in op.terms):  # its weight gradient reads d net
        lines.append(f"        {e.ptr('grad', op.net, True)}[{e.index(op.net, 0)}] = dn;")
    for i in sorted({j for s in sends for j in s.product_of}):
        lines.append(f"        const {ct} a{i} = {_term_value(e, op.terms[i], {})};")
    lines += ["    " + line for s in sends for line in _share(e, s, plan, index)]
    if not sends and not any(t.kind == "diagonal" for t in op.terms):
        lines.append("        (void)dn;  // nothing reads this gradient")
    return [*lines, "      }"]


def _body(e: _Emitter, members, passes, phase_lines, between, prelude=None,
          backward: bool = False) -> list[str]:
    """The row body: the passes' ``j`` loops (each opening with ``prelude(n)``, pass ``n``'s
    register declarations; a normalised member's first phase adds to its row sums ``s{k}``,
    backward also ``q{k}``) and ``between(k)`` after it (its row statistics)."""
    ct_lines = []
    for n, row_pass in enumerate(passes):
        live: dict[str, str] = {}
        body = [line for k, phase in row_pass for line in phase_lines(n, k, phase, live)]
        totals = [f"{t}{k}" for k, phase in row_pass if phase == 0 and members[k].norm
                  for t in (("s", "q") if backward else ("s",))]
        ct_lines += _columns(e, [*(prelude(n) if prelude else []), *body], totals)
        for k, phase in row_pass:
            if phase == 0 and members[k].norm:
                ct_lines += between(k)
    return ct_lines


def _plan(members, buffers: dict[str, Buffer], keep: frozenset[str] | None) -> KernelPlan:
    """What the element-wise members keep in memory: every gradient (a pass reads what an
    earlier one added); the nets and outs that others (``keep``; None: all), the backward, or a
    later pass read; ``d net`` where a bias or diagonal-weight gradient reads it."""
    outs = frozenset(m.out for m in members)
    nets = frozenset(m.net for m in members)
    dnets = frozenset(m.net for m in members if not m.norm and (
        m.bias or any(t.kind == "diagonal" for t in m.terms)))
    if keep is None:
        return KernelPlan(outs | nets, outs, dnets, frozenset())
    made = {}  # out -> the forward pass computing it
    for n, row_pass in enumerate(row_passes(members)):
        made.update({members[k].out: n for k, phase in row_pass
                     if phase == int(bool(members[k].norm))})
    later = {t.src for n, row_pass in enumerate(row_passes(members)) for k, _ in row_pass
             for t in members[k].terms if t.delay == 0 and made.get(t.src, n) != n}
    needed = plan_memory(members, buffers, frozenset(), False).stores  # the backward's reads
    return KernelPlan((outs | nets) & (keep | needed | later), outs, dnets, frozenset())


def generate_norm(op: Fused | NodeUpdate, buffers: dict[str, Buffer], dtype: str = "float32",
                  no_grad: frozenset[str] = frozenset(),
                  keep: frozenset[str] | None = None, target: str = "host") -> FusedSource:
    """The host kernels of a ``norm: layer`` NodeUpdate, or of a Fused run of one size whose
    members are layer-normalised or element-wise (one row loop, :func:`row_passes`; see the
    module).

    The kernels take ``j0, j1`` as batch rows (``0, B`` for all), not columns, and compute
    those below ``n_rows`` (their last argument; ``B`` for all). Pointer
    kinds besides :class:`~graphrnn.backends.codegen.Arg`'s: ``rstd`` (``(T, B)``,
    ``1/σ`` per row) and ``dy`` (the gradient of ``γ·x̂ + bias``: ``(B, size)`` on the host,
    ``(T, B, size)`` on the GPU), and on the host ``dbias``/``dgain`` (``(B, size)``, each
    row's sums over the steps of ``dy`` and ``dy·x̂``, which the caller adds up and zeroes),
    arrays of the run's that the caller allocates, one of each per normalised member.
    ``keep``: the buffers others read (None: every member's net and out is stored, and every
    member's gradient is also read from memory); a member's gradient that only members of the
    same backward pass send to stays in registers.
    """
    members = op.ops if isinstance(op, Fused) else (op,)
    size = buffers[members[0].out].size
    for m in members:
        if m.own or buffers[m.out].size != size or not (
                elementwise(replace(m, norm=None, gain=None), buffers)):
            raise ValueError(f"node {m.node} is not a synchronous row-local node of {size}")
    ctype = CTYPES[dtype]
    fwd, bwd = _Emitter(buffers, ctype, size, target), _Emitter(buffers, ctype, size, target)
    plan = _plan(members, buffers, keep)
    if keep is not None:  # GEMM buffers only this kernel reads: their gradients assigned
        gemm = plan_memory(members, buffers, keep, False)
        plan = replace(plan, overwrites=gemm.overwrites, aliases=gemm.aliases)
    index = {m.out: k for k, m in enumerate(members)}

    def fwd_stats(k):
        return _stats(fwd, k, members[k])

    def bwd_stats(k):  # the means of dy·γ and dy·γ·x̂ (summed in the pass making dy)
        return [f"    const {ctype} rstd{k} = {bwd.ptr('rstd', members[k].node)}[row];",
                f"    const {ctype} m{k} = s{k} / {size}, mq{k} = q{k} / {size};"]

    fwd_body = _body(fwd,
        members, row_passes(members),
        lambda n, k, ph, live: _forward_phase(fwd, k, members[k], ph, live, plan), fwd_stats)
    bwd_passes = row_passes(members, backward=True)
    plans = backward_plans(members, plan, keep, bwd_passes)

    def registers(n):  # the gradients pass n's members send each other in registers
        return [f"      {ctype} g{index[out]} = 0;" for out in sorted(plans[n].in_registers,
                                                                       key=index.get)]
    bwd_body = _body(bwd,
        members, bwd_passes,
        lambda n, k, ph, live: _backward_phase(bwd, k, members[k], ph, no_grad, plans[n],
                                               index),
        bwd_stats, registers, backward=True)
    digest = hashlib.sha1("\n".join([target, ctype, *fwd_body, *bwd_body]).encode()
                          ).hexdigest()[:12]
    fname, bname = f"gr_norm_{digest}_fwd", f"gr_norm_{digest}_bwd"
    label = ", ".join(m.node for m in members)
    include = ['#include "reduce.cuh"'] if target == "cuda" else ['#include "host.h"',
                                                                   "#include <math.h>"]
    source = "\n".join([f"// graphrnn generated row kernels for {label} "
                        f"({dtype}, {size} wide, {target})", *include,
                        "", _head(fwd, fname), *fwd_body, "  }\n}", "",
                        _head(bwd, bname), *bwd_body, "  }\n}", ""])
    config.debug(4, f"[graphrnn] generated C source:\n{source}")
    outs = {m.out for m in members}
    window_safe = not any(m.leak is not None or any(t.src in outs and t.delay > 0
                                                     for t in m.terms) for m in members)
    return FusedSource(source, fname, bname, tuple(fwd.args), tuple(bwd.args), window_safe, size,
                       plan.overwrites, tuple(plan.aliases.items()))
