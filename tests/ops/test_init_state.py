"""The InitState op: lowering, its kernel, and results against the reference and differences."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

import graphrnn as gr
from graphrnn.backends import native
from graphrnn.backends.host_loop import CompiledLoopKernel
from graphrnn.compiler.ir import InitState, StageKind
from graphrnn.compiler.lower import lower
from graphrnn.frontend.reference import reference_forward
from graphrnn.ops.init_state import InitStateKernel
from tests.helpers import assert_close, random_case
from tests.helpers.cuda_host import CXX, HostBackend

#: h has a learned state two rows deep (read at delays 1 and 2, leaky, in a compiled loop);
#: g's is learned too but nothing reads its past (no op, no gradient); k keeps the zero state
SPEC = """
name: learned_rows
inputs: {x: 3}
nodes:
  h: {size: 5, activation: tanh, init_state: learned, leak: 0.6}
  k: {size: 5, activation: sigmoid}
  g: {size: 2, init_state: learned}
  y: 2
edges:
  - x -> h
  - h -> h @2
  - h -> h @1
  - k -> h @1
  - h -> k
  - h -> g
  - g -> y
outputs: [y]
"""


def case(seed=0, steps=4, batch=3):
    net = gr.load_spec(SPEC)
    params = gr.compile(net).init_params(seed)
    rng = np.random.default_rng(seed + 7)
    params["h.init"] = rng.normal(size=5)
    params["g.init"] = rng.normal(size=2)
    inputs, _ = random_case(net, steps=steps, batch=batch, seed=seed, with_state=False)
    targets = {"y": rng.normal(size=(steps, batch, 2))}
    return net, params, inputs, targets


def test_each_learned_state_with_a_history_is_one_op_in_a_first_batched_stage():
    prog = lower(gr.load_spec(SPEC))
    first = prog.stages[0]
    assert first.kind is StageKind.BATCHED
    assert first.ops == (InitState("h", "h.init", 2, first.ops[0].uid),)
    assert not any(isinstance(op, InitState) for s in prog.stages[1:] for op in s.ops)


def test_the_program_prints_the_init_op():
    assert "h@-2..-1 = init(h.init)" in gr.compile(gr.load_spec(SPEC)).schedule()


class _Run(SimpleNamespace):
    """The few things of a Run the kernel uses, over plain arrays."""

    def rows(self, name, lo, hi, grad=False):
        return (self.grads if grad else self.arrays)[name][2 + lo:2 + hi]

    def add_param_grad(self, name, g):
        self.param_grads[name] = self.param_grads.get(name, 0) + g


def test_the_kernel_fills_the_rows_not_given_and_sums_their_gradient():
    rng = np.random.default_rng(0)
    value, grad = rng.normal(size=4), rng.normal(size=(2 + 3, 6, 4))
    arrays = {"h": np.full((2 + 3, 6, 4), np.nan)}
    run = _Run(arrays=arrays, grads={"h": grad}, params={"h.init": value}, param_grads={},
               given_rows=frozenset({("h", 1)}), trainable=frozenset({"h.init"}))
    kernel = InitStateKernel(InitState("h", "h.init", 2), run)
    kernel.forward(0, 3)
    np.testing.assert_array_equal(arrays["h"][0], np.broadcast_to(value, (6, 4)))  # row -2
    assert np.isnan(arrays["h"][1:]).all()  # row -1 (given) and the steps: untouched
    kernel.backward(0, 3)
    kernel.param_grads()
    np.testing.assert_allclose(run.param_grads["h.init"], grad[0].sum(axis=0), rtol=1e-15)


def test_a_frozen_init_gets_no_gradient_from_the_kernel():
    run = _Run(arrays={}, grads={}, params={}, param_grads={}, given_rows=frozenset(),
               trainable=frozenset())
    InitStateKernel(InitState("h", "h.init", 2), run).param_grads()
    assert run.param_grads == {}


def models(net):
    out = [gr.compile(net, backend=name, dtype="float64") for name in ("numpy", "numpy-ufuncs")]
    if CXX is not None:
        host = gr.compile(net, dtype="float64")
        host.backend = HostBackend()
        out.append(host)
    return out


@pytest.mark.parametrize("given", [(), ("h",), ("h", "h@-2", "k")])
def test_forward_matches_the_reference_whatever_rows_are_given(given):
    net, params, inputs, _ = case()
    _, full = random_case(net, steps=4, batch=3, seed=5)
    state = {k: full[k] for k in given}
    want, want_final = reference_forward(net, params, inputs, state)
    for model in models(net):
        got, final = model.forward(params, inputs, state)
        assert_close(got, want)
        assert_close(final, want_final)


def test_with_no_state_the_init_gradient_is_the_history_gradient_summed():
    net, params, inputs, targets = case()
    broadcast = {"h": np.broadcast_to(params["h.init"], (3, 5)),
                 "h@-2": np.broadcast_to(params["h.init"], (3, 5)),
                 "k": np.zeros((3, 5))}
    for model in models(net):
        _, grads = model.gradients(params, inputs, targets)
        _, given = model.gradients(params, inputs, targets, state=broadcast)
        expected = given["state:h"].sum(axis=0) + given["state:h@-2"].sum(axis=0)
        assert np.abs(expected).max() > 0
        np.testing.assert_allclose(grads["h.init"], expected, rtol=1e-10, atol=1e-14)
        assert not np.any(given["h.init"])  # every row given: the learned state is unused
        assert not np.any(grads["g.init"])  # nothing reads g's past


@pytest.mark.parametrize("given", [(), ("h",)])
def test_the_init_gradient_matches_finite_differences(given):
    net, params, inputs, targets = case(seed=1)
    _, full = random_case(net, steps=4, batch=3, seed=6)
    state = {k: full[k] for k in given}
    eps, rng = 1e-6, np.random.default_rng(2)
    for model in models(net):
        _, grads = model.gradients(params, inputs, targets, state=state)
        for name in ("h.init", "x->h"):
            v = rng.normal(size=params[name].shape)
            loss = [model.gradients({**params, name: params[name] + s * eps * v}, inputs,
                                    targets, state=state)[0] for s in (1, -1)]
            numeric = (loss[0] - loss[1]) / (2 * eps)
            analytic = float((grads[name] * v).sum())
            assert analytic == pytest.approx(numeric, rel=1e-6, abs=1e-9), name


@pytest.mark.skipif(not native.available(), reason="no C compiler")
def test_a_learned_state_keeps_its_loop_compiled():
    net, params, inputs, targets = case()
    model = gr.compile(net, dtype="float64")
    run = model._run(params, inputs, None, None, 0)
    loops = [kernels for stage, kernels in run.kernels if stage.kind == StageKind.LOOP]
    assert [type(k) for ks in loops for k in ks] == [CompiledLoopKernel]
    state = {"h": np.random.default_rng(3).normal(size=(3, 5))}  # h@-2 from the learned state
    plain = gr.compile(net, backend="numpy-ufuncs", dtype="float64")
    _, want = plain.gradients(params, inputs, targets, state=state)
    _, got = model.gradients(params, inputs, targets, state=state)
    assert np.abs(got["h.init"]).max() > 0
    assert_close(got, want)
