"""CUDA kernels without a GPU: nvcc compiles every source; NumPy twins match the reference;
the kernels, compiled for the host, match their twins."""

from __future__ import annotations

import os
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

import graphrnn as gr
from graphrnn.backends import kernels_numpy as twins
from graphrnn.backends.codegen import KERNEL_DIR, expand_includes, generate
from graphrnn.backends.cuda_ops import ACT_CODES
from graphrnn.compiler.fusion import elementwise
from graphrnn.compiler.ir import Fused, NodeUpdate
from graphrnn.frontend.reference import ACTIVATIONS, reference_forward
from graphrnn.noise import draw_noise
from graphrnn.ops.activations import local_grad
from tests.helpers import SPECS
from tests.helpers.cuda_host import CXX, compile_host

NVCC = shutil.which("nvcc") or next(
    (str(p) for p in [Path(os.environ.get("CUDA_HOME", "/usr/local/cuda")) / "bin" / "nvcc"]
     if p.exists()), None)
TARGETS = {"sm_90": ["-arch=sm_90", "-cubin"], "ptx_compute_80": ["-arch=compute_80", "-ptx"]}
#: compiled in both dtypes; EXTRA (softmax, asynchronous, leaky nodes) in float32 only
NETWORKS = ["lstm", "gru", "elman", "jordan", "locally_recurrent"]
EXTRA = ["modern_hopfield", "hopfield", "boltzmann", "hopfield_continuous", "narx"]
needs_nvcc = pytest.mark.skipif(NVCC is None, reason="nvcc is not installed")
needs_cxx = pytest.mark.skipif(CXX is None, reason="no host C++ compiler")


def generated_sources(prog, dtype: str) -> list[str]:
    """Every kernel the GPU backend generates for a Program (see cuda_ops.device_kernel)."""
    inputs = frozenset(n for n, b in prog.buffers.items() if b.role == "input")
    out = []
    for _, op in prog.ops():
        if isinstance(op, Fused):
            out.append(generate(op, prog.buffers, dtype, inputs))
        elif isinstance(op, NodeUpdate):
            plain = replace(op, own=(), activation="identity")
            if (op.own or op.activation == "softmax") and elementwise(plain, prog.buffers):
                out.append(generate(op, prog.buffers, dtype, inputs, net_only=True))
            elif elementwise(op, prog.buffers):
                out.append(generate(op, prog.buffers, dtype, inputs))
    return [s.source for s in out]


def nvcc(path: Path, target: str, out_dir: Path) -> subprocess.CompletedProcess:
    out = out_dir / f"{path.stem}.{target}"
    return subprocess.run([NVCC, *TARGETS[target], "--Werror", "all-warnings", "-I",
                           str(KERNEL_DIR), "-o", str(out), str(path)],
                          capture_output=True, text=True)


@needs_nvcc
def test_nvcc_compiles_every_kernel_for_sm90_and_portable_ptx(tmp_path):
    generated = []
    for name in NETWORKS + EXTRA:
        prog = gr.compile(gr.load_spec(SPECS / f"{name}.yaml")).program
        for dtype in ("float32", "float64") if name in NETWORKS else ("float32",):
            generated += generated_sources(prog, dtype)
    assert len(generated) >= 2 * len(NETWORKS) + len(EXTRA)
    all_generated = tmp_path / "generated.cu"
    # one file, one nvcc per target
    all_generated.write_text(expand_includes("\n".join(dict.fromkeys(generated))))
    sources = [all_generated]
    for path in sorted(KERNEL_DIR.glob("*.cu")):  # headers expanded: the activation tables
        sources.append(tmp_path / path.name)       # are generated, as the loader does
        sources[-1].write_text(expand_includes(path.read_text()))
    assert {p.name for p in sources} >= {"softmax.cu", "hopfield_async.cu"}
    jobs = [(p, t) for p in sources for t in TARGETS]
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda job: nvcc(*job, tmp_path), jobs))
    failed = [f"{p.name} [{t}]:\n{r.stderr}" for (p, t), r in zip(jobs, results, strict=True)
              if r.returncode != 0]
    assert not failed, "\n".join(failed)
    assert all((tmp_path / f"{p.stem}.{t}").stat().st_size > 0 for p, t in jobs)


