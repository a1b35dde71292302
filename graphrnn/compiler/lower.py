"""Lowering: a Network becomes a Program, one stage per strongly connected component."""

from __future__ import annotations

from itertools import count

import networkx as nx

from graphrnn.compiler.ir import (
    Block,
    Buffer,
    BufferRole,
    Combine,
    Direction,
    Gather,
    InitState,
    MatMul,
    NodeUpdate,
    Program,
    Stage,
    StageKind,
    Term,
    TermKind,
)
from graphrnn.frontend.network import Edge, Network


def lower(net: Network) -> Program:
    """The straightforward Program for ``net``; the passes make it fast.

    The components of the cyclic graph (``networkx.condensation``) are visited in topological
    order. A component without a cycle becomes a ``batched`` stage (its work for all T steps at
    once); a time loop becomes a ``loop`` stage. Inside a component, nodes follow the order of
    their same-step (delay-0) edges. Each ``full`` edge is one MatMul into its own buffer,
    followed by the NodeUpdate of its destination. A first batched stage writes the learned
    initial states (one :class:`~graphrnn.compiler.ir.InitState` per such node with a
    history). Each ``embedding`` edge is a :class:`~graphrnn.compiler.ir.Gather` into its own
    buffer, in that first batched stage (tokens are inputs: every step's are known), read by
    its node like a MatMul's product. Ops are numbered (``uid``) in the order they are made.
    """
    uids = count()
    buffers = {name: Buffer(name, 1 if name in net.tokens else size, net.history[name],
                            BufferRole.INPUT, net.future[name])
               for name, size in net.inputs.items()}
    for name, node in net.nodes.items():
        buffers[name] = Buffer(name, node.size, net.history[name], BufferRole.NODE,
                               net.future[name])
        buffers[f"{name}:net"] = Buffer(f"{name}:net", node.size, 0, BufferRole.NET)
    inits = tuple(InitState(name, f"{name}.init", net.history[name], next(uids))
                  for name, node in net.nodes.items()
                  if node.init_state == "learned" and net.history[name] > 0)
    stages = [Stage(StageKind.BATCHED, inits)] if inits else []
    loops = {frozenset(members) for members in net.time_loops}
    for members in _components(net):
        ops = []
        for name in members:
            node_ops, gemms = _lower_node(net, name, uids)
            buffers.update(gemms)
            ops += node_ops
        if frozenset(members) in loops:
            direction = Direction.REVERSE if net.anti_causal(members) else Direction.FORWARD
            stages.append(Stage(StageKind.LOOP, tuple(ops), direction))
        else:
            stages.append(Stage(StageKind.BATCHED, tuple(ops)))
    stages = _gathers_first(stages)
    return Program(buffers, tuple(stages), tuple(net.inputs), tuple(net.outputs),
                   {"name": net.name})


def _gathers_first(stages: list[Stage]) -> list[Stage]:
    """Every Gather moved to a first batched stage (after the learned initial states)."""
    gathers = tuple(op for stage in stages for op in stage.ops if isinstance(op, Gather))
    if not gathers:
        return stages
    rest = [s.with_ops(tuple(op for op in s.ops if not isinstance(op, Gather)))
            for s in stages]
    rest = [s for s in rest if s.ops]
    if rest and rest[0].kind == StageKind.BATCHED and all(
            isinstance(op, InitState) for op in rest[0].ops):
        return [Stage(StageKind.BATCHED, rest[0].ops + gathers), *rest[1:]]
    return [Stage(StageKind.BATCHED, gathers), *rest]


def _components(net: Network) -> list[list[str]]:
    """Node components in execution order, each ordered by its delay-0 edges."""
    order = {name: i for i, name in enumerate(net.nodes)}
    cond = nx.condensation(net.graph)
    same_step = nx.DiGraph()
    same_step.add_nodes_from(net.nodes)
    same_step.add_edges_from((e.src, e.dst) for e in net.edges
                             if e.delay == 0 and e.src in net.nodes and e.src != e.dst)
    out = []
    for c in nx.topological_sort(cond):
        members = [m for m in cond.nodes[c]["members"] if m in net.nodes]
        if members:
            sub = same_step.subgraph(members)
            out.append(list(nx.lexicographical_topological_sort(sub, key=order.__getitem__)))
    return out


def _is_own(net: Network, edge: Edge) -> bool:
    """An asynchronous node's delay-1 self-edge: applied neuron by neuron in its NodeUpdate."""
    return (edge.src == edge.dst and edge.delay == 1
            and net.nodes[edge.dst].update == "asynchronous")


def _lower_node(net: Network, name: str, uids) -> tuple[list, dict[str, Buffer]]:
    node = net.nodes[name]
    ops, buffers, terms, own = [], {}, [], []
    for edge in net.in_edges(name):
        if _is_own(net, edge):
            own.append(Term(TermKind(edge.weight), edge.src, 1, edge.param, edge.scale,
                            transpose=edge.transpose))
        elif edge.weight == "embedding":
            rows = f"{edge.src}->{name}"
            buffers[rows] = Buffer(rows, node.size, 0, BufferRole.GEMM)
            ops.append(Gather(edge.src, edge.param, edge.scale, rows, next(uids)))
            terms.append(Term(TermKind.FULL, rows, 0, cols=(0, node.size)))
        elif edge.weight == "full":
            gemm = f"{edge.src}@{edge.delay}->{name}" if edge.delay else f"{edge.src}->{name}"
            buffers[gemm] = Buffer(gemm, node.size, 0, BufferRole.GEMM)
            block = Block(edge.param, edge.scale, net.reads_transposed(edge), (0, node.size))
            ops.append(MatMul(edge.src, edge.delay, (block,), gemm, next(uids)))
            terms.append(Term(TermKind.FULL, gemm, 0, cols=(0, node.size)))
        else:
            terms.append(Term(TermKind(edge.weight), edge.src, edge.delay, edge.param,
                              edge.scale))
    bias = f"{name}.bias" if net.has_bias(name) else None
    ops.append(NodeUpdate(name, name, f"{name}:net", tuple(terms), Combine(node.combine), bias,
                          node.activation, node.leak, node.temperature, tuple(own),
                          node.alpha, node.beta, next(uids), norm=node.norm,
                          gain=f"{name}.gain" if node.norm else None))
    return ops, buffers
