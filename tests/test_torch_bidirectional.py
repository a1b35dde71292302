"""specs/bilstm.yaml and specs/bigru.yaml against torch.nn.LSTM/GRU(bidirectional=True) and a
Linear read-out of torch's concatenated output: outputs, h_n/c_n of both directions, gradients."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import graphrnn as gr
from tests.helpers.torch_bidirectional import (
    DIRECTIONS,
    GATES,
    recurrent_param,
    setup,
    torch_run,
)

torch = pytest.importorskip("torch")

T, B = 6, 3
def _rel(a, b) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))


@pytest.mark.parametrize("kind", ["bilstm", "bigru"])
def test_forward_matches_torch_bidirectional(kind):
    model, params, rnn, lin, x, state, _ = setup(torch, kind, T, B)
    outputs, final = model.forward(params, {"x": x}, state=state)
    with torch.no_grad():
        y, (fwd, bwd), finals, _ = torch_run(torch, kind, rnn, lin, x, state)
    assert _rel(outputs["y"], y.numpy()) <= 1e-10
    assert set(final) == set(finals)
    for key, value in finals.items():
        assert _rel(final[key], value.numpy()) <= 1e-10, key
    # each direction's hidden sequence, as torch's output halves
    both = dataclasses.replace(model.net, outputs=("y", "h", "h_reverse"))
    seqs, _ = gr.compile(both, dtype="float64").forward(params, {"x": x}, state=state)
    assert _rel(seqs["h"], fwd.numpy()) <= 1e-10
    assert _rel(seqs["h_reverse"], bwd.numpy()) <= 1e-10


@pytest.mark.parametrize("kind", ["bilstm", "bigru"])
@pytest.mark.parametrize("backend", ["numpy", "numpy-ufuncs"])
def test_gradients_match_torch_bidirectional(kind, backend):
    model, params, rnn, lin, x, state, rng = setup(torch, kind, T, B)
    model = gr.compile(model.net, backend=backend, dtype="float64")
    target = rng.normal(size=(T, B, lin.out_features))
    loss, grads = model.gradients(params, {"x": x}, {"y": target}, loss="mse", state=state)
    y, _, _, init = torch_run(torch, kind, rnn, lin, x, state)
    torch_loss = torch.nn.functional.mse_loss(y, torch.from_numpy(target))
    torch_loss.backward()
    assert abs(loss - torch_loss.item()) <= 1e-10 * abs(torch_loss.item())
    hidden = rnn.hidden_size
    expected = {"h->y": lin.weight.grad[:, :hidden].numpy(),
                "h_reverse->y": lin.weight.grad[:, hidden:].numpy(),
                "y.bias": lin.bias.grad.numpy()}
    for tsfx, sfx, _, at in DIRECTIONS:
        w_ih, w_hh = getattr(rnn, f"weight_ih_l0{tsfx}"), getattr(rnn, f"weight_hh_l0{tsfx}")
        b_ih, b_hh = getattr(rnn, f"bias_ih_l0{tsfx}"), getattr(rnn, f"bias_hh_l0{tsfx}")
        for k, gate in enumerate(GATES[kind]):
            rows = slice(k * hidden, (k + 1) * hidden)
            expected[f"x->{gate}{sfx}"] = w_ih.grad[rows].numpy()
            expected[recurrent_param(kind, gate, sfx, at)] = w_hh.grad[rows].numpy()
            if (kind, gate) == ("bigru", "n"):
                expected[f"n{sfx}.bias"] = b_ih.grad[rows].numpy()
                expected[f"hn{sfx}.bias"] = b_hh.grad[rows].numpy()
            else:
                expected[f"{gate}{sfx}.bias"] = b_ih.grad[rows].numpy()
    assert set(expected) == set(params), "every parameter is compared"
    for name, g in expected.items():
        assert _rel(grads[name], g) <= 1e-10, name
    for n, tensor in init.items():
        for d, (_, _, key, _) in enumerate(DIRECTIONS):
            assert _rel(grads[f"state:{n}{key}"], tensor.grad[d].numpy()) <= 1e-10, n + key
