"""Unrolling: counts against the formula, delay wiring, tying, state edges, and rendering."""

from __future__ import annotations

import json
import shutil
import warnings

import networkx as nx
import pytest
from hypothesis import HealthCheck, given, settings

import graphrnn as gr
from graphrnn.files import write_atomic
from graphrnn.frontend import render
from graphrnn.frontend.unroll import expected_counts
from tests.helpers import SPECS
from tests.helpers.strategies import valid_networks

SPECS = sorted((SPECS).glob("*.yaml"))
SPEC_IDS = [p.stem for p in SPECS]


def spec(name: str) -> gr.Network:
    return gr.load_spec(SPECS[SPEC_IDS.index(name)])


def formula(net: gr.Network, T: int) -> tuple[int, int]:
    """Counted independently of the implementation: vertices and edges of the unrolled DAG."""
    depth = {n: 0 for n in (*net.inputs, *net.nodes)}
    ahead = dict(depth)  # boundary rows after the last step, read through negative delays
    for e in net.edges:
        depth[e.src] = max(depth[e.src], e.delay)
        ahead[e.src] = max(ahead[e.src], -e.delay)
    own = [n for n, v in net.nodes.items()
           if v.leak is not None or v.update == "asynchronous" or v.zoneout]
    for n in own:
        depth[n] = max(depth[n], 1)
    implicit = [n for n in own if not any(e.src == e.dst == n and e.delay == 1 for e in net.edges)]
    return (T * (len(net.inputs) + len(net.nodes)) + sum(depth.values()) + sum(ahead.values()),
            T * (len(net.edges) + len(implicit)))


@pytest.mark.parametrize("path", SPECS, ids=SPEC_IDS)
@pytest.mark.parametrize("T", [1, 2, 7])
def test_counts(path, T):
    net = gr.load_spec(path)
    dag = gr.unroll(net, steps=T)
    assert (dag.number_of_nodes(), dag.number_of_edges()) == formula(net, T)
    assert expected_counts(net, T) == formula(net, T)
    assert nx.is_directed_acyclic_graph(dag)
    assert dag.graph == {"name": net.name, "steps": T}


@pytest.mark.parametrize("path", SPECS, ids=SPEC_IDS)
def test_vertex_attributes(path):
    net = gr.load_spec(path)
    dag = gr.unroll(net, steps=3)
    for v, a in dag.nodes(data=True):
        after = a["t"] - 3 + 1  # k of a boundary vertex NODE@+k after the last step
        assert v == (f"{a['node']}@+{after}" if after > 0 else f"{a['node']}@{a['t']}")
        assert a["size"] == net.size(a["node"])
        if a["t"] >= 3:
            assert a["op"] == "init" and after <= net.future[a["node"]]
            assert a["state_key"] == v
        elif a["t"] < 0:
            assert a["op"] == "init" and -a["t"] <= net.history[a["node"]]
        elif a["node"] in net.inputs:
            assert a["op"] == "input"
        else:
            node = net.nodes[a["node"]]
            assert a["op"] == node.activation
            assert (a["combine"], a["leak"], a["update"], a["temperature"]) == (
                node.combine, node.leak, node.update, node.temperature)
            assert a["bias"] == (f"{node.name}.bias" if net.has_bias(node.name) else None)
            # in-degree: one per spec in-edge, plus the implicit state edge
            assert dag.in_degree(v) == formula_in_degree(net, node.name)
    for name, depth in net.history.items():
        inits = sorted(a["t"] for _, a in dag.nodes(data=True)
                       if a["node"] == name and a["t"] < 0)
        assert inits == list(range(-depth, 0))


def formula_in_degree(net: gr.Network, name: str) -> int:
    own = net.reads_own_past(name)
    merged = any(e.src == e.dst == name and e.delay == 1 for e in net.edges)
    return len(net.in_edges(name)) + (1 if own and not merged else 0)


def test_narx_delay_wiring():
    dag = gr.unroll(spec("narx"), steps=5)
    for t in range(5):
        preds = set(dag.predecessors(f"h@{t}"))
        assert preds == {f"x@{t}", f"x@{t - 1}", f"x@{t - 2}", f"y@{t - 1}", f"y@{t - 2}"}
    assert dag.edges["y@-2", "h@0"]["delay"] == 2
    assert dag.edges["y@-2", "h@0"]["param"] == "y->h@2"
    assert dag.edges["y@2", "h@4"]["param"] == "y->h@2"
    assert dag.nodes["y@-2"]["state_key"] == "y@-2"
    assert dag.nodes["y@-1"]["state_key"] == "y"
    assert {v for v in dag if dag.nodes[v]["t"] < 0} == {"x@-1", "x@-2", "y@-1", "y@-2"}


def test_weight_tying():
    dag = gr.unroll(spec("modern_hopfield"), steps=3)
    e1, e2 = dag.edges["xi@0", "a@1"], dag.edges["a@1", "xi@1"]
    assert e1["param"] == e2["param"] == "X"
    assert (e1["transpose"], e2["transpose"]) == (True, False)
    assert (e1["scale"], e1["edge"], e2["edge"]) == (4.0, 0, 1)
    params = {e["param"] for _, _, e in dag.edges(data=True)}
    assert params == {"X"}


