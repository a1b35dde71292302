"""specs/bilstm.yaml and specs/bigru.yaml with ``lengths=`` against torch.nn.LSTM/GRU(
bidirectional=True) over ``pack_padded_sequence(enforce_sorted=False)``: outputs, h_n/c_n of both
directions and every gradient, float64 1e-10 (weight mapping as tests/test_torch_bidirectional)."""

from __future__ import annotations

import numpy as np
import pytest

import graphrnn as gr
from tests.helpers import SPECS

torch = pytest.importorskip("torch")

T, B = 6, 4
LENGTHS = np.array([3, 6, 1, 4])
GATES = {"bilstm": ["i", "f", "g", "o"], "bigru": ["r", "z", "n"]}
STATE = {"bilstm": ["h", "c"], "bigru": ["h"]}
#: torch's weight-name suffix and our node suffix and state-key suffix, per direction
DIRECTIONS = [("", "", "", "@1"), ("_reverse", "_reverse", "_reverse@+1", "@-1")]


def _recurrent(kind, gate, sfx, at):
    if (kind, gate) == ("bigru", "n"):
        return f"h{sfx}->hn{sfx}{at}"
    return f"h{sfx}->{gate}{sfx}{at}"


def _setup(kind):
    net = gr.load_spec(SPECS / f"{kind}.yaml")
    model = gr.compile(net, backend="numpy", dtype="float64")
    rng = np.random.default_rng(11)
    params = {k: v + rng.normal(scale=0.3, size=v.shape) if k.endswith(".bias") else v
              for k, v in model.init_params(seed=2).items()}
    hidden, size_in, size_out = net.size("h"), net.size("x"), net.size("y")
    cls = torch.nn.LSTM if kind == "bilstm" else torch.nn.GRU
    rnn = cls(size_in, hidden, bidirectional=True, dtype=torch.float64)
    lin = torch.nn.Linear(2 * hidden, size_out, dtype=torch.float64)
    values = {}
    for tsfx, sfx, _, at in DIRECTIONS:
        b_ih, b_hh = [], []
        for gate in GATES[kind]:
            if (kind, gate) == ("bigru", "n"):
                b_ih.append(params[f"n{sfx}.bias"])
                b_hh.append(params[f"hn{sfx}.bias"])
            else:
                part = rng.normal(size=hidden)
                b_ih.append(part)
                b_hh.append(params[f"{gate}{sfx}.bias"] - part)
        values[f"weight_ih_l0{tsfx}"] = np.concatenate([params[f"x->{g}{sfx}"]
                                                        for g in GATES[kind]])
        values[f"weight_hh_l0{tsfx}"] = np.concatenate([params[_recurrent(kind, g, sfx, at)]
                                                        for g in GATES[kind]])
        values[f"bias_ih_l0{tsfx}"] = np.concatenate(b_ih)
        values[f"bias_hh_l0{tsfx}"] = np.concatenate(b_hh)
    with torch.no_grad():
        for name, value in values.items():
            getattr(rnn, name).copy_(torch.from_numpy(value))
        lin.weight.copy_(torch.from_numpy(np.concatenate([params["h->y"],
                                                          params["h_reverse->y"]], axis=1)))
        lin.bias.copy_(torch.from_numpy(params["y.bias"]))
    x = rng.normal(size=(T, B, size_in))
    state = {f"{n}{key}": rng.normal(scale=0.5, size=(B, hidden))
             for n in STATE[kind] for _, _, key, _ in DIRECTIONS}
    return model, params, rnn, lin, x, state, rng


def _torch_run(kind, rnn, lin, x, state):
    """Torch's read-out, its per-direction hidden sequences, final states by our keys and the
    initial-state tensors."""
    init = {n: torch.from_numpy(np.stack([state[f"{n}{key}"] for _, _, key, _ in DIRECTIONS])
                                ).requires_grad_(True) for n in STATE[kind]}
    hx = (init["h"], init["c"]) if kind == "bilstm" else init["h"]
    packed = torch.nn.utils.rnn.pack_padded_sequence(torch.from_numpy(x), torch.tensor(LENGTHS),
                                                     enforce_sorted=False)
    packed_out, final = rnn(packed, hx)
    seq, _ = torch.nn.utils.rnn.pad_packed_sequence(packed_out, total_length=T)
    finals = dict(zip(["h", "c"], final, strict=False)) if kind == "bilstm" else {"h": final}
    ours = {f"{n}{key}": finals[n][d] for n in STATE[kind]
            for d, (_, _, key, _) in enumerate(DIRECTIONS)}
    hidden = rnn.hidden_size
    valid = torch.from_numpy((np.arange(T)[:, None] < LENGTHS[None, :]).astype(np.float64))
    return lin(seq) * valid[..., None], (seq[..., :hidden], seq[..., hidden:]), ours, init


def _rel(a, b) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))


@pytest.mark.parametrize("kind", ["bilstm", "bigru"])
@pytest.mark.parametrize("backend", ["numpy", "numpy-ufuncs"])
def test_packed_bidirectional_forward_and_gradients_match_torch(kind, backend):
    model, params, rnn, lin, x, state, rng = _setup(kind)
    model = gr.compile(model.net, backend=backend, dtype="float64")
    outputs, final, tape = model.forward(params, {"x": x}, state=state, lengths=LENGTHS,
                                         record=True)
    y, _, finals, init = _torch_run(kind, rnn, lin, x, state)
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
            expected[_recurrent(kind, gate, sfx, at)] = w_hh.grad[rows].numpy()
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
    model, params, rnn, lin, x, state, rng = _setup(kind)
    target = rng.normal(size=(T, B, lin.out_features))
    loss, grads = model.gradients(params, {"x": x}, {"y": target}, state=state,
                                  lengths=LENGTHS)
    y, _, _, _ = _torch_run(kind, rnn, lin, x, state)
    valid = torch.from_numpy((np.arange(T)[:, None] < LENGTHS[None, :]).astype(np.float64))
    diff = (y - torch.from_numpy(target)) ** 2 * valid[..., None]
    torch_loss = diff.sum() / (valid.sum() * lin.out_features)
    torch_loss.backward()
    assert abs(loss - torch_loss.item()) <= 1e-10 * abs(torch_loss.item())
    assert _rel(grads["h->y"], lin.weight.grad[:, :rnn.hidden_size].numpy()) <= 1e-10
    assert _rel(grads["x->g_reverse" if kind == "bilstm" else "x->n_reverse"],
                rnn.weight_ih_l0_reverse.grad[(2 if kind == "bilstm" else 2) * rnn.hidden_size:
                                              3 * rnn.hidden_size].numpy()) <= 1e-10
