"""Bad arrays handed to a model: each a DataError (a ValueError) naming the array."""

from __future__ import annotations

import numpy as np
import pytest

import graphrnn as gr
from graphrnn.errors import DataError
from tests.helpers import SPECS


@pytest.fixture(scope="module")
def elman():
    net = gr.load_spec(SPECS / "elman.yaml")
    model = gr.compile(net, dtype="float64")
    return model, model.init_params(0), np.zeros((5, 2, net.inputs["x"]))


@pytest.mark.parametrize("change, message", [
    (lambda p, x: (p, {"z": x}), "unknown input 'z'"),
    (lambda p, x: (p, {}), "missing input 'x'"),
    (lambda p, x: (p, {"x": x[..., :3]}),
     r"input 'x' has shape \(5, 2, 3\), expected \(\?, \?, 8\)"),
    (lambda p, x: (p, {"x": x[0]}), "input 'x' has shape"),
    (lambda p, x: (p, {"x": x[:0]}), "at least one step"),
    (lambda p, x: (p, {"x": np.where(x == 0, np.nan, x)}), "input 'x' contains NaN"),
    (lambda p, x: (p, {"x": x.astype(str)}), "dtype"),
    (lambda p, x: ({k: v for k, v in p.items() if k != "h.bias"}, {"x": x}),
     "missing parameter 'h.bias'"),
    (lambda p, x: ({**p, "h->hh": p["h.bias"]}, {"x": x}), "unknown parameter 'h->hh'"),
    (lambda p, x: ({**p, "h->h@1": p["h->h@1"][:3]}, {"x": x}), "parameter 'h->h@1' has shape"),
    (lambda p, x: ({**p, "h.bias": np.full_like(p["h.bias"], np.inf)}, {"x": x}),
     "'h.bias' contains NaN or inf"),
])
def test_bad_forward_arguments(elman, change, message):
    model, params, x = elman
    p, inputs = change(params, x)
    with pytest.raises(DataError, match=message):
        model.forward(p, inputs)


def test_bad_state(elman):
    model, params, x = elman
    with pytest.raises(DataError, match="unknown state key 'hh'"):
        model.forward(params, {"x": x}, state={"hh": np.zeros((2, 32))})
    with pytest.raises(DataError, match=r"state 'h' has shape \(3, 32\), expected \(2, 32\)"):
        model.forward(params, {"x": x}, state={"h": np.zeros((3, 32))})


def test_bad_targets(elman):
    model, params, x = elman
    with pytest.raises(DataError, match="target 'y' has shape"):
        model.gradients(params, {"x": x}, {"y": np.zeros((5, 2, 3))})
    with pytest.raises(DataError, match="unknown target"):
        model.gradients(params, {"x": x}, {"h": np.zeros((5, 2, 4))})
    with pytest.raises(DataError, match=r"labels in \[7, 7\].*4 classes \(0..3\)"):
        model.gradients(params, {"x": x}, {"y": np.full((5, 2), 7)}, loss="cross_entropy")
    with pytest.raises(DataError, match="unknown loss"):
        model.gradients(params, {"x": x}, {"y": np.zeros((5, 2, 4))}, loss="hinge")
    with pytest.raises(DataError, match="mask 'y' has shape"):
        model.gradients(params, {"x": x}, {"y": np.zeros((5, 2, 4))}, mask=np.ones(5))


def test_network_without_inputs_needs_steps():
    model = gr.compile(gr.load_spec(SPECS / "hopfield.yaml"))
    with pytest.raises(DataError, match="pass steps="):
        model.forward(model.init_params(0), {})


def test_bad_compile_arguments():
    net = gr.load_spec(SPECS / "elman.yaml")
    with pytest.raises(ValueError, match="unknown dtype"):
        gr.compile(net, dtype="float16")
    with pytest.raises(ValueError, match="unknown backend"):
        gr.compile(net, backend="tpu")
