"""Pictures without Graphviz: graphrnn's own layout as SVG and PNG, for every bundled spec."""

from __future__ import annotations

import shutil
import struct
import xml.etree.ElementTree as ET
import zlib

import networkx as nx
import numpy as np
import pytest

import graphrnn as gr
from graphrnn.cli.main import main
from graphrnn.frontend import layout, render
from tests.helpers import SPEC_FILES

IDS = [p.stem for p in SPEC_FILES]
SVG = "{http://www.w3.org/2000/svg}"


def decode_png(data: bytes) -> np.ndarray:
    """An 8-bit RGB PNG without filters (what graphrnn.frontend.png writes), checking every CRC."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, chunks = 8, {}
    while pos < len(data):
        (n,) = struct.unpack(">I", data[pos:pos + 4])
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + n]
        (crc,) = struct.unpack(">I", data[pos + 8 + n:pos + 12 + n])
        assert zlib.crc32(kind + body) & 0xFFFFFFFF == crc, kind
        chunks[kind] = chunks.get(kind, b"") + body
        pos += 12 + n
    width, height, depth, colour = struct.unpack(">IIBB", chunks[b"IHDR"][:10])
    assert (depth, colour) == (8, 2) and b"IEND" in chunks
    raw = np.frombuffer(zlib.decompress(chunks[b"IDAT"]), np.uint8).reshape(height, -1)
    assert (raw[:, 0] == 0).all()
    return raw[:, 1:].reshape(height, width, 3)


def hex_rgb(colour: str) -> tuple[int, ...]:
    return tuple(int(colour[i:i + 2], 16) for i in (1, 3, 5))


@pytest.mark.parametrize("path", SPEC_FILES, ids=IDS)
def test_own_svg_draws_every_vertex_and_edge(path):
    dag = gr.unroll(gr.load_spec(path), steps=3)
    root = ET.fromstring(layout.to_svg(dag))  # well-formed XML
    assert root.tag == SVG + "svg" and float(root.get("width")) > 0
    boxes = [r.get("data-vertex") for r in root.iter(SVG + "rect") if r.get("data-vertex")]
    assert sorted(boxes) == sorted(dag.nodes)
    texts = {t.text for t in root.iter(SVG + "text")}
    assert set(dag.nodes) <= texts
    paths = [p for p in root.iter(SVG + "path") if p.get("data-param") is not None]
    assert len(paths) == dag.number_of_edges()
    params = {e["param"] for _, _, e in dag.edges(data=True) if e["param"]}
    assert {p.get("data-param") for p in paths} - {""} == params
    if any(e["delay"] > 0 for _, _, e in dag.edges(data=True)):  # past reads: dashed
        assert any(p.get("stroke-dasharray") == "6 4" for p in paths)
    if any(e["delay"] < 0 for _, _, e in dag.edges(data=True)):  # future reads: dash-dot
        assert any(p.get("stroke-dasharray") == "9 3 2 3" for p in paths)


@pytest.mark.parametrize("path", SPEC_FILES, ids=IDS)
def test_own_png_is_valid_and_draws_every_vertex(path):
    dag = gr.unroll(gr.load_spec(path), steps=2)
    img = decode_png(render.render(dag, "png"))
    drawing, lay = layout.draw_unrolled(dag), layout.compute_layout(dag)
    assert img.shape[:2] == (int(np.ceil(drawing.height * 2)), int(np.ceil(drawing.width * 2)))
    for v, a in dag.nodes(data=True):
        x, y, _, _ = lay.boxes[v]
        fill = layout.vertex_style(a, v)[0]
        assert tuple(img[int((y + 4) * 2), int((x + 4) * 2)]) == hex_rgb(fill), v


def test_rows_follow_the_schedule_and_steps_are_columns():
    dag = gr.unroll(gr.load_spec(SPEC_FILES[IDS.index("lstm")]), steps=3)
    lay = layout.compute_layout(dag)
    assert lay.rows == ["x", "i", "f", "g", "o", "fc", "ig", "c", "tc", "h", "y"]
    assert lay.steps == [-1, 0, 1, 2]
    assert lay.boxes["h@0"][0] < lay.boxes["h@1"][0] < lay.boxes["h@2"][0]
    assert lay.boxes["h@1"][1] == lay.boxes["h@2"][1] > lay.boxes["c@2"][1]
    forced = layout.compute_layout(dag, ["h", "c", "i"])  # a schedule's order wins
    assert forced.rows[:4] == ["x", "h", "c", "i"]


def test_tied_parameters_share_a_colour_and_are_named_in_the_legend():
    dag = gr.unroll(gr.load_spec(SPEC_FILES[IDS.index("modern_hopfield")]), steps=2)
    root = ET.fromstring(layout.to_svg(dag))
    tied = [p for p in root.iter(SVG + "path") if p.get("data-param") == "X"]
    assert len(tied) == 4 and len({p.get("stroke") for p in tied}) == 1
    legend = " ".join(t.text for t in root.iter(SVG + "text"))
    assert "X (tied: 2 edges per step)" in legend


def anticausal_dag() -> nx.DiGraph:
    """What negative delays will unroll to: an edge reading the next step, and a boundary
    vertex ``h@+1`` after the last step (no ``t`` attribute: the id says where it goes)."""
    g = nx.DiGraph(name="bidir", steps=2)
    for t in range(2):
        g.add_node(f"x@{t}", node="x", t=t, op="input", size=3, kind="input")
        g.add_node(f"h@{t}", node="h", t=t, op="tanh", size=4, kind="node", combine="sum",
                   leak=None)
    g.add_node("h@+1", node="h", op="init", size=4, kind="node")
    common = {"weight": "full", "scale": 1.0, "transpose": False}
    for t in range(2):
        g.add_edge(f"x@{t}", f"h@{t}", param="x->h", delay=0, edge=0, **common)
        later = f"h@{t + 1}" if t + 1 < 2 else "h@+1"
        g.add_edge(later, f"h@{t}", param="h->h@-1", delay=-1, edge=1, **common)
    return g


def test_edges_reading_a_later_step_are_drawn_apart():
    dag = anticausal_dag()
    assert layout.vertex_step(dag, "h@+1") == 2
    assert layout.edge_kind(dag, "h@1", "h@0", dag.edges["h@1", "h@0"]) == "anticausal"
    assert layout.edge_kind(dag, "x@0", "h@0", dag.edges["x@0", "h@0"]) == "same"
    lay = layout.compute_layout(dag)
    assert lay.steps == [0, 1, 2] and lay.boxes["h@+1"][0] > lay.boxes["h@1"][0]
    svg = layout.to_svg(dag)
    root = ET.fromstring(svg)
    back = [p for p in root.iter(SVG + "path") if p.get("data-param") == "h->h@-1"]
    assert len(back) == 2 and {p.get("stroke-dasharray") for p in back} == {"9 3 2 3"}
    assert sum(p.get("stroke") == layout.ANTI for p in root.iter(SVG + "path")) == 2
    assert "reads a LATER step" in svg and "t = 2 (end +1)" in svg
    decode_png(render.render(dag, "png"))


def test_cli_pictures_without_graphviz(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda _: None)
    elman = str(SPEC_FILES[IDS.index("elman")])
    for fmt in ("svg", "png"):
        out = tmp_path / f"elman.{fmt}"
        assert main(["inspect", elman, "--steps", "2", "-o", str(out)]) == 0
        data = out.read_bytes()
        if fmt == "svg":
            assert ET.fromstring(data).tag == SVG + "svg"
        else:
            assert decode_png(data).shape[2] == 3
    code = main(["inspect", elman, "--format", "svg", "--layout", "dot", "-o",
                 str(tmp_path / "dot.svg")])
    assert code == 2 and "needs Graphviz's 'dot' program" in capsys.readouterr().err


def test_dot_layout_still_runs_graphviz(tmp_path, monkeypatch):
    """``layout="dot"`` hands the DOT text to a ``dot`` program (a stand-in records it)."""
    fake = tmp_path / "dot"
    fake.write_text("#!/bin/sh\necho \"$1\" > \"$0.args\"\ncat > \"$0.in\"\n"
                    "printf '<svg>from dot</svg>'\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:/usr/bin:/bin")
    dag = gr.unroll(gr.load_spec(SPEC_FILES[IDS.index("elman")]), steps=2)
    assert render.render(dag, "svg", layout="dot") == b"<svg>from dot</svg>"
    assert (tmp_path / "dot.args").read_text().strip() == "-Tsvg"
    assert (tmp_path / "dot.in").read_text() == render.to_dot(dag)


def test_unknown_format_or_layout_is_refused():
    dag = gr.unroll(gr.load_spec(SPEC_FILES[IDS.index("elman")]), steps=1)
    with pytest.raises(ValueError, match="cannot render format 'gif'"):
        render.render(dag, "gif")
    with pytest.raises(ValueError, match="layout 'neato'"):
        render.render(dag, "svg", layout="neato")
    with pytest.raises(ValueError, match="needs the network"):
        render.render(dag, "html")
