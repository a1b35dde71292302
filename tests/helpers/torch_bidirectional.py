"""torch.nn.LSTM/GRU(bidirectional=True) + Linear on the weights of specs/bilstm.yaml and
specs/bigru.yaml: the mapping both torch-parity test files use (with and without lengths)."""

from __future__ import annotations

import numpy as np

import graphrnn as gr
from tests.helpers import SPECS

GATES = {"bilstm": ["i", "f", "g", "o"], "bigru": ["r", "z", "n"]}
STATE = {"bilstm": ["h", "c"], "bigru": ["h"]}
#: torch's weight-name suffix and our node suffix and state-key suffix, per direction
DIRECTIONS = [("", "", "", "@1"), ("_reverse", "_reverse", "_reverse@+1", "@-1")]


def recurrent_param(kind, gate, sfx, at):
    """Our parameter of torch's recurrent weight rows of ``gate`` in one direction."""
    if (kind, gate) == ("bigru", "n"):
        return f"h{sfx}->hn{sfx}{at}"
    return f"h{sfx}->{gate}{sfx}{at}"


def setup(torch, kind, steps, batch):
    """Our model and params, and torch's modules on the same weights; inputs, states, rng."""
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
        values[f"weight_hh_l0{tsfx}"] = np.concatenate([params[recurrent_param(kind, g, sfx, at)]
                                                        for g in GATES[kind]])
        values[f"bias_ih_l0{tsfx}"] = np.concatenate(b_ih)
        values[f"bias_hh_l0{tsfx}"] = np.concatenate(b_hh)
    with torch.no_grad():
        for name, value in values.items():
            getattr(rnn, name).copy_(torch.from_numpy(value))
        lin.weight.copy_(torch.from_numpy(np.concatenate([params["h->y"],
                                                          params["h_reverse->y"]], axis=1)))
        lin.bias.copy_(torch.from_numpy(params["y.bias"]))
    x = rng.normal(size=(steps, batch, size_in))
    state = {f"{n}{key}": rng.normal(scale=0.5, size=(batch, hidden))
             for n in STATE[kind] for _, _, key, _ in DIRECTIONS}
    return model, params, rnn, lin, x, state, rng


def torch_run(torch, kind, rnn, lin, x, state, lengths=None):
    """Torch's read-out, its per-direction hidden sequences, final states by our keys and the
    initial-state tensors; with ``lengths``, over ``pack_padded_sequence(enforce_sorted=False)``
    and the read-out zero past each end."""
    init = {n: torch.from_numpy(np.stack([state[f"{n}{key}"] for _, _, key, _ in DIRECTIONS])
                                ).requires_grad_(True) for n in STATE[kind]}
    hx = (init["h"], init["c"]) if kind == "bilstm" else init["h"]
    steps = x.shape[0]
    if lengths is None:
        seq, final = rnn(torch.from_numpy(x), hx)
    else:
        packed = torch.nn.utils.rnn.pack_padded_sequence(
            torch.from_numpy(x), torch.tensor(lengths), enforce_sorted=False)
        packed_out, final = rnn(packed, hx)
        seq, _ = torch.nn.utils.rnn.pad_packed_sequence(packed_out, total_length=steps)
    finals = dict(zip(["h", "c"], final, strict=False)) if kind == "bilstm" else {"h": final}
    ours = {f"{n}{key}": finals[n][d] for n in STATE[kind]
            for d, (_, _, key, _) in enumerate(DIRECTIONS)}
    hidden = rnn.hidden_size
    out = lin(seq)
    if lengths is not None:
        valid = (np.arange(steps)[:, None] < np.asarray(lengths)[None, :]).astype(np.float64)
        out = out * torch.from_numpy(valid)[..., None]
    return out, (seq[..., :hidden], seq[..., hidden:]), ours, init


def rel(a, b) -> float:
    """The largest difference relative to the largest magnitude of ``b``."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))


def assert_grads_match_torch(kind, rnn, lin, init, params, grads) -> None:
    """Every parameter's and initial state's gradient of ours equals torch's (after torch's
    ``backward``) to 1e-10, mapped back to our names."""
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
        assert rel(grads[name], g) <= 1e-10, name
    for n, tensor in init.items():
        for d, (_, _, key, _) in enumerate(DIRECTIONS):
            assert rel(grads[f"state:{n}{key}"], tensor.grad[d].numpy()) <= 1e-10, n + key
