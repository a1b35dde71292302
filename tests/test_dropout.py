"""Training-time noise: dropout, variational and weight dropout, zoneout, on every backend."""

from __future__ import annotations

import re

import networkx as nx
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import graphrnn as gr
from graphrnn.backends import cupy_backend
from graphrnn.errors import SpecError
from graphrnn.frontend.reference import reference_forward
from graphrnn.noise import counter_uniforms, draw_masks
from tests.helpers import SPECS, assert_close, random_case
from tests.helpers.cuda_host import CXX, HostBackend
from tests.helpers.strategies import _structures, render

RATES = (0.2, 0.5)
NOISY = """
name: noisy
inputs: {x: 3}
nodes:
  h: {size: 5, activation: tanh, dropout: 0.3, zoneout: 0.25, leak: 0.8}
  c: {size: 4, activation: sigmoid, zoneout: 0.4, init_state: learned}
  y: {size: 2, dropout: 0.5}
edges:
  - {from: x, to: h, dropout: 0.2}
  - {from: h, to: h, delay: 1, weight_dropout: 0.5, dropout: 0.3}
  - {from: h, to: c}
  - {from: c, to: c, delay: 1}
  - {from: c, to: y}
  - {from: h, to: y, delay: 1, weight: full, weight_dropout: 0.3}
outputs: [y, h]
"""


@st.composite
def noisy_specs(draw):
    """A random network of ``tests.helpers.strategies`` with noise keys on some nodes/edges."""
    net = draw(_structures(max_nodes=4))
    loops = nx.DiGraph([(s, d) for s, d, _ in net["edges"] if s in net["nodes"]])
    loops.add_nodes_from(net["nodes"])
    ahead = set()  # nodes in a loop that reads the future: zoneout (a past read) would mix signs
    for component in nx.strongly_connected_components(loops):
        if any(s in component and d in component and k < 0 for s, d, k in net["edges"]):
            ahead |= component
    for name, opts in net["nodes"].items():
        for key in ("dropout", "zoneout"):
            if draw(st.integers(0, 2)) == 0 and not (key == "zoneout" and name in ahead):
                opts[key] = draw(st.sampled_from(RATES))
    for opts in net["edges"].values():
        if draw(st.integers(0, 2)) == 0:
            opts["dropout"] = draw(st.sampled_from(RATES))
    rates: dict = {}
    for opts in net["edges"].values():  # tied matrices share one rate
        if opts["weight"] == "full" and draw(st.integers(0, 2)) == 0:
            opts["weight_dropout"] = rates.setdefault(opts.get("name"), 0.5)
    for opts in net["edges"].values():
        if "name" in opts and opts["name"] in rates and opts["weight"] == "full":
            opts["weight_dropout"] = rates[opts["name"]]
    return render(net)


BACKENDS = ("numpy", "numpy-ufuncs", "cupy-host", "cupy")


def model_on(net, backend: str):
    """``net`` compiled in float64 for a backend (``cupy-host``: the CuPy backend's logic
    and CUDA kernels compiled for the host); skips where it is not usable."""
    if backend == "cupy" and not cupy_backend.available():
        pytest.skip("no GPU with CuPy here")
    if backend == "cupy-host":
        if CXX is None:
            pytest.skip("no host C++ compiler")
        model = gr.compile(net, backend="numpy", dtype="float64")
        model.backend = HostBackend()
        return model
    return gr.compile(net, backend=backend, dtype="float64")


def check_against_reference(net, seed=3, backends=BACKENDS[:3]):
    inputs, state = random_case(net, steps=5, batch=3, seed=seed)
    steps = None if net.inputs else 5
    for backend in backends:
        if backend == "cupy-host" and CXX is None:
            continue
        model = model_on(net, backend)
        params = model.init_params(seed)
        for train in (False, True):
            got, got_state = model.forward(params, inputs, state, steps=steps, seed=seed,
                                           train=train)
            want, want_state = reference_forward(net, params, inputs, state, steps=steps,
                                                 seed=seed, train=train)
            assert_close(got, want)
            assert_close(got_state, want_state)


