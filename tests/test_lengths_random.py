"""``lengths=`` on random networks (both directions, read-ahead, leaks, learned states, tied
weights): the model against the reference per sequence, and tape gradients against each
sequence run alone."""

from __future__ import annotations

import os

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import graphrnn as gr
from graphrnn.frontend.reference import reference_forward
from tests.helpers import assert_close, random_case
from tests.helpers.strategies import valid_networks

EXAMPLES = int(os.environ.get("GRAPHRNN_LENGTHS_EXAMPLES", "25"))
T, B = 5, 4


def _differentiable(net) -> bool:
    return not any(n.update == "asynchronous" or n.activation == "bernoulli"
                   for n in net.nodes.values())


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(valid_networks(), st.lists(st.integers(1, T), min_size=B, max_size=B),
       st.sampled_from(["numpy", "numpy-ufuncs"]))
def test_random_networks_with_lengths(text, lengths, backend):
    net = gr.load_spec(text)
    lengths = np.array(lengths)
    model = gr.compile(net, backend=backend, dtype="float64")
    params = model.init_params(seed=1)
    inputs, state = random_case(net, steps=T, batch=B, seed=2)
    steps = None if net.inputs else T
    if not net.inputs:  # a batch needs inputs or state to say its size
        state = state or {}
    got, got_final = model.forward(params, inputs, state, steps=steps, lengths=lengths)
    want, want_final = reference_forward(net, params, inputs, state, steps=steps,
                                         lengths=lengths)
    assert_close(got, want, rtol=1e-9)
    assert_close(got_final, want_final, rtol=1e-9)
    if not _differentiable(net) or not net.inputs:
        return
    rng = np.random.default_rng(3)
    seeds = {o: rng.normal(size=(T, B, net.size(o))) for o in net.outputs}
    _, _, tape = model.forward(params, inputs, state, record=True, lengths=lengths)
    grads = tape.backward(seeds)
    total = {}
    for b, n in enumerate(lengths):
        x = {k: v[:n, b:b + 1] for k, v in inputs.items()}
        s = {k: v[b:b + 1] for k, v in state.items()}
        _, _, alone = model.forward(params, x, s, record=True)
        g = alone.backward({k: v[:n, b:b + 1] for k, v in seeds.items()})
        for k in params:
            total[k] = total.get(k, 0) + g[k]
        for key in state:
            assert_close({key: grads[f"state:{key}"][b]}, {key: g[f"state:{key}"][0]},
                         rtol=1e-9)
    assert_close({k: grads[k] for k in params}, total, rtol=1e-9)
