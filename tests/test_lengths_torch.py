"""specs/bilstm.yaml and specs/bigru.yaml with ``lengths=`` against torch.nn.LSTM/GRU(
bidirectional=True) over ``pack_padded_sequence(enforce_sorted=False)``: outputs, h_n/c_n of both
directions and every gradient, float64 1e-10 (weight mapping as tests/test_torch_bidirectional)."""

from __future__ import annotations

import numpy as np
import pytest

import graphrnn as gr
from tests.helpers.torch_bidirectional import assert_grads_match_torch, rel, setup, torch_run

torch = pytest.importorskip("torch")

T, B = 6, 4
LENGTHS = np.array([3, 6, 1, 4])
@pytest.mark.parametrize("kind", ["bilstm", "bigru"])
@pytest.mark.parametrize("backend", ["numpy", "numpy-ufuncs"])
def test_packed_bidirectional_forward_and_gradients_match_torch(kind, backend):
    model, params, rnn, lin, x, state, rng = setup(torch, kind, T, B)
    model = gr.compile(model.net, backend=backend, dtype="float64")
    outputs, final, tape = model.forward(params, {"x": x}, state=state, lengths=LENGTHS,
                                         record=True)
    y, _, finals, init = torch_run(torch, kind, rnn, lin, x, state, LENGTHS)
    assert rel(outputs["y"], y.detach().numpy()) <= 1e-10
    assert set(final) == set(finals)
    for key, value in finals.items():
        assert rel(final[key], value.detach().numpy()) <= 1e-10, key
    # a loss of the outputs and of h_n/c_n of both directions
    gy = rng.normal(size=y.shape)
    gs = {key: rng.normal(size=tuple(v.shape)) for key, v in finals.items()}
    total = (y * torch.from_numpy(gy)).sum() + sum(
        (v * torch.from_numpy(gs[key])).sum() for key, v in finals.items())
    total.backward()
    grads = tape.backward({"y": gy}, gs)
    assert_grads_match_torch(kind, rnn, lin, init, params, grads)


@pytest.mark.parametrize("kind", ["bilstm", "bigru"])
def test_packed_loss_gradients_match_torch(kind):
    """``gradients(..., lengths=)``: the mse over the steps that exist, as torch's masked mean."""
    model, params, rnn, lin, x, state, rng = setup(torch, kind, T, B)
    target = rng.normal(size=(T, B, lin.out_features))
    loss, grads = model.gradients(params, {"x": x}, {"y": target}, state=state,
                                  lengths=LENGTHS)
    y, _, _, _ = torch_run(torch, kind, rnn, lin, x, state, LENGTHS)
    valid = torch.from_numpy((np.arange(T)[:, None] < LENGTHS[None, :]).astype(np.float64))
    diff = (y - torch.from_numpy(target)) ** 2 * valid[..., None]
    torch_loss = diff.sum() / (valid.sum() * lin.out_features)
    torch_loss.backward()
    assert abs(loss - torch_loss.item()) <= 1e-10 * abs(torch_loss.item())
    assert rel(grads["h->y"], lin.weight.grad[:, :rnn.hidden_size].numpy()) <= 1e-10
    assert rel(grads["x->g_reverse" if kind == "bilstm" else "x->n_reverse"],
                rnn.weight_ih_l0_reverse.grad[(2 if kind == "bilstm" else 2) * rnn.hidden_size:
                                              3 * rnn.hidden_size].numpy()) <= 1e-10
