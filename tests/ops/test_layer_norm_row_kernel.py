"""The CPU row kernel of a normalised group: element-wise members merged with normalised ones."""

from __future__ import annotations

import numpy as np
import pytest

import graphrnn as gr
from graphrnn.backends.codegen_norm import generate_norm, row_passes
from graphrnn.backends.host_ops import read_elsewhere
from graphrnn.compiler.ir import Fused, StageKind
from graphrnn.frontend.reference import reference_forward
from tests.helpers import (
    SPECS,
    assert_close,
    assert_loss_gradients_are_differences,
    assert_same_loss_and_gradients,
    random_case,
)

# a normalised node, an element-wise one between (bias, diagonal weight, leak, a product) and
# a normalised one reading it, then an element-wise product of both: four passes a row
MIXED = """
name: mixed
inputs: {x: 3}
nodes:
  a: {size: 6, activation: tanh, norm: layer}
  e: {size: 6, activation: sigmoid, leak: 0.6}
  p: {size: 6, combine: product}
  n: {size: 6, activation: softplus, norm: layer, leak: 0.8}
  m: {size: 6, combine: product}
  y: 2
edges:
  - x -> a
  - m -> a @1
  - a -> e diagonal
  - e -> e @1 diagonal
  - a -> p identity
  - e -> p identity
  - p -> n diagonal
  - x -> n
  - n -> m identity
  - a -> m identity
  - m -> y
outputs: [y]
"""


def _params(model, seed=2):
    rng = np.random.default_rng(seed)
    params = model.init_params(seed=seed)
    return {k: (rng.normal(1.0 if k.endswith(".gain") else 0.0, 0.5, v.shape)
                if k.endswith((".gain", ".bias")) else v) for k, v in params.items()}


def _row_group(model):
    (loop,) = [s for s in model.program.stages if s.kind == StageKind.LOOP]
    return [op for op in loop.ops if isinstance(op, Fused)]


def test_the_mixed_group_is_one_row_kernel_of_as_few_passes_as_the_data_allow():
    model = gr.compile(gr.load_spec(MIXED), backend="numpy", dtype="float64")
    if model.backend.name != "numpy":
        pytest.skip("no C compiler: no compiled kernels")
    (group,) = _row_group(model)
    names = [m.node for m in group.ops]
    assert set(names) == {"a", "e", "p", "n", "m"}
    passes = [[(names[k], phase) for k, phase in p] for p in row_passes(group.ops)]
    assert passes == [[("a", 0)], [("a", 1), ("e", 0), ("p", 0), ("n", 0)],
                      [("n", 1), ("m", 0)]]
    back = [[(names[k], phase) for k, phase in p] for p in row_passes(group.ops, True)]
    assert back == [[("m", 0), ("n", 0)], [("n", 1), ("p", 0), ("e", 0), ("a", 0)],
                    [("a", 1)]]
    src = generate_norm(group, model.program.buffers, "float64", frozenset({"x"}))
    # 3 passes each way; those with row sums run in lanes (6 columns: all in the tail loop),
    # as do the variances' centred sums, the only other loops
    plain = src.source.count("    GR_VECTORIZE\n    for (int j = 0; j < 6; ++j) {")
    tails = src.source.count("    for (int j = 0; j < 6; ++j) {\n      const int l = 0;")
    # plain: forward (n, m), backward (a); in lanes: forward the passes summing a's and n's
    # terms and the two variances, backward the passes making n's and a's dy
    assert (plain, tails) == (2, 6)


