"""NodeUpdate's VJP as one step list: what it says for representative ops, and that the NumPy
kernel and the C generator both follow it (an altered list changes both alike)."""

from __future__ import annotations

import numpy as np
import pytest

import graphrnn as gr
from graphrnn.backends import native
from graphrnn.backends.codegen import generate
from graphrnn.compiler.ir import Fused, NodeUpdate, Term
from graphrnn.ops import node_update_vjp
from graphrnn.ops.activations import REGISTRY
from graphrnn.ops.node_update_vjp import (
    LeakSplit,
    LocalGrad,
    RecomputeValue,
    ShareTarget,
    TermShare,
    vjp_steps,
)
from tests.helpers import random_case

needs_cc = pytest.mark.skipif(not native.available(), reason=f"no compiled kernels here: "
                              f"{native.why_not()}")

#: a leaky tanh node fed by a product gate (diagonal, scaled identity) and a delayed sum
SPEC = """
name: vjp_probe
inputs:
  x: 3
nodes:
  h: {size: 4, activation: tanh, leak: 0.5}
  p: {size: 4, activation: sigmoid}
  g: {size: 4, activation: identity, combine: product}
  y: {size: 2}
edges:
  - x -> h
  - h -> h @1
  - x -> p
  - p -> g diagonal
  - {from: h, to: g, weight: identity, scale: 0.5}
  - {from: g, to: g, delay: 2, weight: diagonal, scale: 2.0}
  - g -> y
outputs: [y]
"""


def _op(*terms, **keys) -> NodeUpdate:
    return NodeUpdate("n", "n", "n.net", tuple(terms), **keys)


def test_a_leaky_node_splits_the_gradient_then_recomputes_its_value():
    op = _op(Term("full", "mm", cols=(4, 8)), leak=0.25, activation="tanh")
    assert vjp_steps(op) == (
        LeakSplit(0.25), RecomputeValue(), LocalGrad("tanh", "value"),
        TermShare(0, "one", 1.0, None, (), ShareTarget("mm", 0, (4, 8))))


def test_a_leaky_node_whose_derivative_reads_nothing_recomputes_nothing():
    op = _op(Term("identity", "x"), leak=0.5, activation="identity")
    steps = vjp_steps(op)
    assert steps[:2] == (LeakSplit(0.5), LocalGrad("identity", "none"))
    assert not node_update_vjp.reads_net(steps)


def test_a_plain_node_starts_from_its_local_derivative():
    op = _op(Term("identity", "x"), activation="relu")
    assert vjp_steps(op)[0] == LocalGrad("relu", REGISTRY["relu"].grad_reads)


def test_product_shares_take_the_other_terms_and_each_terms_factor():
    op = _op(Term("diagonal", "a", param="w", scale=3.0), Term("identity", "b", scale=0.5),
             Term("identity", "c", delay=2), combine="product", activation="sigmoid")
    assert node_update_vjp.shares(vjp_steps(op)) == [
        TermShare(0, "weight", 3.0, "w", (1, 2), ShareTarget("a", 0)),
        TermShare(1, "scale", 0.5, None, (0, 2), ShareTarget("b", 0)),
        TermShare(2, "one", 1.0, None, (0, 1), ShareTarget("c", 2))]


def test_a_sum_gives_every_term_the_same_share_and_a_lone_product_term_too():
    terms = (Term("diagonal", "a", param="w"), Term("identity", "b", delay=1))
    for combine in ("sum", "product"):
        op = _op(*terms[:1 if combine == "product" else 2], combine=combine)
        assert all(s.product_of == () for s in node_update_vjp.shares(vjp_steps(op)))
    op = _op(*terms)
    assert [s.target for s in node_update_vjp.shares(vjp_steps(op))] == [
        ShareTarget("a", 0), ShareTarget("b", 1)]


def _gradients(backend: str) -> dict:
    net = gr.load_spec(SPEC)
    model = gr.compile(net, backend=backend, dtype="float64")
    params = model.init_params(3)
    inputs, state = random_case(net, steps=5, batch=2, seed=4)
    targets = {"y": np.random.default_rng(5).normal(size=(5, 2, 2))}
    return model.gradients(params, inputs, targets, state=state)[1]


def _sources() -> list[str]:
    prog = gr.compile(gr.load_spec(SPEC)).program
    inputs = frozenset(prog.inputs)
    return [generate(op, prog.buffers, "float64", inputs, target="host").source
            for _, op in prog.ops() if isinstance(op, Fused | NodeUpdate) and not op.own]


def _without_leak_split(real):
    return lambda op: tuple(s for s in real(op) if not isinstance(s, LeakSplit))


def test_the_numpy_kernel_follows_the_step_list(monkeypatch):
    want = _gradients("numpy-ufuncs")
    monkeypatch.setattr(node_update_vjp, "vjp_steps", _without_leak_split(vjp_steps))
    got = _gradients("numpy-ufuncs")
    assert any(not np.allclose(got[k], want[k], rtol=1e-6) for k in want)


def test_the_generated_c_follows_the_step_list(monkeypatch):
    want = _sources()
    assert any("g = g * 0.5;" in s for s in want)
    monkeypatch.setattr(node_update_vjp, "vjp_steps", _without_leak_split(vjp_steps))
    got = _sources()
    assert not any("g = g * 0.5;" in s for s in got) and got != want


@needs_cc
def test_an_altered_step_list_changes_both_backwards_alike(monkeypatch):
    """Dropping the leak split moves the NumPy and the compiled gradient the same way: neither
    has its own copy of the VJP."""
    honest = {b: _gradients(b) for b in ("numpy-ufuncs", "numpy")}
    monkeypatch.setattr(node_update_vjp, "vjp_steps", _without_leak_split(vjp_steps))
    altered = {b: _gradients(b) for b in ("numpy-ufuncs", "numpy")}
    for k in honest["numpy"]:
        scale = max(np.abs(altered["numpy-ufuncs"][k]).max(), 1e-12)
        assert np.abs(altered["numpy"][k] - altered["numpy-ufuncs"][k]).max() / scale <= 1e-10
    assert any(not np.allclose(altered[b][k], honest[b][k], rtol=1e-6)
               for b in honest for k in honest[b])
    for b in honest:
        assert any(not np.allclose(altered[b][k], honest[b][k], rtol=1e-6) for k in honest[b])
