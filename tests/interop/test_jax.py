"""graphrnn.jax: the network under jax.jit and jax.grad against graphrnn and finite differences."""

from __future__ import annotations

import importlib.util
from types import SimpleNamespace

import numpy as np
import pytest

from tests.helpers import SPECS, random_case

#: JAX is imported by the first test that needs it, not at collection: a process that has
#: imported JAX (multithreaded) must not fork, and other test files fork children.
pytestmark = pytest.mark.skipif(importlib.util.find_spec("jax") is None,
                                reason="JAX is not installed")


@pytest.fixture(scope="module")
def jx():
    import jax
    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp

    import graphrnn.jax as grj
    return SimpleNamespace(jax=jax, jnp=jnp, grj=grj)


def _case(jx, spec):
    fn = jx.grj.function(SPECS / f"{spec}.yaml", dtype="float64")
    params = fn.init_params(seed=1)
    inputs, state = random_case(fn.net, steps=4, batch=2, seed=2)
    rng = np.random.default_rng(5)
    outputs, final = fn.model.forward({k: np.asarray(v) for k, v in params.items()}, inputs,
                                      state=state)
    w = {k: rng.normal(size=v.shape) for k, v in outputs.items()}
    u = {k: rng.normal(size=v.shape) for k, v in final.items()}

    def loss(p, x, s):
        o, f = fn(p, x, s)
        return (sum(jx.jnp.sum(w[k] * o[k]) for k in w)
                + sum(jx.jnp.sum(u[k] * f[k]) for k in u))

    return fn, params, inputs, state, loss, (outputs, final)


@pytest.mark.parametrize("spec", ["elman", "lstm", "narx"])
def test_jit_forward_matches_graphrnn(jx, spec):
    fn, params, inputs, state, _, (outputs, final) = _case(jx, spec)
    o, f = jx.jax.jit(fn)(params, inputs, state)
    for k in outputs:
        np.testing.assert_allclose(np.asarray(o[k]), outputs[k], rtol=1e-12)
    for k in final:
        np.testing.assert_allclose(np.asarray(f[k]), final[k], rtol=1e-12)


@pytest.mark.parametrize("spec", ["elman", "lstm", "gru", "narx"])
def test_grad_against_finite_differences(jx, spec):
    fn, params, inputs, state, loss, _ = _case(jx, spec)
    grads = jx.jax.jit(jx.jax.grad(loss, argnums=(0, 1, 2)))(params, inputs, state)
    point = (params, inputs, state)
    rng = np.random.default_rng(0)
    eps = 1e-6
    for which in range(3):
        for key, value in point[which].items():
            v = rng.normal(size=np.shape(value))
            v /= np.linalg.norm(v)
            shifted = [[dict(a) for a in point] for _ in range(2)]
            shifted[0][which][key] = value + eps * v
            shifted[1][which][key] = value - eps * v
            numeric = (float(loss(*shifted[0])) - float(loss(*shifted[1]))) / (2 * eps)
            g = np.asarray(grads[which][key])
            analytic = float((g * v).sum())
            scale = max(abs(numeric), float(np.linalg.norm(g)), 1e-8)
            assert abs(numeric - analytic) <= 1e-6 * scale + 1e-8, (key, analytic, numeric)


def test_grad_matches_model_gradients(jx):
    fn, params, inputs, _, _, (outputs, _) = _case(jx, "lstm")
    target = {k: np.zeros_like(v) for k, v in outputs.items()}
    _, expected = fn.model.gradients({k: np.asarray(v) for k, v in params.items()}, inputs,
                                     target)

    def mse(p):
        o, _ = fn(p, inputs)
        return sum(jx.jnp.mean(o[k] ** 2) for k in o)

    grads = jx.jax.grad(mse)(params)
    for k, g in expected.items():
        np.testing.assert_allclose(np.asarray(grads[k]), g, rtol=1e-10, atol=1e-14)
    # a backward pass called twice (its tape used up) runs the forward pass again
    _, vjp = jx.jax.vjp(lambda p: fn(p, inputs)[0], params)
    once, twice = vjp(target | {k: np.ones_like(v) for k, v in outputs.items()}), None
    twice = vjp({k: np.ones_like(v) for k, v in outputs.items()})
    for k in params:
        np.testing.assert_array_equal(np.asarray(once[0][k]), np.asarray(twice[0][k]))

