"""Sequences of different lengths (``lengths=``) against their definition: each sequence run
alone over its own steps (the reference interpreter, and the model itself per sequence for
gradients); batch-major layout; the errors of a bad ``lengths``."""

from __future__ import annotations

import numpy as np
import pytest

import graphrnn as gr
from graphrnn import packed as packing
from graphrnn.errors import DataError
from graphrnn.frontend.reference import reference_forward
from tests.helpers import SPEC_FILES, SPECS, assert_close, random_case

T, B = 7, 5
LENGTHS = np.array([7, 3, 1, 5, 3])
BACKENDS = ["numpy", "numpy-ufuncs"]
#: networks without asynchronous units (the reference needs no special orders then)
SPECS_WITH_INPUTS = [p for p in SPEC_FILES if "hopfield" not in p.stem and "boltzmann"
                     not in p.stem]
FUTURE_INPUT = """
name: read_ahead
inputs: {x: 2}
nodes:
  a: {size: 3, activation: tanh}
  y: {size: 2, activation: identity}
edges:
  - x -> a @-2
  - a -> a @1
  - a -> y @-1
outputs: [y]
"""


def _case(net, seed=0):
    inputs, state = random_case(net, steps=T, batch=B, seed=seed)
    return inputs, state


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("path", SPECS_WITH_INPUTS, ids=lambda p: p.stem)
def test_forward_with_lengths_matches_each_sequence_alone(path, backend):
    net = gr.load_spec(path)
    model = gr.compile(net, backend=backend, dtype="float64")
    params = model.init_params(seed=1)
    inputs, state = _case(net)
    outputs, final = model.forward(params, inputs, state, lengths=LENGTHS, seed=3)
    ref_out, ref_final = reference_forward(net, params, inputs, state, lengths=LENGTHS, seed=3)
    assert_close(outputs, ref_out)
    assert_close(final, ref_final)
    for name, y in outputs.items():  # past the end: exactly zero
        assert not np.any(y[np.arange(T)[:, None] >= LENGTHS[None, :]]), name


@pytest.mark.parametrize("backend", BACKENDS)
def test_future_reads_of_inputs_and_batched_nodes_see_the_boundary(backend, tmp_path):
    path = tmp_path / "read_ahead.yaml"
    path.write_text(FUTURE_INPUT)
    net = gr.load_spec(path)
    model = gr.compile(net, backend=backend, dtype="float64")
    params = model.init_params(seed=4)
    inputs, state = _case(net, seed=5)
    outputs, final = model.forward(params, inputs, state, lengths=LENGTHS)
    ref_out, ref_final = reference_forward(net, params, inputs, state, lengths=LENGTHS)
    assert_close(outputs, ref_out)
    assert_close(final, ref_final)


def _alone_grads(model, params, inputs, state, seeds, state_seeds):
    """Tape gradients of each sequence run alone (no lengths), params summed over them."""
    total, per_row = {}, []
    for b, n in enumerate(LENGTHS):
        x = {k: v[:n, b:b + 1] for k, v in inputs.items()}
        s = {k: v[b:b + 1] for k, v in state.items()}
        _, _, tape = model.forward(params, x, s, record=True)
        g = tape.backward({k: v[:n, b:b + 1] for k, v in seeds.items()},
                          {k: v[b:b + 1] for k, v in state_seeds.items()})
        for k in params:
            total[k] = total.get(k, 0) + g[k]
        per_row.append(g)
    return total, per_row


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("spec", ["bilstm", "bigru", "reverse_elman", "lstm", "narx", "gru"])
def test_tape_gradients_with_lengths_equal_the_sum_over_sequences_alone(spec, backend):
    net = gr.load_spec(SPECS / f"{spec}.yaml")
    model = gr.compile(net, backend=backend, dtype="float64")
    params = model.init_params(seed=2)
    inputs, state = _case(net, seed=6)
    rng = np.random.default_rng(7)
    seeds = {o: rng.normal(size=(T, B, net.size(o))) for o in net.outputs}
    state_seeds = {k: rng.normal(size=v.shape) for k, v in state.items()}
    _, final, tape = model.forward(params, inputs, state, record=True, lengths=LENGTHS)
    grads = tape.backward(seeds, state_seeds)
    total, per_row = _alone_grads(model, params, inputs, state, seeds, state_seeds)
    assert_close({k: grads[k] for k in params}, total)
    for b, n in enumerate(LENGTHS):
        for key in state:
            assert_close({key: grads[f"state:{key}"][b]}, {key: per_row[b][f"state:{key}"][0]})
        for name in net.inputs:
            g = grads[f"input:{name}"][:, b]
            assert_close({name: g[:n]}, {name: per_row[b][f"input:{name}"][:, 0]})
            assert not np.any(g[n:])


