"""Time loops that are exactly an ONNX ``RNN``, ``GRU`` or ``LSTM``, emitted as that operator.

A loop matches when its nodes, edges, activations and readers are those of the operator's
equations and nothing more (no leak, no other edge, no reader of an internal gate); anything
else stays a ``Scan``. Recurrent reads are ``@1``, or ``@-1`` in an anti-causal loop, which
becomes the operator with ``direction=reverse`` (``exp.lag`` says which).
The hidden node's sequence is the operator's ``Y``; an LSTM cell's
final value (its only use outside the loop) is ``Y_c``.
"""

from __future__ import annotations

import numpy as np

from graphrnn.frontend.network import boundary_key
from graphrnn.ops.activations import REGISTRY

#: graphrnn activation -> the name of the ONNX recurrent operators' ``activations`` entry
ACTIVATIONS = {"tanh": "Tanh", "sigmoid": "Sigmoid", "relu": "Relu", "identity": "Affine",
               "affine": "Affine", "leaky_relu": "LeakyRelu", "softsign": "Softsign",
               "thresholded_relu": "ThresholdedRelu", "scaled_tanh": "ScaledTanh",
               "hard_sigmoid": "HardSigmoid", "elu": "Elu", "softplus": "Softplus"}


def _act(node) -> tuple | None:
    """``(ONNX name, alpha, beta)`` with the keys ONNX reads, or None when it has none."""
    if node.activation not in ACTIVATIONS:
        return None
    if node.activation == "identity":
        return ("Affine", 1.0, 0.0)
    keys, p = REGISTRY[node.activation].keys, REGISTRY[node.activation].params(node.alpha,
                                                                                 node.beta)
    return (ACTIVATIONS[node.activation], p.alpha if "alpha" in keys else None,
            p.beta if "beta" in keys else None)


def _act_attrs(acts: list[tuple]) -> dict:
    """The ``activations``/``activation_alpha``/``activation_beta`` attributes, consumed in
    order by the activations that take them."""
    attrs = {"activations": [a[0] for a in acts]}
    alphas = [a[1] for a in acts if a[1] is not None]
    betas = [a[2] for a in acts if a[2] is not None]
    if alphas:
        attrs["activation_alpha"] = alphas
    if betas:
        attrs["activation_beta"] = betas
    return attrs


def _plain(node, combine: str, net, name: str) -> bool:
    """A node with no activation, leak or bias that ``combine``s its inputs."""
    return (node.combine == combine and node.activation == "identity" and node.leak is None
            and not net.has_bias(name))


def _identity_sources(net, name: str) -> list[tuple[str, int]] | None:
    edges = net.in_edges(name)
    if any(e.weight != "identity" or e.scale != 1.0 for e in edges):
        return None
    return [(e.src, e.delay) for e in edges]


def _weight(params, edge) -> np.ndarray:
    w = params[edge.param]
    return (w.T if edge.transpose else w) * np.float32(edge.scale)


def _bias(exp, name: str) -> np.ndarray:
    """Node ``name``'s bias, zeros where it has none."""
    if exp.net.has_bias(name):
        return exp.params[f"{name}.bias"]
    return np.zeros(exp.net.size(name), np.float32)


def _gate(exp, name: str, hidden: str, cell: str | None, peep_delay: int):
    """``(x source, W, R, P, bias, act)`` of a gate ``act(W x + R h[t-1] + P c + b)``."""
    net, node = exp.net, exp.net.nodes[name]
    if node.combine != "sum" or node.leak is not None or _act(node) is None:
        return None
    x = r = p = None
    for e in net.in_edges(name):
        if e.weight == "full" and e.src == hidden and e.delay == exp.lag and r is None:
            r = _weight(exp.params, e)
        elif (e.weight == "diagonal" and e.src == cell and e.delay == peep_delay
              and p is None):
            p = exp.params[e.param] * np.float32(e.scale)
        elif e.weight == "full" and e.delay == 0 and e.src not in exp.loop_members and x is None:
            x = (e.src, _weight(exp.params, e))
        else:
            return None
    if x is None or r is None:
        return None
    size = node.size
    bias = _bias(exp, name)
    return x[0], x[1], r, np.zeros(size, np.float32) if p is None else p, bias, _act(node)


