"""``graphrnn.torch.Module(..., lengths=)``: the model's lengths semantics through autograd."""

from __future__ import annotations

import numpy as np
import pytest

import graphrnn as gr
from graphrnn.errors import DataError
from tests.helpers import SPECS

torch = pytest.importorskip("torch")
from graphrnn.torch import Module  # noqa: E402

LENGTHS = [3, 1, 2]


@pytest.mark.parametrize("spec", ["lstm", "bilstm", "reverse_elman"])
def test_module_lengths_match_the_model_and_gradcheck(spec):
    module = Module(SPECS / f"{spec}.yaml", dtype="float64", seed=1)
    net = module.net
    gen = torch.Generator().manual_seed(0)
    xs = {k: torch.randn(3, 3, s, dtype=torch.float64, generator=gen, requires_grad=True)
          for k, s in net.inputs.items()}
    out, final = module(xs, lengths=torch.tensor(LENGTHS))
    model = gr.compile(net, dtype="float64")
    params = {k: v.detach().numpy() for k, v in module.params().items()}
    ref_out, ref_final = model.forward(params, {k: v.detach().numpy() for k, v in xs.items()},
                                       lengths=np.array(LENGTHS))
    for k, v in ref_out.items():
        np.testing.assert_allclose(out[k].detach().numpy(), v, rtol=0, atol=1e-12)
    for k, v in ref_final.items():
        np.testing.assert_allclose(final[k].detach().numpy(), v, rtol=0, atol=1e-12)
    assert torch.autograd.gradcheck(
        lambda *a: tuple(module(dict(zip(xs, a, strict=True)), lengths=LENGTHS)[0].values()),
        tuple(xs.values()), fast_mode=True)


def test_module_bad_lengths():
    module = Module(SPECS / "lstm.yaml", dtype="float64")
    x = torch.zeros(3, 3, module.net.size("x"), dtype=torch.float64)
    with pytest.raises(DataError, match="lengths has shape"):
        module(x, lengths=[3, 3])
    with pytest.raises(DataError, match="outside 1..3"):
        module(x, lengths=[3, 4, 1])


def test_module_runs_packed_and_its_gradients_equal_the_masked_tape():
    module = Module(SPECS / "lstm.yaml", dtype="float64", seed=1)
    net = module.net
    rng = np.random.default_rng(0)
    steps, batch = 40, 24
    lengths = rng.integers(1, steps + 1, batch)
    x = torch.tensor(rng.normal(size=(steps, batch, net.size("x"))), requires_grad=True)
    model = gr.compile(net, dtype="float64")
    assert model._packing({"x": x.detach().numpy()}, lengths, None) is not None
    out, final = module(x, lengths=torch.tensor(lengths))
    gy = rng.normal(size=tuple(out["y"].shape))
    gh = rng.normal(size=tuple(final["h"].shape))
    ((out["y"] * torch.from_numpy(gy)).sum() + (final["h"] * torch.from_numpy(gh)).sum()
     ).backward()
    params = {k: v.detach().numpy() for k, v in module.params().items()}
    model._in_packed = True  # the masked run of every row
    _, _, tape = model.forward(params, {"x": x.detach().numpy()}, record=True, lengths=lengths)
    want = tape.backward({"y": gy}, {"h": gh})
    np.testing.assert_allclose(x.grad.numpy(), want["input:x"], rtol=1e-10, atol=1e-12)
    for name, p in module.params().items():
        if p.requires_grad:
            np.testing.assert_allclose(p.grad.numpy(), want[name], rtol=1e-10, atol=1e-12)
