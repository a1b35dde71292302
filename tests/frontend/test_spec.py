"""Spec loading: every bundled spec, paths versus text, defaults, edge syntax, line numbers."""

from __future__ import annotations

import warnings

import pytest

import graphrnn as gr
from graphrnn.frontend.network import default_param_name
from tests.helpers import SPECS

SPECS = sorted((SPECS).glob("*.yaml"))
SPEC_IDS = [p.stem for p in SPECS]

ELMAN = """\
name: elman
inputs:
  x: 8
nodes:
  h: {size: 32, activation: tanh}
  y: 4
edges:
  - x -> h
  - h -> h @1
  - h -> y
outputs: [y]
"""


def test_bundled_specs_exist():
    expected = {"elman", "jordan", "mlp_loops", "fully_recurrent", "locally_recurrent", "narx",
                "hopfield", "hopfield_continuous", "boltzmann", "modern_hopfield", "lstm", "gru",
                "lstm2"}
    assert expected <= set(SPEC_IDS)


@pytest.mark.parametrize("path", SPECS, ids=SPEC_IDS)
def test_every_spec_loads_without_warnings(path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        net = gr.load_spec(path)
    assert net.name == path.stem
    assert net.source == str(path)
    assert net.outputs and net.nodes and net.edges
    text = path.read_text()
    assert text.startswith("#") or text.startswith("name:")  # each file says what it is
    assert "#" in text.split("nodes:")[0]


def test_elman_is_the_design_example():
    net = gr.load_spec(SPECS[SPEC_IDS.index("elman")])
    assert net.inputs == {"x": 8}
    assert {n: (v.size, v.activation) for n, v in net.nodes.items()} == {
        "h": (32, "tanh"), "y": (4, "identity")}
    assert [(e.src, e.dst, e.delay, e.param) for e in net.edges] == [
        ("x", "h", 0, "x->h"), ("h", "h", 1, "h->h@1"), ("h", "y", 0, "h->y")]
    assert net.outputs == ("y",)
    assert {k: p.shape for k, p in net.params.items()} == {
        "x->h": (32, 8), "h->h@1": (32, 32), "h->y": (4, 32), "h.bias": (32,), "y.bias": (4,)}


@pytest.mark.parametrize("kind", ["str", "path", "text"])
def test_path_or_text(tmp_path, kind):
    f = tmp_path / "mine.yaml"
    f.write_text(ELMAN)
    arg = {"str": str(f), "path": f, "text": ELMAN}[kind]
    net = gr.load_spec(arg)
    assert net.name == "elman"
    assert net.source == (None if kind == "text" else str(f))


def test_missing_file_is_oserror(tmp_path):
    with pytest.raises(FileNotFoundError):
        gr.load_spec(str(tmp_path / "absent.yaml"))
    with pytest.raises(FileNotFoundError):
        gr.load_spec(tmp_path / "absent.yml")


def test_name_defaults_to_file_stem_or_network(tmp_path):
    body = "nodes: {h: 2}\nedges: [h -> h @1]\noutputs: [h]\n"
    f = tmp_path / "tiny.yml"
    f.write_text(body)
    assert gr.load_spec(f).name == "tiny"
    assert gr.load_spec(body).name == "network"


def test_text_errors_say_spec():
    with pytest.raises(gr.SpecError) as info:
        gr.load_spec("nodes: {h: 2}\nedges: [h -> h]\noutputs: [h]\n")
    assert str(info.value).startswith("<spec>:2: edges[0]:")
    assert info.value.file is None and info.value.line == 2 and info.value.key == "edges[0]"
    assert isinstance(info.value, ValueError)


def test_not_utf8_is_spec_error(tmp_path):
    f = tmp_path / "latin.yaml"
    f.write_bytes(b"name: caf\xe9\n")
    with pytest.raises(gr.SpecError, match="not UTF-8"):
        gr.load_spec(f)


def test_defaults_and_bias_rule():
    net = gr.load_spec("""
inputs: {x: 3}
nodes:
  a: {size: 3, activation: tanh}
  p: {size: 3, combine: product}
  s: 3
  n: {size: 3, bias: false}
  q: {size: 3, combine: product, bias: true}
edges:
  - x -> a
  - x -> p identity
  - a -> p identity
  - a -> s identity
  - x -> n
  - a -> q
outputs: [p, s, n, q]
""")
    a = net.nodes["a"]
    assert (a.combine, a.leak, a.init_state, a.update, a.temperature) == (
        "sum", None, "zeros", "synchronous", 1.0)
    assert {n: net.has_bias(n) for n in net.nodes} == {
        "a": True, "p": False, "s": False, "n": False, "q": True}
    assert [e.param for e in net.edges] == ["x->a", None, None, None, "x->n", "a->q"]
    assert "q.bias" in net.params and "p.bias" not in net.params


@pytest.mark.parametrize("text,src,dst,delay,weight", [
    ("h -> h @1", "h", "h", 1, "full"),
    ("h->h@2", "h", "h", 2, "full"),
    ("h -> h @ 3 diagonal", "h", "h", 3, "diagonal"),
    ("h -> h diagonal @1", "h", "h", 1, "diagonal"),
    ("x -> h", "x", "h", 0, "full"),
    ("x -> h identity", "x", "h", 0, "identity"),
    ("x  ->  h  @0  full", "x", "h", 0, "full"),
])
def test_edge_strings(text, src, dst, delay, weight):
    net = gr.load_spec(f"inputs: {{x: 2}}\nnodes: {{h: 2}}\nedges:\n  - {text}\n"
                       f"  - {'x -> h @3' if (src, delay) != ('x', 3) else 'h -> h @1'}\n"
                       "outputs: [h]\n")
    e = net.edges[0]
    assert (e.src, e.dst, e.delay, e.weight) == (src, dst, delay, weight)
    assert e.param == (None if weight == "identity" else default_param_name(src, dst, delay))


def test_edge_mapping_keys():
    net = gr.load_spec("""
nodes:
  xi: {size: 6, bias: false}
  a: {size: 2, activation: softmax, bias: false}
edges:
  - {from: xi, to: a, delay: 1, name: X, transpose: true, scale: 4, init: normal}
  - {from: a, to: xi, name: X, trainable: false}
outputs: [xi]
""")
    e0, e1 = net.edges
    assert (e0.transpose, e0.scale, e0.init, e0.param, e0.trainable) == (True, 4.0, "normal",
                                                                        "X", True)
    assert isinstance(e0.scale, float)
    assert (e1.transpose, e1.param, e1.trainable) == (False, "X", False)
    p = net.params["X"]
    assert p.shape == (6, 2) and p.edges == (e0, e1)
    assert p.init == "normal" and p.trainable is False  # one frozen tied edge freezes it


def test_lines_are_recorded(tmp_path):
    f = tmp_path / "e.yaml"
    f.write_text(ELMAN)
    net = gr.load_spec(f)
    assert net.nodes["h"].line == 5 and net.nodes["y"].line == 6
    assert [e.line for e in net.edges] == [8, 9, 10]
    assert net.input_lines == {"x": 3}


def test_inputs_may_be_left_out_or_empty():
    body = "nodes: {s: {size: 4, activation: sign}}\nedges: [s -> s @1]\noutputs: [s]\n"
    assert gr.load_spec(body).inputs == {}
    assert gr.load_spec("inputs:\n" + body).inputs == {}
    assert gr.load_spec("inputs: {}\n" + body).inputs == {}


def test_outputs_may_be_one_name():
    net = gr.load_spec("nodes: {h: 2}\nedges: [h -> h @1]\noutputs: h\n")
    assert net.outputs == ("h",)


def test_cyclic_graph_attributes():
    net = gr.load_spec(SPECS[SPEC_IDS.index("hopfield_continuous")])
    g = net.graph
    assert g.nodes["v"]["kind"] == "node" and g.nodes["v"]["leak"] == 0.2
    keys = sorted(str(k) for _, _, k in g.edges(keys=True))
    assert keys == ["0", "v.state"]
    jordan = gr.load_spec(SPECS[SPEC_IDS.index("jordan")])
    assert jordan.graph.nodes["x"] == {"kind": "input", "size": 8}
    assert jordan.time_loops == [["h", "y"]]


@pytest.mark.parametrize("name,loops", [
    ("elman", [["h"]]),
    ("narx", [["h", "y"]]),
    ("lstm2", [["i1", "f1", "g1", "o1", "fc1", "ig1", "c1", "tc1", "h1"],
               ["i2", "f2", "g2", "o2", "fc2", "ig2", "c2", "tc2", "h2"]]),
    ("modern_hopfield", [["xi", "a"]]),
])
def test_time_loops(name, loops):
    assert gr.load_spec(SPECS[SPEC_IDS.index(name)]).time_loops == loops


def test_merge_keys_and_tags_fail_cleanly():
    with pytest.raises(gr.SpecError, match="cannot read this value"):
        gr.load_spec("nodes: {h: !!binary 'xx'}\nedges: [h -> h @1]\noutputs: [h]\n")
    with pytest.raises(gr.SpecError, match="expected a single value"):
        gr.load_spec("nodes: {h: {size: [2]}}\nedges: [h -> h @1]\noutputs: [h]\n")
