"""Packed calls in one Run: a batch sorted by length, each compiled loop computing only the
rows still going at each step (``LengthPlan.rows``), in one call per loop and pass whatever
its direction; equal to the masked run of every row and to the reference."""

from __future__ import annotations

import numpy as np
import pytest

import graphrnn as gr
from graphrnn import config
from graphrnn.backends import host_loop
from graphrnn.frontend.reference import reference_forward
from tests.helpers import SPECS, assert_close, random_case

STEPS, BATCH = 23, 9
LENGTHS = np.array([5, 23, 1, 17, 9, 9, 2, 14, 11])
SPECS_ROWS = ["bilstm", "bigru", "reverse_elman", "lstm", "gru", "narx", "ln_lstm"]


def _case(spec: str):
    net = gr.load_spec(SPECS / f"{spec}.yaml")
    model = gr.compile(net, dtype="float64")
    params = model.init_params(seed=2)
    inputs, state = random_case(net, steps=STEPS, batch=BATCH, seed=4)
    rng = np.random.default_rng(5)
    targets = {o: rng.normal(size=(STEPS, BATCH, net.size(o))) for o in net.outputs}
    return net, model, params, inputs, state, targets


def _calls(model, params, inputs, state, targets, masked: bool):
    """Forward, gradients with the final state, and a tape's gradients (inputs and states
    included, from output and final-state seeds); ``masked``: every row of every step."""
    model._in_packed = masked
    try:
        out, final = model.forward(params, inputs, state, lengths=LENGTHS)
        loss, grads, fin2 = model.gradients(params, inputs, targets, state=state,
                                            lengths=LENGTHS, return_state=True)
        _, final3, tape = model.forward(params, inputs, state, record=True, lengths=LENGTHS)
        rng = np.random.default_rng(7)
        seeds = {o: rng.normal(size=v.shape) for o, v in targets.items()}
        tape_grads = tape.backward(seeds, {k: rng.normal(size=v.shape)
                                           for k, v in final3.items()})
        tape.release()
    finally:
        model._in_packed = False
    return out, final, loss, grads, fin2, {k: v for k, v in tape_grads.items() if v is not None}


def _assert_same_calls(got, want, rtol: float = 1e-11):
    """Two :func:`_calls` results alike: the arrays within ``rtol`` (same keys), the loss
    within 1e-12."""
    for g, w in zip(got, want, strict=True):
        if isinstance(w, dict):
            assert_close(g, w, rtol=rtol)
        else:
            assert g == pytest.approx(w, rel=1e-12)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("spec", SPECS_ROWS)
def test_one_packed_call_equals_the_masked_run(spec, threads, monkeypatch):
    monkeypatch.setattr(config, "LOOP_THREADS", threads)
    net, model, params, inputs, state, targets = _case(spec)
    assert model._packing(inputs, LENGTHS, None)[2] == [(0, STEPS, BATCH, BATCH)]
    packed = _calls(model, params, inputs, state, targets, masked=False)
    masked = _calls(model, params, inputs, state, targets, masked=True)
    _assert_same_calls(packed, masked)
    ref_out, ref_final = reference_forward(net, params, inputs, state, lengths=LENGTHS)
    assert_close(packed[0], ref_out)
    assert_close(packed[1], ref_final)
    for y in packed[0].values():  # exact zeros past each end
        assert not np.any(y[np.arange(STEPS)[:, None] >= LENGTHS[None, :]])


def _counting(monkeypatch):
    """Count the compiled loops' calls and keep the row counts each forward call got."""
    calls = {"forward": 0, "backward": 0, "rows": []}
    forward, backward = host_loop.CompiledLoopKernel.forward, host_loop.CompiledLoopKernel.backward

    def counted_forward(self, lo, hi):
        calls["forward"] += 1
        forward(self, lo, hi)
        calls["rows"].append(np.ctypeslib.as_array(
            (host_loop.ctypes.c_int * self.run.steps).from_address(self.forward_loop.rows)
        ).copy() if self.forward_loop.rows else None)

    def counted_backward(self, lo, hi):
        calls["backward"] += 1
        backward(self, lo, hi)

    monkeypatch.setattr(host_loop.CompiledLoopKernel, "forward", counted_forward)
    monkeypatch.setattr(host_loop.CompiledLoopKernel, "backward", counted_backward)
    return calls


@pytest.mark.parametrize("spec, loops", [("bilstm", 2), ("lstm", 1)])
def test_each_loop_runs_in_one_call_on_the_going_rows(spec, loops, monkeypatch):
    """A bidirectional net with lengths: one compiled-loop call per loop and pass (not one per
    distinct length, nor per chunk), each step computing the rows of the sequences going."""
    net, model, params, inputs, state, targets = _case(spec)
    model.gradients(params, inputs, targets, state=state, lengths=LENGTHS)  # Runs made
    calls = _counting(monkeypatch)
    model.gradients(params, inputs, targets, state=state, lengths=LENGTHS)
    assert (calls["forward"], calls["backward"]) == (loops, loops)
    going = (np.sort(LENGTHS)[::-1][None, :] > np.arange(STEPS)[:, None]).sum(axis=1)
    for rows in calls["rows"]:
        np.testing.assert_array_equal(rows, going)