def test_untied_params_are_distinct_and_identity_has_none():
    dag = gr.unroll(spec("lstm"), steps=2)
    assert dag.edges["h@0", "i@1"]["param"] == "h->i@1"
    assert dag.edges["h@0", "f@1"]["param"] == "h->f@1"
    assert dag.edges["c@-1", "fc@0"]["param"] is None
    assert dag.edges["c@-1", "fc@0"]["weight"] == "identity"
    gru = gr.unroll(spec("gru"), steps=2)
    assert gru.edges["n@1", "d@1"]["scale"] == -1.0


def test_state_edges():
    cont = gr.unroll(spec("hopfield_continuous"), steps=3)
    e = cont.edges["v@1", "v@2"]
    assert (e["param"], e["weight"], e["state"], e["edge"]) == ("W", "full", True, 0)
    leaky = gr.load_spec("inputs: {x: 2}\nnodes: {h: {size: 2, leak: 0.5}}\n"
                         "edges: [x -> h]\noutputs: [h]\n")
    dag = gr.unroll(leaky, steps=3)
    e = dag.edges["h@-1", "h@0"]
    assert (e["param"], e["weight"], e["state"], e["edge"], e["delay"]) == (
        None, "state", True, None, 1)
    assert dag.edges["x@0", "h@0"]["state"] is False
    assert dag.nodes["h@-1"]["state_key"] == "h"


def test_learned_initial_state():
    net = gr.load_spec("nodes: {h: {size: 2, init_state: learned}}\nedges: ['h -> h @1']\n"
                       "outputs: [h]\n")
    dag = gr.unroll(net, steps=1)
    assert dag.nodes["h@-1"]["init"] == "h.init"
    assert "h.init" in net.params


@pytest.mark.parametrize("bad", [0, -1, 2.0, True, "3", None])
def test_bad_steps(bad):
    with pytest.raises(ValueError, match="steps must be an integer >= 1"):
        gr.unroll(spec("elman"), steps=bad)


def test_json_round_trip():
    dag = gr.unroll(spec("narx"), steps=3)
    data = json.loads(render.to_json(dag))
    assert "edges" in data and "links" not in data
    back = nx.node_link_graph(data, edges="edges")
    assert set(back.nodes) == set(dag.nodes) and set(back.edges) == set(dag.edges)
    assert back.nodes["h@1"] == dag.nodes["h@1"]
    assert back.edges["y@-2", "h@0"] == dag.edges["y@-2", "h@0"]


def test_text_rendering():
    text = render.to_text(gr.unroll(spec("elman"), steps=2))
    assert "h@1 = tanh([x->h] x@1 + [h->h@1] h@0 + h.bias)  [32]" in text
    assert "h@-1 = initial state 'h' (zeros)  [32]" in text
    gru = render.to_text(gr.unroll(spec("gru"), steps=1))
    assert "d@0 = identity(h@-1 + -1 * n@0)  [16]" in gru
    assert "zd@0 = identity(z@0 * d@0)  [16]" in gru
    leaky = render.to_text(gr.unroll(spec("hopfield_continuous"), steps=1))
    assert "v@0 = 0.8 * v@-1 + 0.2 * tanh([W] v@-1)  [64]" in leaky


@pytest.mark.parametrize("path", SPECS, ids=SPEC_IDS)
def test_dot_rendering(path):
    net = gr.load_spec(path)
    dot = render.to_dot(gr.unroll(net, steps=2))
    assert dot.startswith(f'digraph "{net.name}"') and dot.rstrip().endswith("}")
    assert "rank=same" in dot and "rankdir=LR" in dot
    if any(e.delay for e in net.edges):
        assert "style=dashed" in dot
    assert dot.count("->") >= gr.unroll(net, steps=2).number_of_edges()


def test_dot_tied_edges_share_colour_and_label():
    dot = render.to_dot(gr.unroll(spec("modern_hopfield"), steps=2))
    lines = [line for line in dot.splitlines() if 'label="X' in line]
    colours = {line.split("color=")[1].split(",")[0] for line in lines}
    assert len(lines) == 4 and len(colours) == 1
    assert 'label="X^T x4"' in dot


def test_missing_dot_is_clear(monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda _: None)
    with pytest.raises(render.GraphvizError, match="needs Graphviz's 'dot' program"):
        render.render_image("digraph {}", "png")


def test_write_atomic(tmp_path):
    target = tmp_path / "out.txt"
    write_atomic(target, "one")
    write_atomic(target, b"two")
    assert target.read_text() == "two"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]
    with pytest.raises(OSError):
        write_atomic(tmp_path / "missing_dir" / "x.txt", "z")


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(valid_networks())
def test_random_networks_unroll(text):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        net = gr.load_spec(text)
    for T in (1, 4):
        dag = gr.unroll(net, steps=T)
        assert (dag.number_of_nodes(), dag.number_of_edges()) == formula(net, T)
        assert nx.is_directed_acyclic_graph(dag)
    for u, v, e in dag.edges(data=True):
        if e["edge"] is not None:
            spec_edge = net.edges[e["edge"]]
            assert dag.nodes[v]["t"] - dag.nodes[u]["t"] == spec_edge.delay == e["delay"]
            assert e["param"] == spec_edge.param
