"""Negative delays: anti-causal loops, future reads, boundary state NODE@+k, torch's bidirectional
LSTM and GRU."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import graphrnn as gr
from graphrnn.backends import host_loop, numpy_backend
from graphrnn.backends.host_loop import CompiledLoopKernel
from graphrnn.compiler.checker import IRError, check_program
from graphrnn.compiler.ir import Direction, StageKind
from graphrnn.errors import DataError
from graphrnn.executor import Run
from graphrnn.frontend import render
from graphrnn.frontend.reference import reference_forward
from graphrnn.noise import draw_noise
from tests.helpers import SPECS, assert_close, random_case

#: an anti-causal net that also reads its input two steps ahead and itself two steps ahead
AHEAD = """
name: ahead
inputs: {x: 3}
nodes:
  h: {size: 5, activation: tanh}
  y: 2
edges:
  - x -> h
  - x -> h @-2
  - h -> h @-1
  - h -> h @-2 diagonal
  - h -> y
outputs: [y]
"""
#: future reads without a loop (a batched stage) beside a causal loop
MIXED = """
name: mixed
inputs: {x: 3}
nodes:
  a: {size: 2, activation: tanh}
  h: {size: 4, activation: tanh}
  z: 2
edges:
  - x -> a @-2
  - a -> h @-1
  - h -> h @1
  - h -> z
  - a -> z @-1
