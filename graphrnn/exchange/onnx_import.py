"""``from_onnx``: an ONNX ``RNN``, ``GRU`` or ``LSTM`` node as a graphrnn network and params.

Names (DESIGN.md, *Frameworks*): input ``X`` ``(T, B, input_size)`` time-major (an ONNX model
with ``layout=1`` is batch-major: transpose its arrays), outputs ``Y`` (and ``Y_reverse``), the
hidden and cell nodes ``H`` and ``C`` (``H_reverse``, ``C_reverse``), so ONNX's
``initial_h``/``initial_c`` are the states ``H``/``C`` and ``Y_h``/``Y_c`` the final states
under the same keys. A reverse direction is an anti-causal chain (edges ``@-1``, reading step
t + 1): with ``direction=bidirectional`` its nodes end ``_reverse`` and its states are
``H_reverse@+1``, ``C_reverse@+1`` (``initial_h[1]``, ``Y_h[1]``); with ``direction=reverse``
alone the one chain is ``H``, ``C`` with output ``Y``, its states ``H@+1``, ``C@+1``.
Gates are nodes named as ONNX's equations name them (``i o f g`` for the LSTM, whose
candidate ONNX calls ``c``; ``z r hh`` for the GRU); parameters are the edges'
default names (``X->i``, ``H->i@1``, ``C->i@1`` a peephole, ``i.bias`` = ``Wb + Rb``).
What graphrnn cannot express is refused with one line naming the attribute.
"""

from __future__ import annotations

import os

import numpy as np
import onnx
import yaml
from onnx import helper, numpy_helper

from graphrnn.errors import SpecError
from graphrnn.frontend.network import Network
from graphrnn.frontend.spec import load_spec

#: ONNX activation name (lower case) -> graphrnn activation
ACTIVATIONS = {"relu": "relu", "tanh": "tanh", "sigmoid": "sigmoid", "affine": "affine",
               "leakyrelu": "leaky_relu", "thresholdedrelu": "thresholded_relu",
               "scaledtanh": "scaled_tanh", "hardsigmoid": "hard_sigmoid", "elu": "elu",
               "softsign": "softsign", "softplus": "softplus"}
#: per op: gate count, default activations, the names of its inputs in order
OPS = {"RNN": (1, ("Tanh",), ("X", "W", "R", "B", "sequence_lens", "initial_h")),
       "GRU": (3, ("Sigmoid", "Tanh"), ("X", "W", "R", "B", "sequence_lens", "initial_h")),
       "LSTM": (4, ("Sigmoid", "Tanh", "Tanh"),
                ("X", "W", "R", "B", "sequence_lens", "initial_h", "initial_c", "P"))}
_KNOWN_ATTRS = {"activation_alpha", "activation_beta", "activations", "clip", "direction",
                "hidden_size", "layout", "linear_before_reset", "input_forget"}


def _refuse(op: str, message: str):
    raise SpecError(f"ONNX {op}: {message}")


def _load(path_or_model) -> onnx.ModelProto:
    if isinstance(path_or_model, onnx.ModelProto):
        return path_or_model
    if isinstance(path_or_model, str | os.PathLike):
        return onnx.load(os.fspath(path_or_model))
    raise TypeError("from_onnx takes a path or an onnx.ModelProto")


def _activations(op: str, attrs: dict, count: int, defaults: tuple[str, ...]) -> list[list]:
    """Per direction: ``[(graphrnn activation, alpha, beta), ...]``, alpha/beta consumed in
    order by the activations that take them (``None``: ONNX's default)."""
    from graphrnn.ops.activations import REGISTRY
    names = [n.decode() if isinstance(n, bytes) else n for n in attrs.get("activations", [])]
    names = names or list(defaults) * count
    if len(names) != len(defaults) * count:
        _refuse(op, f"activations has {len(names)} entries, {len(defaults) * count} expected")
    alphas, betas = list(attrs.get("activation_alpha", [])), list(attrs.get("activation_beta", []))
    out = []
    for name in names:
        if name.lower() not in ACTIVATIONS:
            _refuse(op, f"activations: {name} is not an ONNX RNN activation graphrnn has")
        act = ACTIVATIONS[name.lower()]
        keys = REGISTRY[act].keys
        alpha = alphas.pop(0) if "alpha" in keys and alphas else None
        beta = betas.pop(0) if "beta" in keys and betas else None
        out.append((act, alpha, beta))
    return [out[d * len(defaults):(d + 1) * len(defaults)] for d in range(count)]


