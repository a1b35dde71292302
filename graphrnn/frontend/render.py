"""Show networks to people: the check summary; unrolled graphs as text, JSON, DOT, SVG, PNG, HTML.
"""

from __future__ import annotations

import json
import shutil
import subprocess

import networkx as nx

from graphrnn.frontend.network import Network

#: Formats ``inspect`` writes. svg and png use graphrnn's own layout (or Graphviz's ``dot``
#: with ``layout="dot"``); html is the interactive page of :mod:`graphrnn.frontend.html`.
FORMATS = ("text", "json", "dot", "svg", "png", "html")
#: How svg and png pictures are laid out: graphrnn's own layout, or Graphviz's ``dot``.
LAYOUTS = ("own", "dot")
_PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2",
            "#17becf", "#bcbd22", "#7f7f7f")


class GraphvizError(OSError):
    """Graphviz's ``dot`` is missing or failed (bad input to the environment, exit 2)."""


def summarize(net: Network) -> str:
    """The one-screen summary ``graphrnn check`` prints.

    Parameters
    ----------
    net : Network
        A validated network.

    Returns
    -------
    str
        Inputs, nodes, edges (delays, weight kinds, parameters), parameters with shapes (tied
        ones marked), and which nodes form time loops versus run once for all steps.
    """
    out = [f"network {net.name}" + (f"  ({net.source})" if net.source else "")]
    out.append("inputs   " + (", ".join(f"{k} [{v}]" for k, v in net.inputs.items()) or "none"))
    groups: dict[tuple, list[str]] = {}  # nodes that read alike share a line
    for name, n in net.nodes.items():
        extra = [n.combine]
        if n.leak is not None:
            extra.append(f"leak {n.leak:g}")
        extra.append("bias" if net.has_bias(name) else "no bias")
        if n.update == "asynchronous":
            extra.append("asynchronous")
        if n.activation == "bernoulli":
            extra.append(f"temperature {n.temperature:g}")
        if n.init_state == "learned":
            extra.append("learned initial state")
        groups.setdefault((f"[{n.size}]", n.activation, ", ".join(extra)), []).append(name)
    out.append("nodes")
    nwidth = max(len(", ".join(names)) for names in groups.values())
    for (size, act, extra), names in groups.items():
        out.append(f"  {', '.join(names):<{nwidth}}  {size:<5} {act:<9} {extra}")
    params = net.params
    if len(net.edges) <= 20:
        out.append("edges")
        width = max(len(e.label) for e in net.edges)
        kinds = [_edge_kind(e) for e in net.edges]
        kwidth = max(len(k) for k in kinds)
        for e, kind in zip(net.edges, kinds, strict=True):
            shape = f" {params[e.param].shape}" if e.param else ""
            out.append(f"  {e.label:<{width}}  {kind:<{kwidth}}  {e.param or '-'}{shape}")
    else:
        out.append(f"edges ({len(net.edges)}, by kind; parameters are SRC->DST[@D] unless "
                   "named)")
        by_kind: dict[str, list[str]] = {}
        for e in net.edges:
            named = e.param and e.param != f"{e.src}->{e.dst}" + (f"@{e.delay}" * bool(e.delay))
            label = e.label + (f" ({e.param})" if named else "")
            by_kind.setdefault(_edge_kind(e), []).append(label)
        for kind, labels in by_kind.items():
            out += _wrap(labels, "  ", head=f"{kind}: ")
    total = sum(_numel(p.shape) for p in params.values())
    out.append(f"parameters ({len(params)}, {total:,} numbers)")
    out += _wrap([f"{name} {p.shape}" for name, p in params.items()], "  ")
    for name, p in params.items():
        if len(p.edges) > 1:
            out.append(f"  tied: {name} {p.shape} shared by " + ", ".join(e.label for e in p.edges))
        if p.init:
            out.append(f"  init: {name} {p.init}")
        if not p.trainable:
            out.append(f"  frozen: {name}")
    loops = net.time_loops
    looped = {m for loop in loops for m in loop}
    out.append("time loops (run step by step)" if loops else "time loops: none")
    for k, loop in enumerate(loops, 1):
        way = "  (anti-causal: from the last step down)" if net.anti_causal(loop) else ""
        out.append(f"  {k}. {', '.join(loop)}{way}")
    once = [n for n in net.nodes if n not in looped]
    out.append("run once for all steps: " + (", ".join(once) if once else "none"))
    history = {k: v for k, v in net.history.items() if v}
    if history:
        out.append("history (steps of initial state): "
                   + ", ".join(f"{k} {v}" for k, v in history.items()))
    ahead = {k: v for k, v in net.future.items() if v}
    if ahead:
        out.append("read ahead (steps of boundary state after the end, NODE@+k): "
                   + ", ".join(f"{k} {v}" for k, v in ahead.items()))
    out.append(f"outputs  {', '.join(net.outputs)}")
    return "\n".join(out) + "\n"


