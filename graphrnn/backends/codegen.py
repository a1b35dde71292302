"""C source for a Fused op: one forward and one backward kernel, for the GPU or the CPU.

A generated kernel covers a window of ``steps`` steps from ``t0`` (a loop launches it with
``steps=1`` and ``t0=t``, so one compiled kernel serves every step and CUDA-graph capture). For
the GPU (``target="cuda"``, CUDA C for NVRTC) thread ``i`` computes element
``(t0 + i / (B·H), b, j)``; for the CPU (``target="host"``, C for the system compiler, with
``kernels/host.h``) one call loops over the window's ``(t, b, j)``, the ``j`` loop vectorised.
The body is the same: forward, every member node in order (terms,
combine, bias, activation, leak), keeping same-step member values in registers and writing each
member's ``net`` and ``out``; backward, the members' vector-Jacobian products in reverse (the math
of :mod:`graphrnn.ops.node_update`), adding each term's share to its source's gradient. Given
``keep`` (the CPU kernels), a kernel writes only what is read later and keeps same-step gradient
shares in registers (:mod:`graphrnn.backends.kernel_plan`). Buffers
are passed as base pointers of the time-major ``(pad + T, B, size)`` arrays; sizes and pads are
compiled in. Sends to a delayed row use ``gr_atomic_add`` (GPU threads of a multi-step window
may share it; on the CPU a plain ``+=``). With ``GRAPHRNN_DEBUG=4`` the source is printed.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from graphrnn import config
from graphrnn.backends.activation_c import header
from graphrnn.backends.kernel_plan import KernelPlan, plan_memory
from graphrnn.compiler.ir import Buffer, Fused, NodeUpdate, Term, op_label
from graphrnn.ops import node_update_vjp
from graphrnn.ops.activations import REGISTRY
from graphrnn.ops.node_update_vjp import LeakSplit, LocalGrad, RecomputeValue, TermShare

#: ``kernels/`` beside the package (a source checkout or an editable install).
KERNEL_DIR = Path(__file__).resolve().parent / "kernels"
CTYPES = {"float32": "float", "float64": "double"}
#: the header each target's source includes
TARGETS = {"cuda": "activations.cuh", "host": "host.h"}


@dataclass(frozen=True)
class Arg:
    """One pointer argument: ``kind`` buf (a run buffer), grad (its gradient), param (a
    parameter vector) or noise (a bernoulli node's uniforms ``(T, B, size)``), and its name."""

    kind: str
    name: str


@dataclass(frozen=True)
class FusedSource:
    """A generated kernel pair and what to pass it.

    Both kernels take ``(int t0, int steps, int B, <pointers>)``; on the CPU the pointers come
    as one array, ``void* const* P``, followed by ``int j0, int j1``, the columns to compute
    (a thread's share; ``0, size`` for all), and ``int n_rows``, the batch rows computed
    (``[0, n_rows)``, ``B`` for all; ``B`` stays the row stride). ``forward_args`` and
    ``backward_args`` list the pointers.
    ``window_safe`` is False when a member reads another member's output at a delay, so one
    launch must not span several steps. ``overwrites``: the
    GEMM buffers whose gradient the backward kernel writes whole (``=``, not ``+=``), so they
    need no zeroing first. ``grad_aliases``: ``(B, A)`` pairs of GEMM buffers whose gradients
    are equal (read only through sums, at the same columns): the kernel writes A's, B's is A's
    array. ``bias_from``: ``(bias, gemm, cols)``: a bias gradient is the sum of those gradient
    columns over all steps (the node's own ``d net`` is not stored).
    """

    source: str
    forward: str
    backward: str | None
    forward_args: tuple[Arg, ...]
    backward_args: tuple[Arg, ...]
    window_safe: bool
    size: int
    overwrites: frozenset[str] = frozenset()
    grad_aliases: tuple[tuple[str, str], ...] = ()
    bias_from: tuple[tuple[str, str, tuple[int, int]], ...] = ()


class _Emitter:
    """Pointer arguments and index expressions of one kernel."""

    def __init__(self, buffers: dict[str, Buffer], ctype: str, size: int, target: str):
        self.buffers, self.ctype, self.size, self.target = buffers, ctype, size, target
        self.args: list[Arg] = []
        self.written: set[Arg] = set()

    def ptr(self, kind: str, name: str, write: bool = False) -> str:
        arg = Arg(kind, name)
        if arg not in self.args:
            self.args.append(arg)
        if write:
            self.written.add(arg)
        return f"p{self.args.index(arg)}"

    def index(self, name: str, delay: int, col: str = "j") -> str:
        b = self.buffers[name]
        return f"((gr_index)(tt + {b.pad - delay}) * B + b) * {b.size} + {col}"

    def lit(self, x: float) -> str:
        s = repr(float(x))
        if "e" not in s and "." not in s and "n" not in s:
            s += ".0"
        return s + ("f" if self.ctype == "float" else "")

    def signature(self, name: str) -> str:
        """The function's head, down to where element ``(tt, b, j)``'s body starts."""
        params = ["const int t0", "const int steps", "const int B"]
        for i, arg in enumerate(self.args):
            const = "" if arg in self.written else "const "
            params.append(f"{const}{self.ctype}* __restrict__ p{i}")
        if self.target == "host":  # the pointers come as one array: a cheaper call
            unpack = "".join(f"\n  {decl} = ({decl.split(' __restrict__')[0]})P[{i}];"
                             for i, decl in enumerate(params[3:]))
            return f"""void {name}({", ".join(params[:3])}, void* const* P,
    const int j0, const int j1, const int n_rows) {{{unpack}
  for (int tt = t0; tt < t0 + steps; ++tt)
  for (int b = 0; b < n_rows; ++b)
  GR_VECTORIZE
  for (int j = j0; j < j1; ++j) {{"""
        args = "(\n    " + ",\n    ".join(params) + ") {"
        return f'extern "C" __global__ void {name}{args}' + f"""
  const gr_index n_el = (gr_index)B * {self.size};
  const gr_index i = (gr_index)blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= n_el * steps) return;
  const int tt = t0 + (int)(i / n_el);
  const gr_index r = i % n_el;
  const int b = (int)(r / {self.size});
  const int j = (int)(r % {self.size});"""

    def end(self) -> str:
        """Closes what :meth:`signature` opened."""
        return "  }\n}" if self.target == "host" else "}"


def _term_value(e: _Emitter, term: Term, live: dict[str, str]) -> str:
    """The expression for one term's value at element ``(tt, b, j)``."""
    if term.kind == "full":
        return f"{e.ptr('buf', term.src)}[{e.index(term.src, 0, f'{term.cols[0]} + j')}]"
    src = (live[term.src] if term.delay == 0 and term.src in live
           else f"{e.ptr('buf', term.src)}[{e.index(term.src, term.delay)}]")
    if term.kind == "diagonal":
        factor = f"{e.ptr('param', term.param)}[j]"
        if term.scale != 1:
            factor = f"({e.lit(term.scale)} * {factor})"
        return f"{src} * {factor}"
    return src if term.scale == 1 else f"{src} * {e.lit(term.scale)}"


def _scalars(e: _Emitter, op: NodeUpdate, grad: bool = False) -> list[str]:
    """The literal (or noise) arguments after ``x`` / ``g, v|x`` of the record's C function."""
    act = REGISTRY[op.activation]
    p = act.params(op.alpha, op.beta, op.temperature)
    values = {"alpha": p.alpha, "beta": p.beta, "inv_t": 1.0 / op.temperature,
              "t": op.temperature}
    u = f"{e.ptr('noise', op.node)}[((gr_index)tt * B + b) * {e.size} + j]" if act.noise else ""
    return [u if a == "u" else e.lit(values[a]) for a in act.c_args(grad)]


def _activation(e: _Emitter, op: NodeUpdate, net: str) -> str:
    if op.activation == "identity":
        return net
    return f"gr_act_{op.activation}({', '.join([net, *_scalars(e, op)])})"


def _local_grad(e: _Emitter, op: NodeUpdate, step: LocalGrad, g: str, v: str, net: str) -> str:
    """``g·act'`` by the step's record, reading what the step says."""
    if REGISTRY[step.activation].c_grad == "g":  # identity, straight-through sign and step
        return g
    reads = {"value": [v], "input": [net], "none": []}[step.reads]
    return f"gr_dact_{step.activation}({', '.join([g, *reads, *_scalars(e, op, grad=True)])})"


def _forward_member(e: _Emitter, k: int, op: NodeUpdate, live: dict[str, str],
                    net_only: bool, plan: KernelPlan) -> list[str]:
    lines = [f"  // {op_label(op)}"]
    n = f"n{k}"
    if not op.terms:
        lines.append(f"  {e.ctype} {n} = 0;")
    for i, term in enumerate(op.terms):
        value = _term_value(e, term, live)
        if i == 0:
            lines.append(f"  {e.ctype} {n} = {value};")
        else:
            lines.append(f"  {n} {'*=' if op.combine == 'product' else '+='} {value};")
    if op.bias:
        lines.append(f"  {n} += {e.ptr('param', op.bias)}[j];")
    if op.net in plan.stores:
        lines.append(f"  {e.ptr('buf', op.net, True)}[{e.index(op.net, 0)}] = {n};")
    if net_only:
        return lines
    v = f"v{k}"
    lines.append(f"  {e.ctype} {v} = {_activation(e, op, n)};")
    if op.leak is not None:
        prev = f"{e.ptr('buf', op.out)}[{e.index(op.out, 1)}]"
        lines.append(f"  {v} = {v} * {e.lit(op.leak)} + {prev} * {e.lit(1 - op.leak)};")
    if op.out in plan.stores:
        lines.append(f"  {e.ptr('buf', op.out, True)}[{e.index(op.out, 0)}] = {v};")
    live[op.out] = v
    return lines


def _backward_member(e: _Emitter, k: int, op: NodeUpdate, no_grad: set[str], net_only: bool,
                     plan: KernelPlan, members: dict[str, int]) -> list[str]:
    """Member ``k``'s backward: C for the steps of
    :func:`~graphrnn.ops.node_update_vjp.vjp_steps`, one statement each. ``g{k}`` is the
    register sum of the same-step shares the members after it sent (declared by
    :func:`generate` where ``plan.in_registers``)."""
    lines = [f"  {{  // d {op_label(op)}"]
    ct = e.ctype
    steps = node_update_vjp.vjp_steps(op)
    all_shares = node_update_vjp.shares(steps)
    sends = [s for s in all_shares if s.target.cols is not None or s.target.src not in no_grad]
    if net_only and not sends:
        return []
    def gnet() -> str:  # registers the pointer only where used (no unused parameters)
        return f"{e.ptr('grad', op.net, True)}[{e.index(op.net, 0)}]"

    if net_only:
        lines.append(f"    const {ct} dn = {gnet()};")
    else:
        lines += _output_steps(e, k, op, steps, plan)
        if op.net in plan.dnet_stores:
            lines.append(f"    {gnet()} = dn;")
    for i in sorted({j for s in all_shares for j in s.product_of}):
        lines.append(f"    const {ct} a{i} = {_term_value(e, op.terms[i], {})};")
    for share in sends:
        lines += _share(e, share, plan, members)
    if not sends and not net_only and op.net not in plan.dnet_stores and any(
            "dn =" in line for line in lines):
        lines.append("    (void)dn;  // nothing reads this gradient (e.g. a copy of an input)")
    lines.append("  }")
    return lines


def _output_steps(e: _Emitter, k: int, op: NodeUpdate, steps, plan: KernelPlan) -> list[str]:
    """``g`` (the output's gradient, from memory and registers) through the steps before the
    shares, down to ``dn``."""
    ct = e.ctype
    parts = ([f"{e.ptr('grad', op.out, True)}[{e.index(op.out, 0)}]"]
             if op.out in plan.grad_in_memory else [])
    parts += [f"g{k}"] if op.out in plan.in_registers else []
    lines = [f"{ct} g = {' + '.join(parts) or '0'};"]
    if node_update_vjp.reads_net(steps):
        lines.append(f"const {ct} net = {e.ptr('buf', op.net)}[{e.index(op.net, 0)}];")
    return ["    " + line for line in lines + local_grad_steps(e, op, steps)]


def local_grad_steps(e: _Emitter, op: NodeUpdate, steps) -> list[str]:
    """C statements taking ``g`` (and ``net`` where a step reads it) through ``op``'s VJP
    steps up to the local derivative ``dn``: the leak split, the recomputed value, ``dn``."""
    ct, lines, recomputed = e.ctype, [], False
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
    return lines


def _share(e: _Emitter, share: TermShare, plan: KernelPlan, members: dict[str, int]) -> list[str]:
    """One term's share added where the plan keeps its target's gradient."""
    d = "dn" + "".join(f" * a{m}" for m in share.product_of)
    src = share.target.src
    if share.target.cols is not None:
        if src in plan.aliases:  # the same gradient as its twin's: one write
            return []
        col = f"{share.target.cols[0]} + j"
        target = f"{e.ptr('grad', src, True)}[{e.index(src, share.target.delay, col)}]"
        return [f"    {target} {'=' if src in plan.overwrites else '+='} {d};"]
    if share.factor == "weight":
        factor = f"{e.ptr('param', share.weight)}[j]"
        d = f"({d}) * " + (f"({e.lit(share.scale)} * {factor})" if share.scale != 1 else factor)
    elif share.factor == "scale":
        d = f"({d}) * {e.lit(share.scale)}"
    if share.target.delay == 0 and src in plan.in_registers:
        return [f"    g{members[src]} += {d};"]
    target = f"{e.ptr('grad', src, True)}[{e.index(src, share.target.delay)}]"
    if share.target.delay != 0:  # another step's row: threads of a window may share it
        return [f"    gr_atomic_add(&{target}, {d});"]
    return [f"    {target} += {d};"]


def generate(op: Fused | NodeUpdate, buffers: dict[str, Buffer], dtype: str = "float32",
             no_grad: frozenset[str] = frozenset(), net_only: bool = False,
             target: str = "cuda", keep: frozenset[str] | None = None) -> FusedSource:
    """The source of ``op``'s forward and backward kernels.

    Parameters
    ----------
    op : Fused or NodeUpdate
        Element-wise members (see :func:`~graphrnn.compiler.fusion.elementwise`); a lone NodeUpdate
        is a Fused op of one. Layer-normalised ones (lone, or a Fused run of them) for the host
        get :func:`~graphrnn.backends.codegen_norm.generate_norm`'s row kernels.
    buffers : dict[str, Buffer]
        The Program's buffers (sizes and pads are compiled in).
    dtype : {"float32", "float64"}
    no_grad : frozenset[str]
        Buffers without a gradient (the inputs): no diagonal/identity term sends to them.
    net_only : bool
        For one member whose activation runs elsewhere (softmax, asynchronous updates): forward
        writes only ``net``; backward starts from ``d net`` (already in its gradient buffer).
    target : {"cuda", "host"}
        CUDA C kernels (one thread per element, ``kernels/activations.cuh``) or C functions
        looping over the window (``kernels/host.h``).
    keep : frozenset[str], optional
        The buffers others read (other ops, the outputs, history): then the kernel writes only
        those and what its own backward reads, and same-step gradient shares between members
        stay in registers. ``None`` (default): every member's net, out and their gradients go
        through memory.

    Returns
    -------
    FusedSource
    """
    members = op.ops if isinstance(op, Fused) else (op,)
    if target == "host" and not net_only and any(m.norm for m in members):
        from graphrnn.backends.codegen_norm import generate_norm  # a row pass per (t, b)
        return generate_norm(op, buffers, dtype, no_grad, keep)
    ctype = CTYPES[dtype]
    size = buffers[members[0].out].size
    for m in members:
        if not REGISTRY[m.activation].elementwise and not net_only:
            raise ValueError(f"activation {m.activation!r} is not element-wise")
        if m.norm and not net_only:
            raise ValueError(f"node {m.node} is layer-normalised: not element-wise (its host "
                             "kernel is generate_norm's, its GPU one cuda_norm's)")
        if buffers[m.out].size != size:
            raise ValueError(f"fused members differ in size: {m.node} is not {size} wide")
    if target not in TARGETS:
        raise ValueError(f"unknown target {target!r}; choose one of {', '.join(TARGETS)}")
    fwd, bwd = (_Emitter(buffers, ctype, size, target), _Emitter(buffers, ctype, size, target))
    live: dict[str, str] = {}
    plan = plan_memory(members, buffers, keep, net_only)
    fwd_body = [line for k, m in enumerate(members)
                for line in _forward_member(fwd, k, m, live, net_only, plan)]
    index = {m.out: k for k, m in enumerate(members)}
    bwd_body = [line for k in range(len(members) - 1, -1, -1)
                for line in _backward_member(bwd, k, members[k], set(no_grad), net_only, plan,
                                             index)]
    if bwd_body and plan.in_registers:
        bwd_body[:0] = [f"  {ctype} g{index[o]} = 0;" for o in sorted(plan.in_registers,
                                                                         key=index.get)]
    outs = {m.out for m in members}
    window_safe = not any(t.src in outs and t.delay != 0 for m in members for t in m.terms) and \
        not any(m.leak is not None for m in members)
    label = "; ".join(m.node for m in members)
    text = "\n".join([target, ctype, *fwd_body, *bwd_body])
    digest = hashlib.sha1(text.encode()).hexdigest()[:12]
    fname, bname = f"gr_fused_{digest}_fwd", f"gr_fused_{digest}_bwd" if bwd_body else None
    backward = ["", bwd.signature(bname), *bwd_body, bwd.end()] if bwd_body else []
    source = "\n".join([
        f"// graphrnn generated kernels for fused{{{label}}} ({dtype}, {size} wide, {target})",
        f'#include "{TARGETS[target]}"',
        "", fwd.signature(fname), *fwd_body, fwd.end(), *backward, ""])
    config.debug(4, f"[graphrnn] generated {'CUDA' if target == 'cuda' else 'C'} source:\n{source}")
    return FusedSource(source, fname, bname, tuple(fwd.args), tuple(bwd.args), window_safe,
                       size, *((plan.overwrites, tuple(plan.aliases.items()),
                                tuple((b, g, c) for b, (g, c) in plan.bias_from.items()))
                               if bwd_body else ()))


def expand_includes(source: str, kernel_dir: Path = KERNEL_DIR) -> str:
    """``source`` with each ``#include "x.cuh"`` of ``kernels/`` replaced by the file's text
    (once each), so NVRTC needs no include path and CuPy's cache key covers the headers. The
    activation tables are not files: their text is generated from the records
    (:mod:`graphrnn.backends.activation_c`)."""
    seen: set[str] = set()
    todo = source.splitlines()
    out: list[str] = []
    while todo:
        line = todo.pop(0)
        stripped = line.strip()
        if stripped.startswith("#include \"") and stripped.endswith('"'):
            name = stripped[len("#include \""):-1]
            if name not in seen:
                seen.add(name)
                text = header(name)
                todo[:0] = (text if text is not None
                            else (kernel_dir / name).read_text()).splitlines()
            continue
        out.append(line)
    return "\n".join(out) + "\n"
