"""Each activation record on every path: reference, backends, CUDA, derivatives, torch, specs."""

from __future__ import annotations

import re
import shutil
import subprocess

import numpy as np
import pytest

import graphrnn as gr
from graphrnn.backends import activation_c, cuda_ops
from graphrnn.backends import kernels_numpy as twins
from graphrnn.backends.codegen import KERNEL_DIR, expand_includes, generate
from graphrnn.compiler.ir import Fused, NodeUpdate
from graphrnn.frontend.reference import reference_forward
from graphrnn.noise import draw_noise
from graphrnn.ops.activations import ELEMENTWISE, REGISTRY, STRAIGHT_THROUGH
from tests.helpers import assert_close, random_case
from tests.helpers.cuda_host import CXX, HostBackend, c_arg, compile_host

NAMES = tuple(REGISTRY)
SMOOTH = tuple(n for n in NAMES if n not in STRAIGHT_THROUGH)
#: values other than the defaults, so a test sees a node's own alpha/beta reach every path
KEYS = {"alpha": 0.3, "beta": 0.7}
NEW = ("leaky_relu", "thresholded_relu", "scaled_tanh", "hard_sigmoid", "elu", "softsign",
       "softplus", "affine")
NVCC = shutil.which("nvcc")

SPEC = """
name: one
inputs:
  x: 3
nodes:
  h: {{size: 4, activation: {act}{extra}}}
  y: 2
edges:
  - x -> h
  - h -> h @1
  - h -> y
outputs: [y, h]
"""


def spec(name: str, leak: float | None = None, **keys) -> str:
    keys = {k: v for k, v in KEYS.items() if k in REGISTRY[name].keys} if not keys else keys
    extra = "".join(f", {k}: {v}" for k, v in keys.items())
    extra += f", leak: {leak}" if leak is not None else ""
    return SPEC.format(act=name, extra=extra)


def own_params(name: str):
    """The record's scalars at :data:`KEYS` (those it takes)."""
    act = REGISTRY[name]
    return act.params(*(KEYS[k] if k in act.keys else None for k in ("alpha", "beta")))


# --- the record itself ------------------------------------------------------------------------

def test_new_activations_are_records_with_onnx_defaults():
    assert set(NEW) <= set(REGISTRY)
    defaults = {"leaky_relu": {"alpha": 0.01}, "thresholded_relu": {"alpha": 1.0},
                "hard_sigmoid": {"alpha": 0.2, "beta": 0.5}, "elu": {"alpha": 1.0},
                "softsign": {}, "softplus": {}}
    for name, keys in defaults.items():
        assert REGISTRY[name].keys == keys, name
    assert set(REGISTRY["scaled_tanh"].keys) == set(REGISTRY["affine"].keys) == {"alpha",
                                                                                 "beta"}


