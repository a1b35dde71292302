"""BPTT gradients against central finite differences in float64."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings

import graphrnn as gr
from graphrnn.errors import DataError
from tests.helpers import SPECS, random_case
from tests.helpers.strategies import valid_networks

DIFFERENTIABLE = ["elman", "jordan", "mlp_loops", "fully_recurrent", "locally_recurrent", "narx",
                  "lstm", "gru", "lstm2", "hopfield_continuous", "modern_hopfield", "reverse_elman",
                  "bilstm", "bigru"]


def directional_check(f, grads: dict, point: dict, seed=0, eps=1e-6, rtol=1e-6):
    """For each array, ``grad . v`` against ``(f(p + eps v) - f(p - eps v)) / 2 eps``.

    ``v`` are random unit directions; the error is relative to the gradient's norm (the
    largest directional derivative), so tiny projections are not judged on round-off; and the
    difference quotient's own round-off (``~ ulp(f) / eps``) is allowed, which matters only
    where the whole gradient is tiny next to the loss.
    """
    rng = np.random.default_rng(seed)
    roundoff = 100 * np.finfo(float).eps * abs(f(point)) / eps
    for name in point:
        for _ in range(2):
            v = rng.normal(size=np.shape(point[name]))
            v /= np.linalg.norm(v)
            plus = {k: (a + eps * v if k == name else a) for k, a in point.items()}
            minus = {k: (a - eps * v if k == name else a) for k, a in point.items()}
            numeric = (f(plus) - f(minus)) / (2 * eps)
            analytic = float((grads[name] * v).sum())
            scale = max(abs(numeric), float(np.linalg.norm(grads[name])), 1e-8)
            assert abs(numeric - analytic) <= rtol * scale + roundoff, (
                f"{name}: analytic {analytic:.10g} vs numeric {numeric:.10g}")


def targets_for(net, steps, batch, seed=9):
    rng = np.random.default_rng(seed)
    return {o: rng.normal(size=(steps, batch, net.size(o))) for o in net.outputs}


@pytest.mark.parametrize("name", DIFFERENTIABLE)
def test_parameter_gradients_match_finite_differences(name, backend):
    net = gr.load_spec(SPECS / f"{name}.yaml")
    model = gr.compile(net, backend=backend, dtype="float64")
    params = model.init_params(seed=1)
    inputs, state = random_case(net, steps=5, batch=2, with_state=not net.inputs)
    steps = None if net.inputs else 5
    targets = targets_for(net, 5, 2)
    loss, grads = model.gradients(params, inputs, targets, state=state, steps=steps)
    assert set(params) <= set(grads)

    def f(p):
        return model.gradients(p, inputs, targets, state=state, steps=steps)[0]

    assert loss == pytest.approx(f(params))
    directional_check(f, grads, params)


@pytest.mark.parametrize("name", ["narx", "lstm", "hopfield_continuous"])
def test_gradients_for_a_passed_state(name):
    net = gr.load_spec(SPECS / f"{name}.yaml")
    model = gr.compile(net, dtype="float64")
    params = model.init_params(seed=1)
    inputs, state = random_case(net, steps=4, batch=2)
    steps = None if net.inputs else 4
    targets = targets_for(net, 4, 2)
    _, grads = model.gradients(params, inputs, targets, state=state, steps=steps)
    node_keys = [k for k in state if k.split("@")[0] in net.nodes]
    assert node_keys and all(f"state:{k}" in grads for k in node_keys)

    def f(s):
        return model.gradients(params, inputs, targets, state={**state, **s}, steps=steps)[0]

    directional_check(f, {k: grads[f"state:{k}"] for k in node_keys},
                      {k: state[k] for k in node_keys})


LEARNED = """
name: learned_init
inputs: {x: 3}
nodes:
  h: {size: 4, activation: tanh, init_state: learned, leak: 0.5}
  y: 2
edges:
  - x -> h
  - h -> h @2
  - h -> y
outputs: [y]
"""


def test_learned_initial_state_and_long_delays():
    net = gr.load_spec(LEARNED)
    model = gr.compile(net, dtype="float64")
    params = model.init_params(seed=2)
    params["h.init"] = np.random.default_rng(0).normal(size=4)
    inputs, _ = random_case(net, steps=5, batch=2, with_state=False)
    targets = targets_for(net, 5, 2)
    _, grads = model.gradients(params, inputs, targets)
    assert np.abs(grads["h.init"]).max() > 0
    directional_check(lambda p: model.gradients(p, inputs, targets)[0], grads, params)


def test_cross_entropy_and_last_step_mask():
    net = gr.load_spec(SPECS / "elman.yaml")
    model = gr.compile(net, dtype="float64")
    params = model.init_params(seed=3)
    inputs, _ = random_case(net, steps=6, batch=3, with_state=False)
    labels = {"y": np.random.default_rng(1).integers(0, net.size("y"), size=(6, 3))}
    mask = np.zeros((6, 3))
    mask[-1] = 1
    loss, grads = model.gradients(params, inputs, labels, loss="cross_entropy", mask=mask)
    out, _ = model.forward(params, inputs)
    logits = out["y"][-1]
    logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    assert loss == pytest.approx(-logp[np.arange(3), labels["y"][-1]].mean(), rel=1e-12)
    directional_check(lambda p: model.gradients(p, inputs, labels, loss="cross_entropy",
                                                mask=mask)[0], grads, params)


def test_tied_weights_accumulate_every_share():
    text = """
name: tied
inputs: {x: 3}
nodes: {a: {size: 3, activation: tanh}, b: {size: 3, activation: tanh}}
edges:
  - {from: x, to: a, name: W}
  - {from: a, to: b, name: W}
  - {from: b, to: a, delay: 1, weight: diagonal}
outputs: [b]
"""
    net = gr.load_spec(text)
    model = gr.compile(net, dtype="float64")
    params = model.init_params(seed=4)
    inputs, _ = random_case(net, steps=4, batch=2, with_state=False)
    targets = targets_for(net, 4, 2)
    _, grads = model.gradients(params, inputs, targets)
    directional_check(lambda p: model.gradients(p, inputs, targets)[0], grads, params)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(valid_networks())
def test_random_graph_gradients_match_finite_differences(text):
    net = gr.load_spec(text)
    model = gr.compile(net, dtype="float64")
    rng = np.random.default_rng(5)
    # zero biases can put a relu exactly on its kink, where no derivative exists
    params = {k: v + 0.1 * rng.normal(size=v.shape) for k, v in model.init_params(5).items()}
    inputs, state = random_case(net, steps=4, batch=2, seed=6)
    steps = None if net.inputs else 4
    targets = targets_for(net, 4, 2)
    _, grads = model.gradients(params, inputs, targets, state=state, steps=steps)
    directional_check(lambda p: model.gradients(p, inputs, targets, state=state,
                                                steps=steps)[0], grads, params, rtol=1e-5)


def test_asynchronous_nodes_refuse_gradients():
    net = gr.load_spec(SPECS / "hopfield.yaml")
    model = gr.compile(net, dtype="float64")
    params = model.init_params(0)
    state = {"s": np.ones((1, net.size("s")))}
    with pytest.raises(DataError, match="asynchronous"):
        model.gradients(params, {}, {"s": np.ones((3, 1, net.size("s")))}, state=state, steps=3)
