"""The CuPy backend's logic without a GPU: its kernels (the same CUDA sources, compiled for the
host), GEMM calls, buffer pool and CUDA-graph replay, against the NumPy backend."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings

import graphrnn as gr
from graphrnn import config
from graphrnn.backends import cupy_backend, get_backend
from graphrnn.backends.codegen import expand_includes, generate
from graphrnn.compiler.ir import Fused
from tests.helpers import ROOT, SPECS, assert_same_loss_and_gradients, random_case
from tests.helpers.cuda_host import CXX, HostBackend
from tests.helpers.strategies import valid_networks

pytestmark = pytest.mark.skipif(CXX is None, reason="no host C++ compiler")


def host_model(net, dtype, graphs=True):
    model = gr.compile(net, backend="numpy", dtype=dtype)
    model.backend = HostBackend(graphs=graphs)
    return model


def compare(net, dtype, calls=3, seed=0):
    """Forward and gradients on the host-run GPU backend against NumPy, ``calls`` times."""
    numpy_model, gpu = gr.compile(net, dtype=dtype), host_model(net, dtype)
    rtol = 1e-12 if dtype == "float64" else 2e-5
    differentiable = not any(n.update == "asynchronous" for n in net.nodes.values())
    for call in range(calls):
        params = numpy_model.init_params(seed + call % 2)  # new parameters: a replay must see them
        inputs, state = random_case(net, steps=4, batch=2, seed=call)
        steps = None if net.inputs else 4
        want, want_state = numpy_model.forward(params, inputs, state, steps=steps, seed=call)
        got, got_state = gpu.forward(params, inputs, state, steps=steps, seed=call)
        for k in want:
            np.testing.assert_allclose(got[k], want[k], rtol=rtol, atol=rtol)
        for k in want_state:
            np.testing.assert_allclose(got_state[k], want_state[k], rtol=rtol, atol=rtol)
        if differentiable:
            targets = {o: np.random.default_rng(call).normal(size=(4, 2, net.size(o)))
                       for o in net.outputs}
            kw = dict(state=state, steps=steps, seed=call)
            assert_same_loss_and_gradients(gpu.gradients(params, inputs, targets, **kw),
                                           numpy_model.gradients(params, inputs, targets, **kw),
                                           rtol, atol=rtol * 10)
    return gpu.backend


@pytest.mark.parametrize("spec", sorted(p.stem for p in SPECS.glob("*.yaml")))
def test_every_spec_on_the_host_run_gpu_backend_matches_numpy(spec):
    backend = compare(gr.load_spec(SPECS / f"{spec}.yaml"), "float64")
    assert backend.captures >= 1 and backend.replays > backend.captures


@pytest.mark.parametrize("spec", ["lstm", "gru", "modern_hopfield", "boltzmann"])
def test_float32_on_the_host_run_gpu_backend_matches_numpy(spec):
    compare(gr.load_spec(SPECS / f"{spec}.yaml"), "float32", calls=2)


@settings(max_examples=int(os.environ.get("GRAPHRNN_HOST_EXAMPLES", "6")), deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(valid_networks())
def test_random_networks_on_the_host_run_gpu_backend_match_numpy(text):
    compare(gr.load_spec(text), "float64", calls=2)


def test_a_loop_is_launched_then_captured_then_replayed():
    net = gr.load_spec(SPECS / "elman.yaml")
    model = host_model(net, "float32")
    params = model.init_params(0)
    x = {"x": np.ones((6, 3, 8))}
    counts = []
    for _ in range(3):
        model.forward(params, x)
        counts.append((model.backend.captures, model.backend.replays))
    assert counts == [(0, 0), (1, 1), (1, 2)]
    model.forward(params, {"x": np.ones((6, 5, 8))})  # another batch: new buffers, no replay
    assert (model.backend.captures, model.backend.replays) == (1, 2)


def test_without_graphs_results_are_the_same():
    net = gr.load_spec(SPECS / "lstm.yaml")
    params = gr.compile(net).init_params(0)
    x = {"x": np.random.default_rng(0).normal(size=(5, 2, 8))}
    a = [host_model(net, "float64", graphs=g) for g in (True, False)]
    for _ in range(3):
        outs = [m.forward(params, x)[0]["y"] for m in a]
        np.testing.assert_array_equal(outs[0], outs[1])
    assert a[1].backend.captures == 0


def test_run_buffers_keep_their_addresses_across_runs():
    net = gr.load_spec(SPECS / "gru.yaml")
    model = host_model(net, "float32")
    params = model.init_params(0)
    runs = [model._run(params, {"x": np.zeros((4, 2, 8))}, None, None, 0) for _ in range(2)]
    for name in runs[0].arrays:
        assert runs[0].arrays[name] is runs[1].arrays[name]


def test_lstm_cell_is_one_generated_kernel_each_way(capsys, monkeypatch):
    net = gr.load_spec(SPECS / "lstm.yaml")
    prog = gr.compile(net).program
    (fused,) = [op for _, op in prog.ops() if isinstance(op, Fused)]
    monkeypatch.setattr(config, "DEBUG", 4)
    src = generate(fused, prog.buffers, "float32", frozenset({"x"}))
    printed = capsys.readouterr().err
    assert "generated CUDA source" in printed and src.forward in printed
    assert src.source.count("__global__") == 2 and src.backward in src.source
    assert "const int t0" in src.source and "float*" in src.source
    for node in ("i", "f", "g", "o", "fc", "ig", "c", "tc", "h"):
        assert f"// {node} = " in src.source and f"// d {node} = " in src.source
    full = expand_includes(src.source)
    assert '#include "' not in full and full.count("#define GRAPHRNN_ACTIVATIONS_CUH") == 1


def test_importing_graphrnn_never_imports_cupy():
    code = ("import sys, graphrnn as gr; "
            "m = gr.compile(gr.load_spec(sys.argv[1]), backend='numpy'); "
            "assert 'cupy' not in sys.modules, 'cupy was imported'")
    done = subprocess.run([sys.executable, "-c", code, str(SPECS / "elman.yaml")],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


@pytest.mark.skipif(cupy_backend.available(), reason="CuPy and a GPU are available here")
def test_without_a_gpu_auto_falls_back_and_cupy_says_why(capsys, monkeypatch):
    monkeypatch.setattr(config, "DEBUG", 1)
    assert get_backend("auto").name == "numpy"
    assert "backend: numpy (" in capsys.readouterr().err
    with pytest.raises(ValueError, match="backend 'cupy' is not usable here: .*"):
        gr.compile(gr.load_spec(SPECS / "elman.yaml"), backend="cupy")
    assert cupy_backend.why_not()


_FAKE_CUBLAS = r"""
void* gr_stream; void* gr_handle;
int cublasSetStream_v2(void* h, void* s) { gr_handle = h; gr_stream = s; return 0; }
#define GEMM(NAME, T) \
int NAME(void* h, int ta, int tb, int m, int n, int k, const T* alpha, const T* A, int lda, \
         const T* B, int ldb, const T* beta, T* C, int ldc) { \
  for (int i = 0; i < m; ++i) for (int j = 0; j < n; ++j) { T s = 0; \
    for (int p = 0; p < k; ++p) \
      s += (ta ? A[p + i * lda] : A[i + p * lda]) * (tb ? B[j + p * ldb] : B[p + j * ldb]); \
    C[i + j * ldc] = *alpha * s + (*beta == 0 ? 0 : *beta * C[i + j * ldc]); } \
  return 0; }
