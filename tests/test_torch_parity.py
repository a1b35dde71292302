"""Elman, LSTM and GRU specs against torch.nn.RNN/LSTM/GRU: outputs, final states, gradients."""

from __future__ import annotations

import numpy as np
import pytest

import graphrnn as gr
from tests.helpers import SPECS

torch = pytest.importorskip("torch")

T, B = 6, 3
#: Gate order of torch's stacked weights, per spec: (our gate node, its recurrent param suffix).
GATES = {"elman": ["h"], "lstm": ["i", "f", "g", "o"], "gru": ["r", "z", "n"]}
TORCH = {"elman": "RNN", "lstm": "LSTM", "gru": "GRU"}
STATE = {"elman": ["h"], "lstm": ["h", "c"], "gru": ["h"]}


def _recurrent_param(kind: str, gate: str) -> str:
    """Our name of the gate's recurrent weight (GRU's n gate reads ``W_hn h`` through ``hn``)."""
    return "h->hn@1" if (kind, gate) == ("gru", "n") else f"h->{gate}@1"


def _torch_biases(kind: str, params: dict, rng) -> tuple[np.ndarray, np.ndarray]:
    """Split each of our gate biases into torch's ``b_ih + b_hh`` (randomly: both must count)."""
    b_ih, b_hh = [], []
    for gate in GATES[kind]:
        if (kind, gate) == ("gru", "n"):  # torch's b_in is outside r * (...), b_hn inside
            b_ih.append(params["n.bias"])
            b_hh.append(params["hn.bias"])
            continue
        total = params[f"{gate}.bias"]
        part = rng.normal(size=total.shape)
        b_ih.append(part)
        b_hh.append(total - part)
    return np.concatenate(b_ih), np.concatenate(b_hh)


def _setup(kind: str):
    """The compiled spec with random parameters (biases too), and torch modules holding them."""
    net = gr.load_spec(SPECS / f"{kind}.yaml")
    model = gr.compile(net, backend="numpy", dtype="float64")
    rng = np.random.default_rng(7)
    params = {k: v + rng.normal(scale=0.3, size=v.shape) if k.endswith(".bias") else v
              for k, v in model.init_params(seed=3).items()}
    hidden, size_in, size_out = net.size("h"), net.size("x"), net.size("y")
    cls = getattr(torch.nn, TORCH[kind])
    rnn = cls(size_in, hidden, dtype=torch.float64)
    lin = torch.nn.Linear(hidden, size_out, dtype=torch.float64)
    b_ih, b_hh = _torch_biases(kind, params, rng)
    values = {
        "weight_ih_l0": np.concatenate([params[f"x->{g}"] for g in GATES[kind]]),
        "weight_hh_l0": np.concatenate([params[_recurrent_param(kind, g)] for g in GATES[kind]]),
        "bias_ih_l0": b_ih, "bias_hh_l0": b_hh,
    }
    with torch.no_grad():
        for name, value in values.items():
            getattr(rnn, name).copy_(torch.from_numpy(value))
        lin.weight.copy_(torch.from_numpy(params["h->y"]))
        lin.bias.copy_(torch.from_numpy(params["y.bias"]))
    x = rng.normal(size=(T, B, size_in))
    state = {k: rng.normal(scale=0.5, size=(B, hidden)) for k in STATE[kind]}
    return model, params, rnn, lin, x, state, rng


def _torch_run(kind, rnn, lin, x, state):
    """Torch's output, final states and the initial-state tensors (which collect gradients)."""
    x_t = torch.from_numpy(x)
    init = {k: torch.from_numpy(v[None]).requires_grad_(True) for k, v in state.items()}
    hx = (init["h"], init["c"]) if kind == "lstm" else init["h"]
    seq, final = rnn(x_t, hx)
    finals = dict(zip(["h", "c"], final, strict=False)) if kind == "lstm" else {"h": final}
    return lin(seq), {k: v[0] for k, v in finals.items()}, init


def _rel(a, b) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))


def _torch_grads(kind: str, rnn, lin, hidden: int) -> dict[str, np.ndarray]:
    """Torch's gradients under our parameter names (bias grads: b_ih's, equal to b_hh's)."""
    def rows(tensor, k):
        return tensor.grad[k * hidden:(k + 1) * hidden].numpy()

    out = {"h->y": lin.weight.grad.numpy(), "y.bias": lin.bias.grad.numpy()}
    for k, gate in enumerate(GATES[kind]):
        out[f"x->{gate}"] = rows(rnn.weight_ih_l0, k)
        out[_recurrent_param(kind, gate)] = rows(rnn.weight_hh_l0, k)
        if (kind, gate) == ("gru", "n"):
            out["n.bias"] = rows(rnn.bias_ih_l0, k)
            out["hn.bias"] = rows(rnn.bias_hh_l0, k)
        else:
            out[f"{gate}.bias"] = rows(rnn.bias_ih_l0, k)
            np.testing.assert_allclose(rows(rnn.bias_ih_l0, k), rows(rnn.bias_hh_l0, k))
    return out


@pytest.mark.parametrize("kind", ["elman", "lstm", "gru"])
def test_forward_matches_torch(kind):
    model, params, rnn, lin, x, state, _ = _setup(kind)
    outputs, final = model.forward(params, {"x": x}, state=state)
    with torch.no_grad():
        y, finals, _ = _torch_run(kind, rnn, lin, x, state)
    assert _rel(outputs["y"], y.numpy()) <= 1e-10
    for key, value in finals.items():
        assert _rel(final[key], value.numpy()) <= 1e-10, key
    # from the zero state too (the default when no state is passed)
    outputs0, _ = model.forward(params, {"x": x})
    with torch.no_grad():
        zeros = {k: np.zeros_like(v) for k, v in state.items()}
        y0, _, _ = _torch_run(kind, rnn, lin, x, zeros)
    assert _rel(outputs0["y"], y0.numpy()) <= 1e-10


@pytest.mark.parametrize("kind", ["elman", "lstm", "gru"])
def test_gradients_match_torch(kind):
    model, params, rnn, lin, x, state, rng = _setup(kind)
    target = rng.normal(size=(T, B, lin.out_features))
    loss, grads = model.gradients(params, {"x": x}, {"y": target}, loss="mse", state=state)
    y, _, init = _torch_run(kind, rnn, lin, x, state)
    torch_loss = torch.nn.functional.mse_loss(y, torch.from_numpy(target))
    torch_loss.backward()
    assert abs(loss - torch_loss.item()) <= 1e-10 * abs(torch_loss.item())
    expected = _torch_grads(kind, rnn, lin, rnn.hidden_size)
    assert set(expected) == set(params), "every parameter is compared"
    for name, g in expected.items():
        assert grads[name].shape == g.shape, name
        assert _rel(grads[name], g) <= 1e-10, name
    for key, tensor in init.items():
        assert _rel(grads[f"state:{key}"], tensor.grad[0].numpy()) <= 1e-10, f"state:{key}"
