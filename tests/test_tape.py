"""The tape of a recorded forward pass against ``gradients`` and central finite differences."""

from __future__ import annotations

import numpy as np
import pytest

import graphrnn as gr
from graphrnn.errors import DataError
from tests.helpers import SPECS, random_case

DIFFERENTIABLE = ["elman", "jordan", "mlp_loops", "fully_recurrent", "locally_recurrent", "narx",
                  "lstm", "gru", "lstm2", "hopfield_continuous", "modern_hopfield", "reverse_elman",
                  "bilstm"]
BACKENDS = ["numpy", "numpy-ufuncs"]


def _setup(spec, backend="numpy", steps=5, batch=3):
    net = gr.load_spec(SPECS / f"{spec}.yaml")
    model = gr.compile(net, backend=backend, dtype="float64")
    params = model.init_params(seed=1)
    inputs, state = random_case(net, steps=steps, batch=batch, seed=2)
    if not net.inputs:
        inputs = {}
    return net, model, params, inputs, state, steps


def _weights(model, outputs, final, seed=3):
    """Random fixed cotangents: the loss is sum(w * output) + sum(u * final state)."""
    rng = np.random.default_rng(seed)
    return ({k: rng.normal(size=v.shape) for k, v in outputs.items()},
            {k: rng.normal(size=v.shape) for k, v in final.items()})


def _directional(f, grad, point, eps=1e-6, seed=0):
    """``grad . v`` against the central difference of ``f`` along a random unit ``v``."""
    v = np.random.default_rng(seed).normal(size=point.shape)
    v /= np.linalg.norm(v)
    numeric = (f(point + eps * v) - f(point - eps * v)) / (2 * eps)
    analytic = float((grad * v).sum())
    scale = max(abs(numeric), float(np.linalg.norm(grad)), 1e-8)
    assert abs(numeric - analytic) <= 1e-6 * scale + 1e-8, (analytic, numeric)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("spec", DIFFERENTIABLE)
def test_tape_matches_gradients(spec, backend):
    net, model, params, inputs, state, steps = _setup(spec, backend)
    kw = {} if net.inputs else {"steps": steps}
    outputs, _ = model.forward(params, inputs, state=state, **kw)
    rng = np.random.default_rng(4)
    targets = {k: rng.normal(size=v.shape) for k, v in outputs.items()}
    loss, grads = model.gradients(params, inputs, targets, state=state, **kw)
    outs, _, tape = model.forward(params, inputs, state=state, record=True, **kw)
    seeds = {k: 2 * (outs[k] - targets[k]) / targets[k].size for k in targets}
    taped = tape.backward(seeds)
    assert set(taped) == (set(params) | {f"input:{n}" for n in net.inputs}
                          | {f"state:{k}" for k in state})
    assert set(grads) <= set(taped)  # gradients gives no state:KEY of an input's state
    for key, g in grads.items():
        scale = max(np.abs(g).max(), 1e-12)
        assert np.abs(taped[key] - g).max() / scale <= 1e-10, key


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("spec", DIFFERENTIABLE)
def test_tape_against_finite_differences(spec, backend):
    """Every gradient the tape gives (parameters, inputs, initial states) along random
    directions, with cotangents on the outputs and on the final state."""
    net, model, params, inputs, state, steps = _setup(spec, backend)
    kw = {} if net.inputs else {"steps": steps}
    outs, final, tape = model.forward(params, inputs, state=state, record=True, **kw)
    w, u = _weights(model, outs, final)
    grads = tape.backward(w, u)

    def loss(p, x, s):
        o, f = model.forward(p, x, state=s, **kw)
        return (sum(float((w[k] * o[k]).sum()) for k in w)
                + sum(float((u[k] * f[k]).sum()) for k in u))

    for name in params:
        if net.params[name].trainable:
            _directional(lambda a, n=name: loss({**params, n: a}, inputs, state),
                         grads[name], params[name])
    for name in inputs:
        _directional(lambda a, n=name: loss(params, {**inputs, n: a}, state),
                     grads[f"input:{name}"], inputs[name])
    for key in state:
        _directional(lambda a, k=key: loss(params, inputs, {**state, k: a}),
                     grads[f"state:{key}"], state[key])