@pytest.mark.parametrize("name", [n for n in NAMES if n != "bernoulli"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_numpy_forward_matches_the_reference(name, dtype):
    x = (np.random.default_rng(0).normal(size=(5, 6)) * 3).astype(dtype)
    p = own_params(name)
    out = np.empty_like(x)
    REGISTRY[name].forward(np, x.copy(), out, p)
    assert out.dtype == x.dtype
    want = REGISTRY[name].reference(x.astype(float), p)
    np.testing.assert_allclose(out, want, rtol=1e-13 if dtype == "float64" else 2e-6,
                               atol=1e-15 if dtype == "float64" else 1e-6)
    inplace = x.copy()  # a node without a kept net activates in place
    REGISTRY[name].forward(np, inplace, inplace, p)
    np.testing.assert_array_equal(inplace, out)


@pytest.mark.parametrize("name", SMOOTH)
def test_derivative_matches_central_differences(name):
    act, p = REGISTRY[name], own_params(name)
    rng = np.random.default_rng(1)
    x = rng.normal(size=(4, 6)) * 2
    x[np.abs(x - (p.alpha if name == "thresholded_relu" else 0)) < 1e-3] += 0.01  # off kinks
    g, eps = rng.normal(size=x.shape), 1e-6

    def f(z):
        out = np.empty_like(z)
        act.forward(np, z, out, p)
        return out

    value, dnet = f(x), np.empty_like(x)
    net = x.copy() if act.grad_reads == "input" else np.full_like(x, np.nan)  # reads only it
    v = value if act.grad_reads == "value" else np.full_like(x, np.nan)
    act.grad(np, g, v, net, dnet, p)
    if name == "softmax":
        d = rng.normal(size=x.shape)
        numeric = ((f(x + eps * d) - f(x - eps * d)) * g).sum() / (2 * eps)
        assert (dnet * d).sum() == pytest.approx(numeric, rel=1e-7)
    else:
        numeric = (f(x + eps) - f(x - eps)) / (2 * eps) * g
        np.testing.assert_allclose(dnet, numeric, rtol=1e-7, atol=1e-8)


TORCH = {  # ONNX (alpha, beta) -> torch.nn.functional
    "leaky_relu": lambda F, x, a, b: F.leaky_relu(x, a),
    "elu": lambda F, x, a, b: F.elu(x, a),
    "softsign": lambda F, x, a, b: F.softsign(x),
    "softplus": lambda F, x, a, b: F.softplus(x),
    "thresholded_relu": lambda F, x, a, b: F.threshold(x, a, 0.0),
    "hard_sigmoid": lambda F, x, a, b: F.hardsigmoid(x),  # alpha 1/6, beta 1/2
    "tanh": lambda F, x, a, b: F.tanh(x),
    "sigmoid": lambda F, x, a, b: F.sigmoid(x),
    "relu": lambda F, x, a, b: F.relu(x),
    "softmax": lambda F, x, a, b: F.softmax(x, dim=-1),
}


@pytest.mark.parametrize("name", list(TORCH))
def test_forward_and_derivative_match_torch(name):
    torch = pytest.importorskip("torch")
    act = REGISTRY[name]
    p = act.params(1 / 6, 0.5) if name == "hard_sigmoid" else own_params(name)
    rng = np.random.default_rng(2)
    x, g = rng.normal(size=(5, 7)) * 4, rng.normal(size=(5, 7))
    xt = torch.tensor(x, requires_grad=True)
    yt = TORCH[name](torch.nn.functional, xt, p.alpha, p.beta)
    yt.backward(torch.tensor(g))
    out, dnet = np.empty_like(x), np.empty_like(x)
    act.forward(np, x.copy(), out, p)
    act.grad(np, g, out, x, dnet, p)
    np.testing.assert_allclose(out, yt.detach().numpy(), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(act.reference(x, p), yt.detach().numpy(), rtol=1e-12,
                               atol=1e-14)
    # torch's hardsigmoid backward multiplies by 1/6 rounded to float32
    rtol = 1e-7 if name == "hard_sigmoid" else 1e-12
    np.testing.assert_allclose(dnet, xt.grad.numpy(), rtol=rtol, atol=1e-14)


# --- through the compiler, on every backend ---------------------------------------------------

@pytest.mark.parametrize("leak", [None, 0.6])
@pytest.mark.parametrize("name", NAMES)
def test_compiled_matches_the_reference(name, leak, backend):
    net = gr.load_spec(spec(name, leak))
    model = gr.compile(net, backend=backend, dtype="float64")
    params = model.init_params(seed=1)
    inputs, state = random_case(net, steps=5, batch=3)
    out, final = model.forward(params, inputs, state=state, seed=7)
    ref_out, ref_final = reference_forward(net, params, inputs, state, seed=7)
    assert_close(out, ref_out)
    assert_close(final, ref_final)


@pytest.mark.parametrize("name", [n for n in NEW if REGISTRY[n].keys])
def test_node_keys_change_the_result(name):
    net, default = gr.load_spec(spec(name)), gr.load_spec(spec(name, alpha=2.5))
    params = gr.compile(net).init_params(seed=1)
    inputs, state = random_case(net, steps=3, batch=2)
    a = reference_forward(net, params, inputs, state)[0]["h"]
    b = reference_forward(default, params, inputs, state)[0]["h"]
    assert not np.allclose(a, b)


def _fd_check(model, params, inputs, targets, state, seed=0, eps=1e-6):
    loss, grads = model.gradients(params, inputs, targets, state=state)
    rng = np.random.default_rng(seed)
    for name in params:
        v = rng.normal(size=np.shape(params[name]))
        v /= np.linalg.norm(v)
        f = [model.gradients({**params, name: params[name] + s * eps * v}, inputs, targets,
                             state=state)[0] for s in (1, -1)]
        numeric, analytic = (f[0] - f[1]) / (2 * eps), float((grads[name] * v).sum())
        scale = max(abs(numeric), float(np.linalg.norm(grads[name])), 1e-8)
        assert abs(numeric - analytic) <= 1e-6 * scale, f"{name}: {analytic} vs {numeric}"


@pytest.mark.parametrize("leak", [None, 0.6])
@pytest.mark.parametrize("name", SMOOTH)
def test_gradients_match_finite_differences(name, leak, backend):
    net = gr.load_spec(spec(name, leak))
    model = gr.compile(net, backend=backend, dtype="float64")
    params = model.init_params(seed=3)
    inputs, state = random_case(net, steps=4, batch=2, seed=5)
    rng = np.random.default_rng(6)
    targets = {o: rng.normal(size=(4, 2, net.size(o))) for o in net.outputs}
    _fd_check(model, params, inputs, targets, state)


@pytest.mark.skipif(CXX is None, reason="no host C++ compiler")
@pytest.mark.parametrize("name", NAMES)
def test_gpu_backend_on_the_host_matches_numpy(name):
    """The CuPy backend's logic with the CUDA sources compiled for the host (HostBackend)."""
    net = gr.load_spec(spec(name, 0.6 if name in ("elu", "hard_sigmoid") else None))
    ref = gr.compile(net, dtype="float64")
    model = gr.compile(net, dtype="float64")
    model.backend = HostBackend()
    params = ref.init_params(seed=2)
    inputs, state = random_case(net, steps=4, batch=2)
    assert_close(model.forward(params, inputs, state=state, seed=3)[0],
                 ref.forward(params, inputs, state=state, seed=3)[0], rtol=1e-12)
    targets = {"y": np.random.default_rng(4).normal(size=(4, 2, 2))}
    _, got = model.gradients(params, inputs, targets, state=state, seed=3)
    _, want = ref.gradients(params, inputs, targets, state=state, seed=3)
    assert_close(got, want, rtol=1e-11)


# --- the C and CUDA text comes from the records -----------------------------------------------

def test_cuda_codes_come_from_the_records():
    assert cuda_ops.ACT_CODES == {n: a.code for n, a in REGISTRY.items() if a.elementwise}
    table = activation_c.cuda_header()
    defines = dict(re.findall(r"#define GR_ACT_(\w+) (\d+)", table))
    assert defines == {n.upper(): str(c) for n, c in cuda_ops.ACT_CODES.items()}
    for name in ELEMENTWISE:
        assert f"gr_act_{name}(" in table and f"gr_dact_{name}(" in table
        assert f"gr_act_{name}(" in activation_c.host_header()
    on_disk = (KERNEL_DIR / "activations.cuh").read_text() + (KERNEL_DIR / "host.h").read_text()
    assert "#define GR_ACT_" not in on_disk  # no hand-kept copy of codes or functions
    assert not re.search(r"\b(float|double|T)\s+gr_d?act_\w+\(", on_disk)
    assert table in expand_includes((KERNEL_DIR / "hopfield_async.cu").read_text())


def _kernels(name: str, dtype: str) -> list[str]:
    prog = gr.compile(gr.load_spec(spec(name, 0.5))).program
    inputs = frozenset(n for n, b in prog.buffers.items() if b.role == "input")
    ops = [op for _, op in prog.ops() if isinstance(op, Fused | NodeUpdate)
           and any(m.activation == name for m in (op.ops if isinstance(op, Fused) else (op,)))]
    assert ops
    return [generate(op, prog.buffers, dtype, inputs, net_only=name == "softmax").source
            for op in ops]


@pytest.mark.skipif(NVCC is None, reason="nvcc is not installed")
def test_nvcc_compiles_every_activation_forward_and_backward(tmp_path):
    sources = [s for name in NAMES for dtype in ("float32", "float64")
               for s in _kernels(name, dtype)]
    path = tmp_path / "activations.cu"
    path.write_text(expand_includes("\n".join(dict.fromkeys(sources))))
    done = subprocess.run([NVCC, "-arch=sm_90", "-cubin", "--Werror", "all-warnings", "-o",
                           str(tmp_path / "a.cubin"), str(path)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    text = path.read_text()
    for name in ELEMENTWISE:  # every forward and derivative is called by some kernel
        assert f"gr_act_{name}(" in text.split("gr_fused_", 1)[1] or name == "identity"


@pytest.mark.skipif(CXX is None, reason="no host C++ compiler")
@pytest.mark.parametrize("name", ["leaky_relu", "softsign", "hard_sigmoid", "tanh"])
def test_hopfield_kernel_runs_each_code(name):
    """``gr_activate`` dispatches a record's code with the node's alpha/beta."""
    lib = compile_host((KERNEL_DIR / "hopfield_async.cu").read_text())
    rng = np.random.default_rng(5)
    b, n, t = 3, 7, 1
    out, net = rng.normal(size=(1 + 3, b, n)), rng.normal(size=(3, b, n))
    w, order = rng.normal(size=(n, n)), np.argsort(rng.random((3, n)), axis=1).astype(np.int32)
    prev, net_in = out[t].copy(), net[t].copy()
    p = own_params(name)
    args = (out, np.int64(1 + t), net, np.int64(t), w, order, np.int64(t * n), out, np.int64(0),
            np.int32(0), np.int32(b), np.int32(n), np.int32(cuda_ops.ACT_CODES[name]),
            np.float64(1.0), np.float64(1.0), np.float64(0.0), np.int32(0), np.float64(p.alpha),
            np.float64(p.beta))
    fn, cargs = lib.gr_hopfield_async_f64, [c_arg(a) for a in args]
    for block in range(b):
        lib.gr_host_set(block, 0, 1, b)
        fn(*cargs)
    want, _ = twins.hopfield_async_step(prev, net_in, w, order[t], name, alpha=p.alpha,
                                        beta=p.beta)
    np.testing.assert_allclose(out[1 + t], want, rtol=1e-13, atol=1e-13)


def test_asynchronous_node_with_a_new_activation_matches_the_reference():
    net = gr.load_spec("""
nodes:
  s: {size: 5, activation: leaky_relu, alpha: 0.2, update: asynchronous, bias: true}
edges:
  - {from: s, to: s, delay: 1, name: W}
outputs: [s]
""")
    params = gr.compile(net, dtype="float64").init_params(seed=1)
    s0 = np.random.default_rng(2).normal(size=(2, 5))
    out, _ = gr.compile(net, dtype="float64").forward(params, {}, {"s": s0}, steps=3, seed=4)
    ref, _ = reference_forward(net, params, {}, {"s": s0}, steps=3, seed=4)
    assert_close(out, ref)
    assert draw_noise(net, 3, 2, 4).orders["s"].shape[0] == 3


# --- the spec keys ----------------------------------------------------------------------------

def test_spec_with_alpha_loads_and_keeps_it(tmp_path):
    path = tmp_path / "leaky.yaml"
    path.write_text(spec("leaky_relu", alpha=0.2))
    net = gr.load_spec(path)
    assert net.nodes["h"].alpha == 0.2 and net.nodes["h"].beta is None
    assert gr.load_spec(spec("elu", alpha=2)).nodes["h"].alpha == 2


@pytest.mark.parametrize("act,extra,message", [
    ("leaky_relu", ", alpha: big", "alpha must be a finite number"),
    ("leaky_relu", ", alpha: true", "alpha must be a finite number"),
    ("leaky_relu", ", alpha: .nan", "alpha must be a finite number"),
    ("tanh", ", alpha: 0.2", "activation tanh takes no alpha"),
    ("leaky_relu", ", beta: 0.2", "activation leaky_relu takes no beta"),
])
def test_bad_alpha_or_beta_is_a_spec_error_with_file_and_line(tmp_path, act, extra, message):
    path = tmp_path / "bad.yaml"
    path.write_text(SPEC.format(act=act, extra=extra))
    with pytest.raises(gr.SpecError) as info:
        gr.load_spec(path)
    key = "alpha" if "alpha" in extra else "beta"
    assert info.value.line == 6 and info.value.key == f"nodes.h.{key}"
    assert str(info.value).startswith(f"{path}:6: nodes.h.{key}:") and message in str(info.value)
