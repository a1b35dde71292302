"""``norm: layer``: the reference against torch, every backend against the reference, BPTT
gradients against finite differences, and the spec checks."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import graphrnn as gr
from graphrnn.compiler.ir import format_program
from graphrnn.errors import SpecError
from graphrnn.frontend.reference import layer_norm, reference_forward
from tests.helpers import (
    SPECS,
    assert_close,
    assert_loss_gradients_are_differences,
    assert_same_loss_and_gradients,
    random_case,
)
from tests.helpers.strategies import valid_networks

LN_LSTM = SPECS / "ln_lstm.yaml"
GATES = {"i": torch.sigmoid, "f": torch.sigmoid, "g": torch.tanh, "o": torch.sigmoid}


def _random_params(model, seed=1):
    """Initial parameters with gains and biases drawn too (ones and zeros hide mistakes)."""
    rng = np.random.default_rng(seed)
    params = model.init_params(seed=seed)
    for name in params:
        if name.endswith((".gain", ".bias")):
            params[name] = rng.normal(1.0 if name.endswith(".gain") else 0.0, 0.5,
                                      params[name].shape)
    return params


def _torch_ln_lstm(p: dict, x: np.ndarray):
    """Ba et al.'s LayerNorm LSTM as a Python loop over steps with torch ops, on tensors
    ``p`` keyed by graphrnn name: ``(y, h, c)`` tensors (float64)."""
    steps, batch, _ = x.shape
    size = p["i.gain"].shape[0]
    h = c = torch.zeros(batch, size, dtype=torch.float64)
    ys = []
    for t in range(steps):
        xt = torch.tensor(x[t])
        gate = {}
        for name, act in GATES.items():
            pre = xt @ p[f"x->{name}"].T + h @ p[f"h->{name}@1"].T
            gate[name] = act(torch.nn.functional.layer_norm(
                pre, (size,), p[f"{name}.gain"], p[f"{name}.bias"], eps=1e-5))
        c = gate["f"] * c + gate["i"] * gate["g"]
        tc = torch.tanh(torch.nn.functional.layer_norm(c, (size,), p["tc.gain"], p["tc.bias"],
                                                       eps=1e-5))
        h = gate["o"] * tc
        ys.append(h @ p["h->y"].T + p["y.bias"])
    return torch.stack(ys), h, c


def test_layer_norm_is_torchs():
    x = np.random.default_rng(0).normal(3.0, 2.0, size=(4, 3, 7))
    expected = torch.nn.functional.layer_norm(torch.tensor(x), (7,), eps=1e-5).numpy()
    assert np.abs(layer_norm(x) - expected).max() < 1e-12


def test_ln_lstm_reference_is_the_torch_loop():
    net = gr.load_spec(LN_LSTM)
    params = _random_params(gr.compile(net, dtype="float64"))
    x = np.random.default_rng(2).normal(size=(6, 3, 8))
    out, final = reference_forward(net, params, {"x": x})
    y, h, c = _torch_ln_lstm({k: torch.tensor(v) for k, v in params.items()}, x)
    assert_close({"y": out["y"], "h": final["h"], "c": final["c"]},
                 {"y": y.numpy(), "h": h.numpy(), "c": c.numpy()})


def test_ln_lstm_on_every_backend_is_the_reference(backend):
    net = gr.load_spec(LN_LSTM)
    model = gr.compile(net, backend=backend, dtype="float64")
    params = _random_params(model)
    inputs, state = random_case(net, steps=7, batch=3, seed=5)
    out, final = model.forward(params, inputs, state=state)
    ref_out, ref_final = reference_forward(net, params, inputs, state)
    assert_close(out, ref_out)
    assert_close(final, ref_final)


def test_gain_starts_at_ones_and_is_a_parameter():
    net = gr.load_spec(LN_LSTM)
    params = gr.compile(net).init_params(seed=0)
    for node in ("i", "f", "g", "o", "tc"):
        assert np.array_equal(params[f"{node}.gain"], np.ones(16))
    assert "c.gain" not in params and "tc.bias" in params


@pytest.mark.parametrize("leak", [None, 0.7])
def test_gradients_match_finite_differences(backend, leak):
    text = f"""
