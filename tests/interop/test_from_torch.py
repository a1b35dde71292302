"""gr.from_torch / gr.to_torch against torch.nn.RNN/LSTM/GRU on every option combination:
outputs, h_n/c_n and every gradient (tape vs torch autograd, float64, 1e-10)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

import graphrnn as gr
from graphrnn.errors import SpecError
from graphrnn.exchange import torch_convert
from tests.helpers import SPECS

torch = pytest.importorskip("torch")

T, B, IN, HID, PROJ = 5, 3, 4, 6, 3
#: (class, keyword options) of each cell variant
CELLS = {"rnn_tanh": ("RNN", {}), "rnn_relu": ("RNN", {"nonlinearity": "relu"}),
         "lstm": ("LSTM", {}), "lstm_proj": ("LSTM", {"proj_size": PROJ}), "gru": ("GRU", {})}
COMBOS = list(itertools.product(CELLS, (1, 2), (False, True), (True, False), (False, True)))
COMBO_IDS = [f"{c}-L{layers}-{'bi' if bi else 'uni'}-{'bias' if bias else 'nobias'}"
             f"-{'bf' if bf else 'tm'}" for c, layers, bi, bias, bf in COMBOS]


def _module(cell, layers=1, bidirectional=False, bias=True, batch_first=False, seed=0,
            dtype=torch.float64):
    kind, kw = CELLS[cell]
    torch.manual_seed(seed)
    m = getattr(torch.nn, kind)(IN, HID, num_layers=layers, bidirectional=bidirectional,
                                bias=bias, batch_first=batch_first, dtype=dtype, **kw)
    with torch.no_grad():  # biases away from their small init, so their role shows
        for name, p in m.named_parameters():
            if name.startswith("bias"):
                p.add_(torch.randn_like(p) * 0.5)
    return m


def _state_keys(layers, bidirectional):
    """torch's h_n index -> graphrnn state key suffix (``_l{l}`` or ``_l{l}_reverse@+1``)."""
    dirs = 2 if bidirectional else 1
    return [f"_l{i // dirs}" + ("_reverse@+1" if i % dirs else "") for i in range(layers * dirs)]


def _time_major(a, batch_first):
    return np.ascontiguousarray(a.transpose(1, 0, 2)) if batch_first else a


@pytest.mark.parametrize("cell,layers,bidirectional,bias,batch_first", COMBOS, ids=COMBO_IDS)
def test_from_torch_matches_torch(cell, layers, bidirectional, bias, batch_first):
    m = _module(cell, layers, bidirectional, bias, batch_first)
    lstm = CELLS[cell][0] == "LSTM"
    net, params = gr.from_torch(m)
    assert all(v.dtype == np.float64 for v in params.values())
    model = gr.compile(net, backend="numpy", dtype="float64")
    rng = np.random.default_rng(3)
    dirs, out = 2 if bidirectional else 1, m.proj_size or HID
    x = rng.normal(size=(B, T, IN) if batch_first else (T, B, IN))
    h0 = rng.normal(size=(layers * dirs, B, out))
    c0 = rng.normal(size=(layers * dirs, B, HID))
    xt = torch.from_numpy(x).requires_grad_()
    h0t, c0t = torch.from_numpy(h0).requires_grad_(), torch.from_numpy(c0).requires_grad_()
    y_t, hn_t = m(xt, (h0t, c0t) if lstm else h0t)
    hn_t, cn_t = hn_t if lstm else (hn_t, None)

    keys = _state_keys(layers, bidirectional)
    state = {f"h{k}": h0[i] for i, k in enumerate(keys)}
    if lstm:
        state |= {f"c{k}": c0[i] for i, k in enumerate(keys)}
    outputs, final, tape = model.forward(params, {"x": _time_major(x, batch_first)}, state,
                                         record=True)
    y = _time_major(outputs["y"], batch_first)
    np.testing.assert_allclose(y, y_t.detach().numpy(), rtol=1e-10, atol=1e-12)
    for i, k in enumerate(keys):
        np.testing.assert_allclose(final[f"h{k}"], hn_t[i].detach().numpy(), rtol=1e-10,
                                   atol=1e-12)
        if lstm:
            np.testing.assert_allclose(final[f"c{k}"], cn_t[i].detach().numpy(), rtol=1e-10,
                                       atol=1e-12)

    dy, dh, dc = rng.normal(size=y.shape), rng.normal(size=h0.shape), rng.normal(size=c0.shape)
    loss = (y_t * torch.from_numpy(dy)).sum() + (hn_t * torch.from_numpy(dh)).sum()
    state_grads = {f"h{k}": dh[i] for i, k in enumerate(keys)}
    if lstm:
        loss = loss + (cn_t * torch.from_numpy(dc)).sum()
        state_grads |= {f"c{k}": dc[i] for i, k in enumerate(keys)}
    loss.backward()
    grads = tape.backward({"y": _time_major(dy, batch_first)}, state_grads)

    def close(ours, theirs):
        np.testing.assert_allclose(ours, theirs, rtol=1e-10, atol=1e-12)

    close(_time_major(grads["input:x"], batch_first), xt.grad.numpy())
    for i, k in enumerate(keys):
        close(grads[f"state:h{k}"], h0t.grad[i].numpy())
        if lstm:
            close(grads[f"state:c{k}"], c0t.grad[i].numpy())
    torch_grads = {k: p.grad.numpy() for k, p in m.named_parameters()}
    mapped = torch_convert.parameter_map(m)
    covered = set()
    for key, parts in mapped.items():
        for torch_name, rows, cols in parts:
            g = torch_grads[torch_name][rows]
            close(grads[key], g if cols is None else g[:, cols])
            covered.add(torch_name)
    assert covered == set(torch_grads)  # every torch parameter is some graphrnn parameter's
    assert set(mapped) == {k for k, p in net.params.items() if p.trainable}


