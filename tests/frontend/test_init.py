"""Parameter initialisation: the documented defaults and per-edge overrides."""

from __future__ import annotations

import numpy as np

import graphrnn as gr
from tests.helpers import SPECS


def test_default_initialisations():
    net = gr.load_spec(SPECS / "elman.yaml")
    p = gr.compile(net, dtype="float64").init_params(seed=0)
    w = p["h->h@1"]
    np.testing.assert_allclose(w @ w.T, np.eye(32), atol=1e-12)          # orthogonal
    bound = np.sqrt(6 / (8 + 32))
    assert np.abs(p["x->h"]).max() <= bound and np.abs(p["x->h"]).std() > bound / 4  # glorot
    assert not p["h.bias"].any() and not p["y.bias"].any()


def test_hopfield_self_weights_are_symmetric_with_zero_diagonal():
    p = gr.compile(gr.load_spec(SPECS / "hopfield.yaml")).init_params(seed=1)
    np.testing.assert_array_equal(p["W"], p["W"].T)
    assert not np.diag(p["W"]).any() and np.abs(p["W"]).max() > 0


def test_per_edge_init_overrides_and_seeds_repeat():
    text = """
name: inits
inputs: {x: 3}
nodes: {h: {size: 3, activation: tanh}}
edges:
  - {from: x, to: h, init: identity}
  - {from: h, to: h, delay: 1, init: zeros}
outputs: [h]
"""
    model = gr.compile(gr.load_spec(text), dtype="float64")
    p = model.init_params(seed=3)
    np.testing.assert_array_equal(p["x->h"], np.eye(3))
    assert not p["h->h@1"].any()
    q = model.init_params(seed=3)
    assert all(np.array_equal(p[k], q[k]) for k in p)
    assert p["x->h"].dtype == np.float64
