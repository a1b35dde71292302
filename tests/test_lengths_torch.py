"""specs/bilstm.yaml and specs/bigru.yaml with ``lengths=`` against torch.nn.LSTM/GRU(
bidirectional=True) over ``pack_padded_sequence(enforce_sorted=False)``: outputs, h_n/c_n of both
directions and every gradient, float64 1e-10 (weight mapping as tests/test_torch_bidirectional)."""

from __future__ import annotations

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

T, B = 6, 4
LENGTHS = np.array([3, 6, 1, 4])
def _rel(a, b) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))


@pytest.mark.parametrize("kind", ["bilstm", "bigru"])
@pytest.mark.parametrize("backend", ["numpy", "numpy-ufuncs"])
def test_packed_bidirectional_forward_and_gradients_match_torch(kind, backend):
    model, params, rnn, lin, x, state, rng = setup(torch, kind, T, B)
    model = gr.compile(model.net, backend=backend, dtype="float64")
    outputs, final, tape = model.forward(params, {"x": x}, state=state, lengths=LENGTHS,
                                         record=True)
    y, _, finals, init = torch_run(torch, kind, rnn, lin, x, state, LENGTHS)
    assert _rel(outputs["y"], y.detach().numpy()) <= 1e-10
    assert set(final) == set(finals)
    for key, value in finals.items():
        assert _rel(final[key], value.detach().numpy()) <= 1e-10, key
    # a loss of the outputs and of h_n/c_n of both directions
    gy = rng.normal(size=y.shape)
    gs = {key: rng.normal(size=tuple(v.shape)) for key, v in finals.items()}
    total = (y * torch.from_numpy(gy)).sum() + sum(
        (v * torch.from_numpy(gs[key])).sum() for key, v in finals.items())
    total.backward()
    grads = tape.backward({"y": gy}, gs)
    hidden = rnn.hidden_size
    expected = {"h->y": lin.weight.grad[:, :hidden].numpy(),
                "h_reverse->y": lin.weight.grad[:, hidden:].numpy(),
                "y.bias": lin.bias.grad.numpy()}
    for tsfx, sfx, _, at in DIRECTIONS:
        w_ih, w_hh = getattr(rnn, f"weight_ih_l0{tsfx}"), getattr(rnn, f"weight_hh_l0{tsfx}")
        b_ih = getattr(rnn, f"bias_ih_l0{tsfx}")
        b_hh = getattr(rnn, f"bias_hh_l0{tsfx}")
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
    assert _rel(grads["h->y"], lin.weight.grad[:, :rnn.hidden_size].numpy()) <= 1e-10
    assert _rel(grads["x->g_reverse" if kind == "bilstm" else "x->n_reverse"],
                rnn.weight_ih_l0_reverse.grad[(2 if kind == "bilstm" else 2) * rnn.hidden_size:
                                              3 * rnn.hidden_size].numpy()) <= 1e-10