@pytest.mark.parametrize("backend", BACKENDS)
def test_every_primitive_against_the_reference_on_every_backend(backend):
    check_against_reference(gr.load_spec(NOISY), backends=(backend,))
    check_against_reference(gr.load_spec(SPECS / "awd_lstm.yaml"), backends=(backend,))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(noisy_specs())
def test_random_graphs_with_noise_match_the_reference(text):
    check_against_reference(gr.load_spec(text))


def strip(text: str) -> str:
    """The spec without its dropout keys."""
    return re.sub(r",\s*(weight_)?dropout: [0-9.]+", "", text)


def test_train_false_is_the_network_without_noise():
    text = NOISY.replace(", zoneout: 0.25", "").replace(", zoneout: 0.4", "")
    noisy, plain = gr.load_spec(text), gr.load_spec(strip(text))
    assert noisy.has_training_noise and not plain.has_training_noise
    a, b = gr.compile(noisy, dtype="float64"), gr.compile(plain, dtype="float64")
    params = a.init_params(0)
    inputs, state = random_case(noisy, seed=1)
    got, got_state = a.forward(params, inputs, state, seed=7)
    want, want_state = b.forward(params, inputs, state, seed=7)
    assert_close(got, want, rtol=0)
    assert_close(got_state, want_state, rtol=0)
    differs = a.forward(params, inputs, state, seed=7, train=True)[0]
    assert np.abs(differs["y"] - want["y"]).max() > 1e-3


def test_zoneout_at_evaluation_is_its_expectation():
    text = "inputs: {x: 3}\nnodes:\n  h: {size: 4, activation: tanh, zoneout: 0.3%s}\n" \
           "edges:\n  - x -> h\n  - h -> h @1\noutputs: [h]\n"
    for leak, mixed in (("", 0.7), (", leak: 0.5", 0.35)):
        zoned = gr.compile(gr.load_spec(text % leak), dtype="float64")
        leaky = gr.compile(gr.load_spec(text.replace("zoneout: 0.3%s", f"leak: {mixed}")),
                           dtype="float64")
        params = zoned.init_params(0)
        inputs, state = random_case(zoned.net, seed=2)
        assert_close(zoned.forward(params, inputs, state)[0],
                     leaky.forward(params, inputs, state)[0], rtol=1e-14)


def finite_difference_check(net, seed=4, backend="numpy"):
    model = model_on(net, backend)
    params = model.init_params(seed)
    inputs, state = random_case(net, steps=4, batch=2, seed=seed)
    rng = np.random.default_rng(seed)
    targets = {o: rng.normal(size=(4, 2, net.size(o))) for o in net.outputs}
    steps = None if net.inputs else 4
    loss, grads = model.gradients(params, inputs, targets, state=state, seed=seed, steps=steps)

    def value(p):
        out, _ = reference_forward(net, p, inputs, state, steps=steps, seed=seed, train=True)
        return sum(np.mean((out[k] - targets[k]) ** 2) for k in targets)

    assert abs(loss - value(params)) < 1e-10
    for name, array in params.items():
        for idx in list(np.ndindex(array.shape))[:5]:
            plus = {k: v.copy() for k, v in params.items()}
            plus[name][idx] += 1e-6
            minus = {k: v.copy() for k, v in params.items()}
            minus[name][idx] -= 1e-6
            fd = (value(plus) - value(minus)) / 2e-6
            assert abs(fd - grads[name][idx]) <= 1e-6 * max(1.0, abs(fd)), (name, idx)
    return grads


@pytest.mark.parametrize("backend", BACKENDS)
def test_gradients_match_finite_differences_with_fixed_masks(backend):
    grads = finite_difference_check(gr.load_spec(NOISY), backend=backend)
    assert np.any(grads["h->h@1"] == 0)  # weight-dropped entries get no gradient
    finite_difference_check(gr.load_spec(SPECS / "awd_lstm.yaml"), backend=backend)


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(noisy_specs())
def test_random_graph_gradients_match_finite_differences(text):
    net = gr.load_spec(text)
    if any(n.activation == "relu" for n in net.nodes.values()):
        return  # kinks make finite differences unreliable
    finite_difference_check(net)


