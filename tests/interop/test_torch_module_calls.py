"""graphrnn.torch.Module eager calls: in-place changes, moved parameter memory, tape lifetime."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import graphrnn as gr  # noqa: E402
from graphrnn.torch import Module  # noqa: E402
from tests.helpers import SPECS  # noqa: E402


def _case(spec="lstm"):
    module = Module(SPECS / f"{spec}.yaml", dtype="float64", seed=2)
    gen = torch.Generator().manual_seed(0)
    size = next(iter(module.net.inputs.values()))
    x = torch.randn(5, 3, size, dtype=torch.float64, generator=gen)
    return module, x


def _model_output(module, x):
    model = gr.compile(module.net, dtype="float64")
    params = {k: p.detach().numpy().copy() for k, p in module.params().items()}
    return model.forward(params, {"x": x.numpy()})[0]


def test_in_place_change_between_forward_and_backward_raises():
    module, x = _case()
    out, _ = module(x)
    with torch.no_grad():
        next(iter(module.params().values())).add_(1.0)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        out["y"].sum().backward()


def test_parameters_changed_in_place_or_moved_are_read_anew():
    module, x = _case()
    module(x)  # the views of the parameters are cached now
    name, p = next(iter(module.params().items()))
    with torch.no_grad():
        p.mul_(1.5)  # same memory, new values
    np.testing.assert_allclose(module(x)[0]["y"].detach().numpy(),
                               _model_output(module, x)["y"], rtol=1e-12)
    moved = p.data * 0.5
    p.data = moved  # new memory: the cached view must not be used
    assert module.params()[name].data_ptr() == moved.data_ptr()
    np.testing.assert_allclose(module(x)[0]["y"].detach().numpy(),
                               _model_output(module, x)["y"], rtol=1e-12)


def test_the_tape_goes_once_backward_ran_while_the_outputs_live_on():
    module, x = _case()
    model = module._model("float64", "cpu").model
    out, final = module(x)
    loss = (out["y"] ** 2).sum() + final["c"].sum()
    assert not model._tape_runs  # the graph holds the tape's Run
    loss.backward(retain_graph=True)
    assert not model._tape_runs  # retained for a second backward
    once = {k: p.grad.clone() for k, p in module.params().items()}
    loss.backward()  # the same tape a second time: gradients accumulate
    for k, p in module.params().items():
        torch.testing.assert_close(p.grad, 2 * once[k], rtol=1e-12, atol=0)
    assert len(model._tape_runs) == 1  # outputs alive, the Run back for the next call
    with pytest.raises(RuntimeError, match="backward through the graph a second time"):
        loss.backward()


def test_unused_outputs_need_no_gradient():
    module, x = _case()
    xr = x.clone().requires_grad_()
    out, final = module(xr)
    final["h"].sum().backward()  # y and c unused
    model = gr.compile(module.net, dtype="float64")
    params = {k: p.detach().numpy() for k, p in module.params().items()}
    _, _, tape = model.forward(params, {"x": x.numpy()}, record=True)
    want = tape.backward({}, {"h": np.ones((3, module.net.size("h")))})
    for k, p in module.params().items():
        np.testing.assert_allclose(p.grad.numpy(), want[k], rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(xr.grad.numpy(), want["input:x"], rtol=1e-10, atol=1e-14)
