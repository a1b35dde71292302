"""The NumPy backend's compiled element-wise kernels (C from kernels/host.h and the generator)
and its buffer pool: accuracy, what the kernels keep in memory, fallback, caching."""

from __future__ import annotations

import ctypes
import os
import subprocess
import sys

import numpy as np
import pytest

import graphrnn as gr
from graphrnn.backends import native
from graphrnn.backends.codegen import expand_includes, generate
from graphrnn.backends.host_loop import CompiledLoopKernel
from graphrnn.backends.host_ops import FusedHostKernel, read_elsewhere
from graphrnn.compiler.ir import Fused, NodeUpdate
from graphrnn.ops.fused import FusedKernel
from tests.helpers import ROOT, SPECS, random_case

needs_cc = pytest.mark.skipif(not native.available(), reason=f"no compiled kernels here: "
                              f"{native.why_not()}")
EPS32 = float(np.finfo(np.float32).eps)


@pytest.fixture(scope="module")
def host_math():
    """kernels/host.h's float exp, tanh and sigmoid over arrays, compiled as the backend does."""
    lib = native.build('#include "host.h"\n' + "".join(
        f"void t_{f}(int n, const float* x, float* y) {{ for (int i = 0; i < n; ++i) "
        f"y[i] = gr_{f}f(x[i]); }}\n" for f in ("exp", "tanh", "sigmoid")))

    def call(name: str, x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x, dtype=np.float32)
        y = np.empty_like(x)
        fn = getattr(lib, f"t_{name}")
        fn.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p]
        fn(x.size, x.ctypes.data, y.ctypes.data)
        return y
    return call


def sweep() -> np.ndarray:
    """Float32 points across the ranges that matter, tiny magnitudes of both signs included."""
    tiny = np.logspace(-30, 2, 4001)
    return np.concatenate([np.linspace(-100, 100, 400_001), tiny, -tiny,
                           [0.0, -0.0, 0.25, -0.25, 9.0, -9.0]]).astype(np.float32)


def ulps(got, want, lo=-np.inf, hi=np.inf, x=None) -> float:
    """Largest error in units of float32 epsilon, relative to ``|want|``, where lo <= x <= hi."""
    keep = (x >= lo) & (x <= hi)
    want = want[keep]
    rel = np.abs(got[keep] - want) / np.maximum(np.abs(want), np.finfo(np.float32).tiny)
    return float(rel.max() / EPS32)


@needs_cc
def test_float_exp_tanh_sigmoid_are_accurate(host_math):
    x = sweep()
    x64 = x.astype(np.float64)
    assert ulps(host_math("exp", x), np.exp(x64), -87, 88, x) <= 1.5
    assert ulps(host_math("tanh", x), np.tanh(x64), x=x) <= 8
    assert ulps(host_math("sigmoid", x), 1 / (1 + np.exp(-x64)), -87, np.inf, x) <= 2
    # past the saturation points the results are tiny and absolutely right
    assert np.abs(host_math("sigmoid", x[x < -87])).max() < 1e-37
    assert np.all(np.abs(host_math("tanh", x[np.abs(x) >= 9])) == 1)


@needs_cc
def test_special_values(host_math):
    x = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0], np.float32)
    for name in ("exp", "tanh", "sigmoid"):
        assert np.isnan(host_math(name, x)[0]), name
    assert host_math("tanh", x)[1:3].tolist() == [1.0, -1.0]
    assert host_math("sigmoid", x)[1] == 1.0 and 0 <= host_math("sigmoid", x)[2] < 1e-37
    assert host_math("tanh", x)[3:].tolist() == [0.0, 0.0]
    assert host_math("exp", x)[3:].tolist() == [1.0, 1.0]


