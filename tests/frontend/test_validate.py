"""Validation: the bad-spec corpus (message, file and line), built networks, warnings, fuzzing."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings

import graphrnn as gr
from graphrnn.frontend.names import did_you_mean
from graphrnn.frontend.network import Edge, Network, Node
from graphrnn.frontend.validate import validate
from tests.helpers import BAD_SPECS
from tests.helpers.strategies import broken_specs, valid_networks

BAD = BAD_SPECS


def expectation(path: Path) -> tuple[str, int]:
    """The ``# expect:`` fragment and the line (``# line: N`` or the ``# <- here`` marker)."""
    text = path.read_text()
    expect = re.search(r"^# expect: (.*)$", text, re.M).group(1)
    explicit = re.search(r"^# line: (\d+)$", text, re.M)
    if explicit:
        return expect, int(explicit.group(1))
    marked = [i for i, line in enumerate(text.splitlines(), 1) if "# <- here" in line]
    assert len(marked) == 1, f"{path.name} needs one '# <- here' marker"
    return expect, marked[0]


def test_corpus_is_large():
    assert len(BAD) >= 60


@pytest.mark.parametrize("path", BAD, ids=[p.stem for p in BAD])
def test_bad_spec(path):
    expect, line = expectation(path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(gr.SpecError) as info:
            gr.load_spec(path)
    err = info.value
    assert expect in str(err)
    assert str(err).startswith(f"{path}:{line}:")
    assert (err.file, err.line) == (str(path), line)
    assert "\n" not in str(err)


def _net(nodes, edges, inputs=None, outputs=("h",)) -> Network:
    return Network(name="built", inputs=inputs or {}, nodes={n.name: n for n in nodes},
                   edges=tuple(edges), outputs=tuple(outputs))


def test_built_network_without_lines():
    net = _net([Node("h", 3, activation="tahn")], [Edge("h", "h", 1, param="W")])
    with pytest.raises(gr.SpecError) as info:
        validate(net)
    assert str(info.value).startswith("<spec>: nodes.h.activation: unknown activation 'tahn'")


def test_built_network_valid():
    validate(_net([Node("h", 3)], [Edge("h", "h", 1, param="W")]))


@pytest.mark.parametrize("edge,message", [
    (Edge("h", "h", 1, param=None), "parameter name must be a non-empty string"),
    (Edge("h", "h", 1, weight="identity", param="W"), "cannot be named"),
    (Edge("h", "h", 1, weight="identity", init="zeros"), "remove 'transpose'/'init'"),
    (Edge("h", "h", True, param="W"), "delay must be an integer"),
    (Edge("h", "h", 1, scale=float("nan"), param="W"), "scale must be a finite number"),
    (Edge("h", "h", 1, param="W", transpose=1), "transpose must be true or false"),
])
def test_built_edge_problems(edge, message):
    with pytest.raises(gr.SpecError, match=re.escape(message)):
        validate(_net([Node("h", 3)], [edge]))


def test_leaky_product_and_learned_state_are_fine():
    validate(_net([Node("h", 3, combine="product", leak=0.5, init_state="learned")],
                  [Edge("h", "h", 1, param="W")]))


def test_unreachable_node_warns():
    text = """
inputs: {x: 2}
nodes:
  h: 2
  dead: 2
edges:
  - x -> h
  - h -> dead
outputs: [h]
"""
    with pytest.warns(UserWarning, match=r"<spec>:5: node\(s\) dead reach no output"):
        net = gr.load_spec(text)
    assert "dead" in net.nodes


def test_unread_input_warns():
    text = "inputs: {x: 2, z: 3}\nnodes: {h: 2}\nedges: [x -> h]\noutputs: [h]\n"
    with pytest.warns(UserWarning, match=r"input\(s\) z are never read"):
        gr.load_spec(text)


def test_asynchronous_with_weights_is_fine():
    gr.load_spec("nodes: {s: {size: 4, activation: sign, update: asynchronous}}\n"
                 "edges: ['s -> s @1']\noutputs: [s]\n")


def test_identity_self_edge_does_not_satisfy_asynchronous():
    with pytest.raises(gr.SpecError, match="needs its Hopfield weights"):
        gr.load_spec("nodes: {s: {size: 4, update: asynchronous}}\n"
                     "edges: ['s -> s @1 diagonal']\noutputs: [s]\n")


def test_did_you_mean():
    assert did_you_mean("tahn", ["tanh", "relu"]) == "did you mean 'tanh'?"
    assert did_you_mean("zzz", ["a", "b"]) == "known: a, b"


def test_loop_through_delay_is_not_algebraic():
    gr.load_spec("nodes: {p: 2, q: 2}\nedges: [p -> q, 'q -> p @1']\noutputs: [q]\n")


def test_loop_message_starts_at_first_node():
    text = "nodes: {a: 2, b: 2, c: 2}\nedges: [a -> a @1, c -> b, b -> c, a -> b]\noutputs: [c]\n"
    with pytest.raises(gr.SpecError, match="algebraic loop b -> c -> b"):
        gr.load_spec(text)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(broken_specs(with_expect=True))
def test_broken_specs_raise_spec_error(case):
    text, expect = case
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(gr.SpecError) as info:
            gr.load_spec(text)
    assert expect in str(info.value)
    assert "\n" not in str(info.value)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(valid_networks())
def test_valid_networks_validate_quietly(text):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        net = gr.load_spec(text)
    assert 1 <= len(net.nodes) <= 5 and len(net.inputs) <= 2
    assert all(net.in_edges(n) for n in net.nodes)
    assert all(-3 <= e.delay <= 3 for e in net.edges)