class _Spec:
    """A spec under construction (nodes, edges) and the parameter arrays it needs."""

    def __init__(self, hidden: int):
        self.hidden, self.nodes, self.edges, self.params = hidden, {}, [], {}
        self.activated: list[str] = []  # the nodes applying one of the op's activations

    def node(self, name: str, act=("identity", None, None), combine="sum", bias=None,
             bias_value=None, onnx_act=False) -> str:
        spec = {"size": self.hidden, "activation": act[0], "combine": combine}
        if act[1] is not None:
            spec["alpha"] = float(act[1])
        if act[2] is not None:
            spec["beta"] = float(act[2])
        if bias is not None:
            spec["bias"] = bias
        self.nodes[name] = spec
        if onnx_act:
            self.activated.append(name)
        if bias_value is not None:
            self.params[f"{name}.bias"] = bias_value
        return name

    def clip(self, threshold: float) -> None:
        """Bound the input of every gate's activation to ``[-c, c]`` (ONNX's ``clip``, as
        onnxruntime applies it: not to the LSTM's ``h(C)``; onnx.reference ignores clip):
        ``clip(x) = 2c * hard_sigmoid(x / 2c + 1/2) - c``, a node ``NAME_clip`` before each."""
        c = float(threshold)
        for name in self.activated:
            pre, spec = f"{name}_clip", self.nodes[name]
            self.nodes[pre] = {"size": self.hidden, "activation": "hard_sigmoid",
                               "alpha": 0.5 / c, "beta": 0.5, "combine": spec["combine"],
                               **({"bias": spec["bias"]} if "bias" in spec else {})}
            for e in self.edges:
                if e["to"] == name:
                    old = f"{e['from']}->{name}" + (f"@{e['delay']}" if e["delay"] else "")
                    e["to"] = pre
                    if old in self.params:
                        self.params[old.replace(f"->{name}", f"->{pre}", 1)] = \
                            self.params.pop(old)
            if f"{name}.bias" in self.params:
                self.params[f"{pre}.bias"] = self.params.pop(f"{name}.bias")
            spec.update(bias=True, combine="sum")
            self.params[f"{name}.bias"] = np.full(self.hidden, -c)
            self.edge(pre, name, scale=2 * c)

    def edge(self, src: str, dst: str, delay=0, weight="identity", value=None, scale=1.0):
        e = {"from": src, "to": dst, "delay": delay, "weight": weight}
        if scale != 1.0:
            e["scale"] = scale
        self.edges.append(e)
        if value is not None:
            self.params[f"{src}->{dst}" + (f"@{delay}" if delay else "")] = value


