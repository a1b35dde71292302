"""graphrnn's own layout of an unrolled graph (steps as columns, nodes as rows) and its SVG."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from html import escape

import networkx as nx

#: Colours of parameters, in order of first use (tied edges share one).
PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2",
           "#17becf", "#bcbd22", "#7f7f7f")
GREY, ANTI = "#8a8f98", "#c026d3"
#: Dash patterns by edge kind (SVG ``stroke-dasharray``; ``None`` is solid).
DASHES = {"same": None, "recurrent": (6.0, 4.0), "state": (2.0, 3.0),
          "anticausal": (9.0, 3.0, 2.0, 3.0)}
ROW_H, BOX_H, GAP_X, TOP, LEFT = 60.0, 36.0, 70.0, 64.0, 64.0
CHAR_W = 0.6  # advance of a monospace character, in font sizes
_LATER = re.compile(r"@\+(\d+)$")

Point = tuple[float, float]
Box = tuple[float, float, float, float]


@dataclass
class Drawing:
    """Drawing primitives (rectangles, cubic curves with arrowheads, text) in SVG units.

    Both :meth:`to_svg` and :func:`graphrnn.frontend.raster.rasterise` read ``items``.
    """

    width: float
    height: float
    items: list[tuple] = field(default_factory=list)

    def rect(self, box: Box, fill: str, stroke: str, *, dash=None, width: float = 1.0,
             attrs: str = "") -> None:
        """A rounded rectangle ``(x, y, w, h)``."""
        self.items.append(("rect", box, fill, stroke, dash, width, attrs))

    def curve(self, pts: tuple[Point, Point, Point, Point], stroke: str, *, dash=None,
              width: float = 1.0, arrow: bool = True, attrs: str = "") -> None:
        """A cubic Bezier curve ``p0, c1, c2, p3``, with an arrowhead at ``p3``."""
        self.items.append(("curve", pts, stroke, dash, width, arrow, attrs))

    def text(self, x: float, y: float, s: str, *, size: float = 10.0, fill: str = "#1f2937",
             anchor: str = "start", bold: bool = False, halo: bool = False) -> None:
        """Monospace text with its baseline at ``y``; ``anchor`` start, middle or end."""
        self.items.append(("text", x, y, s, size, fill, anchor, bold, halo))

    def to_svg(self) -> str:
        """The drawing as a standalone SVG document."""
        out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{self.width:.0f}" '
               f'height="{self.height:.0f}" viewBox="0 0 {self.width:.0f} {self.height:.0f}" '
               'font-family="DejaVu Sans Mono, Menlo, Consolas, monospace">',
               '<rect width="100%" height="100%" fill="#ffffff"/>']
        for item in self.items:
            out.append(_svg_item(item))
        out.append("</svg>")
        return "\n".join(out) + "\n"


def _dash(dash) -> str:
    return f' stroke-dasharray="{" ".join(f"{d:g}" for d in dash)}"' if dash else ""


def _svg_item(item: tuple) -> str:
    kind = item[0]
    if kind == "rect":
        _, (x, y, w, h), fill, stroke, dash, width, attrs = item
        return (f'<rect x="{x:.1f}" y="{y:.1f}" width="{w:.1f}" height="{h:.1f}" rx="5" '
                f'fill="{fill}" stroke="{stroke}" stroke-width="{width:g}"{_dash(dash)}{attrs}/>')
    if kind == "curve":
        _, (p0, c1, c2, p3), stroke, dash, width, arrow, attrs = item
        d = "M{:.1f},{:.1f} C{:.1f},{:.1f} {:.1f},{:.1f} {:.1f},{:.1f}".format(
            *p0, *c1, *c2, *p3)
        path = (f'<path d="{d}" fill="none" stroke="{stroke}" stroke-width="{width:g}"'
                f'{_dash(dash)}{attrs}/>')
        if arrow:
            tri = " ".join(f"{x:.1f},{y:.1f}" for x, y in arrowhead(c2, p3))
            path += f'<polygon points="{tri}" fill="{stroke}"{attrs}/>'
        return path
    _, x, y, s, size, fill, anchor, bold, halo = item
    style = ' font-weight="bold"' if bold else ""
    if halo:
        style += ' stroke="#ffffff" stroke-width="3" paint-order="stroke"'
    return (f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size:g}" fill="{fill}" '
            f'text-anchor="{anchor}"{style}>{escape(s)}</text>')


def arrowhead(c2: Point, p3: Point, length: float = 7.0, half: float = 3.2) -> list[Point]:
    """The triangle of an arrow ending at ``p3`` coming from the direction of ``c2``."""
    dx, dy = p3[0] - c2[0], p3[1] - c2[1]
    norm = (dx * dx + dy * dy) ** 0.5 or 1.0
    ux, uy = dx / norm, dy / norm
    bx, by = p3[0] - ux * length, p3[1] - uy * length
    return [p3, (bx - uy * half, by + ux * half), (bx + uy * half, by - ux * half)]


def bezier_point(pts, s: float) -> Point:
    """The point at parameter ``s`` in ``[0, 1]`` of a cubic Bezier curve."""
    (x0, y0), (x1, y1), (x2, y2), (x3, y3) = pts
    a, b, c, d = (1 - s) ** 3, 3 * s * (1 - s) ** 2, 3 * s * s * (1 - s), s ** 3
    return a * x0 + b * x1 + c * x2 + d * x3, a * y0 + b * y1 + c * y2 + d * y3


def vertex_step(dag: nx.DiGraph, v: str) -> int:
    """The step of vertex ``v``: its ``t``; a boundary vertex ``NAME@+k`` is step T-1+k."""
    t = dag.nodes[v].get("t")
    if t is None:
        later = _LATER.search(v)
        t = dag.graph.get("steps", 1) - 1 + int(later.group(1)) if later else 0
    return int(t)


def row_order(dag: nx.DiGraph, schedule: list[str] | None = None) -> list[str]:
    """Node names top to bottom: the order of the schedule (``schedule``, the nodes in the
    order the compiled program computes them) or else the order a step computes them in
    (same-step dependencies first, ties by declaration); inputs come first."""
    names = list(dict.fromkeys(a["node"] for _, a in dag.nodes(data=True)))
    inputs = [n for n in names if any(a["node"] == n and a.get("kind") == "input"
                                      and a["op"] == "input" for _, a in dag.nodes(data=True))]
    if schedule is not None:
        known = [n for n in schedule if n in names and n not in inputs]
        return inputs + known + [n for n in names if n not in inputs and n not in known]
    rank = {n: i for i, n in enumerate(names)}
    same = nx.DiGraph()
    same.add_nodes_from(names)
    same.add_edges_from((dag.nodes[u]["node"], dag.nodes[v]["node"])
                        for u, v, e in dag.edges(data=True) if e.get("delay", 0) == 0)
    try:
        order = list(nx.lexicographical_topological_sort(same, key=rank.__getitem__))
    except nx.NetworkXUnfeasible:
        order = names
    return [n for n in order if n in inputs] + [n for n in order if n not in inputs]


def edge_kind(dag: nx.DiGraph, u: str, v: str, e: dict) -> str:
    """``same`` (same step), ``recurrent`` (reads an earlier step), ``state`` (a node's own
    previous value, leak/asynchronous) or ``anticausal`` (reads a later step: a negative
    delay, or an edge into or out of a boundary vertex ``NAME@+k``)."""
    tu, tv = vertex_step(dag, u), vertex_step(dag, v)
    if tu > tv or e.get("delay", 0) < 0:
        return "anticausal"
    if e.get("weight") == "state":
        return "state"
    return "same" if tu == tv else "recurrent"


def vertex_text(a: dict) -> str:
    """The second line of a vertex box: what it computes and its size."""
    if a["op"] == "init":
        return f"init [{a['size']}]"
    if a["op"] == "input":
        return f"input [{a['size']}]"
    op = ("prod " if a.get("combine") == "product" else "") + a["op"]
    op += f" leak{a['leak']:g}" if a.get("leak") is not None else ""
    return f"{op} [{a['size']}]"


def param_colours(dag: nx.DiGraph) -> dict[str, str]:
    """A colour per parameter, in order of first use."""
    colours: dict[str, str] = {}
    for _, _, e in dag.edges(data=True):
        if e.get("param"):
            colours.setdefault(e["param"], PALETTE[len(colours) % len(PALETTE)])
    return colours


def edge_label(e: dict) -> str:
    """``P``, ``P^T`` and/or ``xS`` of an edge; empty for an unscaled identity edge."""
    scaled = f" x{e['scale']:g}" if e.get("scale", 1) != 1 else ""
    label = (e["param"] + ("^T" if e.get("transpose") else "")) if e.get("param") else ""
    return (label + scaled).strip()


@dataclass
class Layout:
    """Where each vertex of an unrolled graph goes: one column per step, one row per node."""

    rows: list[str]
    steps: list[int]
    boxes: dict[str, Box]
    box_w: float
    width: float
    height: float
    top: float = TOP

    def column_x(self, t: int) -> float:
        """The left edge of the boxes of step ``t``."""
        return LEFT + self.steps.index(t) * (self.box_w + GAP_X)


def compute_layout(dag: nx.DiGraph, schedule: list[str] | None = None) -> Layout:
    """Place the vertices of ``dag``: columns by step (initial states left of step 0,
    boundary vertices right of step T-1), rows in schedule order (see :func:`row_order`)."""
    rows = row_order(dag, schedule)
    row_of = {n: i for i, n in enumerate(rows)}
    steps = sorted({vertex_step(dag, v) for v in dag.nodes})
    longest = max([len(v) for v in dag.nodes] + [len(vertex_text(a)) for _, a in
                                                  dag.nodes(data=True)] + [8])
    box_w = max(84.0, longest * CHAR_W * 10 + 16)
    col = {t: LEFT + i * (box_w + GAP_X) for i, t in enumerate(steps)}
    # Edges from two or more steps back arc over the boxes: room for them under the headers.
    far = max([abs(e.get("delay", 0)) for _, _, e in dag.edges(data=True)] + [0])
    top = TOP + (14.0 + 8.0 * min(far, 4) if far > 1 else 0.0)
    boxes = {v: (col[vertex_step(dag, v)], top + row_of[a["node"]] * ROW_H, box_w, BOX_H)
             for v, a in dag.nodes(data=True)}
    width = LEFT + len(steps) * (box_w + GAP_X)
    return Layout(rows, steps, boxes, box_w, width, top + len(rows) * ROW_H, top)


def route(src: Box, dst: Box, kind: str, lane: int = 0) -> tuple[Point, Point, Point, Point]:
    """The cubic curve of an edge from box ``src`` to box ``dst`` (see :func:`edge_kind`).

    Same-step edges to the next row go straight down; longer ones bow out to the left.
    Edges from earlier steps leave a box's right side and enter the next column's left
    side (an S-curve, or an arc over the row for a node's own past); anti-causal edges
    leave the left side and come back below. ``lane`` spreads edges that share a side.
    """
    sx, sy, sw, sh = src
    dx, dy, dw, dh = dst
    off = (lane % 5 - 2) * 3.0
    if kind == "same":
        if dy > sy and abs(dy - sy - ROW_H) < 1 and abs(sx - dx) < 1:
            p0, p3 = (sx + sw / 2 + off, sy + sh), (dx + dw / 2 + off, dy)
            return p0, p0, p3, p3
        bow = min(10.0 + 7.0 * abs(dy - sy) / ROW_H, GAP_X / 2 - 6)
        side = -1.0 if dy > sy else 1.0  # an edge up the column would go on the right
        x0 = sx if side < 0 else sx + sw
        p0, p3 = (x0, sy + sh / 2 + off), (x0, dy + dh / 2 + off)
        return p0, (x0 + side * bow, p0[1]), (x0 + side * bow, p3[1]), p3
    if kind == "anticausal":
        p0, p3 = (sx, sy + sh / 2 + 6), (dx + dw, dy + dh / 2 + 6)
        drop = 22.0 + 0.3 * abs(sx - dx - dw) ** 0.5 * 4
        return p0, (p0[0] - 30, p0[1] + drop), (p3[0] + 30, p3[1] + drop), p3
    p0, p3 = (sx + sw, sy + sh / 2 + off), (dx, dy + dh / 2 + off)
    span = p3[0] - p0[0]
    if span > GAP_X + 1:  # from two or more steps back: arc over the boxes between
        lift = 18.0 + 6.0 * span / (GAP_X + sw)
        top = min(p0[1], p3[1]) - sh / 2 - lift
        return p0, (p0[0] + GAP_X * 0.6, top), (p3[0] - GAP_X * 0.6, top), p3
    if abs(sy - dy) < 1:  # same row: a slight arc
        return p0, (p0[0] + span / 3, p0[1] - 14), (p3[0] - span / 3, p3[1] - 14), p3
    return p0, (p0[0] + span / 2, p0[1]), (p3[0] - span / 2, p3[1]), p3


def vertex_style(a: dict, v: str) -> tuple[str, str, tuple | None]:
    """``(fill, stroke, dash)`` of a vertex box by its kind."""
    if _LATER.search(v):
        return "#f5e8ff", ANTI, (4.0, 3.0)
    if a["op"] == "init":
        return "#f3f4f6", "#9ca3af", (4.0, 3.0)
    if a["op"] == "input":
        return "#dbeafe", "#3b82f6", None
    return "#fef3c7", "#d97706", None


def draw_unrolled(dag: nx.DiGraph, schedule: list[str] | None = None,
                  labels: bool = True) -> Drawing:
    """The unrolled graph as a :class:`Drawing`, with title, step headers and a legend."""
    lay = compute_layout(dag, schedule)
    colours = param_colours(dag)
    kinds = {(u, v): edge_kind(dag, u, v, e) for u, v, e in dag.edges(data=True)}
    legend = _legend(dag, colours, set(kinds.values()))
    height = lay.height + 18 + 16 * len(legend)
    wide = max(sum(len(t) for t, _ in line) for line in legend)
    drawing = Drawing(max(lay.width, 16 + 6 * wide), height)
    name, steps = dag.graph.get("name", "network"), dag.graph.get("steps")
    drawing.text(16, 22, f"{name} unrolled over {steps} steps: {dag.number_of_nodes()} "
                 f"vertices, {dag.number_of_edges()} edges", size=13, bold=True)
    for t in lay.steps:
        head = f"t = {t}" if t < (steps or 10**9) else f"t = {t} (end +{t - steps + 1})"
        drawing.text(lay.column_x(t) + lay.box_w / 2, TOP - 16, head + (" (init)" if t < 0
                     else ""), size=11, anchor="middle", bold=True, fill="#374151")
    for i, node in enumerate(lay.rows):
        drawing.text(LEFT - 10, lay.top + i * ROW_H + BOX_H / 2 + 4, node, size=11,
                     anchor="end", fill="#6b7280")
    lanes: dict[str, int] = {}
    for u, v, e in dag.edges(data=True):
        kind = kinds[u, v]
        lane = lanes[v] = lanes.get(v, -1) + 1
        pts = route(lay.boxes[u], lay.boxes[v], kind, lane if kind != "same" else 0)
        colour = colours.get(e.get("param"), GREY)
        width = 1.6 if e.get("param") else 1.1
        drawing.curve(pts, colour, dash=DASHES[kind], width=width,
                      attrs=f' data-param="{escape(e.get("param") or "")}"')
        if kind == "anticausal":  # a second, thin magenta stroke marks it whatever the param
            drawing.curve(pts, ANTI, width=0.8, arrow=False)
        text = edge_label(e)
        if labels and text:
            x, y = bezier_point(pts, 0.5)
            straight = pts[0] == pts[1]
            drawing.text(x + (4 if straight else 0), y + (3 if straight else -3), text, size=9,
                         fill=colour, anchor="start" if straight else "middle", halo=True)
    for v, a in dag.nodes(data=True):
        fill, stroke, dash = vertex_style(a, v)
        x, y, w, h = lay.boxes[v]
        drawing.rect(lay.boxes[v], fill, stroke, dash=dash, width=1.2,
                     attrs=f' data-vertex="{escape(v)}"')
        drawing.text(x + w / 2, y + 15, v, size=11, anchor="middle", bold=True)
        drawing.text(x + w / 2, y + 29, vertex_text(a), size=10, anchor="middle",
                     fill="#4b5563")
    y = lay.height + 14
    for line in legend:
        x = 16.0
        for text, colour in line:
            drawing.text(x, y, text, size=10, fill=colour)
            x += len(text) * CHAR_W * 10
        y += 16
    return drawing


def _legend(dag: nx.DiGraph, colours: dict[str, str], kinds: set[str]) -> list[list[tuple]]:
    """Lines of ``(text, colour)`` spans."""
    ink = "#374151"
    lines = [[("Solid: same step.  Dashed: reads an earlier step (delay >= 1).  Dotted grey: "
               "the node's own previous value.", ink)]]
    if "anticausal" in kinds:
        lines.append([("Dash-dot, magenta core: reads a LATER step (negative delay, "
                       "anti-causal); magenta dashed boxes: boundary vertices NAME@+k.", ANTI)])
    uses: dict[str, set] = {}
    for _, _, e in dag.edges(data=True):
        if e.get("param"):
            uses.setdefault(e["param"], set()).add(e.get("edge"))
    if colours:
        lines.append([("Colour = parameter: one weight shared by all steps (tied across "
                       "time):", ink)])
        line: list[tuple] = []
        for param, colour in colours.items():
            tied = f" (tied: {len(uses[param])} edges per step)" if len(uses[param]) > 1 else ""
            line.append((f"  {param}{tied}", colour))
            if sum(len(t) for t, _ in line) > 80:
                lines.append(line)
                line = []
        if line:
            lines.append(line)
    return lines


def to_svg(dag: nx.DiGraph, schedule: list[str] | None = None) -> str:
    """The unrolled graph as SVG text, drawn with graphrnn's own layout (no Graphviz)."""
    return draw_unrolled(dag, schedule).to_svg()