def test_backward_twice_and_other_calls_between():
    """Each backward is independent, and calls made between recording and backward (other
    recorded calls of the same shapes included) do not touch the tape's arrays."""
    net, model, params, inputs, state, _ = _setup("lstm")
    outs, final, tape = model.forward(params, inputs, state=state, record=True)
    w, u = _weights(model, outs, final)
    first = tape.backward(w, u)
    other = {k: v + 1.0 for k, v in inputs.items()}
    model.forward(params, other)
    model.gradients(params, other, {k: np.zeros_like(v) for k, v in outs.items()})
    _, _, tape2 = model.forward(params, other, state=state, record=True)
    tape2.backward(w)
    second = tape.backward(w, u)
    for key, g in first.items():
        np.testing.assert_array_equal(second[key], g, err_msg=key)
    first_copy = {k: np.array(v) for k, v in first.items()}
    tape.backward({k: -v for k, v in w.items()})
    for key, g in first_copy.items():
        np.testing.assert_array_equal(first[key], g, err_msg=key)  # results are the caller's


def test_missing_outputs_count_as_zero_and_input_grads_off():
    net, model, params, inputs, _, _ = _setup("lstm2")
    outs, _, tape = model.forward(params, inputs, record=True, input_grads=False)
    zero = tape.backward({})
    assert all(np.all(v == 0) for k, v in zero.items() if not k.startswith("input:"))
    assert all(zero[f"input:{n}"] is None for n in net.inputs)
    name = next(iter(outs))
    g = tape.backward({name: np.ones_like(outs[name])})
    _, _, full = model.forward(params, inputs, record=True)
    g2 = full.backward({name: np.ones_like(outs[name])})
    for key in params:
        np.testing.assert_allclose(g[key], g2[key], rtol=1e-12, atol=1e-14)
    assert np.abs(g2[f"input:{next(iter(net.inputs))}"]).max() > 0


def test_tape_runs_are_reused():
    """A dropped tape's Run serves the next recorded call of the same shapes."""
    _, model, params, inputs, _, _ = _setup("elman")
    _, _, tape = model.forward(params, inputs, record=True)
    run = tape.run
    del tape
    _, _, tape = model.forward(params, inputs, record=True)
    assert tape.run is run
    _, _, other = model.forward(params, inputs, record=True)
    assert other.run is not run


@pytest.mark.parametrize("bad, match", [
    ({"nope": np.zeros((5, 3, 4))}, "nope"),
    ({"y": np.zeros((5, 3, 7))}, "y"),
])
def test_bad_output_grads(bad, match):
    _, model, params, inputs, _, _ = _setup("elman")
    _, _, tape = model.forward(params, inputs, record=True)
    with pytest.raises(DataError, match=match):
        tape.backward(bad)


def test_bad_state_grads():
    _, model, params, inputs, _, _ = _setup("elman")
    _, _, tape = model.forward(params, inputs, record=True)
    with pytest.raises(DataError, match="zz"):
        tape.backward({}, {"zz": np.zeros((3, 4))})
    tape.release()
    with pytest.raises(DataError, match="released"):
        tape.backward({})


def test_importing_graphrnn_imports_neither_torch_nor_jax():
    import subprocess
    import sys

    code = ("import sys, graphrnn; graphrnn.compile(graphrnn.load_spec(graphrnn.spec_path("
            "'elman')));print(any(m in sys.modules for m in ('torch', 'jax')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=str(SPECS.parents[1]))
    assert out.stdout.strip() == "False"


def test_token_inputs_have_no_gradient():
    """DESIGN: ``input:NAME`` is None for token inputs; a float input next to it still gets
    its gradient."""
    net = gr.load_spec("inputs: {tok: {vocab: 5}, x: 2}\nnodes:\n  e: {size: 3, bias: false}\n"
                       "  h: {size: 3, activation: tanh}\nedges:\n  - tok -> e embedding\n"
                       "  - e -> h\n  - x -> h\n  - h -> h @1\noutputs: [h]\n")
    model = gr.compile(net, dtype="float64")
    params = model.init_params(0)
    rng = np.random.default_rng(0)
    inputs = {"tok": rng.integers(0, 5, (4, 2)), "x": rng.normal(size=(4, 2, 2))}
    outs, _, tape = model.forward(params, inputs, record=True)
    grads = tape.backward({"h": np.ones_like(outs["h"])})
    assert grads["input:tok"] is None
    assert grads["input:x"].shape == (4, 2, 2) and np.abs(grads["input:x"]).max() > 0
