"""The element-wise fusion pass: what fuses, what does not, and that nothing changes."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings

import graphrnn as gr
from graphrnn import config
from graphrnn.compiler import passes
from graphrnn.compiler.checker import check_program
from graphrnn.compiler.fusion import _column_clash, elementwise, fuse_elementwise
from graphrnn.compiler.ir import Fused, MatMul, NodeUpdate, Term
from tests.helpers import SPECS, random_case
from tests.helpers.strategies import valid_networks

UNFUSED = [p for p in passes.PASSES if p is not fuse_elementwise]


def loop_ops(prog):
    return [op for s in prog.stages if s.kind == "loop" for op in s.ops]


def test_fusion_is_in_the_pipeline_last():
    assert passes.PASSES[-1] is fuse_elementwise


@pytest.mark.parametrize("name,members", [
    ("lstm", ["i", "f", "g", "o", "fc", "ig", "c", "tc", "h"]),
    ("gru", ["r", "z", "hn", "rhn", "n", "d", "zd", "h"])])
def test_lstm_and_gru_cells_are_one_gemm_and_one_fused_op_per_step(name, members):
    net = gr.load_spec(SPECS / f"{name}.yaml")
    prog = check_program(passes.schedule(net))
    ops = loop_ops(prog)
    assert [type(op) for op in ops] == [MatMul, Fused]
    assert [m.node for m in ops[1].ops] == members
    assert (ops[0].src, ops[0].delay) == ("h", 1)


def test_fusion_runs_every_pass_under_the_ir_checker():
    for spec in sorted(SPECS.glob("*.yaml")):
        prog = passes.schedule(gr.load_spec(spec))
        check_program(prog)
        for op in loop_ops(prog):
            if isinstance(op, Fused):
                assert len(op.ops) >= 2
                assert all(elementwise(m, prog.buffers) for m in op.ops)


def test_a_lone_node_and_batched_stages_stay_as_they_were():
    prog = passes.schedule(gr.load_spec(SPECS / "elman.yaml"))
    assert not any(isinstance(op, Fused) for _, op in prog.ops())
    unfused = passes.schedule(gr.load_spec(SPECS / "elman.yaml"), UNFUSED)
    assert prog.stages == unfused.stages


SPLIT = """
name: split
inputs: {x: 3}
nodes:
  a: {size: 4, activation: tanh}
  b: {size: 4, activation: sigmoid}
  s: {size: 4, activation: softmax}
  c: {size: 4, combine: product}
  d: {size: 4, leak: 0.5}
  w: {size: 2, activation: tanh}
  e: {size: 2}
edges:
  - x -> a
  - d -> a @1
  - a -> b identity
  - b -> s identity
  - s -> c identity
  - b -> c identity
  - c -> d diagonal
  - a -> d @2 identity
  - d -> w
  - w -> e identity
  - e -> w @1 diagonal
  - e -> a @1
outputs: [d, e]
"""


def test_runs_break_at_softmax_and_at_a_gemm():
    prog = check_program(passes.schedule(gr.load_spec(SPLIT)))
    shape = [([m.node for m in op.ops] if isinstance(op, Fused) else
              op.node if isinstance(op, NodeUpdate) else "gemm") for op in loop_ops(prog)]
    assert shape == ["gemm", "gemm", ["a", "b"], "s", ["c", "d"], "gemm", ["w", "e"]]


def test_overlapping_column_reads_do_not_fuse():
    a = NodeUpdate("a", "a", "a:net", (Term("full", "G", cols=(0, 4)),))
    b = NodeUpdate("b", "b", "b:net", (Term("full", "G", cols=(2, 6)),))
    c = NodeUpdate("c", "c", "c:net", (Term("full", "G", cols=(4, 8)),))
    assert _column_clash([a], b)
    assert not _column_clash([a], c)
    assert not _column_clash([a], a)


@pytest.fixture(autouse=True)
def step_by_step_loops(monkeypatch):
    """Fused and unfused runs are compared bit for bit: both loops then step through NumPy's
    BLAS (a compiled loop's own GEMM sums in another order)."""
    monkeypatch.setattr(config, "LOOP_THREADS", 0)


def _same(net, seed=0, dtype="float64"):
    fused = gr.compile(net, dtype=dtype)
    plain = gr.compile(net, dtype=dtype)
    plain.program = passes.schedule(net, UNFUSED)
    params = fused.init_params(seed)
    inputs, state = random_case(net, steps=5, batch=2, seed=seed)
    steps = None if net.inputs else 5
    a, fa = fused.forward(params, inputs, state, steps=steps, seed=seed)
    b, fb = plain.forward(params, inputs, state, steps=steps, seed=seed)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    for k in fa:
        np.testing.assert_array_equal(fa[k], fb[k])
    if any(n.update == "asynchronous" for n in net.nodes.values()):
        return
    targets = {o: np.random.default_rng(seed).normal(size=(5, 2, net.size(o)))
               for o in net.outputs}
    la, ga = fused.gradients(params, inputs, targets, state=state, steps=steps, seed=seed)
    lb, gb = plain.gradients(params, inputs, targets, state=state, steps=steps, seed=seed)
    assert la == lb
    for k in ga:
        np.testing.assert_array_equal(ga[k], gb[k])


@pytest.mark.parametrize("name", ["lstm", "gru", "lstm2", "mlp_loops"])
def test_fused_results_are_identical_to_unfused(name):
    _same(gr.load_spec(SPECS / f"{name}.yaml"))
    _same(gr.load_spec(SPECS / f"{name}.yaml"), dtype="float32")


def test_fused_split_network_is_identical_to_unfused():
    _same(gr.load_spec(SPLIT))


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(valid_networks())
def test_random_networks_fused_equal_unfused(text):
    _same(gr.load_spec(text))


def test_members_of_another_size_start_a_new_run():
    from graphrnn.compiler.ir import Buffer, Program, Stage

    buffers = {"G": Buffer("G", 6, 0, "gemm")}
    for name, size in (("a", 4), ("b", 4), ("c", 2), ("d", 2)):
        buffers[name] = Buffer(name, size, 1)
        buffers[f"{name}:net"] = Buffer(f"{name}:net", size, 0, "net")
    ops = (NodeUpdate("a", "a", "a:net", (Term("full", "G", cols=(0, 4)),)),
           NodeUpdate("b", "b", "b:net", (Term("identity", "a"),), activation="tanh"),
           NodeUpdate("c", "c", "c:net", (Term("full", "G", cols=(4, 6)),)),
           NodeUpdate("d", "d", "d:net", (Term("identity", "c"), Term("identity", "d", 1)),
                      combine="product"))
    prog = Program(buffers, (Stage("loop", ops),), (), ("b", "d"))
    fused = fuse_elementwise(prog).stages[0].ops
    assert [[m.node for m in op.ops] for op in fused] == [["a", "b"], ["c", "d"]]
