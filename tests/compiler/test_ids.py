"""Ops' uids: made by lowering and the passes, kept through them, and what backend caches key
on; kinds are string enums."""

from __future__ import annotations

import pytest

import graphrnn as gr
from graphrnn.backends import host_ops, native
from graphrnn.compiler import passes
from graphrnn.compiler.ir import (
    BufferRole,
    Combine,
    Fused,
    MatMul,
    NodeUpdate,
    StageKind,
    TermKind,
    all_ops,
    format_program,
    next_uid,
)
from graphrnn.compiler.lower import lower
from tests.helpers import SPECS, random_case
from tests.helpers.cuda_host import CXX, HostBackend


def test_lowering_numbers_the_ops_in_order():
    prog = lower(gr.load_spec(SPECS / "lstm.yaml"))
    assert [op.uid for op in all_ops(prog)] == list(range(len(all_ops(prog))))
    assert next_uid(prog) == len(all_ops(prog))


def test_the_passes_keep_the_nodes_uids_and_number_what_they_make():
    net = gr.load_spec(SPECS / "lstm.yaml")
    lowered = lower(net)
    prog = passes.schedule(net)
    before = {op.node: op.uid for op in all_ops(lowered) if isinstance(op, NodeUpdate)}
    after = {op.node: op.uid for op in all_ops(prog) if isinstance(op, NodeUpdate)}
    assert after == before
    made = [op.uid for op in all_ops(prog) if isinstance(op, Fused)
            or (isinstance(op, MatMul) and len(op.blocks) > 1)]
    assert len(made) == 3 and min(made) >= next_uid(lowered)  # 2 merged GEMMs, 1 Fused op
    gemms = [{op.out: op.uid for op in all_ops(p) if isinstance(op, MatMul)}
             for p in (lowered, prog)]
    assert gemms[1]["h->y"] == gemms[0]["h->y"]  # its bias folded in, still the same op


def test_kinds_are_string_enums_and_print_as_their_values():
    prog = passes.schedule(gr.load_spec(SPECS / "lstm.yaml"))
    assert [s.kind for s in prog.stages] == [StageKind.BATCHED, StageKind.LOOP,
                                             StageKind.BATCHED]
    assert [s.kind for s in prog.stages] == ["batched", "loop", "batched"]
    update = next(op for op in all_ops(prog) if isinstance(op, NodeUpdate) and op.node == "fc")
    assert update.combine is Combine.PRODUCT and update.terms[0].kind is TermKind.IDENTITY
    assert prog.buffers["x"].role is BufferRole.INPUT
    text = format_program(prog)
    assert "x                input  size=" in text and "StageKind" not in text
    assert "fc = identity(product: identity(f) identity(c@-1))" in text


def test_an_op_equal_but_numbered_otherwise_is_another_op():
    prog = passes.schedule(gr.load_spec(SPECS / "elman.yaml"))
    op = all_ops(prog)[0]
    assert op != type(op)(**{**op.__dict__, "uid": op.uid + 100})


def _inputs(net):
    return random_case(net, steps=4, batch=2, with_state=False)[0]


@pytest.mark.skipif(not native.available(), reason="no C compiler")
def test_a_rescheduled_program_reuses_the_generated_kernels(monkeypatch):
    net = gr.load_spec(SPECS / "lstm.yaml")
    model = gr.compile(net, dtype="float64")
    params, inputs = model.init_params(0), _inputs(net)
    model.forward(params, inputs)
    calls = []
    real = host_ops.generate
    monkeypatch.setattr(host_ops, "generate", lambda *a, **k: calls.append(a) or real(*a, **k))
    old = model.program
    model.program = passes.schedule(net, model.backend.passes())  # equal, other objects
    assert model.program == old and all_ops(model.program)[-1] is not all_ops(old)[-1]
    plans = len(model.backend._plans)
    model.forward(params, inputs)
    assert calls == [] and len(model.backend._plans) == plans


@pytest.mark.skipif(CXX is None, reason="no host C++ compiler")
def test_a_rescheduled_program_replays_the_captured_loop():
    net = gr.load_spec(SPECS / "elman.yaml")
    model = gr.compile(net, dtype="float32")
    model.backend = HostBackend()
    params, inputs = model.init_params(0), _inputs(net)
    for _ in range(3):
        model.forward(params, inputs)
    assert model.backend.captures == 1
    old = model.program
    model.program = gr.compile(net).program
    assert model.program == old
    replays = model.backend.replays
    model.forward(params, inputs)
    assert model.backend.captures == 1 and model.backend.replays == replays + 1
