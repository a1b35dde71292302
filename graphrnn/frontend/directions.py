"""Time directions: loops that read the past run forward, loops that read the future backward."""

from __future__ import annotations

import networkx as nx

from graphrnn.frontend.network import Network


def _spell(graph: nx.MultiDiGraph, path: list[str]) -> list[str]:
    """The edges along ``path`` (consecutive vertices) as ``src -> dst @d``, one each."""
    out = []
    for u, v in zip(path, path[1:], strict=False):
        data = min(graph.get_edge_data(u, v).values(), key=lambda d: abs(d["delay"]))
        out.append(_label(data))
    return out


def _label(data: dict) -> str:
    delay = f" @{data['delay']}" if data["delay"] else ""
    implicit = " (its leak/asynchronous update)" if data.get("weight") == "state" else ""
    return f"{data['src']} -> {data['dst']}{delay}{implicit}"


def mixed_sign_cycle(net: Network) -> tuple[str, int | None] | None:
    """A cycle of ``net`` through edges of both signs, or None.

    Returns ``(spelled, edge_index)``: the cycle as its edges (``"h -> g @1, g -> h @-1"``) and
    the index into ``net.edges`` of its future-reading edge (for the message's line). Nodes that
    reach each other through a past read and a future read cannot run in either direction.
    """
    graph = net.graph
    for members in net.time_loops:
        inside = set(members)
        sub = graph.subgraph(inside)
        edges = list(sub.edges(keys=True, data=True))
        past = next((e for e in edges if e[3]["delay"] > 0), None)
        future = next((e for e in edges if e[3]["delay"] < 0), None)
        if past is None or future is None:
            continue
        there = nx.shortest_path(sub, past[1], future[0])
        back = nx.shortest_path(sub, future[1], past[0])
        spelled = [_label(past[3]), *_spell(sub, there), _label(future[3]), *_spell(sub, back)]
        return ", ".join(spelled), future[2] if isinstance(future[2], int) else None
    return None