name: ln
inputs: {{x: 3}}
nodes:
  h: {{size: 5, activation: tanh, norm: layer{', leak: ' + str(leak) if leak else ''}}}
  s: {{size: 5, activation: softplus, norm: layer, bias: false}}
  y: 2
edges: [x -> h, h -> h @1, h -> s diagonal, s -> h @1 identity, s -> y]
outputs: [y]
"""
    net = gr.load_spec(text)
    model = gr.compile(net, backend=backend, dtype="float64")
    params = _random_params(model)
    inputs, state = random_case(net, steps=5, batch=3, seed=6)
    rng = np.random.default_rng(7)
    targets = {"y": rng.normal(size=(5, 3, 2))}
    loss, grads = model.gradients(params, inputs, targets, state=state)
    assert_loss_gradients_are_differences(
        model, params, grads, ("h.gain", "s.gain", "h.bias", "x->h", "h->h@1", "h->s"), rng,
        inputs, targets, state=state)


def test_ln_lstm_gradients_are_torch_autograd():
    net = gr.load_spec(LN_LSTM)
    model = gr.compile(net, dtype="float64")
    params = _random_params(model)
    x = np.random.default_rng(3).normal(size=(5, 2, 8))
    target = np.random.default_rng(4).normal(size=(5, 2, 4))
    loss, grads = model.gradients(params, {"x": x}, {"y": target})
    tp = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}
    y, _, _ = _torch_ln_lstm(tp, x)
    torch_loss = ((y - torch.tensor(target)) ** 2).mean()  # Model.gradients' mse
    torch_loss.backward()
    assert loss == pytest.approx(torch_loss.item(), rel=1e-12)
    for name, tensor in tp.items():
        assert np.abs(grads[name] - tensor.grad.numpy()).max() <= 1e-9 * max(
            1.0, np.abs(tensor.grad.numpy()).max()), name


def _with_norm(net, every: int):
    """``net`` with ``norm: layer`` on every ``every``-th synchronous node (from the first)."""
    nodes, k = {}, 0
    for name, node in net.nodes.items():
        if node.update == "synchronous":
            k += 1
            node = dataclasses.replace(node, norm="layer" if k % every == 1 % every else None)
        nodes[name] = node
    return dataclasses.replace(net, nodes=nodes)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(valid_networks(), st.integers(1, 2))
def test_random_graphs_with_norm_match_the_reference(text, every):
    net = _with_norm(gr.load_spec(text), every)
    params = _random_params(gr.compile(net, dtype="float64"), seed=3)
    inputs, state = random_case(net, steps=4, batch=2, seed=4)
    steps = None if net.inputs else 4
    ref_out, ref_final = reference_forward(net, params, inputs, state, steps=4)
    for backend in ("numpy", "numpy-ufuncs"):
        model = gr.compile(net, backend=backend, dtype="float64")
        out, final = model.forward(params, inputs, state=state, steps=steps)
        assert_close(out, ref_out)
        assert_close(final, ref_final)


def test_the_bias_of_a_normalised_node_stays_after_the_norm():
    model = gr.compile(gr.load_spec(LN_LSTM), backend="numpy-ufuncs")  # folds biases
    updates = [op for stage in model.program.stages for op in stage.ops
               for op in getattr(op, "ops", (op,)) if getattr(op, "norm", None)]
    assert {op.node for op in updates} == {"i", "f", "g", "o", "tc"}
    assert all(op.bias == f"{op.node}.bias" and op.gain == f"{op.node}.gain" for op in updates)
    assert "layernorm*i.gain +i.bias" in format_program(model.program)


@pytest.mark.parametrize(("node", "message"), [
    ("{size: 4, norm: batch}", "unknown norm 'batch'"),
    ("{size: 4, norm: layer, update: asynchronous, activation: sign}", "asynchronous"),
])
def test_bad_norms_are_spec_errors(node, message):
    text = f"name: n\ninputs: {{x: 2}}\nnodes:\n  h: {node}\nedges: [x -> h]\noutputs: [h]\n"
    with pytest.raises(SpecError, match=message):
        gr.load_spec(text)


def test_gain_name_is_reserved_only_on_normalised_nodes():
    edges = "[x -> h, {from: h, to: h, delay: 1, name: h.gain}]"
    plain = f"name: n\ninputs: {{x: 2}}\nnodes:\n  h: 4\nedges: {edges}\noutputs: [h]\n"
    assert "h.gain" in gr.load_spec(plain).params
    with pytest.raises(SpecError, match="reserved"):
        gr.load_spec(plain.replace("h: 4", "h: {size: 4, norm: layer}"))


def _host_gpu(net, dtype):
    """The GPU backend with its CUDA code compiled for the host (tests/helpers/cuda_host)."""
    from tests.helpers.cuda_host import HostBackend
    model = gr.compile(net, backend="numpy", dtype=dtype)
    model.backend = HostBackend()
    return model


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_host_run_gpu_kernels_match_numpy(dtype):
    from tests.helpers.cuda_host import CXX
    if CXX is None:
        pytest.skip("no host C++ compiler")
    net = _with_norm(gr.load_spec(SPECS / "lstm.yaml"), 1)  # every node, leaky ones too
    net = dataclasses.replace(net, nodes={**net.nodes, "c": dataclasses.replace(
        net.nodes["c"], leak=0.6, activation="softplus")})
    cpu, gpu = gr.compile(net, dtype=dtype), _host_gpu(net, dtype)
    rtol = 1e-11 if dtype == "float64" else 2e-4
    for call in range(3):  # a replayed CUDA graph must see new parameters
        params = _random_params(cpu, seed=call % 2)
        inputs, state = random_case(net, steps=4, batch=3, seed=call)
        targets = {"y": np.random.default_rng(call).normal(size=(4, 3, net.size("y")))}
        assert_same_loss_and_gradients(gpu.gradients(params, inputs, targets, state=state),
                                       cpu.gradients(params, inputs, targets, state=state),
                                       rtol, atol=rtol)
    assert gpu.backend.replays >= 1


def test_cpu_pipeline_runs_the_whole_cell_step_as_one_row_kernel_split_by_batch_rows():
    from graphrnn.backends.host_loop import plan_loop
    from graphrnn.compiler.ir import Fused, StageKind
    model = gr.compile(gr.load_spec(LN_LSTM), backend="numpy")
    if model.backend.name != "numpy":
        pytest.skip("no C compiler: no compiled kernels")
    (loop,) = [s for s in model.program.stages if s.kind == StageKind.LOOP]
    runs = [[m.node for m in op.ops] for op in loop.ops if isinstance(op, Fused)]
    assert runs == [["i", "f", "g", "o", "fc", "ig", "c", "tc", "h"]]  # one kernel a step
    plan = plan_loop(loop, model.program, threads=2, batch=8)
    assert plan is not None and plan.bounds[0] == (0, 4, 8)  # batch rows, not columns
    assert (2, 0) in plan.ops  # the threads meet after the gate GEMMs, before the gates


def test_a_normalised_softmax_node_is_not_grouped_into_a_row_kernel():
    """Found by the random graphs in CI: group_normalised put a normalised softmax node (not
    element-wise but for its norm) into a CPU row kernel, which has no softmax."""
    net = gr.load_spec("""
nodes:
  n0: {size: 1, activation: softmax, combine: product, leak: 0.25, init_state: learned,
       norm: layer}
  n1: {size: 1, activation: identity, combine: product, init_state: learned, bias: false,
       norm: layer}
edges:
  - {from: n1, to: n0, delay: 1, weight: full, transpose: true}
  - n0 -> n1 diagonal
outputs: [n0]
""")
    params = _random_params(gr.compile(net, dtype="float64"), seed=3)
    ref_out, ref_final = reference_forward(net, params, {}, {}, steps=4)
    out, final = gr.compile(net, dtype="float64").forward(params, {}, steps=4)
    assert_close(out, ref_out)
    assert_close(final, ref_final)