@pytest.mark.parametrize("spec", ["bilstm", "lstm"])
def test_gradients_loss_skips_the_steps_past_the_end(spec):
    net = gr.load_spec(SPECS / f"{spec}.yaml")
    model = gr.compile(net, dtype="float64")
    params = model.init_params(seed=2)
    inputs, state = _case(net, seed=8)
    rng = np.random.default_rng(9)
    target = rng.normal(size=(T, B, net.size("y")))
    loss, grads = model.gradients(params, inputs, {"y": target}, state=state, lengths=LENGTHS)
    valid = np.arange(T)[:, None] < LENGTHS[None, :]
    ref_y, _ = reference_forward(net, params, inputs, state, lengths=LENGTHS)
    expected = ((ref_y["y"] - target) ** 2)[valid].mean()
    assert abs(loss - expected) <= 1e-10 * expected
    # padding targets do not matter
    target2 = np.where(valid[..., None], target, 1e3)
    loss2, grads2 = model.gradients(params, inputs, {"y": target2}, state=state,
                                    lengths=LENGTHS)
    assert loss2 == pytest.approx(loss, rel=1e-12)
    assert_close(grads2, grads)


def test_full_lengths_change_nothing():
    net = gr.load_spec(SPECS / "bilstm.yaml")
    model = gr.compile(net, dtype="float64")
    params = model.init_params(seed=2)
    inputs, state = _case(net)
    plain = model.forward(params, inputs, state)
    full = model.forward(params, inputs, state, lengths=np.full(B, T))
    for a, b in zip(plain, full, strict=True):
        assert_close(a, b, rtol=1e-14)


@pytest.mark.parametrize("spec", ["bilstm", "lstm"])
def test_batch_major_layout(spec):
    net = gr.load_spec(SPECS / f"{spec}.yaml")
    model = gr.compile(net, dtype="float64")
    params = model.init_params(seed=2)
    inputs, state = _case(net)
    out_t, fin_t = model.forward(params, inputs, state, lengths=LENGTHS)
    batch_major = {k: np.ascontiguousarray(v.swapaxes(0, 1)) for k, v in inputs.items()}
    out_b, fin_b = model.forward(params, batch_major, state, lengths=LENGTHS, layout="batch")
    assert out_b["y"].shape == (B, T, net.size("y"))
    assert_close({k: v.swapaxes(0, 1) for k, v in out_b.items()}, out_t, rtol=1e-14)
    assert_close(fin_b, fin_t, rtol=1e-14)
    target = np.random.default_rng(1).normal(size=(T, B, net.size("y")))
    loss_t, g_t = model.gradients(params, inputs, {"y": target}, lengths=LENGTHS)
    loss_b, g_b = model.gradients(params, batch_major, {"y": target.swapaxes(0, 1)},
                                  lengths=LENGTHS, layout="batch")
    assert loss_b == pytest.approx(loss_t, rel=1e-14)
    assert_close(g_b, g_t, rtol=1e-14)
    with pytest.raises(DataError, match="unknown layout"):
        model.forward(params, inputs, layout="sideways")
    batch_model = gr.compile(net, dtype="float64", layout="batch")  # the model's default
    out_c, _ = batch_model.forward(params, batch_major, state, lengths=LENGTHS)
    assert_close(out_c, out_b, rtol=1e-14)
    with pytest.raises(DataError, match="unknown layout"):
        gr.compile(net, layout="sideways")


@pytest.mark.parametrize(("lengths", "message"), [
    (np.array([7, 3, 0, 5, 3]), r"lengths\[2\] = 0 is outside 1\.\.7"),
    (np.array([7, 3, 8, 5, 3]), r"lengths\[2\] = 8 is outside 1\.\.7"),
    (np.array([7, 3, 3]), r"lengths has shape \(3,\), expected \(5,\)"),
    (np.full((5, 1), 3), r"lengths has shape \(5, 1\), expected \(5,\)"),
    (np.array([7, 3, 2.5, 5, 3]), "lengths must be integers"),
])
def test_bad_lengths_are_one_clear_error(lengths, message):
    net = gr.load_spec(SPECS / "lstm.yaml")
    model = gr.compile(net, dtype="float64")
    params = model.init_params(seed=2)
    inputs, _ = _case(net)
    with pytest.raises(DataError, match=message):
        model.forward(params, inputs, lengths=lengths)