@needs_cc
@pytest.mark.parametrize("spec", sorted(p.stem for p in SPECS.glob("*.yaml")))
def test_every_generated_kernel_compiles_without_warnings(spec, tmp_path):
    prog = gr.compile(gr.load_spec(SPECS / f"{spec}.yaml")).program
    inputs = frozenset(prog.inputs)
    for dtype in ("float32", "float64"):
        for _, op in prog.ops():
            if isinstance(op, Fused) or (isinstance(op, NodeUpdate) and not op.own
                                         and op.activation != "softmax"):
                src = generate(op, prog.buffers, dtype, inputs, target="host",
                               keep=read_elsewhere(prog, op))
                path = tmp_path / f"{src.forward}.c"
                path.write_text(expand_includes(src.source))
                done = subprocess.run(["cc", "-std=c11", "-Wall", "-Wextra", "-Werror",
                                       "-fsyntax-only", str(path)],
                                      capture_output=True, text=True)
                assert done.returncode == 0, done.stderr


def lstm_kernel_source():
    prog = gr.compile(gr.load_spec(SPECS / "lstm.yaml")).program
    (fused,) = [op for _, op in prog.ops() if isinstance(op, Fused)]
    src = generate(fused, prog.buffers, "float32", frozenset(prog.inputs), target="host",
                   keep=read_elsewhere(prog, fused))
    return prog, fused, src


def test_the_lstm_kernel_keeps_only_what_is_read_later():
    prog, fused, src = lstm_kernel_source()
    forward = src.source.split(src.backward)[0]
    written = {a.name for i, a in enumerate(src.forward_args)
               if any(line.strip().startswith(f"p{i}[") for line in forward.splitlines())}
    # gate values (their own derivatives), the cell and output (history, other ops), tanh(c)
    assert written == {"i", "f", "g", "o", "c", "tc", "h"}
    # the gate pre-activations' gradient is assigned into both GEMM buffers, never zeroed first
    assert src.overwrites == {b for b in prog.buffers if prog.buffers[b].role == "gemm"
                              and b != "h->y"}
    backward = src.source.split(src.backward)[1]
    assert backward.count("float g") >= 4  # same-step shares in registers (fc, ig, c, tc, ...)


def test_without_keep_every_value_goes_through_memory():
    prog = gr.compile(gr.load_spec(SPECS / "lstm.yaml")).program
    (fused,) = [op for _, op in prog.ops() if isinstance(op, Fused)]
    src = generate(fused, prog.buffers, "float32", frozenset(prog.inputs))
    names = {a.name for a in src.forward_args}
    assert {m.net for m in fused.ops} | {m.out for m in fused.ops} <= names
    assert not src.overwrites


@needs_cc
def test_numpy_backend_runs_fused_chains_compiled():
    net = gr.load_spec(SPECS / "lstm.yaml")
    compiled, plain = gr.compile(net), gr.compile(net, backend="numpy-ufuncs")
    assert (compiled.backend.name, plain.backend.name) == ("numpy", "numpy-ufuncs")
    params = compiled.init_params(0)
    inputs, _ = random_case(net, steps=4, batch=3)
    (loop,) = compiled._run(params, inputs, None, None, 0).kernels[1][1]
    assert isinstance(loop, CompiledLoopKernel) and isinstance(loop.kernels[-1], FusedHostKernel)
    assert FusedKernel in [type(k) for _, ks in plain._run(params, inputs, None, None, 0)
                           .kernels for k in ks]
    a, b = compiled.forward(params, inputs)[0]["y"], plain.forward(params, inputs)[0]["y"]
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


@needs_cc
def test_a_compiler_error_is_reported_with_its_message():
    with pytest.raises(RuntimeError, match="could not compile a generated kernel"):
        native.build("this is not C;\n")


def run_python(code: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT), **env},
                          timeout=120)


PROBE = ("import graphrnn as gr, numpy as np; m = gr.compile(gr.load_spec('specs/gru.yaml')); "
         "p = m.init_params(0); print(m.backend.name, float(m.forward(p, {'x': np.ones((3, 2, "
         "8))})[0]['y'].sum()))")