def _direction(op, s: _Spec, sfx: str, reverse: bool, acts, w, r, b, p, attrs) -> str:
    """Add one direction's chain to ``s`` (node names ending ``sfx``; anti-causal, reading
    step t + 1, when ``reverse``); return its hidden node's name."""
    lag = -1 if reverse else 1
    hid, H, C = s.hidden, f"H{sfx}", f"C{sfx}"
    gates = w.shape[0] // hid
    W = [w[k * hid:(k + 1) * hid] for k in range(gates)]
    R = [r[k * hid:(k + 1) * hid] for k in range(gates)]
    Wb = [b[k * hid:(k + 1) * hid] for k in range(gates)]
    Rb = [b[(gates + k) * hid:(gates + k + 1) * hid] for k in range(gates)]

    def gate(name, act, k, peephole=None, peephole_delay=lag):
        s.node(name, act, bias_value=Wb[k] + Rb[k], onnx_act=True)
        s.edge("X", name, 0, "full", W[k])
        s.edge(H, name, lag, "full", R[k])
        if peephole is not None:
            s.edge(C, name, peephole_delay, "diagonal", peephole)
        return name

    if op == "RNN":
        gate(H, acts[0], 0)
        return H
    if op == "GRU":
        z, rr = gate(f"z{sfx}", acts[0], 0), gate(f"r{sfx}", acts[0], 1)
        hh = f"hh{sfx}"
        if attrs.get("linear_before_reset", 0):
            s.node(f"rh{sfx}", bias_value=Rb[2])           # R_h H[t-1] + Rb_h
            s.edge(H, f"rh{sfx}", lag, "full", R[2])
            s.node(f"rrh{sfx}", combine="product")          # r * (R_h H[t-1] + Rb_h)
            s.edge(rr, f"rrh{sfx}"), s.edge(f"rh{sfx}", f"rrh{sfx}")
            s.node(hh, acts[1], bias_value=Wb[2], onnx_act=True)
            s.edge("X", hh, 0, "full", W[2]), s.edge(f"rrh{sfx}", hh)
        else:
            s.node(f"rH{sfx}", combine="product")           # r * H[t-1]
            s.edge(rr, f"rH{sfx}"), s.edge(H, f"rH{sfx}", lag)
            s.node(hh, acts[1], bias_value=Wb[2] + Rb[2], onnx_act=True)
            s.edge("X", hh, 0, "full", W[2]), s.edge(f"rH{sfx}", hh, 0, "full", R[2])
        s.node(f"nz{sfx}", ("affine", -1.0, 1.0), bias=False)  # 1 - z
        s.edge(z, f"nz{sfx}")
        s.node(f"nzh{sfx}", combine="product"), s.node(f"zH{sfx}", combine="product")
        s.edge(f"nz{sfx}", f"nzh{sfx}"), s.edge(hh, f"nzh{sfx}")
        s.edge(z, f"zH{sfx}"), s.edge(H, f"zH{sfx}", lag)
        s.node(H)
        s.edge(f"nzh{sfx}", H), s.edge(f"zH{sfx}", H)
        return H
    pi, po, pf = (None, None, None) if p is None else (p[:hid], p[hid:2 * hid], p[2 * hid:])
    i = gate(f"i{sfx}", acts[0], 0, pi)
    o = gate(f"o{sfx}", acts[0], 1, po, peephole_delay=0)
    if attrs.get("input_forget", 0):
        f = s.node(f"f{sfx}", ("affine", -1.0, 1.0), bias=False)  # coupled: f = 1 - i
        s.edge(i, f)
    else:
        f = gate(f"f{sfx}", acts[0], 2, pf)
    g = gate(f"g{sfx}", acts[1], 3)
    s.node(f"fC{sfx}", combine="product"), s.node(f"ig{sfx}", combine="product")
    s.edge(f, f"fC{sfx}"), s.edge(C, f"fC{sfx}", lag)
    s.edge(i, f"ig{sfx}"), s.edge(g, f"ig{sfx}")
    s.node(C)
    s.edge(f"fC{sfx}", C), s.edge(f"ig{sfx}", C)
    s.node(f"hC{sfx}", acts[2], bias=False)  # onnxruntime does not clip h's input
    s.edge(C, f"hC{sfx}")
    s.node(H, combine="product")
    s.edge(o, H), s.edge(f"hC{sfx}", H)
    return H


def from_onnx(path_or_model) -> tuple[Network, dict]:
    """Convert the ONNX ``RNN``, ``GRU`` or ``LSTM`` node of a model to a graphrnn network.

    Parameters
    ----------
    path_or_model : str, os.PathLike or onnx.ModelProto
        A model with one recurrent node whose weights ``W``, ``R`` (and ``B``, ``P``) are
        initializers or ``Constant`` nodes; ``initial_h``/``initial_c`` are graph inputs
        (passed to graphrnn as the states ``H``/``C``) or absent.

    Returns
    -------
    network : graphrnn.Network
    params : dict
        Name -> float32 array (float64 where the model's weights are double).

    Raises
    ------
    SpecError
        One line naming what graphrnn cannot express (a constant ``sequence_lens`` shorter
        than T, other ops, ``clip`` <= 0). A ``sequence_lens`` graph input is accepted: pass
        its values as ``lengths=`` to ``forward``/``gradients`` (the same semantics).
    """
    spec, params = onnx_spec(path_or_model)
    return load_spec(spec_text(spec)), params


def spec_text(spec: dict) -> str:
    """A spec dictionary as the YAML text of a spec file."""
    return yaml.safe_dump(spec, sort_keys=False, default_flow_style=None)


def onnx_spec(path_or_model) -> tuple[dict, dict]:
    """The spec (as a dictionary) and params of :func:`from_onnx`."""
    source = (os.fspath(path_or_model) if isinstance(path_or_model, str | os.PathLike)
              else "<onnx model>")
    try:
        return _convert(_load(path_or_model).graph)
    except SpecError as e:
        raise SpecError(e.message, source) from None


