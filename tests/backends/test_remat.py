"""Gradient checkpointing (``gradients(remat=K)``) and gradients in dead buffers' memory: the
same gradients as plain BPTT on every bundled spec and backend, and rows really dropped."""

from __future__ import annotations

import numpy as np
import pytest

import graphrnn as gr
from graphrnn.backends import recompute
from graphrnn.errors import DataError
from graphrnn.executor import dead_after_forward
from tests.helpers import SPECS, random_case
from tests.helpers.cuda_host import CXX, HostBackend

STEPS, BATCH = 9, 2
SPEC_NAMES = sorted(p.stem for p in SPECS.glob("*.yaml"))
BACKENDS = ["numpy", "numpy-ufuncs", "cuda-host"]


def _model(spec: str, backend: str):
    net = gr.load_spec(SPECS / f"{spec}.yaml")
    if backend == "cuda-host":
        if CXX is None:
            pytest.skip("no host C++ compiler")
        model = gr.compile(net, backend="numpy", dtype="float64")
        model.backend = HostBackend(graphs=True)
        return model
    return gr.compile(net, backend=backend, dtype="float64")


def _case(model):
    net = model.net
    inputs, state = random_case(net, steps=STEPS, batch=BATCH, seed=3)
    rng = np.random.default_rng(4)
    targets = {o: rng.normal(size=(STEPS, BATCH, net.size(o))) for o in net.outputs}
    return inputs, state, targets, None if net.inputs else STEPS


def _close(got: dict, want: dict) -> None:
    assert got.keys() == want.keys()
    for k in want:
        np.testing.assert_allclose(got[k], want[k], rtol=1e-12, atol=1e-12, err_msg=k)


def _poison(array) -> None:
    """What a release gives back, made loud: every released element NaN (a real release drops
    whole pages only, which these small cases never fill), so a read of a row after its
    release shows in the gradients."""
    array[...] = np.nan


def _poisoned_case(spec, backend, monkeypatch):
    """The model of ``spec``, its params and a case, released rows poisoned (:func:`_poison`);
    skipped for networks without gradients (asynchronous updates)."""
    monkeypatch.setattr(recompute, "release_rows", _poison)
    model = _model(spec, backend)
    if any(n.update == "asynchronous" for n in model.net.nodes.values()):
        pytest.skip("no gradients through asynchronous updates")
    return model, model.init_params(0), _case(model)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("spec", SPEC_NAMES)
def test_checkpointed_gradients_equal_plain_ones(spec, backend, monkeypatch):
    model, params, (inputs, state, targets, steps) = _poisoned_case(spec, backend, monkeypatch)
    loss, want = model.gradients(params, inputs, targets, state=state, steps=steps, seed=1)
    for k in (1, 2, 4, STEPS, 3 * STEPS):
        got_loss, got = model.gradients(params, inputs, targets, state=state, steps=steps,
                                        seed=1, remat=k)
        assert got_loss == pytest.approx(loss, rel=1e-12)
        _close(got, want)
    # and plain calls after checkpointed ones on the same model are still right
    _close(model.gradients(params, inputs, targets, state=state, steps=steps, seed=1)[1], want)


def test_checkpointing_drops_the_loop_rows_between_checkpoints():
    """After a checkpointed call the LSTM loop's own rows (the cell c, the gates) are given
    back (read as zeros) but for the checkpoint rows; a plain call keeps them."""
    model = gr.compile(gr.load_spec(SPECS / "lstm.yaml"), dtype="float64")
    params = model.init_params(0)
    steps = 1024  # a row is 256 bytes: whole pages of rows between the checkpoints
    rng = np.random.default_rng(0)
    x = rng.normal(size=(steps, 2, model.net.size("x")))
    y = rng.normal(size=(steps, 2, model.net.size("y")))
    for remat, dropped in ((None, False), (steps // 2, True)):
        model.gradients(params, {"x": x}, {"y": y}, remat=remat)
        run = model._runs[next(reversed(model._runs))]
        cells = run.rows("c", 0, steps)
        interior = cells[32: steps // 2 - 32]  # rows of whole pages (edges share pages)
        assert (not interior.any()) == dropped
        assert cells[steps - 1].any()  # the final state's row is kept
        # the hoisted input projection is recomputed per window too, and the gradients of
        # it and of the recurrent projection given back once a window's weight gradients are in
        gemms = [n for n, b in model.program.buffers.items() if b.role == "gemm"
                 and n.startswith(("x@", "h@"))]
        assert len(gemms) == 2
        for name in gemms:
            for rows in (run.rows(name, 0, steps), run.rows(name, 0, steps, grad=True)):
                assert (not rows[32: steps // 2 - 32].any()) == dropped, name


def test_gradient_arrays_lie_in_dead_gemm_buffers():
    """The LSTM's input and recurrent projections are dead after the forward pass: BPTT's
    gradients are made in their memory, so no extra memory is taken for them."""
    model = gr.compile(gr.load_spec(SPECS / "lstm.yaml"), dtype="float64")
    params = model.init_params(0)
    x = np.random.default_rng(0).normal(size=(30, 2, model.net.size("x")))
    y = np.zeros((30, 2, model.net.size("y")))
    model.gradients(params, {"x": x}, {"y": y})
    run = model._runs[next(reversed(model._runs))]
    donors = dead_after_forward(model.program)
    assert {b.role for n, b in model.program.buffers.items() if n in donors} == {"gemm"}
    lent = [g for g in run.grads.values()
            if any(np.shares_memory(g, run.arrays[d]) for d in donors)]
    assert len(lent) >= 2


@pytest.mark.parametrize("bad", [0, -3, 2.5, True, "4"])
def test_remat_must_be_a_positive_whole_number(bad):
    model = gr.compile(gr.load_spec(SPECS / "elman.yaml"))
    params = model.init_params(0)
    x = np.zeros((3, 1, model.net.size("x")), dtype=np.float32)
    y = np.zeros((3, 1, model.net.size("y")), dtype=np.float32)
    with pytest.raises(DataError, match="remat"):
        model.gradients(params, {"x": x}, {"y": y}, remat=bad)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("spec", SPEC_NAMES)
def test_checkpointed_gradients_with_lengths_equal_plain_ones(spec, backend, monkeypatch):
    """remat with lengths runs masked (each row's final state kept): the loss, gradients and
    final states of lengths without remat (packed), where the network reads nothing ahead."""
    model, params, (inputs, state, targets, steps) = _poisoned_case(spec, backend, monkeypatch)
    lengths = np.array([STEPS, 4])
    call = dict(state=state, steps=steps, seed=1, lengths=lengths, return_state=True)
    if any(model.net.future.values()):
        with pytest.raises(DataError, match="remat= with lengths= does not take a network"):
            model.gradients(params, inputs, targets, remat=2, **call)
        return
    loss, want, want_final = model.gradients(params, inputs, targets, **call)
    for k in (1, 2, 3, 3 * STEPS):
        got_loss, got, final = model.gradients(params, inputs, targets, remat=k, **call)
        assert got_loss == pytest.approx(loss, rel=1e-12)
        _close(got, want)
        _close(final, want_final)
