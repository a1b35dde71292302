"""Unroll a network over T steps into an acyclic networkx DiGraph (the semantic definition)."""

from __future__ import annotations

import networkx as nx

from graphrnn import config
from graphrnn.errors import DataError
from graphrnn.frontend.network import Network


def _check_steps(steps: object) -> int:
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be an integer >= 1, got {steps!r}")
    return steps


def unroll(net: Network, steps: int, max_vertices: int | None = None) -> nx.DiGraph:
    """The acyclic graph of ``net`` over ``steps`` time steps.

    Parameters
    ----------
    net : Network
        A validated network.
    steps : int
        T >= 1, the number of steps.
    max_vertices : int, optional
        Refuse a graph of more vertices than this (default ``GRAPHRNN_MAX_VERTICES``, 100,000:
        a networkx graph takes about 1 KB a vertex).

    Returns
    -------
    networkx.DiGraph
        Vertices ``"NAME@t"`` with attributes ``node``, ``t``, ``op``, ``size`` (and ``kind``):
        ``op`` is ``"input"`` for inputs at 0 <= t < T (``token`` says whether it is a token
        input, whose ``size`` is its vocabulary), ``"init"`` for boundary states (also
        ``state_key``, the key of ``state`` dicts, and ``init``, the learned-state parameter
        or ``None``), else the node's activation; node vertices also carry ``combine``,
        ``leak``, ``update``, ``temperature`` and ``bias`` (the bias parameter or ``None``).
        Only names read through a delay get boundary vertices: ``NAME@-1`` ..
        ``NAME@-D`` (t = -1 .. -D) with ``D = net.history[NAME]``, and, for names read
        through negative delays, ``NAME@+1`` .. ``NAME@+F`` (t = T .. T + F - 1, after the
        last step) with ``F = net.future[NAME]``. One edge per spec edge per step,
        ``SRC@(t-d) -> DST@t``, with ``param`` (``None`` for identity), ``delay``, ``weight``,
        ``scale``, ``transpose`` (whether the parameter is applied transposed: a read-out tied
        to an embedding table is not), ``edge`` (index into ``net.edges``) and ``state``. Leaky
        and asynchronous nodes also read ``NODE@(t-1)``: an edge ``weight="state"``,
        ``param=None``, ``edge=None`` — or, where a delay-1 spec self-edge already joins the
        two vertices, that edge with ``state=True``. Graph attributes ``name`` and ``steps``.

    Raises
    ------
    ValueError
        When ``steps`` is not an integer >= 1.
    DataError
        When the graph would have more than ``max_vertices`` vertices (before building it).
    """
    T = _check_steps(steps)
    _check_vertices(net, T, config.MAX_VERTICES if max_vertices is None else max_vertices)
    g = nx.DiGraph(name=net.name, steps=T)
    # Shared attributes go in as keywords (one dict update per vertex/edge, no per-item
    # dicts): about 3x faster than (id, dict) tuples for T = 10,000.
    for name, size in net.inputs.items():
        g.add_nodes_from(_ids(name, T), node=name, op="input", size=size, kind="input",
                         token=name in net.tokens)
    for name, node in net.nodes.items():
        g.add_nodes_from(_ids(name, T), node=name, op=node.activation, size=node.size,
                         kind="node", combine=node.combine, leak=node.leak, update=node.update,
                         temperature=node.temperature,
                         bias=f"{name}.bias" if net.has_bias(name) else None)
    vertex = g.nodes
    for name in (*net.inputs, *net.nodes):
        for t, v in enumerate(_ids(name, T)):
            vertex[v]["t"] = t
    for key, name, k in net.boundaries:
        learned = name in net.nodes and net.nodes[name].init_state == "learned"
        t = -k if k > 0 else T - k - 1
        g.add_node(vertex_id(name, t, T), node=name, t=t, op="init",
                   size=net.size(name), kind="node" if name in net.nodes else "input",
                   init=f"{name}.init" if learned else None, state_key=key)

    merged: set[str] = set()
    for i, e in enumerate(net.edges):
        state = e.src == e.dst and e.delay == 1 and net.reads_own_past(e.dst)
        if state:
            merged.add(e.dst)
        src, dst, d = e.src, e.dst, e.delay
        g.add_edges_from([(vertex_id(src, t - d, T), f"{dst}@{t}") for t in range(T)],
                         param=e.param, delay=d, weight=e.weight, scale=e.scale,
                         transpose=net.reads_transposed(e),
                         edge=i, state=state)
    for name in net.nodes:
        if net.reads_own_past(name) and name not in merged:
            g.add_edges_from([(f"{name}@{t - 1}", f"{name}@{t}") for t in range(T)],
                             param=None, delay=1, weight="state", scale=1.0, transpose=False,
                             edge=None, state=True)
    return g


def _check_vertices(net: Network, steps: int, limit: int) -> None:
    vertices, _ = expected_counts(net, steps)
    if vertices <= limit:
        return
    per_step = len(net.inputs) + len(net.nodes)
    most = ((limit - sum(net.history.values()) - sum(net.future.values())) // per_step
            if per_step else 0)
    fewer = f"use at most {most:,} steps" if most >= 1 else "shorten the delays"
    raise DataError(f"unrolling {net.name} over {steps:,} steps gives {vertices:,} vertices, "
                    f"more than the limit of {limit:,}; {fewer}, or raise the limit with "
                    "GRAPHRNN_MAX_VERTICES (about 1 KB of memory a vertex)")


def vertex_id(name: str, t: int, steps: int) -> str:
    """The vertex of ``name`` at step ``t``: ``name@t``, or ``name@+k`` for the boundary
    ``t = steps + k - 1`` after the last step (``t`` < 0 are ``name@-k`` as written)."""
    return f"{name}@+{t - steps + 1}" if t >= steps else f"{name}@{t}"


def _ids(name: str, steps: int) -> list[str]:
    return [f"{name}@{t}" for t in range(steps)]


def expected_counts(net: Network, steps: int) -> tuple[int, int]:
    """``(vertices, edges)`` that :func:`unroll` gives for ``steps`` steps (the formula).

    ``V = T * (inputs + nodes) + sum(history) + sum(future)`` and
    ``E = T * (spec edges + implicit state edges)``, where leaky/asynchronous nodes without a
    delay-1 spec self-edge add one state edge per step.
    """
    T = _check_steps(steps)
    vertices = T * (len(net.inputs) + len(net.nodes)) + sum(net.history.values()) + sum(
        net.future.values())
    implicit = sum(1 for n in net.nodes if net.reads_own_past(n) and not any(
        e.src == n and e.delay == 1 for e in net.in_edges(n)))
    return vertices, T * (len(net.edges) + implicit)
