"""gr.to_onnx of ``norm: layer``: ONNX LayerNormalization (opset 17), run by onnxruntime."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings

import graphrnn as gr
from tests.helpers import SPECS, random_case
from tests.helpers.strategies import valid_networks

ort = pytest.importorskip("onnxruntime")

SPEC = """
name: normed
inputs: {x: 3}
nodes:
  a: {size: 5, activation: tanh, norm: layer}              # in a loop, with a bias
  s: {size: 5, activation: softplus, norm: layer, bias: false, leak: 0.7}
  p: {size: 5, combine: product}
  o: {size: 4, activation: sigmoid, norm: layer}           # once over all steps
edges: [x -> a, a -> a @1, a -> s diagonal, s -> a @1 identity, s -> s @1, a -> p identity,
        s -> p identity, p -> o]
outputs: [o, s]
"""


def _params(model, seed=1):
    rng = np.random.default_rng(seed)
    params = model.init_params(seed=seed)
    return {k: (rng.normal(1.0 if k.endswith(".gain") else 0.0, 0.5, v.shape).astype(np.float32)
                if k.endswith((".gain", ".bias")) else v) for k, v in params.items()}


def _check(net, params, proto, steps_list=(1, 4, 7), batch=3):
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(proto.SerializeToString(), options,
                                   providers=["CPUExecutionProvider"])
    model = gr.compile(net, dtype="float64")
    for steps in steps_list:
        inputs, state = random_case(net, steps=steps, batch=batch, seed=steps)
        feed = {k: v.astype(np.int64 if k in net.tokens else np.float32)
                for k, v in inputs.items()}
        feed.update({f"state.{k}": v.astype(np.float32) for k, v in state.items()})
        if not net.inputs:
            feed["steps"] = np.array(steps, np.int64)
        got = dict(zip([o.name for o in session.get_outputs()], session.run(None, feed),
                       strict=True))
        outputs, final = model.forward(params, inputs, state=state,
                                       steps=None if inputs else steps)
        expected = {**outputs, **{f"final.{k}": v for k, v in final.items()}}
        assert set(got) == set(expected)
        for k, v in expected.items():
            err = np.abs(got[k] - v).max() / max(np.abs(v).max(), 1.0)
            assert err <= 1e-5, f"{k}: relative error {err:.3g}"


@pytest.mark.parametrize("unrolled", [False, True])
def test_normalised_nodes_are_layer_normalization_ops(unrolled):
    import onnx
    for net in (gr.load_spec(SPEC), gr.load_spec(SPECS / "ln_lstm.yaml")):
        params = _params(gr.compile(net))
        proto = gr.to_onnx(net, params, unrolled=unrolled, steps=4 if unrolled else None)
        onnx.checker.check_model(proto)
        ops = [n.op_type for n in proto.graph.node]
        body = [inner.op_type for n in proto.graph.node for a in n.attribute
                for inner in a.g.node]  # a Scan's step
        assert "LayerNormalization" in ops + body
        assert "LSTM" not in ops  # ONNX's LSTM has no norm
        _check(net, params, proto, steps_list=(4,) if unrolled else (1, 4, 7))


def _with_norm(net):
    nodes = {name: dataclasses.replace(node, norm="layer") if node.update != "asynchronous"
             and node.activation not in ("bernoulli", "softmax") else node
             for name, node in net.nodes.items()}
    return dataclasses.replace(net, nodes=nodes)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(valid_networks())
def test_random_networks_with_norm_match_graphrnn(text):
    from graphrnn.exchange.onnx_export import refusal
    net = gr.load_spec(text)
    if refusal(net) is not None:
        return
    net = _with_norm(net)
    params = _params(gr.compile(net))
    _check(net, params, gr.to_onnx(net, params), steps_list=(1, 4))