@pytest.mark.parametrize("cell,layers,bidirectional",
                         [("lstm_proj", 2, True), ("gru", 2, True), ("rnn_relu", 1, False),
                          ("lstm", 1, True)])
def test_to_torch_rebuilds_the_module(cell, layers, bidirectional):
    m = _module(cell, layers, bidirectional, seed=5)
    net, params = gr.from_torch(m)
    back = gr.to_torch(net, params)
    assert type(back) is type(m)
    x = torch.from_numpy(np.random.default_rng(1).normal(size=(T, B, IN)))
    y0, y1 = m(x)[0].detach().numpy(), back(x)[0].detach().numpy()
    np.testing.assert_allclose(y1, y0, rtol=1e-12, atol=1e-14)
    # and the rebuilt module converts to the same network and function
    net2, params2 = gr.from_torch(back)
    assert net2 == net
    model = gr.compile(net, backend="numpy", dtype="float64")
    out1 = model.forward(params, {"x": x.numpy()})[0]["y"]
    out2 = model.forward(params2, {"x": x.numpy()})[0]["y"]
    np.testing.assert_allclose(out2, out1, rtol=1e-12, atol=1e-14)


def _peephole_text(m):
    spec, params = torch_convert.torch_spec(m)
    text = torch_convert.spec_text(spec)
    text = text.replace("edges:\n", "edges:\n- c_l0 -> i_l0 @1 diagonal\n", 1)
    return text, params


def test_to_torch_refuses_what_torch_cannot_express():
    m = _module("lstm")
    text, params = _peephole_text(m)
    net = gr.load_spec(text)
    with pytest.raises(SpecError, match=r"torch.nn.LSTM cannot express edge c_l0 -> i_l0 @1"):
        gr.to_torch(net, params | {"c_l0->i_l0@1": np.zeros(HID)})
    with pytest.raises(SpecError, match="is not a torch.nn.RNN/LSTM/GRU"):
        gr.to_torch(gr.load_spec(SPECS / "lstm.yaml"), {})
    net, params = gr.from_torch(_module("gru", bidirectional=True))
    bad = params | {"h_l0->y": params["h_l0->y"] * 2}
    with pytest.raises(SpecError, match="fixed placement"):
        gr.to_torch(net, bad)


def test_modified_lstm_trains():
    """The "modify it" story: a trained torch LSTM, a peephole added to its spec text, a step
    of training on the modified network."""
    m = _module("lstm", layers=2)
    text, params = _peephole_text(m)
    net = gr.load_spec(text)
    assert "c_l0->i_l0@1" in net.params and net.params["c_l0->i_l0@1"].shape == (HID,)
    params = params | {"c_l0->i_l0@1": np.full(HID, 0.1)}
    model = gr.compile(net, backend="numpy", dtype="float64")
    rng = np.random.default_rng(0)
    x, target = rng.normal(size=(T, B, IN)), rng.normal(size=(T, B, HID))
    loss, grads = model.gradients(params, {"x": x}, {"y": target})
    assert all(np.all(np.isfinite(g)) for g in grads.values())
    assert np.any(grads["c_l0->i_l0@1"] != 0)
    stepped = {k: v - 0.05 * grads[k] for k, v in params.items()}
    assert model.gradients(stepped, {"x": x}, {"y": target})[0] < loss


