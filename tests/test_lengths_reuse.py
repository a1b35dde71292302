"""Packed calls on batches of other lengths: chunks of repeating shapes (rows rounded up to
``ROW_QUANTUM``, cuts on a grid of the longest length), so the model's kept Runs serve them."""

from __future__ import annotations

import numpy as np

import graphrnn as gr
from graphrnn import packed
from tests.helpers import SPECS, assert_close, random_case


def test_chunks_of_batches_of_other_lengths_share_shapes():
    net = gr.load_spec(SPECS / "lstm.yaml")
    rng = np.random.default_rng(0)
    steps, batch = 100, 30
    shapes = set()
    for _ in range(20):
        lengths = rng.integers(1, steps + 1, batch)
        lengths[0] = steps
        _, chunks = packed.plan_chunks(net, lengths, steps)
        for lo, hi, n, m in chunks:
            assert n <= m <= batch and (m % packed.ROW_QUANTUM == 0 or m == batch)
            assert m - n < packed.ROW_QUANTUM and n == int((lengths > lo).sum())
            shapes.add((hi - lo, m))
    assert len(shapes) <= 30  # 20 batches x up to 6 chunks of their own would give ~100


def test_dropped_rows_change_nothing_and_runs_are_reused(monkeypatch):
    """Rows past ``n`` (sequences already ended, run one step and dropped) leave outputs,
    final state and gradients those of the masked run; a second batch of other lengths
    makes no new Runs where its chunks have the first one's shapes. (Chunks: what backends
    without per-step rows in their compiled loops run.)"""
    monkeypatch.setattr(packed, "ONE_CALL", False)
    net = gr.load_spec(SPECS / "gru.yaml")
    model = gr.compile(net, dtype="float64")
    params = model.init_params(seed=1)
    steps, batch = 72, 21
    inputs, state = random_case(net, steps=steps, batch=batch, seed=2)
    lengths = 2 * np.array([36, 35, 35, 30, 29, 28, 27, 20, 19, 19, 18, 13, 12, 11, 9, 7, 6, 5,
                            3, 2, 1])
    plan = model._packing(inputs, lengths, None)
    assert plan is not None and any(n < m for _, _, n, m in plan[2])
    rng = np.random.default_rng(5)
    targets = {o: rng.normal(size=(steps, batch, net.size(o))) for o in net.outputs}
    out_p, fin_p = model.forward(params, inputs, state, lengths=lengths)
    loss_p, grads_p = model.gradients(params, inputs, targets, state=state, lengths=lengths)
    model._in_packed = True
    try:
        out_m, fin_m = model.forward(params, inputs, state, lengths=lengths)
        loss_m, grads_m = model.gradients(params, inputs, targets, state=state, lengths=lengths)
    finally:
        model._in_packed = False
    assert_close(out_p, out_m, rtol=1e-10)
    assert_close(fin_p, fin_m, rtol=1e-10)
    assert abs(loss_p - loss_m) <= 1e-10 * abs(loss_m)
    assert_close(grads_p, grads_m, rtol=1e-10)
    def shapes(lengths):
        return [(hi - lo, m) for lo, hi, _, m in model._packing(inputs, lengths, None)[2]]

    for _ in range(50):  # lengths moved by a step or two where the chunk shapes stay
        other = np.clip(lengths + rng.integers(-2, 3, batch), 1, steps)
        if shapes(other) == shapes(lengths) and (other != lengths).sum() > batch // 2:
            break
    else:
        raise AssertionError("no batch of other lengths with the same chunk shapes")
    kept = len(model._runs)
    model.forward(params, inputs, state, lengths=other)
    assert len(model._runs) == kept
