"""The interactive page of ``inspect --format html``: folded graph, unrolled graph, schedule."""

from __future__ import annotations

import json
import re
from html import escape

import networkx as nx

from graphrnn.frontend import layout
from graphrnn.frontend.html_assets import PAGE_CSS, PAGE_HTML, PAGE_JS
from graphrnn.frontend.network import Network


def page_data(net: Network, dag: nx.DiGraph) -> dict:
    """What the page's script draws, as plain JSON-ready data.

    Vertices are ``[id, row, t, op]`` and edges ``[src, dst, folded edge, kind]`` (indices),
    so that the page stays small for long unrolls; folded edges carry the parameter, delay
    and weight kind once for all steps.
    """
    schedule, why = _schedule(net)
    rows = layout.row_order(dag, [n for s in schedule or () for op in s["ops"]
                                  for n in op["nodes"]] or None)
    row_of = {n: i for i, n in enumerate(rows)}
    colours = layout.param_colours(dag)
    kinds = ("same", "recurrent", "state", "anticausal")
    folded: list[dict] = []
    folded_index: dict[tuple, int] = {}
    vertices = list(dag.nodes)
    index = {v: i for i, v in enumerate(vertices)}
    edges = []
    for u, v, e in dag.edges(data=True):
        src, dst = dag.nodes[u]["node"], dag.nodes[v]["node"]
        key = (e.get("edge"), src, dst, e.get("delay"), e.get("weight"))
        if key not in folded_index:
            folded_index[key] = len(folded)
            folded.append({"src": src, "dst": dst, "delay": e.get("delay", 0),
                           "param": e.get("param"), "weight": e.get("weight"),
                           "label": layout.edge_label(e), "transpose": bool(e.get("transpose")),
                           "colour": colours.get(e.get("param"), layout.GREY)})
        edges.append([index[u], index[v], folded_index[key],
                      kinds.index(layout.edge_kind(dag, u, v, e))])
    nodes = {}
    for _, a in dag.nodes(data=True):
        if a["node"] not in nodes or a["op"] not in ("init",):
            nodes[a["node"]] = {"kind": a.get("kind", "node"), "size": a["size"],
                                "op": a["op"] if a["op"] != "init" else "?",
                                "text": layout.vertex_text(a) if a["op"] != "init" else "",
                                "combine": a.get("combine"), "leak": a.get("leak"),
                                "bias": a.get("bias"), "update": a.get("update")}
    params = {name: {"shape": list(p.shape), "colour": colours.get(name, layout.GREY),
                     "edges": [e.label for e in p.edges], "trainable": p.trainable}
              for name, p in net.params.items()}
    lay = layout.compute_layout(dag, rows)
    return {"name": net.name, "steps": dag.graph.get("steps"), "rows": rows,
            "columns": lay.steps, "nodes": nodes, "params": params, "folded": folded,
            "V": [[v, row_of[dag.nodes[v]["node"]], layout.vertex_step(dag, v),
                   dag.nodes[v]["op"]] for v in vertices],
            "E": edges, "kinds": kinds, "schedule": schedule, "schedule_note": why,
            "box": {"w": lay.box_w, "h": layout.BOX_H, "rowH": layout.ROW_H,
                    "gapX": layout.GAP_X, "left": layout.LEFT, "top": layout.TOP}}


def _schedule(net: Network) -> tuple[list[dict] | None, str]:
    """The compiled program's stages for the page, or ``None`` and why not."""
    from graphrnn.compiler import ir
    from graphrnn.compiler.passes import schedule
    from graphrnn.frontend.training_noise import eval_network

    try:  # the standard pipeline (a backend may add passes of its own)
        program = schedule(eval_network(net))
    except (ValueError, NotImplementedError) as e:  # the page works without a schedule
        return None, f"not compiled: {e}"
    stages = []
    for stage in program.stages:
        ops = []
        for op in stage.ops:
            members = list(op.ops) if isinstance(op, ir.Fused) else [op]
            ops.append({"uid": op.uid, "fused": isinstance(op, ir.Fused),
                        "label": "fused kernel" if isinstance(op, ir.Fused) else
                        ir.op_label(op),
                        "members": [{"uid": m.uid, "label": ir.op_label(m)} for m in members]
                        if isinstance(op, ir.Fused) else [],
                        "nodes": [m.node for m in members if isinstance(m, ir.NodeUpdate)],
                        "params": sorted(_op_params(members))})
        stages.append({"kind": str(stage.kind), "ops": ops})
    return stages, ""


def _op_params(ops: list) -> set[str]:
    params: set[str] = set()
    for op in ops:
        params.update(b.param for b in getattr(op, "blocks", ()))
        params.update(t.param for t in getattr(op, "terms", ()) + getattr(op, "own", ())
                      if t.param)
        if getattr(op, "param", None):
            params.add(op.param)
    return params


def to_html(net: Network, dag: nx.DiGraph) -> str:
    """One self-contained HTML page (no network access; the script is graphrnn's own).

    Parameters
    ----------
    net : Network
        The network (its folded graph, parameters and compiled schedule are shown).
    dag : networkx.DiGraph
        ``unroll(net, steps)``.

    Returns
    -------
    str
        The page. Opened with ``#test-click=VERTEX`` it clicks that vertex itself and
        writes what it shows into ``<pre id="test-result">`` (for headless browser tests).
    """
    data = json.dumps(page_data(net, dag), separators=(",", ":")).replace("</", "<\\/")
    title = escape(f"{net.name} — graphrnn inspect")
    parts = {"title": title, "name": escape(net.name), "css": PAGE_CSS, "js": PAGE_JS,
             "data": data}  # one pass: what goes in is not searched again
    return re.sub(r"\{(title|name|css|js|data)\}", lambda m: parts[m.group(1)], PAGE_HTML)
