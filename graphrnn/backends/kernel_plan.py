"""What a generated element-wise kernel keeps in memory, and what only in registers."""

from __future__ import annotations

from dataclasses import dataclass, field

from graphrnn.ops.activations import REGISTRY


@dataclass(frozen=True)
class KernelPlan:
    """What a kernel keeps in memory. ``stores``: the nets and outs the forward writes;
    ``grad_in_memory``: outs whose gradient others add to in memory (backward starts from it);
    ``dnet_stores``: nets whose gradient is written (bias and diagonal-weight gradients read
    it); ``in_registers``: member outs whose same-step gradient shares stay in registers;
    ``overwrites``: GEMM buffers only this kernel reads, each column by one term, whose gradient
    it assigns rather than adds to; ``aliases``: overwritten buffers whose gradient equals
    another's (only that one is written); ``bias_from``: bias -> (GEMM buffer, columns) whose
    gradient is the node's ``d net``."""

    stores: frozenset[str]
    grad_in_memory: frozenset[str]
    dnet_stores: frozenset[str]
    in_registers: frozenset[str]
    overwrites: frozenset[str] = frozenset()
    aliases: dict = field(default_factory=dict)
    bias_from: dict = field(default_factory=dict)


def plan_memory(members, buffers, keep: frozenset[str] | None, net_only: bool) -> KernelPlan:
    """The plan of a Fused op's ``members`` (NodeUpdates over ``buffers``): everything in
    memory (``keep`` None: the GPU kernels), or only what ``keep`` (buffers read by other ops,
    the outputs, history rows) and the kernel's own backward need."""
    outs = frozenset(m.out for m in members)
    nets = frozenset(m.net for m in members)
    if keep is None or net_only:
        return KernelPlan(outs | nets, outs, nets, frozenset())
    backward_reads = set()
    for m in members:
        reads = REGISTRY[m.activation].grad_reads  # a leaky node recomputes its value from net
        if reads == "input" or (m.leak is not None and reads == "value"):
            backward_reads.add(m.net)
        elif reads == "value":
            backward_reads.add(m.out)
        if m.combine == "product" and len(m.terms) > 1:
            backward_reads.update(t.src for t in m.terms if t.kind != "full")
        backward_reads.update(t.src for t in m.terms if t.kind == "diagonal")  # weight grads
    cols: dict[str, list] = {}
    for m in members:
        for t in m.terms:
            if t.kind == "full":
                cols.setdefault(t.src, []).append(t.cols)
    overwrites = frozenset(g for g, spans in cols.items() if g not in keep
                           and sum(b - a for a, b in spans) == buffers[g].size
                           and len(set(spans)) == len(spans))
    sums = [m.combine == "sum" or len(m.terms) == 1 for m in members]

    def readers(g):
        return frozenset((k, t.cols) for k, m in enumerate(members) for t in m.terms
                         if t.kind == "full" and t.src == g)
    # every full term of a sum receives d net itself: GEMM buffers read only by sums, at the same
    # columns of the same members, have one gradient
    alone = sorted(g for g in overwrites if all(sums[k] for k, _ in readers(g)))
    aliases: dict[str, str] = {}
    for i, g in enumerate(alone):
        aliases.update({b: g for b in alone[i + 1:] if b not in aliases and g not in aliases
                        and readers(b) == readers(g)})
    bias_from, dnets = {}, set()
    for k, m in enumerate(members):
        full = [t for t in m.terms if t.kind == "full" and t.src in overwrites]
        if m.bias and sums[k] and full and not any(t.kind == "diagonal" for t in m.terms):
            bias_from[m.bias] = (aliases.get(full[0].src, full[0].src), full[0].cols)
        elif m.bias or any(t.kind == "diagonal" for t in m.terms):
            dnets.add(m.net)
    return KernelPlan((outs | nets) & (keep | backward_reads), outs & keep, frozenset(dnets),
                      outs, overwrites, aliases, bias_from)