def _lstm_roles(exp, members: list[str]) -> dict | None:
    """The roles of a loop that is exactly ONNX's LSTM, or None."""
    net = exp.net
    for hid in members:
        if not _plain(net.nodes[hid], "product", net, hid):
            continue
        srcs = _identity_sources(net, hid)
        if not srcs or len(srcs) != 2 or any(d for _, d in srcs):
            continue
        for (hc, _), (o, _) in (srcs, srcs[::-1]):
            hc_src = _identity_sources(net, hc) if hc in members else None
            if (not hc_src or len(hc_src) != 1 or hc_src[0][1] != 0 or net.has_bias(hc)
                    or net.nodes[hc].combine != "sum" or net.nodes[hc].leak is not None):
                continue
            cell = hc_src[0][0]
            parts = _identity_sources(net, cell)
            if not parts or len(parts) != 2 or not _plain(net.nodes[cell], "sum", net, cell):
                continue
            roles = _cell_parts(net, cell, [s for s, d in parts if d == 0], exp.lag)
            if roles is None:
                continue
            roles.update(h=hid, hc=hc, c=cell, o=o)
            if set(roles.values()) == set(members) and len(members) == 9:
                return roles
    return None


def _cell_parts(net, cell: str, parts: list[str], lag: int) -> dict | None:
    """``fc = f * c[t-lag]`` and ``ig = i * g`` among the two products summed into ``cell``."""
    if len(parts) != 2:
        return None
    for fc, ig in (parts, parts[::-1]):
        fs, is_ = _identity_sources(net, fc), _identity_sources(net, ig)
        if not fs or not is_ or not all(_plain(net.nodes[n], "product", net, n)
                                        for n in (fc, ig)):
            continue
        if len(fs) != 2 or len(is_) != 2 or (cell, lag) not in fs or any(d for _, d in is_):
            continue
        f = next((s for s, d in fs if (s, d) != (cell, lag) and d == 0), None)
        if f is None:
            continue
        return {"fc": fc, "ig": ig, "f": f, "i": is_[0][0], "g": is_[1][0]}
    return None


def _readers_ok(exp, members: list[str], visible: set[str]) -> bool:
    """Only ``visible`` members are read outside the loop (edges and outputs)."""
    net, inside = exp.net, set(members)
    read = {e.src for e in net.edges if e.src in inside and e.dst not in inside}
    return (read | (set(net.outputs) & inside)) <= visible


def _lstm_gates(exp, roles: dict) -> dict | None:
    """Each gate's ``_gate`` reading, or None where one is not a gate or they disagree."""
    gates = {}
    for k, peep in (("i", exp.lag), ("o", 0), ("f", exp.lag), ("g", None)):
        gates[k] = _gate(exp, roles[k], roles["h"], roles["c"] if peep is not None else None,
                         peep if peep is not None else -9)
        if gates[k] is None:
            return None
    if len({gates[k][0] for k in gates}) != 1 or len({gates[k][5] for k in "iof"}) != 1:
        return None
    return gates