outputs: [z]
"""


def _model(spec, backend="numpy-ufuncs"):
    net = gr.load_spec(spec)
    return net, gr.compile(net, backend=backend, dtype="float64")


def test_reverse_elman_is_the_recurrence_run_backwards(backend):
    net, model = _model(SPECS / "reverse_elman.yaml", backend)
    params = model.init_params(seed=4)
    inputs, state = random_case(net, steps=7, batch=2)
    out, final = model.forward(params, inputs, state)
    h = state["h@+1"]  # the state after the last step
    hs = [None] * 7
    for t in range(6, -1, -1):  # written out here, independently of every compiled path
        h = np.tanh(inputs["x"][t] @ params["x->h"].T + h @ params["h->h@-1"].T
                    + params["h.bias"])
        hs[t] = h
    y = np.stack(hs) @ params["h->y"].T + params["y.bias"]
    assert_close(out, {"y": y})
    assert_close(final, {"h@+1": hs[0]})  # the final state is h at step 0


@pytest.mark.parametrize("spec", [SPECS / "reverse_elman.yaml", SPECS / "bilstm.yaml",
                                  SPECS / "bigru.yaml", AHEAD, MIXED])
def test_matches_the_reference_with_boundary_state(spec, backend):
    net, model = _model(spec, backend)
    params = model.init_params(seed=1)
    for with_state in (False, True):
        inputs, state = random_case(net, steps=5, batch=3, with_state=with_state)
        out, final = model.forward(params, inputs, state)
        ref_out, ref_final = reference_forward(net, params, inputs, state)
        assert_close(out, ref_out)
        assert_close(final, ref_final)


def test_state_keys_after_the_end():
    assert gr.load_spec(AHEAD).state_keys == ("x@+1", "x@+2", "h@+1", "h@+2")
    assert set(gr.load_spec(SPECS / "bilstm.yaml").state_keys) == {
        "h", "c", "h_reverse@+1", "c_reverse@+1"}


@pytest.mark.parametrize("spec", [SPECS / "reverse_elman.yaml", AHEAD])
def test_chunks_in_reverse_order_equal_one_call(spec, backend):
    net, model = _model(spec, backend)
    params = model.init_params(seed=2)
    inputs, state = random_case(net, steps=9)
    whole, whole_final = model.forward(params, inputs, state)
    pieces, carried = {}, state
    for lo, hi in [(4, 9), (1, 4), (0, 1)]:  # the last chunk first
        chunk = {k: v[lo:hi] for k, v in inputs.items()}
        # an input read ahead across the cut: the next chunk's first steps are its boundary
        given = {**carried, **{f"x@+{k}": inputs["x"][hi + k - 1]
                               for k in (1, 2) if hi + k - 1 < 9 and f"x@+{k}" in carried}}
        pieces[lo], carried = model.forward(params, chunk, given)
    joined = {k: np.concatenate([pieces[lo][k] for lo in (0, 1, 4)]) for k in whole}
    assert_close(joined, whole, rtol=1e-13)
    hidden = {k: v for k, v in whole_final.items() if not k.startswith("x@")}
    assert_close({k: carried[k] for k in hidden}, hidden, rtol=1e-13)


def test_anti_causal_loops_run_reverse_and_future_reads_batch():
    _, model = _model(SPECS / "bilstm.yaml")
    loops = [s for s in model.program.stages if s.kind == StageKind.LOOP]
    assert [s.direction for s in loops] == [Direction.FORWARD, Direction.REVERSE]
    reverse = next(s for s in loops if s.reverse)
    assert {op.node for op in reverse.ops for op in getattr(op, "ops", (op,))
            if hasattr(op, "node")} == {f"{n}_reverse" for n in
                                        ("i", "f", "g", "o", "fc", "ig", "c", "tc", "h")}
    assert "for t in T-1..0:" in model.schedule()
    _, mixed = _model(MIXED)
    loops = [s for s in mixed.program.stages if s.kind == StageKind.LOOP]
    assert [s.direction for s in loops] == [Direction.FORWARD]  # x -> a @-2 is batched
    buffers = mixed.program.buffers
    assert (buffers["x"].tail, buffers["a"].tail, buffers["h"].pad) == (2, 1, 1)


def test_checker_rejects_a_future_read_in_a_forward_loop():
    _, model = _model(SPECS / "reverse_elman.yaml")
    prog = model.program
    flipped = prog.replace(stages=tuple(
        type(s)(s.kind, s.ops, Direction.FORWARD) for s in prog.stages))
    check_program(prog)
    with pytest.raises(IRError, match="against its loop's direction"):
        check_program(flipped)


def test_compiled_loop_runs_anti_causal_stages():
    net, model = _model(SPECS / "bilstm.yaml", "numpy")
    params = model.init_params(seed=3)
    inputs, state = random_case(net, steps=6, batch=4)
    b = model.backend
    run = Run(model.program, b, {k: b.asarray(v, np.float64) for k, v in params.items()}, 6, 4,
              np.float64, draw_noise(net, 6, 4, 0))
    compiled = [k for s, ks in run.kernels if s.kind == StageKind.LOOP for k in ks
                if isinstance(k, CompiledLoopKernel)]
    assert [k.plan.reverse for k in compiled] == [False, True]
    out, final = model.forward(params, inputs, state)
    ref_out, ref_final = reference_forward(net, params, inputs, state)
    assert_close(out, ref_out)
    assert_close(final, ref_final)


@pytest.mark.parametrize("spec", [SPECS / "reverse_elman.yaml", SPECS / "bilstm.yaml", AHEAD,
                                  MIXED])
def test_gradients_of_parameters_and_boundary_state(spec, backend):
    net, model = _model(spec, backend)
    params = model.init_params(seed=5)
    inputs, state = random_case(net, steps=5, batch=2, seed=3)
    rng = np.random.default_rng(8)
    targets = {o: rng.normal(size=(5, 2, net.size(o))) for o in net.outputs}
    _, grads = model.gradients(params, inputs, targets, state=state)

    def loss(p, s):
        return model.gradients(p, inputs, targets, state=s)[0]

    eps = 1e-6
    node_state = {k: v for k, v in state.items() if k.split("@")[0] in net.nodes}
    assert {f"state:{k}" for k in node_state} <= set(grads)  # inputs' rows have none, as before
    for group, point in (("", params), ("state:", node_state)):
        for name in point:
            v = rng.normal(size=point[name].shape)
            plus = {**point, name: point[name] + eps * v}
            minus = {**point, name: point[name] - eps * v}
            args = (((plus, state), (minus, state)) if not group
                    else ((params, {**state, **plus}), (params, {**state, **minus})))
            numeric = (loss(*args[0]) - loss(*args[1])) / (2 * eps)
            analytic = float((grads[group + name] * v).sum())
            scale = max(abs(numeric), float(np.linalg.norm(grads[group + name])), 1e-8)
            assert abs(numeric - analytic) <= 1e-6 * scale, group + name


def test_text_and_dot_show_the_boundary_after_the_end_and_reads_ahead():
    net = gr.load_spec(SPECS / "reverse_elman.yaml")
    dag = gr.unroll(net, steps=2)
    assert dag.nodes["h@+1"]["t"] == 2 and dag.nodes["h@+1"]["state_key"] == "h@+1"
    assert ("h@+1", "h@1") in dag.edges and ("h@1", "h@0") in dag.edges
    text = render.to_text(dag)
    assert "t = 2 (after the last step)" in text
    assert "h@+1 = boundary state 'h@+1' (zeros)" in text
    dot = render.to_dot(dag)
    assert '"h@+1" [label="h@+1\nafter the end [32]"' in dot  # a line break in the label
    line = next(x for x in dot.splitlines() if x.strip().startswith('"h@+1" -> "h@1"'))
    assert "@+1" in line and "arrowhead=empty" in line
    assert "(anti-causal: from the last step down)" in render.summarize(net)


def test_delay_zero_cycles_stay_errors_and_mixed_signs_name_the_cycle():
    with pytest.raises(gr.SpecError, match="algebraic loop h -> g -> h"):
        gr.load_spec("nodes: {h: 2, g: 2}\nedges: [h -> g, g -> h, h -> h @-1]\noutputs: [g]\n")
    with pytest.raises(gr.SpecError) as info:
        gr.load_spec("inputs: {x: 1}\nnodes: {h: {size: 2, leak: 0.5}}\n"
                     "edges: [x -> h, h -> h @-1]\noutputs: [h]\n")
    message = str(info.value)
    assert "h -> h @-1" in message and "its leak" in message and "\n" not in message


def test_the_compiled_loop_reads_its_direction(monkeypatch):
    net, model = _model(SPECS / "reverse_elman.yaml", "numpy")
    params = model.init_params(seed=3)
    inputs, state = random_case(net, steps=6, batch=2)
    want, _ = reference_forward(net, params, inputs, state)
    assert_close(model.forward(params, inputs, state)[0], want)
    plan_loop = host_loop.plan_loop
    monkeypatch.setattr(host_loop, "plan_loop", lambda *a: dataclasses.replace(
        plan_loop(*a), reverse=False))
    monkeypatch.setattr(numpy_backend, "plan_loop", host_loop.plan_loop)
    flipped = gr.compile(net, backend="numpy", dtype="float64")
    try:
        got, _ = flipped.forward(params, inputs, state)
    except DataError:  # the unwritten rows it reads held garbage that overflowed: wrong too
        return
    assert np.abs(got["y"] - want["y"]).max() > 1e-3  # run forward, it reads unwritten rows