def test_ln_lstm_step_is_three_passes_forward_and_backward():
    model = gr.compile(gr.load_spec(SPECS / "ln_lstm.yaml"), backend="numpy")
    if model.backend.name != "numpy":
        pytest.skip("no C compiler: no compiled kernels")
    (group,) = _row_group(model)
    assert len(row_passes(group.ops)) == 3 and len(row_passes(group.ops, True)) == 3


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_mixed_group_forward_is_the_reference(backend, dtype):
    net = gr.load_spec(MIXED)
    model = gr.compile(net, backend=backend, dtype=dtype)
    params = _params(model)
    inputs, state = random_case(net, steps=6, batch=5, seed=3)
    out, final = model.forward(params, inputs, state=state)
    ref_out, ref_final = reference_forward(net, params, inputs, state)
    tol = {} if dtype == "float64" else {"rtol": 1e-4}
    assert_close(out, ref_out, **tol)
    assert_close(final, ref_final, **tol)


def test_mixed_group_gradients_are_the_ufunc_kernels_and_finite_differences():
    net = gr.load_spec(MIXED)
    compiled = gr.compile(net, backend="numpy", dtype="float64")
    plain = gr.compile(net, backend="numpy-ufuncs", dtype="float64")
    params = _params(compiled)
    inputs, state = random_case(net, steps=6, batch=5, seed=4)
    targets = {"y": np.random.default_rng(5).normal(size=(6, 5, 2))}
    loss, grads = compiled.gradients(params, inputs, targets, state=state)
    loss_u, grads_u = plain.gradients(params, inputs, targets, state=state)
    assert abs(loss - loss_u) <= 1e-10 * abs(loss_u)
    assert set(grads) == set(grads_u)
    for k in grads:
        np.testing.assert_allclose(grads[k], grads_u[k], rtol=1e-10, atol=1e-12, err_msg=k)
    assert_loss_gradients_are_differences(
        compiled, params, grads, ("a.gain", "n.bias", "e.bias", "a->e", "e->e@1", "p->n", "m->a@1"),
        np.random.default_rng(8), inputs, targets, state=state)


def test_ln_lstm_row_kernel_assigns_the_projections_gradients_call_after_call():
    """The gates' projections are read by the row kernel alone, each column by one term: their
    gradients are assigned (one of the twins written, no zeroing first) and stay exact over
    repeated calls of a kept run."""
    net = gr.load_spec(SPECS / "ln_lstm.yaml")
    compiled = gr.compile(net, backend="numpy", dtype="float64")
    if compiled.backend.name != "numpy":
        pytest.skip("no C compiler: no compiled kernels")
    plain = gr.compile(net, backend="numpy-ufuncs", dtype="float64")
    (group,) = _row_group(compiled)
    src = generate_norm(group, compiled.program.buffers, "float64",
                        keep=read_elsewhere(compiled.program, group))
    assert {"x@0->i+f+g+o", "h@1->i+f+g+o"} <= src.overwrites
    assert src.grad_aliases  # the twins share one gradient
    params = _params(compiled)
    inputs, state = random_case(net, steps=7, batch=3, seed=6)
    targets = {"y": np.random.default_rng(7).normal(size=(7, 3, net.size("y")))}
    expected = plain.gradients(params, inputs, targets, state=state)[1]
    for _ in range(3):
        grads = compiled.gradients(params, inputs, targets, state=state)[1]
        for k in expected:
            np.testing.assert_allclose(grads[k], expected[k], rtol=1e-10, atol=1e-12, err_msg=k)


def test_ln_lstm_backward_keeps_the_gates_gradients_in_registers():
    """Backward, each member runs in the first pass where its gradient is complete (``o``
    with ``h``, before ``tc``'s row sums), so the gates', ``fc``'s, ``ig``'s and ``tc``'s
    gradients never reach memory: only ``c`` (carried to the last step) and ``h`` (the GEMM
    adds to it) have gradient arrays the kernel reads."""
    model = gr.compile(gr.load_spec(SPECS / "ln_lstm.yaml"), backend="numpy")
    if model.backend.name != "numpy":
        pytest.skip("no C compiler: no compiled kernels")
    (group,) = _row_group(model)
    names = [m.node for m in group.ops]
    back = [[(names[k], phase) for k, phase in p] for p in row_passes(group.ops, True)]
    assert back[0] == [("h", 0), ("tc", 0), ("o", 0)]
    src = generate_norm(group, model.program.buffers, "float32", frozenset({"x"}),
                        keep=read_elsewhere(model.program, group))
    grads = {a.name for a in src.backward_args if a.kind == "grad"}
    assert grads & {m.out for m in group.ops} == {"c", "h"}