@pytest.mark.parametrize("one_call", [True, False])
@pytest.mark.parametrize("spec", ["lstm", "gru", "narx", "jordan"])
def test_packed_chunks_equal_the_masked_run(spec, one_call, monkeypatch):
    """A causal network's call with lengths runs packed (fewer rows as sequences end: in one
    call whose compiled loops shrink the rows step by step, or in chunks): the same outputs,
    final state, loss and gradients as the masked run of every row."""
    monkeypatch.setattr(packing, "ONE_CALL", one_call)
    net = gr.load_spec(SPECS / f"{spec}.yaml")
    model = gr.compile(net, dtype="float64")
    params = model.init_params(seed=2)
    rng = np.random.default_rng(3)
    steps, batch = 40, 24
    inputs, state = random_case(net, steps=steps, batch=batch, seed=4)
    lengths = rng.integers(1, steps + 1, batch)
    plan = model._packing(inputs, lengths, None)
    if one_call:
        assert plan is not None and plan[2] == [(0, steps, batch, batch)]
    else:
        assert plan is not None and len(plan[2]) > 1 and plan[2][-1][2] < batch  # rows shrink
    targets = {o: rng.normal(size=(steps, batch, net.size(o))) for o in net.outputs}
    packed = (model.forward(params, inputs, state, lengths=lengths),
              model.gradients(params, inputs, targets, state=state, lengths=lengths,
                              return_state=True))
    model._in_packed = True  # the masked run
    try:
        masked = (model.forward(params, inputs, state, lengths=lengths),
                  model.gradients(params, inputs, targets, state=state, lengths=lengths,
                                  return_state=True))
    finally:
        model._in_packed = False
    (out_p, fin_p), (loss_p, grads_p, st_p) = packed
    (out_m, fin_m), (loss_m, grads_m, st_m) = masked
    assert_close(out_p, out_m, rtol=1e-12)
    assert_close(fin_p, fin_m, rtol=1e-12)
    assert loss_p == pytest.approx(loss_m, rel=1e-12)
    assert_close(grads_p, grads_m, rtol=1e-12)
    assert_close(st_p, st_m, rtol=1e-12)
    ref_out, ref_final = reference_forward(net, params, inputs, state, lengths=lengths)
    assert_close(out_p, ref_out)
    assert_close(fin_p, ref_final)


def test_networks_that_read_ahead_run_packed_in_one_call_only(monkeypatch):
    """A read-ahead network packs only where its loops shrink the rows step by step (a batch
    sorted by length: every anti-causal loop starts each sequence at its own end); never in
    chunks (a chunk would need the future of the next)."""
    net = gr.load_spec(SPECS / "bilstm.yaml")
    model = gr.compile(net, dtype="float64")
    inputs, _ = random_case(net, steps=40, batch=24)
    lengths = np.random.default_rng(0).integers(1, 41, 24)
    assert model._packing(inputs, lengths, None)[2] == [(0, 40, 24, 24)]
    monkeypatch.setattr(packing, "ONE_CALL", False)
    assert model._packing(inputs, lengths, None) is None
    assert gr.compile(net, backend="numpy-ufuncs")._packing(inputs, lengths, None) is None


@pytest.mark.parametrize("spec", ["lstm", "narx"])
def test_packed_tape_equals_the_masked_tape(spec):
    """A recorded call with lengths runs packed too: the tape's gradients (params, inputs,
    initial states, from output and final-state seeds) equal the masked tape's."""
    net = gr.load_spec(SPECS / f"{spec}.yaml")
    model = gr.compile(net, dtype="float64")
    params = model.init_params(seed=2)
    rng = np.random.default_rng(5)
    steps, batch = 40, 24
    inputs, state = random_case(net, steps=steps, batch=batch, seed=6)
    partial = dict(list(state.items())[:1])  # a caller's state may leave keys out
    lengths = rng.integers(1, steps + 1, batch)
    assert model._packing(inputs, lengths, None) is not None
    seeds = {o: rng.normal(size=(steps, batch, net.size(o))) for o in net.outputs}
    results = []
    for masked in (False, True):
        model._in_packed = masked
        try:
            out, final, tape = model.forward(params, inputs, partial, record=True,
                                             lengths=lengths)
            finals = {k: rng.normal(size=v.shape) for k, v in final.items()}
            results.append((out, final, tape.backward(seeds, finals), finals))
            tape.release()
        finally:
            model._in_packed = False
    (out_p, fin_p, g_p, seeds_p), (out_m, fin_m, _, _) = results
    assert_close(out_p, out_m, rtol=1e-12)
    assert_close(fin_p, fin_m, rtol=1e-12)
    model._in_packed = True  # the masked tape with the packed run's final-state seeds
    try:
        _, _, tape = model.forward(params, inputs, partial, record=True, lengths=lengths)
        g_m = tape.backward(seeds, seeds_p)
    finally:
        model._in_packed = False
    assert set(g_p) == set(g_m)
    assert_close({k: v for k, v in g_p.items() if v is not None},
                 {k: v for k, v in g_m.items() if v is not None}, rtol=1e-11)


def test_packed_gradients_with_a_batch_major_mask():
    net = gr.load_spec(SPECS / "lstm.yaml")
    model = gr.compile(net, dtype="float64")
    params = model.init_params(seed=2)
    rng = np.random.default_rng(8)
    steps, batch = 40, 24
    inputs, _ = random_case(net, steps=steps, batch=batch, seed=9)
    lengths = rng.integers(1, steps + 1, batch)
    target = rng.normal(size=(steps, batch, net.size("y")))
    mask = rng.random((steps, batch))
    assert model._packing(inputs, lengths, None) is not None
    loss_t, g_t = model.gradients(params, inputs, {"y": target}, mask=mask, lengths=lengths)
    loss_b, g_b = model.gradients(params, {k: v.swapaxes(0, 1) for k, v in inputs.items()},
                                  {"y": target.swapaxes(0, 1)}, mask=mask.T, lengths=lengths,
                                  layout="batch")
    assert loss_b == pytest.approx(loss_t, rel=1e-13)
    assert_close(g_b, g_t, rtol=1e-13)