@needs_nvcc
def test_nvcc_rejects_a_broken_kernel(tmp_path):
    """The compile test can fail: a syntax error in a kernel is caught without a GPU."""
    bad = tmp_path / "bad.cu"
    bad.write_text(expand_includes('#include "activations.cuh"\nextern "C" __global__ void '
                                   "k(float* x) { x[0] = gr_tanh(x[0]) }\n"))
    assert nvcc(bad, "sm_90", tmp_path).returncode != 0


def test_every_kernel_source_is_listed_in_cuda_ops():
    from graphrnn.backends import cuda_ops

    text = Path(cuda_ops.__file__).read_text()
    for path in KERNEL_DIR.glob("*.cu"):
        assert f'"{path.name}"' in text, f"{path.name} is never loaded"


# --- NumPy twins against the reference semantics ------------------------------------------

def test_softmax_twin_matches_the_reference_and_its_derivative():
    rng = np.random.default_rng(0)
    x, g = rng.normal(size=(5, 7)) * 4, rng.normal(size=(5, 7))
    y = twins.softmax_forward(x)
    np.testing.assert_allclose(y, ACTIVATIONS["softmax"](x, None, 1.0), rtol=1e-13)
    dx, dprev = twins.softmax_backward(x, y, g)
    want = np.empty_like(x)
    local_grad(np, "softmax", g, y, x, want)
    np.testing.assert_allclose(dx, want, rtol=1e-12, atol=1e-15)
    assert dprev is None
    eps, v = 1e-6, rng.normal(size=x.shape)
    numeric = ((twins.softmax_forward(x + eps * v) - twins.softmax_forward(x - eps * v)) * g
               ).sum() / (2 * eps)
    assert (dx * v).sum() == pytest.approx(numeric, rel=1e-7)


def test_leaky_softmax_twin_matches_finite_differences():
    rng = np.random.default_rng(1)
    x, prev, g = rng.normal(size=(3, 4)), rng.normal(size=(3, 4)), rng.normal(size=(3, 4))
    y = twins.softmax_forward(x, prev, leak=0.3)
    np.testing.assert_allclose(y, 0.3 * ACTIVATIONS["softmax"](x, None, 1) + 0.7 * prev)
    dx, dprev = twins.softmax_backward(x, y, g, leak=0.3)
    np.testing.assert_allclose(dprev, 0.7 * g)
    eps, v = 1e-6, rng.normal(size=x.shape)
    numeric = ((twins.softmax_forward(x + eps * v, prev, 0.3)
                - twins.softmax_forward(x - eps * v, prev, 0.3)) * g).sum() / (2 * eps)
    assert (dx * v).sum() == pytest.approx(numeric, rel=1e-7)


HOPFIELD = """
name: hop
nodes:
  s: {{size: 6, activation: {act}, update: asynchronous, {extra}}}
edges:
  - {{from: s, to: s, delay: 1, name: W}}
outputs: [s]
"""


@pytest.mark.parametrize("act,extra", [("sign", "bias: true"), ("bernoulli", "temperature: 0.7"),
                                       ("tanh", "leak: 0.4, bias: true"), ("step", "bias: false"),
                                       ("identity", "leak: 0.5")])
def test_hopfield_twin_matches_the_reference_interpreter(act, extra):
    net = gr.load_spec(HOPFIELD.format(act=act, extra=extra))
    params = gr.compile(net, dtype="float64").init_params(seed=3)
    rng = np.random.default_rng(4)
    s0 = rng.choice([-1.0, 1.0], size=(3, 6)) if act == "sign" else rng.normal(size=(3, 6))
    out, _ = reference_forward(net, params, {}, {"s": s0}, steps=2, seed=11)
    noise = draw_noise(net, 2, 3, 11)
    prev = s0
    for t in range(2):
        net_in = np.broadcast_to(params.get("s.bias", np.zeros(6)), (3, 6)).copy()
        u = noise.uniforms["s"][t] if "s" in noise.uniforms else None
        leak = net.nodes["s"].leak
        s, full = twins.hopfield_async_step(prev, net_in, params["W"], noise.orders["s"][t], act,
                                            u, leak, net.nodes["s"].temperature)
        np.testing.assert_allclose(s, out["s"][t], rtol=1e-12, atol=1e-12)
        prev = s
    assert np.isfinite(full).all()