def _convert(graph: onnx.GraphProto) -> tuple[dict, dict]:
    consts = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    recurrent = []
    for n in graph.node:
        if n.op_type == "Constant":
            consts[n.output[0]] = numpy_helper.to_array(n.attribute[0].t)
        elif n.op_type in OPS:
            recurrent.append(n)
        else:
            _refuse(n.op_type, "from_onnx converts only RNN, GRU and LSTM nodes")
    if len(recurrent) != 1:
        raise SpecError(f"from_onnx needs exactly one RNN, GRU or LSTM node, "
                        f"the model has {len(recurrent)}")
    node = recurrent[0]
    op = node.op_type
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    for name in attrs:
        if name not in _KNOWN_ATTRS:
            _refuse(op, f"attribute {name} is not one graphrnn knows")
    _, defaults, roles = OPS[op]
    given = dict(zip(roles, node.input, strict=False))
    given = {k: v for k, v in given.items() if v}
    direction = attrs.get("direction", b"forward")
    direction = direction.decode() if isinstance(direction, bytes) else direction
    if direction not in ("forward", "reverse", "bidirectional"):
        _refuse(op, f"direction={direction} is not forward, reverse or bidirectional")
    if attrs.get("clip") is not None and not attrs["clip"] > 0:
        _refuse(op, f"clip={attrs['clip']} must be positive")
    if "sequence_lens" in given:
        _sequence_lens_trivial(op, graph, given, consts, attrs.get("layout", 0))
    for role in ("W", "R", "B", "P"):
        if role in given and given[role] not in consts:
            _refuse(op, f"{role} ({given[role]}) must be an initializer or a Constant")
    for role in ("initial_h", "initial_c"):
        if role in given and given[role] in consts:
            _refuse(op, f"{role} is a constant: make it a graph input and pass it as a state")
    w, r = consts[given["W"]], consts[given["R"]]
    dirs, hidden = r.shape[0], r.shape[-1]
    if int(attrs.get("hidden_size", hidden)) != hidden:
        _refuse(op, f"hidden_size={attrs['hidden_size']} but R has {hidden} columns")
    if dirs != (2 if direction == "bidirectional" else 1):
        _refuse(op, f"direction={direction} but W has {dirs} directions")
    b = consts.get(given.get("B"), np.zeros((dirs, 2 * count_gates(op) * hidden), w.dtype))
    p = consts.get(given.get("P"))
    acts = _activations(op, attrs, dirs, defaults)
    dtype = np.float64 if w.dtype == np.float64 else np.float32
    s = _Spec(hidden)
    outs = []
    for d in range(dirs):
        sfx = "_reverse" if d == 1 else ""  # direction=reverse alone: nodes H, C, output Y
        H = _direction(op, s, sfx, d == 1 or direction == "reverse", acts[d], w[d], r[d], b[d],
                       None if p is None else p[d], attrs)
        if attrs.get("clip") is not None:
            s.clip(attrs["clip"])
            s.activated.clear()
        y = f"Y{sfx}"
        s.node(y)
        s.edge(H, y)
        outs.append(y)
    spec = {"name": f"onnx_{op.lower()}", "inputs": {"X": int(w.shape[-1])},
            "nodes": s.nodes, "edges": s.edges, "outputs": outs}
    params = {k: np.ascontiguousarray(v, dtype=dtype) for k, v in s.params.items()}
    return spec, params


def count_gates(op: str) -> int:
    """How many gates an ONNX recurrent op stacks in ``W``: 1, 3 or 4."""
    return OPS[op][0]


def _sequence_lens_trivial(op, graph, given, consts, layout) -> None:
    """Accept ``sequence_lens`` as a graph input (the caller passes it as ``lengths=``: the
    same semantics) or as a constant equal to the fixed T everywhere."""
    if any(i.name == given["sequence_lens"] for i in graph.input):
        return
    lens = consts.get(given["sequence_lens"])
    x = next((i for i in graph.input if i.name == given["X"]), None)
    dims = x.type.tensor_type.shape.dim if x is not None else []
    t_dim = dims[1 if layout else 0].dim_value if len(dims) == 3 else 0
    if lens is None or not t_dim or np.any(np.asarray(lens) != t_dim):
        _refuse(op, "a constant sequence_lens shorter than T: make it a graph input and pass "
                    "it as lengths=")
