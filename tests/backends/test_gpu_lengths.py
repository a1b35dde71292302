"""``lengths=`` on the CuPy backend's logic without a GPU (its CUDA kernels compiled for the
host, CUDA-graph capture and replay): against the reference run of each sequence alone."""

from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import graphrnn as gr
from graphrnn.frontend.reference import reference_forward
from tests.helpers import SPECS, assert_close, random_case
from tests.helpers.cuda_host import CXX, HostBackend
from tests.helpers.strategies import valid_networks

pytestmark = pytest.mark.skipif(CXX is None, reason="no host C++ compiler")

LENGTHS = np.array([5, 2, 1, 4])


@pytest.mark.parametrize("spec", ["bilstm", "bigru", "reverse_elman", "lstm", "narx"])
def test_lengths_on_the_host_run_gpu_backend(spec):
    net = gr.load_spec(SPECS / f"{spec}.yaml")
    numpy_model = gr.compile(net, dtype="float64")
    gpu = gr.compile(net, dtype="float64")
    gpu.backend = HostBackend(graphs=True)
    for call in range(3):  # launched, captured, replayed
        params = numpy_model.init_params(call % 2)
        inputs, state = random_case(net, steps=5, batch=4, seed=call)
        got, got_state = gpu.forward(params, inputs, state, lengths=LENGTHS)
        want, want_state = reference_forward(net, params, inputs, state, lengths=LENGTHS)
        assert_close(got, want)
        assert_close(got_state, want_state)
        targets = {o: np.random.default_rng(call).normal(size=(5, 4, net.size(o)))
                   for o in net.outputs}
        lg, gg = gpu.gradients(params, inputs, targets, state=state, lengths=LENGTHS)
        lw, gw = numpy_model.gradients(params, inputs, targets, state=state, lengths=LENGTHS)
        assert lg == pytest.approx(lw, rel=1e-12)
        assert_close(gg, gw)


@settings(max_examples=int(os.environ.get("GRAPHRNN_HOST_EXAMPLES", "6")), deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(valid_networks(), st.lists(st.integers(1, 4), min_size=3, max_size=3))
def test_random_networks_with_lengths_on_the_host_run_gpu_backend(text, lengths):
    net = gr.load_spec(text)
    lengths = np.array(lengths)
    gpu = gr.compile(net, dtype="float64")
    gpu.backend = HostBackend(graphs=True)
    params = gpu.init_params(1)
    inputs, state = random_case(net, steps=4, batch=3, seed=2)
    steps = None if net.inputs else 4
    for _ in range(2):
        got, got_state = gpu.forward(params, inputs, state, steps=steps, lengths=lengths)
    want, want_state = reference_forward(net, params, inputs, state, steps=steps,
                                         lengths=lengths)
    assert_close(got, want, rtol=1e-9)
    assert_close(got_state, want_state, rtol=1e-9)


@pytest.mark.parametrize("spec", ["lstm", "narx"])
def test_chunks_products_of_the_going_rows_on_the_host_run_gpu_backend(spec, monkeypatch):
    """Packed chunks on the CuPy backend whose batched products gather the going rows
    (``GOING_MIN_WIDTH`` lowered for these small specs, chunks however small the saving):
    the reference's outputs and NumPy's gradients."""
    from graphrnn import packed
    from graphrnn.ops import matmul

    monkeypatch.setattr(matmul, "GOING_MIN_WIDTH", 1)
    monkeypatch.setattr(packed, "MIN_SAVED_ROW_STEPS", 0)
    gathered, going_rows = [], matmul.going_rows
    monkeypatch.setattr(matmul, "going_rows", lambda *a: gathered.append(going_rows(*a))
                        or gathered[-1])
    net = gr.load_spec(SPECS / f"{spec}.yaml")
    numpy_model, gpu = gr.compile(net, dtype="float64"), gr.compile(net, dtype="float64")
    gpu.backend = HostBackend(graphs=True)
    params = numpy_model.init_params(0)
    lengths = np.array([9, 2, 7, 4, 9, 1])
    inputs, state = random_case(net, steps=9, batch=6, seed=1)
    targets = {o: np.random.default_rng(1).normal(size=(9, 6, net.size(o))) for o in net.outputs}
    got, got_state = gpu.forward(params, inputs, state, lengths=lengths)
    want, want_state = reference_forward(net, params, inputs, state, lengths=lengths)
    assert_close(got, want)
    assert_close(got_state, want_state)
    lg, gg = gpu.gradients(params, inputs, targets, state=state, lengths=lengths)
    assert any(g is not None for g in gathered)
    lw, gw = numpy_model.gradients(params, inputs, targets, state=state, lengths=lengths)
    assert lg == pytest.approx(lw, rel=1e-12)
    assert_close(gg, gw)