def emit_lstm(exp, members: list[str]) -> bool:
    """Emit ONNX ``LSTM`` for a loop that is exactly one; say whether."""
    roles = _lstm_roles(exp, members)
    net = exp.net
    if roles is None or not _readers_ok(exp, members, {roles["h"]}):
        return False
    reads = net.future if exp.lag < 0 else net.history
    if reads[roles["c"]] > 1 or net.nodes[roles["hc"]].activation not in ACTIVATIONS:
        return False
    gates = _lstm_gates(exp, roles)
    if gates is None:  # i * g is symmetric: the other reading of the two factors
        roles["i"], roles["g"] = roles["g"], roles["i"]
        gates = _lstm_gates(exp, roles)
    if gates is None:
        return False
    order = "iofg"
    w = np.concatenate([gates[k][1] for k in order])[None]
    r = np.concatenate([gates[k][2] for k in order])[None]
    b = np.concatenate([gates[k][4] for k in order] + [np.zeros_like(w[0, :, 0])])[None]
    p = np.concatenate([gates[k][3] for k in "iof"])[None]
    acts = [gates["i"][5], gates["g"][5], _act(net.nodes[roles["hc"]])]
    g, zero = exp.g, exp.g.const([0], "zero", np.int64)
    h0 = g.op("Unsqueeze", [_first_row(exp, roles["h"]), zero], "h0")
    c0 = g.op("Unsqueeze", [_first_row(exp, roles["c"]), zero], "c0")
    y, _, yc = g.op("LSTM", [exp.seq[gates["i"][0]], g.const(w, "W"), g.const(r, "R"),
                             g.const(b, "B"), "", h0, c0, g.const(p, "P")],
                    outputs=[g.fresh("lstm_y"), g.fresh("lstm_yh"), g.fresh("lstm_yc")],
                    hidden_size=w.shape[1] // 4, **_act_attrs(acts), **_direction(exp))
    exp.seq[roles["h"]] = g.op("Squeeze", [y, g.const([1], "one", np.int64)], f"v.{roles['h']}")
    exp.last[boundary_key(roles["c"], exp.lag)] = g.op("Squeeze", [yc, zero],
                                                       f"last.{roles['c']}")
    return True


def _first_row(exp, name: str) -> str:
    """The ``(B, size)`` state the operator starts from: ``t = -1`` or, reverse, ``t = T``."""
    return (exp.ahead if exp.lag < 0 else exp.init)[name][0]


def _direction(exp) -> dict:
    """The ``direction`` attribute of an anti-causal loop's operator (none: forward)."""
    return {"direction": "reverse"} if exp.lag < 0 else {}


def emit_rnn(exp, members: list[str], depth: dict) -> bool:
    """Emit ONNX ``RNN`` when the one-node loop is exactly one; say whether."""
    if len(members) != 1:
        return False
    name = members[0]
    node, g = exp.net.nodes[name], exp.g
    if depth[name] != 1 or _act(node) is None:
        return False
    gate = _gate(exp, name, name, None, -9)
    if gate is None:
        return False
    src, w, r, _, bias, act = gate
    zero = g.const([0], "zero", np.int64)
    h0 = g.op("Unsqueeze", [_first_row(exp, name), zero], "h0")
    b = np.concatenate([bias, np.zeros(node.size, np.float32)])[None]
    y = g.op("RNN", [exp.seq[src], g.const(w[None], "W"), g.const(r[None], "R"),
                     g.const(b, "B"), "", h0],
             outputs=[g.fresh("rnn_y")], hidden_size=node.size, **_act_attrs([act]),
             **_direction(exp))
    exp.seq[name] = g.op("Squeeze", [y, g.const([1], "one", np.int64)], f"v.{name}")
    return True


def _only(net, name: str, combine: str, sources: int) -> list[tuple[str, int]] | None:
    """The identity sources of a plain ``combine`` node with exactly ``sources`` of them."""
    if not _plain(net.nodes[name], combine, net, name):
        return None
    srcs = _identity_sources(net, name)
    return srcs if srcs is not None and len(srcs) == sources else None


def _candidate(exp, name: str, hidden: str, r_gate: str):
    """``(x source, W_h, R_h, Wb_h, Rb_h, act)`` of ONNX's GRU candidate at ``name``, either
    ``g(W x + R (r * h[t-1]) + b)`` or, ``linear_before_reset``, ``g(W x + r * (R h[t-1] +
    Rb) + Wb)``; with ``lbr`` (bool) appended."""
    net, node = exp.net, exp.net.nodes[name]
    if node.combine != "sum" or node.leak is not None or _act(node) is None:
        return None
    x = inner = None
    for e in net.in_edges(name):
        if e.delay != 0:
            return None
        if e.src not in exp.loop_members and e.weight == "full" and x is None:
            x = (e.src, _weight(exp.params, e))
        elif e.src in exp.loop_members and inner is None:
            inner = e
        else:
            return None
    if x is None or inner is None:
        return None
    size = node.size
    bias = _bias(exp, name)
    prod = _only(net, inner.src, "product", 2)
    if prod is None or any(d for s, d in prod if s == r_gate) or r_gate not in dict(prod):
        return None
    other = next(((s, d) for s, d in prod if s != r_gate), None)
    if inner.weight == "full" and other == (hidden, exp.lag):
        return x[0], x[1], _weight(exp.params, inner), bias, np.zeros(size, np.float32), \
            _act(node), False, (inner.src,)
    if inner.weight != "identity" or inner.scale != 1.0 or other is None or other[1] != 0:
        return None
    rh, rh_node = other[0], net.nodes[other[0]]
    edges = net.in_edges(rh)
    if (rh_node.combine != "sum" or rh_node.activation != "identity" or rh_node.leak is not None
            or len(edges) != 1 or edges[0].weight != "full" or edges[0].src != hidden
            or edges[0].delay != exp.lag):
        return None
    rb = _bias(exp, rh)
    return x[0], x[1], _weight(exp.params, edges[0]), bias, rb, _act(node), True, \
        (inner.src, rh)


def _gru_mix(net, hidden: str, lag: int) -> tuple[str, str, tuple] | None:
    """``(z, candidate, helper nodes)`` of ``h = (1 - z) * n + z * h[t-lag]`` as from_onnx
    writes it, or of ``h = n + z * (h[t-lag] - n)`` (torch's form, graphrnn's gru.yaml)."""
    parts = _only(net, hidden, "sum", 2)
    if parts is None or any(d for _, d in parts):
        return None
    for (a, _), (b, _) in (parts, parts[::-1]):
        zh, mix = _only(net, a, "product", 2), _only(net, b, "product", 2)
        if zh and mix and (hidden, lag) in zh:                   # (1 - z) * n + z * h[t-lag]
            z = next((s for s, d in zh if (s, d) != (hidden, lag) and d == 0), None)
            for (nz, _), (cand, _) in (mix, mix[::-1]):
                nz_node, nz_edges = net.nodes[nz], net.in_edges(nz)
                if (nz_node.activation == "affine" and (nz_node.alpha, nz_node.beta) == (-1, 1)
                        and not net.has_bias(nz) and nz_node.leak is None
                        and [(e.src, e.delay, e.weight, e.scale) for e in nz_edges]
                        == [(z, 0, "identity", 1.0)]):
                    return z, cand, (a, b, nz)
        diff = _identity_diff(net, b, hidden, lag) if mix else None  # n + z * (h[t-lag] - n)
        if diff is not None and diff[0] == a:
            z = next((s for s, d in mix if s != diff[1] and d == 0), None)
            if z is not None:
                return z, a, (b, diff[1])
    return None


def _identity_diff(net, zd: str, hidden: str, lag: int):
    """For ``zd = z * d`` with ``d = h[t-lag] - n``: ``(n, d)``, else None."""
    for src, delay in _identity_sources(net, zd) or ():
        d_edges = net.in_edges(src) if src in net.nodes else ()
        if (delay == 0 and len(d_edges) == 2 and _plain(net.nodes[src], "sum", net, src)
                and all(e.weight == "identity" and e.delay == 0
                        or (e.src, e.delay) == (hidden, lag) for e in d_edges)):
            plus = [e for e in d_edges if (e.src, e.delay, e.scale) == (hidden, lag, 1.0)]
            minus = [e for e in d_edges if e.delay == 0 and e.scale == -1.0]
            if plus and minus and plus[0].weight == "identity":
                return minus[0].src, src
    return None


def emit_gru(exp, members: list[str]) -> bool:
    """Emit ONNX ``GRU`` for a loop that is exactly one; say whether."""
    net = exp.net
    for hid in members:
        mix = _gru_mix(net, hid, exp.lag) if hid in net.nodes else None
        if mix is None:
            continue
        z, cand, helpers = mix
        for r in members:
            if r in (z, hid, cand) or r not in net.nodes:
                continue
            c = _candidate(exp, cand, hid, r)
            gz, gr_ = _gate(exp, z, hid, None, -9), _gate(exp, r, hid, None, -9)
            if c is None or gz is None or gr_ is None:
                continue
            used = {hid, z, r, cand, *helpers, *c[7]}
            if (used != set(members) or len(used) != len(members) or gz[5] != gr_[5]
                    or len({gz[0], gr_[0], c[0]}) != 1 or not _readers_ok(exp, members, {hid})):
                continue
            _gru_node(exp, hid, gz, gr_, c)
            return True
    return False


def _gru_node(exp, hid: str, gz, gr_, c) -> None:
    g, zero, size = exp.g, exp.g.const([0], "zero", np.int64), exp.net.nodes[hid].size
    w = np.concatenate([gz[1], gr_[1], c[1]])[None]
    r = np.concatenate([gz[2], gr_[2], c[2]])[None]
    b = np.concatenate([gz[4], gr_[4], c[3], np.zeros(2 * size, np.float32), c[4]])[None]
    h0 = g.op("Unsqueeze", [_first_row(exp, hid), zero], "h0")
    y = g.op("GRU", [exp.seq[gz[0]], g.const(w, "W"), g.const(r, "R"), g.const(b, "B"), "", h0],
             outputs=[g.fresh("gru_y")], hidden_size=size, linear_before_reset=int(c[6]),
             **_act_attrs([gz[5], c[5]]), **_direction(exp))
    exp.seq[hid] = g.op("Squeeze", [y, g.const([1], "one", np.int64)], f"v.{hid}")
