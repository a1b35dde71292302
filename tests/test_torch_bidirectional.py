"""specs/bilstm.yaml and specs/bigru.yaml against torch.nn.LSTM/GRU(bidirectional=True) and a
Linear read-out of torch's concatenated output: outputs, h_n/c_n of both directions, gradients."""

from __future__ import annotations

import dataclasses

import pytest

import graphrnn as gr
from tests.helpers.torch_bidirectional import assert_grads_match_torch, rel, setup, torch_run

torch = pytest.importorskip("torch")

T, B = 6, 3


@pytest.mark.parametrize("kind", ["bilstm", "bigru"])
def test_forward_matches_torch_bidirectional(kind):
    model, params, rnn, lin, x, state, _ = setup(torch, kind, T, B)
    outputs, final = model.forward(params, {"x": x}, state=state)
    with torch.no_grad():
        y, (fwd, bwd), finals, _ = torch_run(torch, kind, rnn, lin, x, state)
    assert rel(outputs["y"], y.numpy()) <= 1e-10
    assert set(final) == set(finals)
    for key, value in finals.items():
        assert rel(final[key], value.numpy()) <= 1e-10, key
    # each direction's hidden sequence, as torch's output halves
    both = dataclasses.replace(model.net, outputs=("y", "h", "h_reverse"))
    seqs, _ = gr.compile(both, dtype="float64").forward(params, {"x": x}, state=state)
    assert rel(seqs["h"], fwd.numpy()) <= 1e-10
    assert rel(seqs["h_reverse"], bwd.numpy()) <= 1e-10


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
    assert_grads_match_torch(kind, rnn, lin, init, params, grads)