def test_threads_refused_run_the_going_rows_step_by_step(monkeypatch):
    """Where the system starts no threads the loop runs step by step in Python, computing the
    same rows: the same results as the masked run."""
    monkeypatch.setattr(host_loop, "_library", lambda dtype: lambda *args: -1)
    net, model, params, inputs, state, targets = _case("bilstm")
    packed = _calls(model, params, inputs, state, targets, masked=False)
    masked = _calls(model, params, inputs, state, targets, masked=True)
    _assert_same_calls(packed, masked)


@pytest.mark.parametrize("spec", ["bilstm", "lstm", "ln_lstm"])
def test_padding_left_alone_reads_as_zeros(spec, monkeypatch):
    """Run buffers that start as NaN (memory never written): the rows past each end, which
    the loops never compute, still read as zeros (outputs, gradients)."""
    net, model, params, inputs, state, targets = _case(spec)
    want = _calls(model, params, inputs, state, targets, masked=False)
    net2 = gr.load_spec(SPECS / f"{spec}.yaml")
    poisoned = gr.compile(net2, dtype="float64")
    backend = poisoned.backend
    monkeypatch.setattr(backend, "empty", lambda key, shape, dtype: np.full(shape, np.nan,
                                                                             dtype=dtype))
    got = _calls(poisoned, params, inputs, state, targets, masked=False)
    _assert_same_calls(got, want, rtol=1e-12)


@pytest.mark.parametrize("spec, threads", [("bilstm", 1), ("lstm", 1), ("lstm", 0), ("narx", 1),
                                           ("narx", 0), ("ln_lstm", 1), ("ln_lstm", 0)])
def test_products_of_the_going_rows_only_equal_the_masked_run(spec, threads, monkeypatch):
    """Batched products (input projections, read-outs, their gradients and weight gradients)
    over the going rows only, gathered (``GOING_MIN_WIDTH`` lowered so these small specs take
    that path), in the packed call or (no loop threads) its chunks: the masked run's
    results, from buffers that start as NaN (the rows a product skips read as zeros)."""
    from graphrnn import packed
    from graphrnn.ops import matmul

    net, model, params, inputs, state, targets = _case(spec)
    want = _calls(model, params, inputs, state, targets, masked=True)
    monkeypatch.setattr(matmul, "GOING_MIN_WIDTH", 1)
    monkeypatch.setattr(config, "LOOP_THREADS", threads)
    monkeypatch.setattr(packed, "MIN_SAVED_ROW_STEPS", 0)  # chunks, however small the saving
    gathered, going_rows = [], matmul.going_rows

    def counted(run, op, lo, hi):
        index = going_rows(run, op, lo, hi)
        gathered.append(index is not None)
        return index

    monkeypatch.setattr(matmul, "going_rows", counted)
    poisoned = gr.compile(gr.load_spec(SPECS / f"{spec}.yaml"), dtype="float64")
    monkeypatch.setattr(poisoned.backend, "empty", lambda key, shape, dtype: np.full(
        shape, np.nan, dtype=dtype))
    got = _calls(poisoned, params, inputs, state, targets, masked=False)
    assert any(gathered)
    _assert_same_calls(got, want)


@pytest.mark.parametrize("lengths, one", [(LENGTHS, True), (np.full(BATCH, STEPS - 1), False)])
def test_a_packed_call_of_few_rows_compiles_loops_over_the_macs_cap(lengths, one, monkeypatch):
    """Where ``LOOP_MAX_MACS`` (OpenBLAS's threads spin) keeps a loop stepped from Python, a
    call whose going rows are at most ``UNCAPPED_SHARE`` of all still runs packed in one
    compiled call (equal to the masked run); one of more rows keeps the cap (masked here)."""
    from graphrnn import packed

    monkeypatch.setattr(config, "LOOP_THREADS", 1)
    monkeypatch.setattr(config, "LOOP_MAX_MACS", 1)
    net, model, params, inputs, state, targets = _case("bilstm")
    assert (lengths.mean() / STEPS <= packed.UNCAPPED_SHARE) == one
    calls = _counting(monkeypatch)
    got = model.gradients(params, inputs, targets, state=state, lengths=lengths)
    assert calls["forward"] == (2 if one else 0) and config.LOOP_MAX_MACS == 1
    model._in_packed = True  # masked: every row, the loops stepped under the cap
    try:
        want = model.gradients(params, inputs, targets, state=state, lengths=lengths)
    finally:
        model._in_packed = False
    assert calls["forward"] == (2 if one else 0)
    assert got[0] == pytest.approx(want[0], rel=1e-12)
    assert_close(got[1], want[1], rtol=1e-11)