def test_ln_lstm_gain_and_bias_gradients_follow_new_parameters_call_after_call():
    """The CPU row kernel sums each row's gain and bias gradients over the steps: every call of
    a kept run starts from zero, with the same, in-place changed, or new parameter arrays."""
    net = gr.load_spec(SPECS / "ln_lstm.yaml")
    compiled = gr.compile(net, backend="numpy", dtype="float64")
    if compiled.backend.name != "numpy":
        pytest.skip("no C compiler: no compiled kernels")
    plain = gr.compile(net, backend="numpy-ufuncs", dtype="float64")
    inputs, state = random_case(net, steps=6, batch=4, seed=9)
    targets = {"y": np.random.default_rng(10).normal(size=(6, 4, net.size("y")))}
    params = _params(compiled, seed=3)
    for call in range(4):
        if call == 2:
            params["tc.gain"] *= 1.5  # in place: the kept run refreshes its copies
        if call == 3:
            params = _params(compiled, seed=4)  # new arrays: new kernels
        expected = plain.gradients(params, inputs, targets, state=state)[1]
        grads = compiled.gradients(params, inputs, targets, state=state)[1]
        for k in (n for n in expected if n.endswith((".gain", ".bias"))):
            np.testing.assert_allclose(grads[k], expected[k], rtol=1e-10, atol=1e-12,
                                       err_msg=f"call {call}: {k}")


@pytest.mark.parametrize(("spec", "dtype"), [("mixed", "float64"), ("ln_lstm", "float64"),
                                             ("ln_lstm", "float32")])
def test_host_run_gpu_row_kernel_matches_the_ufuncs(spec, dtype, monkeypatch):
    from graphrnn.backends.cuda_norm import LayerNormRunKernel
    from graphrnn.compiler.passes import schedule
    from graphrnn.frontend.training_noise import eval_network
    from graphrnn.model import DTYPES, Model
    from tests.helpers.cuda_host import CXX, HostBackend
    if CXX is None:
        pytest.skip("no host C++ compiler")
    net = gr.load_spec(MIXED if spec == "mixed" else SPECS / "ln_lstm.yaml")
    made = []
    init = LayerNormRunKernel.__init__

    def counted(self, op, run, backend):
        made.append(op.uid)
        init(self, op, run, backend)
    monkeypatch.setattr(LayerNormRunKernel, "__init__", counted)
    backend = HostBackend()
    gpu = Model(net, schedule(eval_network(net), passes=backend.passes()), backend,
                DTYPES[dtype], "time")
    (group,) = _row_group(gpu)
    assert any(not m.norm for m in group.ops) and any(m.norm for m in group.ops)
    plain = gr.compile(net, backend="numpy-ufuncs", dtype=dtype)
    rtol = 1e-10 if dtype == "float64" else 2e-4
    for call in range(3):  # a replayed CUDA graph must see new parameters
        params = _params(plain, seed=call % 2)
        inputs, state = random_case(net, steps=5, batch=3, seed=call)
        targets = {"y": np.random.default_rng(call).normal(size=(5, 3, net.size("y")))}
        assert_same_loss_and_gradients(gpu.gradients(params, inputs, targets, state=state),
                                       plain.gradients(params, inputs, targets, state=state),
                                       rtol, atol=rtol)
        out, _ = gpu.forward(params, inputs, state=state)
        ref, _ = reference_forward(net, params, inputs, state)
        assert_close(out, ref, rtol=1e-10 if dtype == "float64" else 1e-4)
    assert backend.replays >= 1
    assert made  # the group ran as the merged row kernel