# --- the CUDA kernels compiled for the host against their twins ----------------------------

def _run(lib, name, blocks, args):
    from tests.helpers.cuda_host import c_arg

    fn = getattr(lib, name)
    cargs = [c_arg(a) for a in args]
    for b in range(blocks):
        lib.gr_host_set(b, 0, 1, blocks)
        fn(*cargs)


@needs_cxx
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("leak", [None, 0.25])
def test_softmax_kernel_on_the_host_matches_its_twin(dtype, leak):
    lib = compile_host((KERNEL_DIR / "softmax.cu").read_text())
    real, sfx = np.dtype(dtype).type, {"float32": "f32", "float64": "f64"}[dtype]
    rng = np.random.default_rng(2)
    rows, cols = 4, 5  # x rows 1..4 of a 6-row buffer: offsets are exercised
    x = rng.normal(size=(6, cols)).astype(dtype)
    y, prev = np.zeros((6, cols), dtype), rng.normal(size=(6, cols)).astype(dtype)
    has = np.int32(leak is not None)
    lk, olk = real(leak or 1.0), real(1 - leak if leak else 0.0)
    _run(lib, f"gr_softmax_forward_{sfx}", rows,
         (x, np.int64(cols), y, np.int64(cols), prev, np.int64(cols), np.int32(rows),
          np.int32(cols), lk, olk, has))
    want = twins.softmax_forward(x[1:5], prev[1:5], leak)
    tol = 1e-6 if dtype == "float32" else 1e-14
    np.testing.assert_allclose(y[1:5], want, rtol=tol, atol=tol)
    assert not y[0].any() and not y[5].any()
    g = rng.normal(size=(6, cols)).astype(dtype)
    dx, gprev = np.zeros((6, cols), dtype), np.zeros((6, cols), dtype)
    _run(lib, f"gr_softmax_backward_{sfx}", rows,
         (x, np.int64(cols), y, np.int64(cols), g, np.int64(cols), dx, np.int64(cols), gprev,
          np.int64(0), np.int32(rows), np.int32(cols), lk, olk, has))
    want_dx, want_prev = twins.softmax_backward(x[1:5], y[1:5], g[1:5], leak)
    np.testing.assert_allclose(dx[1:5], want_dx, rtol=tol * 10, atol=tol)
    if leak is not None:
        np.testing.assert_allclose(gprev[:4], want_prev, rtol=tol)
    else:
        assert not gprev.any()


@needs_cxx
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("act,leak", [("sign", None), ("bernoulli", None), ("tanh", 0.3)])
def test_hopfield_kernel_on_the_host_matches_its_twin(dtype, act, leak):
    lib = compile_host((KERNEL_DIR / "hopfield_async.cu").read_text())
    real, sfx = np.dtype(dtype).type, {"float32": "f32", "float64": "f64"}[dtype]
    rng = np.random.default_rng(5)
    b, n, t = 3, 7, 2  # step t of a history buffer with one pad row
    out = rng.normal(size=(1 + 4, b, n)).astype(dtype)
    net = rng.normal(size=(4, b, n)).astype(dtype)
    w = rng.normal(size=(n, n)).astype(dtype)
    order = np.argsort(rng.random((4, n)), axis=1).astype(np.int32)
    u = rng.random((4, b, n)).astype(dtype)
    prev, net_in = out[t].copy(), net[t].copy()
    _run(lib, f"gr_hopfield_async_{sfx}", b,
         (out, np.int64(1 + t), net, np.int64(t), w, order, np.int64(t * n), u, np.int64(t),
          np.int32(act == "bernoulli"), np.int32(b), np.int32(n), np.int32(ACT_CODES[act]),
          real(1 / 0.8), real(leak or 1.0), real(1 - leak if leak else 0.0),
          np.int32(leak is not None), real(0.0), real(0.0)))
    want_s, want_net = twins.hopfield_async_step(
        prev, net_in, w, order[t], act, u[t] if act == "bernoulli" else None, leak, 0.8)
    tol = 1e-5 if dtype == "float32" else 1e-13
    np.testing.assert_allclose(out[1 + t], want_s, rtol=tol, atol=tol)
    np.testing.assert_allclose(net[t], want_net, rtol=tol, atol=tol)