def test_dropout_between_layers():
    """torch's dropout between layers becomes node dropout on each layer's hidden nodes but the
    last; without training noise the network is torch's module in eval mode."""
    m = _module("lstm", layers=3, bidirectional=True)
    m.dropout = 0.25
    spec, _ = torch_convert.torch_spec(m)
    dropped = {n for n, v in spec["nodes"].items() if "dropout" in v}
    assert dropped == {"h_l0", "h_l0_reverse", "h_l1", "h_l1_reverse"}
    assert all(spec["nodes"][n]["dropout"] == 0.25 for n in dropped)
    net, params = gr.from_torch(m)
    x = torch.randn(T, B, IN, dtype=torch.float64)
    m.eval()
    with torch.no_grad():
        want = m(x)[0].numpy()
    got = gr.compile(net, dtype="float64").forward(params, {"x": x.numpy()})[0]["y"]
    assert np.abs(got - want).max() <= 1e-10 * np.abs(want).max()
    m.dropout = 0.0
    spec, _ = torch_convert.torch_spec(m)
    assert not any("dropout" in v for v in spec["nodes"].values())


def test_float32_and_refusals():
    m = _module("gru", dtype=torch.float32)
    net, params = gr.from_torch(m)
    assert all(v.dtype == np.float32 for v in params.values())
    assert set(params) == set(net.params)
    with pytest.raises(SpecError, match="converts torch.nn.RNN, LSTM and GRU, not Linear"):
        gr.from_torch(torch.nn.Linear(3, 3))
    spec, _ = torch_convert.torch_spec(_module("lstm_proj"))
    assert spec["nodes"]["h_l0"]["size"] == PROJ and spec["nodes"]["m_l0"]["size"] == HID


def test_converted_module_keeps_training_in_torch():
    """from_torch -> graphrnn.torch.Module with the converted weights: the same function as
    the torch module, and its gradients equal torch's through the same parameter map."""
    from graphrnn.torch import Module
    m = _module("lstm_proj", layers=2, bidirectional=True, batch_first=True, seed=7)
    net, params = gr.from_torch(m)
    g = Module(net, dtype=torch.float64)
    with torch.no_grad():
        for name, p in g.params().items():
            p.copy_(torch.from_numpy(params[name]))
    x = torch.from_numpy(np.random.default_rng(2).normal(size=(B, T, IN)))
    y_ref = m(x)[0]
    y = g(x.transpose(0, 1))[0]["y"].transpose(0, 1)
    np.testing.assert_allclose(y.detach().numpy(), y_ref.detach().numpy(), rtol=1e-10,
                               atol=1e-12)
    y.square().sum().backward()
    y_ref.square().sum().backward()
    theirs = dict(m.named_parameters())
    for key, parts in torch_convert.parameter_map(m).items():
        for torch_name, rows, cols in parts:
            t = theirs[torch_name].grad[rows]
            np.testing.assert_allclose(g.params()[key].grad.numpy(),
                                       (t if cols is None else t[:, cols]).numpy(),
                                       rtol=1e-10, atol=1e-12)
    assert not g.params()["h_l1->y"].requires_grad  # the fixed placement into y
    assert gr.to_torch(net, params, batch_first=True).batch_first


def test_converted_bidirectional_module_under_torch_compile():
    """The fake implementation lists the NODE@+k final states too (torch.compile traces it)."""
    from graphrnn.torch import Module
    m = _module("gru", bidirectional=True, seed=3)
    net, params = gr.from_torch(m)
    g = Module(net, dtype=torch.float64)
    with torch.no_grad():
        for name, p in g.params().items():
            p.copy_(torch.from_numpy(params[name]))
    x = torch.from_numpy(np.random.default_rng(4).normal(size=(T, B, IN)))
    f = torch.compile(lambda x: g(x)[1]["h_l0_reverse@+1"], fullgraph=True,
                      backend="aot_eager")
    np.testing.assert_allclose(f(x).detach().numpy(), m(x)[1][1].detach().numpy(),
                               rtol=1e-10, atol=1e-12)
