"""Checks of a network as a graph: delay-0 loops, loop directions, Hopfield edges, dead nodes."""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

import networkx as nx

from graphrnn.frontend.directions import mixed_sign_cycle

if TYPE_CHECKING:
    from graphrnn.frontend.validate import _Checker


def check_loops(c: _Checker) -> None:
    net = c.net
    g = nx.DiGraph()
    index: dict[tuple[str, str], int] = {}
    for i, e in enumerate(net.edges):
        if e.delay == 0:
            g.add_edge(e.src, e.dst)
            index.setdefault((e.src, e.dst), i)
    try:
        cycle = nx.find_cycle(g)
    except nx.NetworkXNoCycle:
        return
    order = {name: k for k, name in enumerate(net.nodes)}
    start = min(range(len(cycle)), key=lambda k: order.get(cycle[k][0], len(order)))
    cycle = cycle[start:] + cycle[:start]
    spelled = " -> ".join([u for u, _ in cycle] + [cycle[0][0]])
    u, v = cycle[-1]
    c.fail(c.edge_key(index[(u, v)]), f"algebraic loop {spelled}: every edge of this cycle has "
           f"delay 0, so each value needs itself at the same step; give one edge a delay "
           f"(e.g. '{u} -> {v} @1')")


def check_directions(c: _Checker) -> None:
    found = mixed_sign_cycle(c.net)
    if found is not None:
        spelled, index = found
        c.fail(c.edge_key(index, "delay") if index is not None else "edges", f"loop {spelled} "
               "reads both the past (delay > 0) and the future (delay < 0), so it can run in "
               "neither direction; give every edge of the cycle delays of one sign")
    for name, node in c.net.nodes.items():
        if node.init_state == "learned" and c.net.future[name]:
            c.fail(c.node_key(name, "init_state"), f"node {name} has init_state: learned and is "
                   "read through a negative delay; a learned boundary after the last step is "
                   "not supported: use init_state: zeros (pass the state as NODE@+k)")


def check_asynchronous(c: _Checker) -> None:
    for name, node in c.net.nodes.items():
        if node.update != "asynchronous":
            continue
        if not any(e.src == name and e.delay == 1 and e.weight == "full"
                   for e in c.net.in_edges(name)):
            c.fail(c.node_key(name, "update"), f"node {name} has update: asynchronous, which "
                   f"needs its Hopfield weights as a full self-edge '{name} -> {name} @1'; "
                   "add one")



def warn_unused(c: _Checker) -> None:
    net = c.net
    g = net.graph
    reaching = set(net.outputs)
    for out in net.outputs:
        reaching |= nx.ancestors(g, out)
    dead = [n for n in net.nodes if n not in reaching]
    unread = [x for x in net.inputs if g.out_degree(x) == 0]
    where = net.source or "<spec>"
    if dead:
        line = net.nodes[dead[0]].line
        at = f"{where}:{line}" if line else where
        warnings.warn(f"{at}: node(s) {', '.join(dead)} reach no output; they are computed but "
                      "never used (add them to outputs or remove them)", UserWarning,
                      stacklevel=3)
    if unread:
        line = net.input_lines.get(unread[0])
        at = f"{where}:{line}" if line else where
        warnings.warn(f"{at}: input(s) {', '.join(unread)} are never read; add an edge from "
                      "them or remove them", UserWarning, stacklevel=3)