def _edge_kind(e) -> str:
    kind = e.weight + (" transposed" if e.transpose else "")
    kind += f", scale {e.scale:g}" if e.scale != 1 else ""
    return kind + (", frozen" if not e.trainable else "")


def _wrap(items: list[str], indent: str, width: int = 96, head: str = "") -> list[str]:
    """Join ``items`` with commas into lines of at most ``width`` characters."""
    lines, line = [], indent + head
    for item in items:
        if len(line) > len(indent + head) and len(line) + len(item) + 2 > width:
            lines.append(line.rstrip(", "))
            line = indent + " " * len(head)
        line += item + ", "
    return lines + [line.rstrip(", ")]


def _numel(shape: tuple[int, ...]) -> int:
    n = 1
    for s in shape:
        n *= s
    return n


def _order(dag: nx.DiGraph) -> list[str]:
    """Vertices by step, each step in dependency order."""
    return sorted(nx.topological_sort(dag), key=lambda v: dag.nodes[v]["t"])


def _term(src: str, e: dict) -> str:
    if e["weight"] == "full":
        term = f"[{e['param']}]{'^T' if e['transpose'] else ''} {src}"
    elif e["weight"] == "diagonal":
        term = f"[{e['param']}] * {src}"
    elif e["weight"] == "embedding":
        term = f"[{e['param']}][{src}]"
    else:
        term = src
    return term if e["scale"] == 1 else f"{e['scale']:g} * {term}"


def to_text(dag: nx.DiGraph) -> str:
    """One line per vertex, step by step: what each vertex computes from which vertices.

    ``[P] v`` is parameter ``P`` times ``v`` (full), ``[P]^T v`` the transpose, ``[P] * v``
    element-wise (diagonal); identity edges show the source alone.
    """
    steps = dag.graph.get("steps")
    out = [f"# {dag.graph.get('name')} unrolled over {steps} steps: "
           f"{dag.number_of_nodes()} vertices, {dag.number_of_edges()} edges",
           "# [P] v: parameter P times v; [P]^T v: transposed; [P] * v: element-wise"]
    current = None
    for v in _order(dag):
        a = dag.nodes[v]
        if a["t"] != current:
            current = a["t"]
            out.append(f"t = {current}" + (" (after the last step)" if steps is not None
                                           and current >= steps else ""))
        if a["op"] == "input":
            out.append(f"  {v} = input {a['node']}[{a['t']}]  [{a['size']}]")
            continue
        if a["op"] == "init":
            init = f"learned {a['init']}" if a.get("init") else "zeros"
            what = "boundary state" if steps is not None and a["t"] >= steps else "initial state"
            out.append(f"  {v} = {what} '{a['state_key']}' ({init})  [{a['size']}]")
            continue
        terms, prev = [], None
        for src, _, e in dag.in_edges(v, data=True):
            if e["weight"] == "state":
                prev = src
                continue
            if e.get("state"):
                prev = src
            terms.append(_term(src, e))
        joiner = " * " if a["combine"] == "product" else " + "
        if a["combine"] == "product":
            terms = [f"({t})" if " " in t else t for t in terms]
        body = joiner.join(terms) + (f" + {a['bias']}" if a["bias"] else "")
        expr = f"{a['op']}({body})"
        if a["leak"] is not None:
            expr = f"{1 - a['leak']:g} * {prev} + {a['leak']:g} * {expr}"
        if a["update"] == "asynchronous":
            expr += "  (asynchronous: one unit at a time)"
        out.append(f"  {v} = {expr}  [{a['size']}]")
    return "\n".join(out) + "\n"


