"""Sizes refused before allocating (calls, delays, parameters, unrolls); model-call checks."""

from __future__ import annotations

import contextlib
import io
import resource

import numpy as np
import pytest

import graphrnn as gr
from graphrnn import checks, config
from graphrnn.cli.main import main as cli_main
from graphrnn.errors import DataError, SpecError

LINEAR = """
inputs: {x: 1}
nodes: {h: {size: 1, activation: identity, bias: false}}
edges: [x -> h, h -> h @1]
outputs: [h]
"""
HUGE_DELAY = """
inputs: {x: 2}
nodes: {h: 3}
edges:
  - x -> h
  - h -> h @1000000000000
outputs: [h]
"""


def _cli(*argv) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = cli_main([str(a) for a in argv])
    return code, err.getvalue()


def _grown_kib(before: int) -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before


@pytest.fixture(scope="module")
def hopfield():
    model = gr.compile(gr.load_spec("hopfield"))
    return model, model.init_params(0)


def test_a_billion_steps_is_refused_before_allocating(hopfield):
    model, params = hopfield
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(DataError, match=r"forward of 1,000,000,000 steps on a batch of 1 "
                                        r"\(float32\) needs about .* TiB, more than the"):
        model.forward(params, {}, steps=10**9)
    assert _grown_kib(before) < 200 * 1024


def test_the_estimate_counts_gradients_and_follows_the_knob(monkeypatch):
    net = gr.load_spec("elman")
    model = gr.compile(net, dtype="float64")
    params = model.init_params(0)
    x = np.zeros((50, 4, net.inputs["x"]))
    y = np.zeros((50, 4, net.size("y")))
    forward = checks.run_bytes(net, model.program, 50, 4, np.float64, backward=False)
    backward = checks.run_bytes(net, model.program, 50, 4, np.float64, backward=True)
    assert backward > forward > 50 * 4 * 8 * (net.size("h") + net.size("y"))
    monkeypatch.setattr(config, "MAX_MEMORY", (forward + backward) // 2)
    model.forward(params, {"x": x})  # fits
    with pytest.raises(DataError, match=r"gradients of 50 steps on a batch of 4 \(float64\) "
                                        r"needs about .*GRAPHRNN_MAX_MEMORY"):
        model.gradients(params, {"x": x}, {"y": y})


def test_the_cli_run_refuses_a_billion_steps_in_one_line(tmp_path):
    code, err = _cli("run", "hopfield", "--steps", 10**9, "-o", tmp_path / "o.npz")
    assert code == 2 and err.count("\n") == 1 and "needs about" in err
    assert not (tmp_path / "o.npz").exists()


def test_inspect_caps_the_unrolled_graph():
    code, err = _cli("inspect", "hopfield", "--steps", 10**9)
    assert code == 2 and err.count("\n") == 1
    assert "1,000,000,001 vertices" in err and "at most 99,999 steps" in err
    assert "GRAPHRNN_MAX_VERTICES" in err


def test_unroll_takes_its_own_limit():
    net = gr.load_spec("elman")
    vertices, _ = gr.frontend.unroll.expected_counts(net, 4)
    assert gr.unroll(net, steps=4, max_vertices=vertices).number_of_nodes() == vertices
    with pytest.raises(DataError, match="over 5 steps .* use at most 4 steps"):
        gr.unroll(net, steps=5, max_vertices=vertices)


def test_a_huge_delay_is_a_spec_error_at_its_edge(tmp_path):
    with pytest.raises(SpecError, match=r"delay 1,000,000,000,000 keeps .* TiB for one sequence"
                       ) as info:
        gr.load_spec(HUGE_DELAY)
    assert (info.value.line, info.value.key) == (6, "edges[1]")
    path = tmp_path / "delay.yaml"
    path.write_text(HUGE_DELAY)
    code, err = _cli("inspect", path)
    assert code == 2 and err.startswith(f"graphrnn: {path}:6: edges[1]: delay")


def test_huge_parameters_are_a_spec_error_at_their_edge():
    with pytest.raises(SpecError, match=r"the parameters need .* \(the largest, 'x->h', has "
                       r"shape \(100000000000, 2\)\)") as info:
        gr.load_spec("inputs: {x: 2}\nnodes: {h: 100000000000}\nedges: [x -> h]\noutputs: [h]")
    assert info.value.key == "edges[0]"


def test_max_memory_reads_sizes(monkeypatch, capsys):
    for text, value in (("8G", 8 * 2**30), ("512m", 512 * 2**20), ("1e9", 10**9), ("", None)):
        monkeypatch.setenv("GRAPHRNN_MAX_MEMORY", text)
        assert config._bytes("GRAPHRNN_MAX_MEMORY") == value
    monkeypatch.setenv("GRAPHRNN_MAX_MEMORY", "lots")
    assert config._bytes("GRAPHRNN_MAX_MEMORY") is None
    assert "not a size" in capsys.readouterr().err


# -- model-call checks ------------------------------------------------------------------------

def test_a_bare_array_state_is_a_data_error(hopfield):
    model, params = hopfield
    with pytest.raises(DataError, match="state must be a dict of arrays, not ndarray"):
        model.forward(params, {}, state=np.zeros((3, 64)), steps=2)


def test_an_empty_batch_state_is_a_data_error(hopfield):
    model, params = hopfield
    with pytest.raises(DataError, match=r"state 's' has an empty batch \(B = 0\)"):
        model.forward(params, {}, state={"s": np.zeros((0, 64))}, steps=2)


def test_a_negative_mask_is_a_data_error():
    net = gr.load_spec("elman")
    model = gr.compile(net, dtype="float64")
    x = np.ones((3, 2, net.inputs["x"]))
    y = np.zeros((3, 2, net.size("y")))
    mask = np.ones((3, 2))
    mask[1, 0] = -1
    with pytest.raises(DataError, match=r"mask 'y' has a negative weight \(-1.0 at step 1, "
                                        r"sequence 0\)"):
        model.gradients(model.init_params(0), {"x": x}, {"y": y}, mask=mask)


@pytest.mark.parametrize("backend", ["numpy", "numpy-ufuncs"])
def test_outputs_that_overflow_from_finite_inputs_name_the_step(backend):
    model = gr.compile(gr.load_spec(LINEAR), backend=backend, dtype="float64")
    params = {"x->h": np.ones((1, 1)), "h->h@1": np.full((1, 1), 1e100)}
    x = np.ones((6, 2, 1))
    model.forward(params, {"x": x[:4]})  # 1e300 at step 3 still fits
    with pytest.raises(DataError, match=r"output 'h' is NaN or inf from step 4 on, although the "
                                        r"inputs, parameters and state are finite"):
        model.forward(params, {"x": x})
    with pytest.raises(DataError, match="from step 4 on"):
        model.gradients(params, {"x": x}, {"h": x})