def bound(n: int, p: float) -> float:
    """Six standard deviations of a fraction of ``n`` Bernoulli(p) draws."""
    return 6 * np.sqrt(p * (1 - p) / n)


def test_dropout_rates_and_variational_masks_are_time_invariant():
    text = ("inputs: {x: 50}\nnodes:\n  a: {size: 50, dropout: 0.3}\n  b: 50\n"
            "  z: {size: 50, zoneout: 0.4}\n"
            "edges:\n  - {from: x, to: a, weight: identity}\n"
            "  - {from: x, to: b, weight: identity, dropout: 0.6}\n"
            "  - {from: x, to: z, weight: identity}\n outputs: [a, b, z]\n")
    text = text.replace("\n outputs", "\noutputs")
    model = gr.compile(gr.load_spec(text), dtype="float64")
    T, B = 40, 30
    x = np.broadcast_to(np.arange(1.0, T + 1)[:, None, None], (T, B, 50)).copy()
    out, _ = model.forward({}, {"x": x}, seed=11, train=True)
    a = out["a"] / x
    n = a.size
    assert abs(np.mean(a == 0) - 0.3) < bound(n, 0.3)
    assert np.allclose(a[a != 0], 1 / 0.7)
    same = np.mean((a[1:] == 0) == (a[:-1] == 0))  # fresh masks: agree w.p. p^2 + (1-p)^2
    assert abs(same - 0.58) < bound(a[1:].size, 0.58)
    b = out["b"] / x
    assert abs(np.mean(b[0] == 0) - 0.6) < bound(b[0].size, 0.6)
    assert np.array_equal(b, np.broadcast_to(b[0], b.shape))  # one mask per sequence
    kept = out["z"] != x  # every step's input is new: z differs from it where it kept its past
    assert abs(np.mean(kept) - 0.4) < bound(kept.size, 0.4)
    evaluated, _ = model.forward({}, {"x": x}, seed=11)
    assert np.array_equal(evaluated["a"], x) and np.array_equal(evaluated["b"], x)


def test_weight_dropout_is_one_mask_per_call_from_the_seed():
    net = gr.load_spec(NOISY)
    first = draw_masks(net, 5, 3, seed=1).weight_dropout["h->h@1"]
    assert np.array_equal(first, draw_masks(net, 5, 3, seed=1).weight_dropout["h->h@1"])
    other = draw_masks(net, 5, 3, seed=2).weight_dropout["h->h@1"]
    assert not np.array_equal(first, other)
    many = np.stack([draw_masks(net, 1, 1, seed=s).weight_dropout["h->h@1"]
                     for s in range(400)])
    assert abs(np.mean(many == 0) - 0.5) < bound(many.size, 0.5)


def test_masks_are_counter_based():
    whole = counter_uniforms(9, "dropout:h", (4, 6))
    assert np.array_equal(counter_uniforms(9, "dropout:h", (6,), first=12), whole[2])
    assert not np.array_equal(counter_uniforms(8, "dropout:h", (4, 6)), whole)
    assert 0 <= whole.min() and whole.max() < 1


@pytest.mark.parametrize("edit, message", [
    ("dropout: 0.3, zoneout: 0.25", "dropout: 1.0, zoneout: 0.25"),
    ("zoneout: 0.4", "zoneout: -0.1"),
    ("{from: x, to: h, dropout: 0.2}", "{from: x, to: h, dropout: 2}"),
])
def test_rates_outside_zero_one_are_spec_errors(edit, message):
    with pytest.raises(SpecError, match=r"must be a probability in \[0, 1\)"):
        gr.load_spec(NOISY.replace(edit, message))