def to_json(dag: nx.DiGraph) -> str:
    """``networkx.node_link_data(dag, edges="edges")`` as JSON text."""
    try:
        data = nx.node_link_data(dag, edges="edges")
    except TypeError:  # networkx < 3.4 has no ``edges=``
        data = nx.node_link_data(dag)
        data["edges"] = data.pop("links")
    return json.dumps(data, indent=1) + "\n"


def _q(text: object) -> str:
    return '"' + str(text).replace("\\", "\\\\").replace('"', '\\"') + '"'


def to_dot(dag: nx.DiGraph) -> str:
    """Graphviz DOT text: one column per step (left to right), recurrent edges dashed.

    Same-step edges are solid, edges with a delay dashed; each parameter has its own colour
    and label (tied edges share both); identity edges are grey and unlabelled (unless
    scaled); implicit state edges (leak, asynchronous update) are grey and dotted; initial
    states are dashed grey boxes, inputs blue boxes.
    """
    name, steps = dag.graph.get("name", "network"), dag.graph.get("steps")
    legend = (f"{name} unrolled over {steps} steps.  Solid: same step; dashed: delay >= 1 "
              "(recurrent); dashed, labelled @+k and open-headed: reads k steps ahead (negative "
              "delay); colour and label: parameter (tied edges share them); dotted grey: "
              "the node reads its own previous value.")
    lines = [f"digraph {_q(name)} {{",
             "  rankdir=LR; newrank=true; nodesep=0.25; ranksep=0.9;",
             '  node [fontname="Helvetica", fontsize=10];',
             '  edge [fontname="Helvetica", fontsize=8, arrowsize=0.6];',
             f"  label={_q(legend)}; labelloc=b; fontname=Helvetica; fontsize=10;"]
    by_step: dict[int, list[str]] = {}
    for v in _order(dag):
        by_step.setdefault(dag.nodes[v]["t"], []).append(v)
    for t, vertices in by_step.items():
        lines.append(f"  subgraph {_q(f'step {t}')} {{ rank=same;")
        lines.append(f"    {_q(f't={t}')} [shape=plaintext, fontsize=12, label={_q(f't = {t}')}];")
        for v in vertices:
            lines.append(f"    {_q(v)} [{_vertex_style(v, dag.nodes[v])}];")
        lines.append("  }")
    ts = list(by_step)
    for a, b in zip(ts, ts[1:], strict=False):
        lines.append(f"  {_q(f't={a}')} -> {_q(f't={b}')} [style=invis, weight=10];")
    colours: dict[str, str] = {}
    for u, v, e in dag.edges(data=True):
        lines.append(f"  {_q(u)} -> {_q(v)} [{_edge_style(e, colours)}];")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _vertex_style(v: str, a: dict) -> str:
    size = f"[{a['size']}]"
    if a["op"] == "init":
        what = "init " if "@+" not in v else "after the end "
        return (f"label={_q(v + chr(10) + what + size)}, shape=box, "
                'style="dashed,rounded", color=grey50, fontcolor=grey40')
    if a["op"] == "input":
        return f"label={_q(v + chr(10) + size)}, shape=box, style=filled, fillcolor=\"#dbeafe\""
    op = ("product, " if a["combine"] == "product" else "") + a["op"]
    op += f" leak {a['leak']:g}" if a["leak"] is not None else ""
    return f"label={_q(v + chr(10) + op + ' ' + size)}, style=filled, fillcolor=\"#fef3c7\""