def test_without_a_compiler_numpy_runs_alone():
    plain = run_python(PROBE, {"GRAPHRNN_NATIVE": "0"})
    missing = run_python(PROBE, {"GRAPHRNN_CC": "/nonexistent/cc", "GRAPHRNN_DEBUG": "1"})
    assert plain.returncode == missing.returncode == 0, plain.stderr + missing.stderr
    assert plain.stdout.split()[0] == missing.stdout.split()[0] == "numpy-ufuncs"
    assert "no C compiler (/nonexistent/cc)" in missing.stderr
    assert plain.stdout.split()[1] == missing.stdout.split()[1]


@needs_cc
def test_compiled_kernels_are_cached_across_processes(tmp_path):
    env = {"GRAPHRNN_CACHE": str(tmp_path), "GRAPHRNN_DEBUG": "1"}
    first, second = run_python(PROBE, env), run_python(PROBE, env)
    assert first.returncode == second.returncode == 0, first.stderr + second.stderr
    assert "compiled a CPU kernel" in first.stderr
    assert "compiled a CPU kernel" not in second.stderr
    assert first.stdout == second.stdout
    assert list((tmp_path / "native").glob("*.so"))
    assert not [p for p in (tmp_path / "native").iterdir() if p.name.startswith(".")]


@needs_cc
def test_a_damaged_cache_entry_is_rebuilt(tmp_path):
    env = {"GRAPHRNN_CACHE": str(tmp_path), "GRAPHRNN_DEBUG": "1"}
    first = run_python(PROBE, env)
    for lib in (tmp_path / "native").glob("*.so"):
        lib.write_bytes(lib.read_bytes()[:100])  # truncated, as a full disk might leave it
    again = run_python(PROBE, env)
    assert again.returncode == 0, again.stderr
    assert "rebuilding" in again.stderr and again.stdout == first.stdout


def test_the_cache_drops_its_least_recently_used_libraries(tmp_path):
    for i in range(10):
        lib = tmp_path / f"{i}.so"
        lib.write_bytes(b"x")
        os.utime(lib, (i, i))
    native._trim(tmp_path, most=8)
    assert sorted(int(p.stem) for p in tmp_path.glob("*.so")) == [4, 5, 6, 7, 8, 9]
    native._trim(tmp_path, most=8)
    assert len(list(tmp_path.glob("*.so"))) == 6


@pytest.mark.parametrize("backend", ["numpy", "numpy-ufuncs"])
def test_results_never_alias_the_buffer_pool(backend):
    net = gr.load_spec(SPECS / "lstm.yaml")
    model = gr.compile(net, backend=backend)
    params = model.init_params(0)
    x1, _ = random_case(net, steps=5, batch=2, seed=1)
    x2, _ = random_case(net, steps=5, batch=2, seed=2)
    out1, state1 = model.forward(params, x1)
    kept = ({k: v.copy() for k, v in out1.items()}, {k: v.copy() for k, v in state1.items()})
    model.forward(params, x2)
    for got, want in zip((out1, state1), kept, strict=True):
        for k in want:
            np.testing.assert_array_equal(got[k], want[k])
    # the next run of the same shape uses the same memory
    runs = [model._run(params, x1, None, None, 0) for _ in range(2)]
    assert all(runs[0].arrays[n] is runs[1].arrays[n] for n in runs[0].arrays)


def test_the_pool_drops_least_recently_used_arrays_past_its_limit():
    from graphrnn.backends.base import BufferPool
    pool = BufferPool(np, limit=3 * 8 * 100)
    a = pool.get(("buf", "a"), (100,), np.float64)
    assert pool.get(("buf", "a"), (100,), np.float64) is a
    for name in "bcd":
        pool.get(("buf", name), (100,), np.float64)
    assert not pool.has(("buf", "a"), (100,), np.float64) and pool.bytes <= pool.limit
    assert pool.get(("buf", "a"), (100,), np.float64) is not a
