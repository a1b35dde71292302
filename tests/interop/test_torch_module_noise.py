"""graphrnn.torch.Module of a network with training-time noise (dropout, zoneout): train mode
draws it as ``Model.forward(train=True)`` does, eval mode leaves it out."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import graphrnn as gr  # noqa: E402
from graphrnn.torch import Module  # noqa: E402
from tests.helpers import SPECS  # noqa: E402


def test_train_mode_draws_the_noise_and_backpropagates_through_it():
    net = gr.load_spec(SPECS / "awd_lstm.yaml")
    module = Module(net, dtype=torch.float64)
    model = gr.compile(net, dtype="float64")
    params = {k: p.detach().numpy().copy() for k, p in module.params().items()}
    rng = np.random.default_rng(0)
    x = rng.normal(size=(6, 3, net.size("x")))
    seed = rng.normal(size=(6, 3, net.size("y")))
    module.train()
    out, _ = module(torch.from_numpy(x))
    (out["y"] * torch.from_numpy(seed)).sum().backward()
    want, _, tape = model.forward(params, {"x": x}, record=True, train=True)
    grads = tape.backward({"y": seed})
    np.testing.assert_allclose(out["y"].detach().numpy(), want["y"], rtol=1e-12)
    for name, p in module.params().items():
        np.testing.assert_allclose(p.grad.numpy(), grads[name], rtol=1e-10, atol=1e-12,
                                   err_msg=name)
    module.eval()
    with torch.no_grad():
        clean, _ = module(torch.from_numpy(x))
    np.testing.assert_allclose(clean["y"].numpy(), model.forward(params, {"x": x})[0]["y"],
                               rtol=1e-12)
    assert not np.allclose(clean["y"].numpy(), want["y"])  # the noise was there in train mode