def test_weight_dropout_needs_a_full_matrix_and_one_rate_per_tied_matrix():
    text = "inputs: {x: 3}\nnodes:\n  h: 3\nedges:\n  - %s\noutputs: [h]\n"
    with pytest.raises(SpecError, match="edges\\[0\\].weight_dropout: .*diagonal"):
        gr.load_spec(text % "{from: x, to: h, weight: diagonal, weight_dropout: 0.5}")
    tied = ("{from: x, to: h, name: W, weight_dropout: 0.5}\n"
            "  - {from: h, to: h, delay: 1, name: W}")
    with pytest.raises(SpecError, match="same rate"):
        gr.load_spec(text % tied)


def test_gr_train_trains_with_noise_and_validates_without():
    net = gr.load_spec(SPECS / "awd_lstm.yaml")
    model = gr.compile(net, dtype="float64")
    params = model.init_params(0)
    rng = np.random.default_rng(0)
    data = {"x": rng.normal(size=(8, 16, 8)), "y": rng.normal(size=(8, 16, 4))}
    seeds = []
    real = model.gradients

    def spy(*args, **kwargs):
        seeds.append((kwargs.get("seed"), kwargs.get("train", True)))
        return real(*args, **kwargs)

    model.gradients = spy
    history = gr.train(model, params, data, epochs=2, batch_size=8, progress=False)
    assert len(seeds) >= 2 and len({s for s, _ in seeds}) == len(seeds)  # fresh masks
    assert all(train for _, train in seeds)
    assert history


def test_cli_train_trains_a_noisy_spec(tmp_path):
    import subprocess
    import sys

    from tests.helpers import ROOT
    rng = np.random.default_rng(0)
    data = tmp_path / "d.npz"
    np.savez(data, x=rng.normal(size=(6, 8, 8)), y=rng.normal(size=(6, 8, 4)))
    out = tmp_path / "p.npz"
    done = subprocess.run([sys.executable, "-m", "graphrnn", "train",
                           str(SPECS / "awd_lstm.yaml"), "--data", str(data), "--epochs", "2",
                           "--batch-size", "4", "--no-progress", "-o", str(out)],
                          capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    params = dict(np.load(out))
    assert "h->i@1" in params and "c.bias" not in params  # c sums identity edges: no bias


def test_training_masks_come_from_the_seed_and_survive_a_resume(tmp_path):
    """A dropout net trained for 2 epochs equals 1 epoch, then a resume for the second (its
    masks are drawn from the seed, epoch and step, not from a count of calls), and another
    seed draws other masks."""
    model = gr.compile(gr.load_spec(NOISY), dtype="float64")
    rng = np.random.default_rng(0)
    data = {"x": rng.normal(size=(6, 8, 3)), "y": rng.normal(size=(6, 8, 2))}

    def fit(seed=0, epochs=2, **kw):
        return gr.train(model, model.init_params(1), data, epochs=epochs, batch_size=4,
                        lr=0.01, progress=False, val_fraction=0.0, seed=seed, **kw).params

    whole = fit()
    ck = tmp_path / "ck.npz"
    fit(checkpoint=ck, epochs=1)
    resumed = fit(checkpoint=ck, resume=True)
    other = fit(seed=1)
    for k in whole:
        assert np.array_equal(whole[k], resumed[k]), k
    assert any(not np.allclose(whole[k], other[k]) for k in whole)


def test_lengths_and_training_noise_match_the_reference():
    """Dropout and zoneout masks with sequences of different lengths, on both NumPy backends:
    each sequence sees its own row's masks over its own steps."""
    net = gr.load_spec(NOISY)
    inputs, state = random_case(net, steps=5, batch=3, seed=2)
    lengths = np.array([5, 2, 4])
    for backend in ("numpy", "numpy-ufuncs"):
        model = gr.compile(net, backend=backend, dtype="float64")
        params = model.init_params(2)
        got, got_state = model.forward(params, inputs, state, seed=4, train=True,
                                       lengths=lengths)
        want, want_state = reference_forward(net, params, inputs, state, seed=4, train=True,
                                             lengths=lengths)
        assert_close(got, want)
        assert_close(got_state, want_state)
