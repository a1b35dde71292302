"""gr.to_onnx: onnxruntime runs the exported model with graphrnn's outputs and final states."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings

import graphrnn as gr
from graphrnn.ops.activations import REGISTRY
from tests.helpers import ROOT, SPEC_FILES, random_case
from tests.helpers.strategies import valid_networks

pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from graphrnn.exchange.onnx_export import refusal  # noqa: E402

REFUSED = {"hopfield.yaml": "nodes.s.update", "boltzmann.yaml": "nodes.s.update"}
EXPORTABLE = [f for f in SPEC_FILES if f.name not in REFUSED]


def _session(proto):
    options = ort.SessionOptions()
    options.log_severity_level = 3  # state inputs with defaults draw a warning
    return ort.InferenceSession(proto.SerializeToString(), options,
                                providers=["CPUExecutionProvider"])


def _run_onnx(session, net, inputs, state, steps):
    feed = {k: v.astype(np.int64 if k in net.tokens else np.float32) for k, v in inputs.items()}
    feed.update({f"state.{k}": v.astype(np.float32) for k, v in (state or {}).items()})
    if not net.inputs:
        feed["steps"] = np.array(steps, np.int64)
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(None, feed), strict=True))


def _expected(net, params, inputs, state, steps):
    model = gr.compile(net, dtype="float64")
    outputs, final = model.forward(params, inputs, state=state, steps=None if inputs else steps)
    return {**outputs, **{f"final.{k}": v for k, v in final.items()}}


def _assert_close(got, expected, rtol=1e-5):
    assert set(got) == set(expected)
    for k, v in expected.items():
        assert got[k].shape == v.shape, k
        err = np.abs(got[k] - v).max() / max(np.abs(v).max(), 1.0)
        assert err <= rtol, f"{k}: relative error {err:.3g}"


def _check(net, params, proto, steps_list=(3, 8), with_state=True, batch=2):
    session = _session(proto)
    for steps in steps_list:
        inputs, state = random_case(net, steps=steps, batch=batch, seed=steps,
                                    with_state=with_state)
        state = state if with_state else None
        _assert_close(_run_onnx(session, net, inputs, state, steps),
                      _expected(net, params, inputs, state, steps))


@pytest.mark.parametrize("path", EXPORTABLE, ids=lambda p: p.name)
def test_bundled_spec_matches_graphrnn_at_two_lengths_from_one_file(path, tmp_path):
    net = gr.load_spec(path)
    model = gr.compile(net)
    params = model.init_params(seed=1)
    gr.to_onnx(model, params, tmp_path / "net.onnx")
    import onnx
    proto = onnx.load(str(tmp_path / "net.onnx"))
    onnx.checker.check_model(proto)
    _check(net, params, proto)
    if net.inputs:  # states left out: each takes its default (zeros or the learned init)
        _check(net, params, proto, steps_list=(5,), with_state=False)
    _check(net, params, gr.to_onnx(model, params, unrolled=True, steps=3), steps_list=(3,))


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_asynchronous_and_stochastic_specs_are_refused_in_one_line(name):
    net = gr.load_spec(ROOT / "graphrnn" / "specs" / name)
    with pytest.raises(gr.SpecError, match=REFUSED[name]) as info:
        gr.to_onnx(net, gr.compile(net).init_params(0))
    assert "\n" not in str(info.value)


def test_bernoulli_units_are_refused():
    net = gr.load_spec("inputs: {x: 2}\nnodes: {s: {size: 3, activation: bernoulli}}\n"
                       "edges: [x -> s]\noutputs: [s]\n")
    with pytest.raises(gr.SpecError, match="nodes.s.activation: bernoulli"):
        gr.to_onnx(net, gr.compile(net).init_params(0))


def test_time_loops_are_one_op_whose_size_does_not_grow_with_t():
    net = gr.load_spec(ROOT / "graphrnn" / "specs" / "narx.yaml")
    params = gr.compile(net).init_params(0)
    proto = gr.to_onnx(net, params)
    assert [n.op_type for n in proto.graph.node].count("Scan") == 1
    short = gr.to_onnx(net, params, unrolled=True, steps=2)
    long = gr.to_onnx(net, params, unrolled=True, steps=6)
    assert "Scan" not in {n.op_type for n in long.graph.node}
    assert len(long.graph.node) > len(short.graph.node) > len(proto.graph.node) // 2
    for steps, unrolled in ((2, short), (6, long)):
        _check(net, params, unrolled, steps_list=(steps,))


@pytest.mark.parametrize(("spec", "op", "directions"), [
    ("elman", "RNN", ["forward"]), ("gru", "GRU", ["forward"]), ("lstm", "LSTM", ["forward"]),
    ("lstm2", "LSTM", ["forward"] * 2), ("narx", "Scan", [None]),
    ("reverse_elman", "RNN", ["reverse"]), ("bilstm", "LSTM", ["bidirectional"]),
    ("bigru", "GRU", ["bidirectional"]), ("lstm_lm", "LSTM", ["forward"] * 2)])
def test_loops_that_are_onnx_operators_are_those_operators(spec, op, directions):
    net = gr.load_spec(ROOT / "graphrnn" / "specs" / f"{spec}.yaml")
    params = gr.compile(net).init_params(0)
    proto = gr.to_onnx(net, params)
    ops = [n.op_type for n in proto.graph.node]
    assert [_direction(n) for n in proto.graph.node if n.op_type == op] == directions
    assert not {"Scan", "RNN", "GRU", "LSTM"} - {op} & set(ops)
    _check(net, params, proto)


def _direction(node) -> str | None:
    if node.op_type == "Scan":
        return None
    d = next((a.s.decode() for a in node.attribute if a.name == "direction"), "forward")
    return d


ANTI_CAUSAL = """
inputs: {x: 3}
nodes:
  a: {size: 4, activation: tanh}
  h: {size: 5, activation: tanh}
  g: {size: 5, activation: sigmoid}
  y: 2
edges:
  - x -> a @-2
  - a -> h
  - h -> h @-2 diagonal
  - g -> h @-1
  - h -> g
  - x -> g @-1
  - h -> y
  - g -> y @1
outputs: [y]
"""


def test_anti_causal_loops_are_a_scan_from_the_last_step_down():
    net = gr.load_spec(ANTI_CAUSAL)
    params = {k: v * 1.5 for k, v in gr.compile(net).init_params(4).items()}
    proto = gr.to_onnx(net, params)
    scans = [n for n in proto.graph.node if n.op_type == "Scan"]
    assert len(scans) == 1
    attrs = {a.name: list(a.ints) for a in scans[0].attribute if a.ints}
    assert set(attrs["scan_input_directions"]) == set(attrs["scan_output_directions"]) == {1}
    names = {i.name for i in proto.graph.input} | {o.name for o in proto.graph.output}
    assert {"state.h@+2", "state.g@+1", "state.x@+2", "final.h@+1", "final.x@+2"} <= names
    _check(net, params, proto, steps_list=(1, 2, 7))  # T=1: the final h@+2 is a boundary row
    _check(net, params, gr.to_onnx(net, params, unrolled=True, steps=4), steps_list=(4,))


def test_token_inputs_are_int64_ids_read_by_gather():
    net = gr.load_spec(ROOT / "graphrnn" / "specs" / "lstm_lm.yaml")
    params = gr.compile(net).init_params(0)
    proto = gr.to_onnx(net, params)
    tok = next(i for i in proto.graph.input if i.name == "tok")
    import onnx
    assert tok.type.tensor_type.elem_type == onnx.TensorProto.INT64
    assert [d.dim_param for d in tok.type.tensor_type.shape.dim] == ["T", "B"]
    tables = {t.name for t in proto.graph.initializer if tuple(t.dims) == (64, 32)}
    assert any(n.op_type == "Gather" and n.input[0] in tables for n in proto.graph.node)


@pytest.mark.parametrize("act", [a for a in REGISTRY if a != "bernoulli"])
def test_every_activation_with_its_keys(act):
    keys = {k: v + 0.3 for k, v in REGISTRY[act].keys.items()}
    opts = ", ".join(f"{k}: {v}" for k, v in keys.items())
    net = gr.load_spec(f"inputs: {{x: 3}}\nnodes:\n  h: {{size: 4, activation: {act}"
                       f"{', ' + opts if opts else ''}}}\n  y: {{size: 2, activation: {act}"
                       f"{', ' + opts if opts else ''}}}\n"
                       "edges: [x -> h, h -> h @1, h -> y, y -> y @2 diagonal]\noutputs: [y]\n")
    params = {k: v * 2 for k, v in gr.compile(net).init_params(0).items()}
    _check(net, params, gr.to_onnx(net, params))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(valid_networks())
def test_random_networks_match_graphrnn(text):
    net = gr.load_spec(text)
    assume(refusal(net) is None)  # only asynchronous/stochastic nets (the strategy draws none)
    params = gr.compile(net).init_params(0)
    _check(net, params, gr.to_onnx(net, params), steps_list=(1, 4))
    _check(net, params, gr.to_onnx(net, params, unrolled=True, steps=3), steps_list=(3,))


def test_importing_graphrnn_does_not_import_onnx():
    code = "import sys, graphrnn; assert 'onnx' not in sys.modules; print('ok')"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert out.stdout.strip() == "ok", out.stderr


def test_cli_export_writes_a_model_and_refuses_in_one_line(tmp_path):
    def cli(*args):
        return subprocess.run([sys.executable, "-m", "graphrnn", *args], cwd=ROOT,
                              capture_output=True, text=True)
    net = gr.load_spec(ROOT / "graphrnn" / "specs" / "gru.yaml")
    params = gr.compile(net).init_params(3)
    np.savez(tmp_path / "p.npz", **params)
    done = cli("export", "specs/gru.yaml", "--params", str(tmp_path / "p.npz"),
               "-o", str(tmp_path / "gru.onnx"))
    assert done.returncode == 0, done.stderr
    import onnx
    _check(net, params, onnx.load(str(tmp_path / "gru.onnx")))
    done = cli("export", "specs/gru.yaml", "--unrolled", "--steps", "3",
               "-o", str(tmp_path / "u.onnx"))
    assert done.returncode == 0, done.stderr
    _check(net, gr.compile(net).init_params(0), onnx.load(str(tmp_path / "u.onnx")),
           steps_list=(3,))
    done = cli("export", "specs/bilstm.yaml", "-o", str(tmp_path / "bi.onnx"))
    assert done.returncode == 0 and "(LSTM bidirectional)" in done.stdout, done.stderr
    refused = cli("export", "specs/hopfield.yaml", "-o", str(tmp_path / "h.onnx"))
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1
    assert "asynchronous" in refused.stderr and not (tmp_path / "h.onnx").exists()


def _lstm_text(changes: dict) -> str:
    text = (ROOT / "graphrnn" / "specs" / "lstm.yaml").read_text()
    for old, new in changes.items():
        assert old in text, old
        text = text.replace(old, new)
    return text


@pytest.mark.parametrize(("changes", "op"), [
    ({}, "LSTM"),
    ({"  - i -> ig identity\n  - g -> ig identity":  # the factors the other way round
      "  - g -> ig identity\n  - i -> ig identity",
      "{size: 16, activation: sigmoid}": "{size: 16, activation: hard_sigmoid, alpha: 0.3}",
      "tc: {size: 16, activation: tanh}": "tc: {size: 16, activation: softsign}"}, "LSTM"),
    ({"outputs: [y]": "outputs: [y, f]"}, "Scan"),     # a gate read outside: not the op
    ({"  - c -> tc identity": "  - c -> tc identity\n  - c -> i @2 diagonal"}, "Scan"),
])
def test_lstm_loops_are_the_onnx_lstm_operator(changes, op):
    net = gr.load_spec(_lstm_text(changes))
    params = {k: v * 1.5 for k, v in gr.compile(net).init_params(2).items()}
    proto = gr.to_onnx(net, params)
    ops = {n.op_type for n in proto.graph.node}
    assert op in ops and not ({"LSTM", "Scan"} - {op}) & ops
    _check(net, params, proto)


def test_without_onnx_the_api_and_cli_say_how_to_install_it(tmp_path):
    code = ("import sys; sys.modules['onnx'] = None; import graphrnn as gr\n"
            "net = gr.load_spec('specs/elman.yaml')\n"
            "try:\n    gr.to_onnx(net, {})\nexcept ImportError as e:\n    print(e)\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert "pip install 'graphrnn[onnx]'" in out.stdout, out.stderr
    code = ("import sys; sys.modules['onnx'] = None; from graphrnn.cli.main import main\n"
            f"sys.exit(main(['export', 'specs/elman.yaml', '-o', '{tmp_path / 'e.onnx'}']))\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 2 and "graphrnn[onnx]" in out.stderr
    assert out.stderr.count("\n") == 1