def _edge_style(e: dict, colours: dict[str, str]) -> str:
    style = "dashed" if e["delay"] else "solid"
    scaled = f" x{e['scale']:g}" if e["scale"] != 1 else ""
    if e["weight"] == "state":
        return 'style=dotted, color=grey50, label="state", fontcolor=grey50'
    ahead = f" @+{-e['delay']}" if e["delay"] < 0 else ""
    head = ", arrowhead=empty" if ahead else ""
    if e["param"] is None:
        text = (scaled + ahead).strip()
        label = f", label={_q(text)}" if text else ""
        return f"style={style}, color=grey45{label}{head}"
    colour = colours.setdefault(e["param"], _PALETTE[len(colours) % len(_PALETTE)])
    label = e["param"] + ("^T" if e["transpose"] else "") + scaled + ahead
    width = 1.6 if e["delay"] else 1.0
    return (f"style={style}, color={_q(colour)}, fontcolor={_q(colour)}, penwidth={width}, "
            f"label={_q(label)}{head}")


def render(dag: nx.DiGraph, fmt: str, *, net: Network | None = None,
           layout: str = "own") -> str | bytes:
    """The unrolled graph ``dag`` in format ``fmt`` (one of :data:`FORMATS`).

    Parameters
    ----------
    dag : networkx.DiGraph
        From :func:`graphrnn.frontend.unroll.unroll`.
    fmt : str
        text, json, dot, svg, png or html.
    net : Network, optional
        The network ``dag`` unrolls; html needs it (folded graph and compiled schedule).
    layout : str
        For svg and png: ``"own"`` (graphrnn's layout, no Graphviz needed) or ``"dot"``.

    Returns
    -------
    str or bytes
        Text, or PNG bytes.

    Raises
    ------
    GraphvizError
        With ``layout="dot"`` when Graphviz's ``dot`` is missing or fails.
    """
    if fmt not in FORMATS or layout not in LAYOUTS:
        raise ValueError(f"cannot render format {fmt!r} with layout {layout!r}; formats are "
                         f"{', '.join(FORMATS)} and layouts {', '.join(LAYOUTS)}")
    if fmt == "text":
        return to_text(dag)
    if fmt == "json":
        return to_json(dag)
    if fmt == "dot" or (fmt in ("svg", "png") and layout == "dot"):
        text = to_dot(dag)
        return text if fmt == "dot" else render_image(text, fmt)
    if fmt == "html":
        if net is None:
            raise ValueError("the html format needs the network (net=...)")
        from graphrnn.frontend.html import to_html
        return to_html(net, dag)
    from graphrnn.frontend import layout as own
    if fmt == "svg":
        return own.to_svg(dag)
    from graphrnn.frontend.png import encode_png
    from graphrnn.frontend.raster import rasterise
    return encode_png(rasterise(own.draw_unrolled(dag)))


def render_image(dot_text: str, fmt: str) -> bytes:
    """Render DOT text to ``svg`` or ``png`` bytes with Graphviz's ``dot``.

    Raises
    ------
    GraphvizError
        When ``dot`` is not installed or fails.
    """
    if fmt not in ("svg", "png"):
        raise ValueError(f"cannot render {fmt!r}; choose svg or png")
    exe = shutil.which("dot")
    if exe is None:
        raise GraphvizError(f"--format {fmt} needs Graphviz's 'dot' program, which is not "
                            "installed (apt-get install graphviz, brew install graphviz, or "
                            "conda install graphviz); without --layout dot graphrnn draws it "
                            "itself, and --format dot writes the DOT text")
    try:
        done = subprocess.run([exe, f"-T{fmt}"], input=dot_text.encode(), capture_output=True,
                              timeout=300, check=False)
    except subprocess.TimeoutExpired:
        raise GraphvizError("Graphviz 'dot' took more than 5 minutes; try fewer --steps") from None
    if done.returncode != 0:
        why = done.stderr.decode(errors="replace").strip().splitlines()
        raise GraphvizError(f"Graphviz 'dot' failed: {why[0] if why else done.returncode}")
    return done.stdout