GEMM(cublasSgemm_v2, float)
GEMM(cublasDgemm_v2, double)
"""

_DIRECT_GEMM_CHECK = """
import ctypes, sys, types
import numpy as np
lib = ctypes.CDLL(sys.argv[1])
from graphrnn.backends import cupy_backend as cb
class Dev:
    def __init__(self, a):
        self.a, self.data = a, types.SimpleNamespace(ptr=a.ctypes.data)
        self.itemsize, self.dtype = a.itemsize, a.dtype
stream = types.SimpleNamespace(ptr=77)
be = cb.CupyBackend.__new__(cb.CupyBackend)
be._setup()
be._direct, be._handle = cb._direct_cublas(), 1234
be.xp = types.SimpleNamespace(cuda=types.SimpleNamespace(get_current_stream=lambda: stream))
assert be._direct is not None
for dt in (np.float32, np.float64):
    rng = np.random.default_rng(0)
    w, x, y = rng.normal(size=(5, 3)).astype(dt), rng.normal(size=(4, 2, 3)).astype(dt), \\
        np.zeros((4, 2, 5), dt)
    be.gemm("T", "N", 5, 4, 3, (Dev(w), 0), 3, (Dev(x), np.int64(6)), 3, 0.0,
            (Dev(y), np.int64(10)), 5)
    np.testing.assert_allclose(y[1:3], x[1:3] @ w.T, rtol=1e-5)
    assert not y[0].any() and not y[3].any()
assert ctypes.c_void_p.in_dll(lib, "gr_stream").value == 77
assert ctypes.c_void_p.in_dll(lib, "gr_handle").value == 1234
"""


def test_gemm_calls_the_loaded_cublas_directly(tmp_path):
    """The GEMM path that a stream capture can record: cuBLAS through ctypes (a stand-in
    libcublas here, in a subprocess so no other test sees it), rows addressed by offsets."""
    lib = tmp_path / "libcublas.so.99"
    (tmp_path / "fake.c").write_text(_FAKE_CUBLAS)
    done = subprocess.run([CXX, "-x", "c", "-shared", "-fPIC", "-O1", "-o", str(lib),
                           str(tmp_path / "fake.c")], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    done = subprocess.run([sys.executable, "-c", _DIRECT_GEMM_CHECK, str(lib)],
                          capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr
