"""gr.from_onnx: ONNX's RNN/GRU/LSTM test cases and random weights (onnx.reference, onnxruntime)."""

from __future__ import annotations

import importlib
import subprocess
import sys

import numpy as np
import pytest

import graphrnn as gr
from tests.helpers import ROOT

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402
from onnx.reference import ReferenceEvaluator  # noqa: E402

GATES = {"RNN": 1, "GRU": 3, "LSTM": 4}
DIRECTIONS = ("forward", "reverse", "bidirectional")
STATE_INPUTS = ("initial_h", "initial_c")


def _operator_cases():
    """ONNX's own operator test cases: (name, node, inputs, outputs) from its generators."""
    cases = []
    for op in ("rnn", "gru", "lstm"):
        module = importlib.import_module(f"onnx.backend.test.case.node.{op}")
        saved = module.expect
        module.expect = lambda node, inputs, outputs, name, **kw: cases.append(
            (name, node, inputs, outputs))
        try:
            cls = next(v for k, v in vars(module).items()
                       if isinstance(v, type) and k.lower() == op)
            for attr in sorted(dir(cls)):
                if attr.startswith("export"):
                    getattr(cls, attr)()
        finally:
            module.expect = saved
    return cases


CASES = _operator_cases()


def _model(node, arrays: dict):
    """A model of one node: X and the initial states graph inputs, the rest initializers."""
    inputs, inits = [], []
    for name, role in zip(node.input, _roles(node), strict=False):
        if not name:
            continue
        if role == "X" or role in STATE_INPUTS:
            inputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT,
                                                        arrays[name].shape))
        else:
            inits.append(numpy_helper.from_array(arrays[name], name))
    outputs = [helper.make_tensor_value_info(o, TensorProto.FLOAT, None)
               for o in node.output if o]
    graph = helper.make_graph([node], "one", inputs, outputs, inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])


def _roles(node):
    roles = ["X", "W", "R", "B", "sequence_lens", "initial_h"]
    return roles + (["initial_c", "P"] if node.op_type == "LSTM" else [])


def _layout(node) -> int:
    return next((a.i for a in node.attribute if a.name == "layout"), 0)


def _direction_keys(node) -> list[tuple[str, str, str]]:
    """Per ONNX direction: (output, hidden state key, cell state key), as DESIGN names them."""
    direction = _direction(node)
    if direction == "forward":
        return [("Y", "H", "C")]
    if direction == "reverse":
        return [("Y", "H@+1", "C@+1")]
    return [("Y", "H", "C"), ("Y_reverse", "H_reverse@+1", "C_reverse@+1")]


def _graphrnn(node, arrays: dict) -> dict:
    """Run from_onnx's network on the node's arrays; results keyed and shaped as ONNX's."""
    net, params = gr.from_onnx(_model(node, arrays))
    layout = _layout(node)
    roles = dict(zip(_roles(node), node.input, strict=False))
    x = arrays[roles["X"]].astype(np.float64)
    x = x.transpose(1, 0, 2) if layout else x
    keys = _direction_keys(node)
    state = {}
    for role, column in (("initial_h", 1), ("initial_c", 2)):
        if roles.get(role):
            s = arrays[roles[role]].astype(np.float64)
            s = s.transpose(1, 0, 2) if layout else s  # (directions, B, hidden)
            state.update({k[column]: s[d] for d, k in enumerate(keys)})
    outputs, final = gr.compile(net, dtype="float64").forward(params, {"X": x}, state=state)
    y = np.stack([outputs[k[0]] for k in keys], axis=1)  # (T, directions, B, H)
    got = {"Y": y.transpose(2, 0, 1, 3) if layout else y}
    for column, role in ((1, "Y_h"), (2, "Y_c")):
        if keys[0][column] in final:
            v = np.stack([final[k[column]] for k in keys])
            got[role] = v.transpose(1, 0, 2) if layout else v
    return {role: got[role] for role, name in zip(("Y", "Y_h", "Y_c"), node.output,
                                                  strict=False) if name}


def _assert_close(got: dict, expected: list | dict, atol=1e-5):
    expected = expected if isinstance(expected, dict) else dict(zip(got, expected, strict=True))
    for k, v in expected.items():
        assert got[k].shape == v.shape, k
        err = np.abs(got[k] - v).max()
        assert err <= atol, f"{k}: error {err:.3g}"


def _direction(node) -> str:
    d = next((a.s for a in node.attribute if a.name == "direction"), b"forward")
    return d.decode()


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_onnx_operator_test_cases(case):
    name, node, inputs, outputs = case
    arrays = dict(zip(node.input, inputs, strict=False))
    _assert_close(_graphrnn(node, arrays), outputs)


def _random(op, hidden=5, size=3, steps=6, batch=2, layout=0, seed=0, bias=True, peep=False,
            initial=True, **attrs):
    rng = np.random.default_rng(seed)
    g = GATES[op]
    n = 2 if attrs.get("direction") == "bidirectional" else 1
    for key in ("activations", "activation_alpha", "activation_beta"):  # per direction
        if key in attrs:
            attrs[key] = list(attrs[key]) * n
    arrays = {"X": rng.normal(size=(batch, steps, size) if layout else (steps, batch, size)),
              "W": rng.normal(size=(n, g * hidden, size)) * 0.5,
              "R": rng.normal(size=(n, g * hidden, hidden)) * 0.5}
    names = ["X", "W", "R", "B" if bias else "", ""]
    if bias:
        arrays["B"] = rng.normal(size=(n, 2 * g * hidden))
    shape = (batch, n, hidden) if layout else (n, batch, hidden)
    if initial:
        arrays["initial_h"] = rng.normal(size=shape)
    names.append("initial_h" if initial else "")
    if op == "LSTM":
        if initial:
            arrays["initial_c"] = rng.normal(size=shape)
        names.append("initial_c" if initial else "")
        if peep:
            arrays["P"] = rng.normal(size=(n, 3 * hidden))
        names.append("P" if peep else "")
    arrays = {k: v.astype(np.float32) for k, v in arrays.items()}
    outs = ["Y", "Y_h"] + (["Y_c"] if op == "LSTM" else [])
    node = helper.make_node(op, names, outs, hidden_size=hidden, layout=layout, **attrs)
    return node, arrays


def _reference(node, arrays):
    feeds = {k: v for k, v in arrays.items() if k == "X" or k in STATE_INPUTS}
    ref = ReferenceEvaluator(_model(node, arrays))
    return dict(zip([o for o in node.output if o], ref.run(None, feeds), strict=True))


def _onnxruntime(node, arrays):
    feeds = {k: v for k, v in arrays.items() if k == "X" or k in STATE_INPUTS}
    session = ort.InferenceSession(_model(node, arrays).SerializeToString(),
                                   providers=["CPUExecutionProvider"])
    return dict(zip([o for o in node.output if o], session.run(None, feeds), strict=True))


RANDOM = [
    ("RNN", {}), ("RNN", {"layout": 1}), ("RNN", {"bias": False, "initial": False}),
    ("RNN", {"activations": ["Affine"], "activation_alpha": [0.7], "activation_beta": [0.2]}),
    ("GRU", {}), ("GRU", {"linear_before_reset": 1}), ("GRU", {"layout": 1, "bias": False}),
    ("LSTM", {}), ("LSTM", {"peep": True}), ("LSTM", {"peep": True, "layout": 1}),
    ("LSTM", {"initial": False, "bias": False}),
]


@pytest.mark.parametrize(("op", "options"), RANDOM, ids=[f"{o}-{k}" for o, k in RANDOM])
@pytest.mark.parametrize("direction", DIRECTIONS)
@pytest.mark.parametrize("seed", [0, 1])
def test_random_weights_match_onnx_reference(op, options, direction, seed):
    node, arrays = _random(op, seed=seed, direction=direction, **options)
    _assert_close(_graphrnn(node, arrays), _reference(node, arrays))


@pytest.mark.parametrize(("direction", "keys", "outputs"), [
    ("reverse", {"H@+1", "C@+1"}, ("Y",)),
    ("bidirectional", {"H", "C", "H_reverse@+1", "C_reverse@+1"}, ("Y", "Y_reverse"))])
def test_reverse_directions_are_anti_causal_chains_named_as_design_says(direction, keys,
                                                                        outputs):
    net, _ = gr.from_onnx(_model(*_random("LSTM", peep=True, direction=direction)))
    assert set(net.state_keys) == keys and net.outputs == outputs
    reverse = "H" if direction == "reverse" else "H_reverse"
    assert net.anti_causal(next(loop for loop in net.time_loops if reverse in loop))


ACTIVATIONS = [  # onnx.reference applies the defaults only: onnxruntime is the oracle here
    ("RNN", ["LeakyRelu"], [0.3], []), ("RNN", ["ThresholdedRelu"], [0.2], []),
    ("RNN", ["ScaledTanh"], [1.5], [0.7]), ("RNN", ["HardSigmoid"], [0.3], [0.4]),
    ("RNN", ["Elu"], [0.8], []), ("RNN", ["Softsign"], [], []), ("RNN", ["Softplus"], [], []),
    ("RNN", ["Relu"], [], []), ("RNN", ["Sigmoid"], [], []),
    ("GRU", ["HardSigmoid", "LeakyRelu"], [0.3, 0.2], [0.45]),
    ("LSTM", ["HardSigmoid", "Elu", "ScaledTanh"], [0.25, 0.9, 1.2], [0.5, 0.8]),
    ("LSTM", ["Sigmoid", "Softsign", "Tanh"], [], []),
]


@pytest.mark.parametrize(("op", "acts", "alpha", "beta"), ACTIVATIONS,
                         ids=["-".join([o, *a]) for o, a, _, _ in ACTIVATIONS])
def test_activations_with_alpha_beta_match_onnxruntime(op, acts, alpha, beta):
    attrs = {"activations": acts}
    if alpha:
        attrs["activation_alpha"] = alpha
    if beta:
        attrs["activation_beta"] = beta
    node, arrays = _random(op, seed=3, **attrs)
    _assert_close(_graphrnn(node, arrays), _onnxruntime(node, arrays))


def test_input_forget_matches_onnxruntime():
    node, arrays = _random("LSTM", seed=4, peep=True, input_forget=1)
    _assert_close(_graphrnn(node, arrays), _onnxruntime(node, arrays))
    net, _ = gr.from_onnx(_model(node, arrays))
    assert net.nodes["f"].activation == "affine" and net.in_edges("f")[0].src == "i"


@pytest.mark.parametrize(("op", "options"), [
    ("RNN", {}), ("GRU", {}), ("GRU", {"linear_before_reset": 1}), ("LSTM", {}),
    ("LSTM", {"peep": True, "input_forget": 1}),
    ("LSTM", {"activations": ["HardSigmoid", "Elu", "Tanh"], "activation_alpha": [0.3, 0.8]})])
@pytest.mark.parametrize("direction", DIRECTIONS)
def test_clip_matches_onnxruntime(op, options, direction):  # onnx.reference ignores clip
    node, arrays = _random(op, seed=7, clip=0.4, direction=direction, **options)
    got = _graphrnn(node, arrays)
    _assert_close(got, _onnxruntime(node, arrays))
    unclipped = _graphrnn(*_random(op, seed=7, direction=direction, **options))
    assert max(np.abs(got[k] - unclipped[k]).max() for k in got) > 1e-3  # clip mattered


def test_state_keys_are_h_and_c():
    net, params = gr.from_onnx(_model(*_random("LSTM", peep=True)))
    assert set(net.state_keys) == {"H", "C"}
    assert net.inputs == {"X": 3} and net.outputs == ("Y",)
    assert set(params) == set(net.params)


@pytest.mark.parametrize(("change", "message"), [
    ({"clip": -1.0}, "clip=-1.0 must be positive"),
    ({"direction": "sideways"}, "direction=sideways is not forward, reverse or"),
    ({"activations": ["Gelu"]}, "activations: Gelu"),
    ({"hidden_size": 7}, "hidden_size=7"),
])
def test_what_cannot_be_expressed_is_refused_naming_the_attribute(change, message):
    hidden = change.pop("hidden_size", 5)
    node, arrays = _random("RNN", **change)
    node = helper.make_node("RNN", list(node.input), list(node.output), hidden_size=hidden,
                            **change) if hidden != 5 else node
    with pytest.raises(gr.SpecError, match=message) as info:
        gr.from_onnx(_model(node, arrays))
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("op", ["RNN", "GRU", "LSTM"])
@pytest.mark.parametrize("direction", DIRECTIONS)
def test_sequence_lens_as_lengths_matches_onnxruntime(op, direction):
    """A sequence_lens graph input is graphrnn's lengths=: outputs zero past each end, Y_h
    each sequence's own last value (and, reversed, its value at step 0 read from its end)."""
    node, arrays = _random(op, steps=5, batch=3, direction=direction, seed=3)
    names = list(node.input)
    names[4] = "lens"
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    with_lens = helper.make_node(op, names, list(node.output), **attrs)
    lens = arrays["lens"] = np.array([5, 2, 4], np.int32)
    model = _model(with_lens, arrays)
    model.graph.input.append(helper.make_tensor_value_info("lens", TensorProto.INT32, [3]))
    model.graph.initializer.remove(next(i for i in model.graph.initializer if i.name == "lens"))
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    feeds = {k: v for k, v in arrays.items() if k == "X" or k in STATE_INPUTS}
    want = dict(zip([o for o in node.output if o], session.run(None, {**feeds, "lens": lens}),
                    strict=True))
    net, params = gr.from_onnx(model)
    state = {}
    reverse = direction == "reverse"
    for role, key in (("initial_h", "H"), ("initial_c", "C")):
        if role in arrays:
            s = arrays[role].astype(np.float64)
            state[key + ("@+1" if reverse else "")] = s[0]
            if direction == "bidirectional":
                state[f"{key}_reverse@+1"] = s[1]
    out, final = gr.compile(net, dtype="float64").forward(
        params, {"X": arrays["X"].astype(np.float64)}, state=state, lengths=lens)
    ys = [out["Y"]] + ([out["Y_reverse"]] if "Y_reverse" in out else [])
    got = {"Y": np.stack(ys, axis=1)}
    for key, role in (("H", "Y_h"), ("C", "Y_c")):
        first = key + ("@+1" if reverse else "")
        if first in final:
            hs = [final[first]] + ([final[f"{key}_reverse@+1"]]
                                   if direction == "bidirectional" else [])
            got[role] = np.stack(hs)
    _assert_close({k: got[k] for k in want}, want)
    with pytest.raises(gr.SpecError, match="make it a graph input and pass it as lengths="):
        gr.from_onnx(_model(with_lens, arrays))  # the same lengths as a constant: refused


def test_weights_must_be_constants_and_other_ops_are_refused():
    node, arrays = _random("RNN")
    model = _model(node, arrays)
    model.graph.input.append(helper.make_tensor_value_info("W", TensorProto.FLOAT, None))
    del model.graph.initializer[0]  # W
    with pytest.raises(gr.SpecError, match="W .* must be an initializer"):
        gr.from_onnx(model)
    model = _model(node, arrays)
    model.graph.node.append(helper.make_node("Relu", ["Y"], ["Z"]))
    with pytest.raises(gr.SpecError, match="ONNX Relu: from_onnx converts only"):
        gr.from_onnx(model)


def test_round_trip_through_to_onnx_and_the_cli(tmp_path):
    node, arrays = _random("LSTM", peep=True, seed=5)
    onnx.save(_model(node, arrays), str(tmp_path / "lstm.onnx"))
    net, params = gr.from_onnx(tmp_path / "lstm.onnx")
    exported = gr.to_onnx(net, params)
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(exported.SerializeToString(), options,
                                   providers=["CPUExecutionProvider"])
    y, h, c = session.run(["Y", "final.H", "final.C"], {
        "X": arrays["X"], "state.H": arrays["initial_h"][0], "state.C": arrays["initial_c"][0]})
    _assert_close({"Y": y[:, None], "Y_h": h[None], "Y_c": c[None]},
                  _reference(node, arrays))
    done = subprocess.run([sys.executable, "-m", "graphrnn", "import", str(tmp_path / "lstm.onnx"),
                           "-o", str(tmp_path / "lstm.yaml"), "--params", str(tmp_path / "p.npz")],
                          cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    again = gr.load_spec(tmp_path / "lstm.yaml")
    assert again.params.keys() == net.params.keys()
    loaded = dict(np.load(tmp_path / "p.npz"))
    outputs, _ = gr.compile(again, dtype="float64").forward(loaded, {"X": arrays["X"]})
    ref = gr.compile(net, dtype="float64").forward(params, {"X": arrays["X"]})[0]
    assert np.array_equal(outputs["Y"], ref["Y"])


REEXPORT = [
    ("RNN", {"activations": ["LeakyRelu"], "activation_alpha": [0.2]}),
    ("GRU", {"activations": ["HardSigmoid", "Softsign"], "activation_alpha": [0.3],
             "activation_beta": [0.45]}),
    ("GRU", {"linear_before_reset": 1}),
    ("LSTM", {"peep": True, "activations": ["HardSigmoid", "Elu", "Softsign"],
              "activation_alpha": [0.3, 0.7], "activation_beta": [0.4]}),
]


@pytest.mark.parametrize(("op", "options"), REEXPORT, ids=[f"{o}-{k}" for o, k in REEXPORT])
@pytest.mark.parametrize("direction", DIRECTIONS)
def test_an_imported_network_exports_as_the_same_operator(op, options, direction):
    node, arrays = _random(op, seed=6, direction=direction, **options)
    net, params = gr.from_onnx(_model(node, arrays))
    exported = gr.to_onnx(net, params)
    ops = [n for n in exported.graph.node if n.op_type in ("RNN", "GRU", "LSTM", "Scan")]
    assert [n.op_type for n in ops] == [op]
    assert _direction(ops[0]) == direction
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(exported.SerializeToString(), options,
                                   providers=["CPUExecutionProvider"])
    keys = _direction_keys(node)
    feeds, names = {"X": arrays["X"]}, [y for y, _, _ in keys]
    for column, role in ((1, "initial_h"), (2, "initial_c")):
        if role in arrays:
            feeds.update({f"state.{k[column]}": arrays[role][d] for d, k in enumerate(keys)})
            names += [f"final.{k[column]}" for k in keys]
    got = dict(zip(names, session.run(names, feeds), strict=True))
    expected = {"Y": np.stack([got[y] for y, _, _ in keys], axis=1)}
    for column, role in ((1, "Y_h"), (2, "Y_c")):
        if f"final.{keys[0][column]}" in got:
            expected[role] = np.stack([got[f"final.{k[column]}"] for k in keys])
    _assert_close(expected, _onnxruntime(node, arrays))
