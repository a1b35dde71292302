"""Backend conformance: every compiled program agrees with the reference interpreter."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings

import graphrnn as gr
from graphrnn.compiler.checker import check_program
from graphrnn.compiler.ir import MatMul
from graphrnn.frontend.reference import reference_forward
from tests.helpers import SPEC_FILES, SPECS, assert_close, random_case
from tests.helpers.strategies import valid_networks


@pytest.mark.parametrize("spec", SPEC_FILES, ids=lambda p: p.stem)
def test_every_spec_matches_the_reference(spec, backend):
    net = gr.load_spec(spec)
    model = gr.compile(net, backend=backend, dtype="float64")
    params = model.init_params(seed=1)
    for with_state in (False, True):
        inputs, state = random_case(net, with_state=with_state or not net.inputs)
        steps = None if net.inputs else 6
        out, final = model.forward(params, inputs, state=state, steps=steps, seed=7)
        ref_out, ref_final = reference_forward(net, params, inputs, state, steps=6, seed=7)
        assert_close(out, ref_out)
        assert_close(final, ref_final)
        assert all(np.abs(v).max() > 0 for v in out.values()), "a trivial (all-zero) output"


@pytest.mark.parametrize("spec", ["elman", "narx", "lstm", "mlp_loops", "hopfield_continuous"])
def test_chunks_carrying_state_equal_one_call(spec, backend):
    net = gr.load_spec(SPECS / f"{spec}.yaml")
    model = gr.compile(net, backend=backend, dtype="float64")
    params = model.init_params(seed=2)
    inputs, state = random_case(net, steps=9, with_state=True)
    steps = None if net.inputs else 9
    whole, whole_final = model.forward(params, inputs, state=state, steps=steps)
    pieces, carried = [], state
    for lo, hi in [(0, 1), (1, 4), (4, 9)]:
        chunk = {k: v[lo:hi] for k, v in inputs.items()}
        out, carried = model.forward(params, chunk, state=carried,
                                     steps=None if net.inputs else hi - lo)
        pieces.append(out)
    # Equal up to rounding: BLAS may block a GEMM over 9 steps differently from one over 3.
    assert_close({k: np.concatenate([p[k] for p in pieces]) for k in whole}, whole, rtol=1e-13)
    assert_close(carried, whole_final, rtol=1e-13)


def test_narx_state_has_keys_for_long_delays_and_inputs():
    net = gr.load_spec(SPECS / "narx.yaml")
    keys = set(net.state_keys)
    assert {"x", "x@-2", "y", "y@-2"} <= keys


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(valid_networks())
def test_random_graphs_match_the_reference(text):
    net = gr.load_spec(text)
    model = gr.compile(net, dtype="float64")
    check_program(model.program)
    params = model.init_params(seed=3)
    inputs, state = random_case(net, steps=5, batch=2, seed=4)
    steps = None if net.inputs else 5
    out, final = model.forward(params, inputs, state=state, steps=steps)
    ref_out, ref_final = reference_forward(net, params, inputs, state, steps=5)
    assert_close(out, ref_out)
    assert_close(final, ref_final)


def test_program_size_does_not_depend_on_steps():
    net = gr.load_spec(SPECS / "lstm.yaml")
    model = gr.compile(net, dtype="float64")
    n_ops = sum(len(s.ops) for s in model.program.stages)
    params = model.init_params(0)
    for steps in (10, 10_000):
        x = np.zeros((steps, 1, net.inputs["x"]))
        out, _ = model.forward(params, {"x": x})
        assert out["y"].shape[0] == steps
        assert sum(len(s.ops) for s in gr.compile(net).program.stages) == n_ops


def test_elman_input_projection_is_one_gemm_outside_the_loop():
    net = gr.load_spec(SPECS / "elman.yaml")
    prog = gr.compile(net).program
    kinds = [s.kind for s in prog.stages]
    assert kinds == ["batched", "loop", "batched"]
    before = [op for op in prog.stages[0].ops if isinstance(op, MatMul)]
    assert [(op.src, [b.param for b in op.blocks]) for op in before] == [("x", ["x->h"])]
    in_loop = [op for op in prog.stages[1].ops if isinstance(op, MatMul)]
    assert [(op.src, op.delay) for op in in_loop] == [("h", 1)]


def test_lstm_gates_share_one_gemm_per_source():
    net = gr.load_spec(SPECS / "lstm.yaml")
    prog = gr.compile(net).program
    gemms = [op for s in prog.stages for op in s.ops if isinstance(op, MatMul)]
    by_source = {(op.src, op.delay): len(op.blocks) for op in gemms}
    assert by_source == {("x", 0): 4, ("h", 1): 4, ("h", 0): 1}


def test_float32_agrees_with_float64(backend):
    net = gr.load_spec(SPECS / "gru.yaml")
    params = gr.compile(net).init_params(0)
    inputs, _ = random_case(net, steps=20, with_state=False)
    o32, _ = gr.compile(net, backend=backend, dtype="float32").forward(params, inputs)
    o64, _ = gr.compile(net, backend=backend, dtype="float64").forward(params, inputs)
    assert o32["y"].dtype == np.float32
    np.testing.assert_allclose(o32["y"], o64["y"], rtol=1e-4, atol=1e-5)


def test_stochastic_units_repeat_with_the_same_seed(backend):
    net = gr.load_spec(SPECS / "boltzmann.yaml")
    model = gr.compile(net, backend=backend, dtype="float64")
    params = model.init_params(0)
    state = {"s": np.zeros((4, net.size("s")))}
    a, _ = model.forward(params, {}, state=state, steps=20, seed=5)
    b, _ = model.forward(params, {}, state=state, steps=20, seed=5)
    c, _ = model.forward(params, {}, state=state, steps=20, seed=6)
    np.testing.assert_array_equal(a["s"], b["s"])
    assert not np.array_equal(a["s"], c["s"])
    assert set(np.unique(a["s"])) <= {0.0, 1.0}
