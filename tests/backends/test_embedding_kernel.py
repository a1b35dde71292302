"""The embedding's CUDA kernels (``kernels/embedding.cu``) without a GPU: the NumPy twins
against the generic Gather kernel, the host-compiled kernels against the twins bit for bit,
and token specs on the host-run GPU backend against NumPy."""

from __future__ import annotations

import numpy as np
import pytest

import graphrnn as gr
from graphrnn.backends import cupy_backend
from graphrnn.backends import kernels_numpy as twins
from graphrnn.backends.cuda_ops import GatherCudaKernel, hand_written, sorted_segments
from graphrnn.ops.gather import scatter_add_rows
from tests.helpers import SPECS, assert_same_loss_and_gradients, random_case
from tests.helpers.cuda_host import CXX, HostBackend, c_arg, compile_host

needs_cxx = pytest.mark.skipif(CXX is None, reason="no host C++ compiler")
SFX = {"float32": "f32", "float64": "f64"}

PLAIN = """
inputs: {tok: {vocab: 9}, x: 2}
nodes:
  e: {size: 5, bias: false}
  h: {size: 4, activation: tanh}
  y: 3
edges:
  - {from: tok, to: e, weight: embedding, scale: 0.5}
  - e -> h
  - x -> h
  - h -> h @1
  - h -> y
outputs: [y]
"""


def _case(rng, rows=23, vocab=9, cols=5, dtype="float64"):
    """Ids with repeats and absent tokens (only 0..vocab-3 drawn), a table, row gradients."""
    ids = rng.integers(0, vocab - 2, rows)
    table = rng.normal(size=(vocab, cols)).astype(dtype)
    dout = rng.normal(size=(rows, cols)).astype(dtype)
    return ids, table, dout


def test_twins_match_the_generic_gather_and_an_add_at_oracle():
    ids, table, dout = _case(np.random.default_rng(0))
    np.testing.assert_array_equal(twins.gather_rows(ids, table, 0.5), 0.5 * table[ids])
    want = np.zeros_like(table)
    np.add.at(want, ids, dout)
    got = twins.scatter_add_sorted(ids, dout, table.shape[0], scale=0.5)
    np.testing.assert_allclose(got, 0.5 * want, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(got, 0.5 * scatter_add_rows(np, table.shape, ids, dout,
                                                           table.dtype), rtol=1e-12, atol=1e-14)
    assert not got[-2:].any()  # tokens that never occur: zero rows


def test_sorted_segments_bound_each_tokens_rows_in_a_stable_order():
    ids = np.array([3, 1, 3, 0, 1, 3], np.int64)
    order, starts = sorted_segments(np, ids)
    assert order.dtype == starts.dtype == np.int32
    np.testing.assert_array_equal(order, [3, 1, 4, 0, 2, 5])
    np.testing.assert_array_equal(starts, [0, 1, 3, 6])


def _launch(lib, name, blocks, args):
    fn, cargs = getattr(lib, name), [c_arg(a) for a in args]
    for b in range(blocks):  # one thread a block, as cuda_host launches hand-written kernels
        lib.gr_host_set(b, 0, 1, blocks)
        fn(*cargs)


@needs_cxx
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_embedding_kernels_on_the_host_match_their_twins_bit_for_bit(dtype):
    lib = compile_host(hand_written("embedding.cu"))
    rng = np.random.default_rng(1)
    ids, table, dout = _case(rng, dtype=dtype)
    rows, cols = dout.shape
    # ids and rows at an offset of 2 rows into larger buffers: the offsets are exercised
    tok = np.full(rows + 3, -1, dtype)
    tok[2:2 + rows] = ids
    out = np.zeros((rows + 3, cols), dtype)
    grid = 7  # fewer blocks than elements: the grid-stride loop covers the rest
    _launch(lib, f"gr_gather_forward_{SFX[dtype]}", grid,
            (tok, np.int64(2), table, out, np.int64(2 * cols), np.int64(rows), np.int32(cols),
             np.dtype(dtype).type(0.5)))
    np.testing.assert_array_equal(out[2:2 + rows], twins.gather_rows(ids, table, 0.5))
    assert not out[:2].any() and not out[2 + rows:].any()
    gbuf = np.zeros((rows + 3, cols), dtype)
    gbuf[2:2 + rows] = dout
    order, starts = sorted_segments(np, ids.astype(np.int64))
    grad = np.zeros_like(table)
    segments = starts.size - 1
    _launch(lib, f"gr_gather_grad_{SFX[dtype]}", segments,
            (tok, np.int64(2), gbuf, np.int64(2 * cols), order, starts, np.int32(segments),
             np.int32(cols), np.dtype(dtype).type(0.5), grad))
    np.testing.assert_array_equal(grad, twins.scatter_add_sorted(ids, dout, table.shape[0], 0.5))


@needs_cxx
@pytest.mark.parametrize("source", ["lstm_lm", "plain"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_token_specs_on_the_host_run_gpu_backend_use_the_kernel_and_match_numpy(source, dtype):
    net = gr.load_spec(SPECS / "lstm_lm.yaml" if source == "lstm_lm" else PLAIN)
    numpy_model = gr.compile(net, dtype=dtype)
    gpu = gr.compile(net, backend="numpy", dtype=dtype)
    gpu.backend = HostBackend()
    made = []
    original = GatherCudaKernel.__init__

    def spy(self, *args):
        original(self, *args)
        made.append(self)

    rtol = 1e-12 if dtype == "float64" else 2e-5
    params = numpy_model.init_params(3)
    inputs, state = random_case(net, steps=5, batch=3, seed=4)
    targets = {o: np.random.default_rng(5).normal(size=(5, 3, net.size(o))) for o in net.outputs}
    lw, gw = numpy_model.gradients(params, inputs, targets, state=state)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(GatherCudaKernel, "__init__", spy)
        lg, gg = gpu.gradients(params, inputs, targets, state=state)
    assert made, "the Gather op did not run on the hand-written kernel"
    assert gw.keys() == gg.keys()
    assert_same_loss_and_gradients((lg, gg), (lw, gw), rtol, atol=rtol * 10)



@pytest.mark.skipif(not cupy_backend.available(), reason="the CuPy backend needs a GPU")
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_lstm_lm_embedding_on_cupy_matches_numpy_and_repeats_bit_for_bit(dtype):
    """On a real GPU (benchmarks/gpu_check.sh): lstm_lm on CuPy against NumPy, and the table
    gradient (the sorted segmented sum, no atomics) the same bits in two runs."""
    net = gr.load_spec(SPECS / "lstm_lm.yaml")
    numpy_model, gpu = gr.compile(net, dtype=dtype), gr.compile(net, backend="cupy", dtype=dtype)
    params = numpy_model.init_params(7)
    inputs, _ = random_case(net, steps=40, batch=16, seed=8)  # 640 rows of 64 tokens: repeats
    labels = {"y": np.random.default_rng(9).integers(0, 64, (40, 16))}
    rtol = 1e-10 if dtype == "float64" else 2e-4
    want, _ = numpy_model.forward(params, inputs)
    got, _ = gpu.forward(params, inputs)
    np.testing.assert_allclose(got["y"], want["y"], rtol=rtol, atol=rtol)
    lw, gw = numpy_model.gradients(params, inputs, labels, loss="cross_entropy")
    lg, gg = gpu.gradients(params, inputs, labels, loss="cross_entropy")
    assert_same_loss_and_gradients((lg, gg), (lw, gw), rtol, atol=rtol * 10)
    again = gpu.gradients(params, inputs, labels, loss="cross_entropy")[1]
    np.testing.assert_array_equal(again["emb"], gg["emb"])
