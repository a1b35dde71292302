"""What the tests share: where the specs are, random cases, closeness checks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
SPECS = ROOT / "graphrnn" / "specs"
SPEC_FILES = sorted(SPECS.glob("*.yaml"))
BAD_SPECS = sorted((Path(__file__).parent / "bad_specs").glob("*.yaml"))


def random_case(net, steps=6, batch=3, seed=0, with_state=True):
    """Inputs and a random initial state for every state key."""
    rng = np.random.default_rng(seed)
    inputs = {k: rng.integers(0, s, (steps, batch)) if k in net.tokens else
              rng.normal(size=(steps, batch, s)) for k, s in net.inputs.items()}
    state = ({k: rng.normal(size=(batch, net.size(k.split("@")[0]))) for k in net.state_keys}
             if with_state else None)
    return inputs, state


def assert_close(actual: dict, expected: dict, rtol=1e-10):
    """Same keys, and every array within ``rtol`` of the expected one relative to its scale."""
    assert actual.keys() == expected.keys()
    for k in expected:
        scale = max(np.abs(expected[k]).max(), 1e-12)
        err = np.abs(actual[k] - expected[k]).max() / scale
        assert err <= rtol, f"{k}: relative error {err:.3g}"


def assert_same_loss_and_gradients(got: tuple, want: tuple, rtol: float, atol: float):
    """Two ``gradients`` calls' ``(loss, grads)``: the loss within ``rtol`` and every gradient
    of ``want`` element-wise within ``rtol`` and ``atol`` (named on failure)."""
    (loss, grads), (loss_want, grads_want) = got, want
    assert loss == pytest.approx(loss_want, rel=rtol)
    for k in grads_want:
        np.testing.assert_allclose(grads[k], grads_want[k], rtol=rtol, atol=atol, err_msg=k)


def assert_loss_gradients_are_differences(model, params, grads, names, rng, *call,
                                          eps=1e-6, rtol=1e-6, **kw):
    """For each parameter in ``names``: ``grads[name] . v`` against the central difference of
    ``model.gradients(params, *call, **kw)``'s loss along a random direction ``v``."""
    for name in names:
        v = rng.normal(size=params[name].shape)
        plus = {**params, name: params[name] + eps * v}
        minus = {**params, name: params[name] - eps * v}
        numeric = (model.gradients(plus, *call, **kw)[0]
                   - model.gradients(minus, *call, **kw)[0]) / (2 * eps)
        analytic = float((grads[name] * v).sum())
        assert abs(numeric - analytic) <= rtol * max(abs(numeric), 1e-3), name

