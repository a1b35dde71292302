"""``from_torch``/``to_torch``: ``torch.nn.RNN``, ``LSTM`` and ``GRU`` as graphrnn specs and back.

Names (DESIGN.md, *Frameworks*): input ``x`` ``(T, B, input_size)`` (time-major: with
``batch_first=True`` transpose ``x`` and ``y``), output ``y`` = torch's ``output``, the hidden
and cell nodes of layer l ``h_l{l}``, ``c_l{l}`` (``h_l{l}_reverse``, ``c_l{l}_reverse``), so
torch's ``h_n[2l+d]`` / ``c_n[2l+d]`` are the final states ``h_l{l}`` (d=0) and
``h_l{l}_reverse@+1`` (d=1), and ``h0``/``c0`` are passed as the same state keys. Gates are
nodes ``i f g o`` (LSTM; ``m`` = ``o * tanh(c)`` before the projection when ``proj_size``),
``r z hn rhn n d zd`` (GRU, as ``specs/gru.yaml``), each suffixed ``_l{l}`` (and ``_reverse``).
Parameters keep the edges' default names (``x->i_l0``, ``h_l0->i_l0@1``,
``h_l0_reverse->i_l0_reverse@-1``; ``i_l0.bias`` = ``b_ii + b_hi``).

How the two directions are joined: layer l+1 reads ``h_l{l}`` and ``h_l{l}_reverse`` through two
full edges (the two column blocks of torch's ``weight_ih_l{l+1}``); the output ``y`` of a
bidirectional module (size 2H) is written by two *fixed* full edges (``trainable: false``) whose
matrices ``[I; 0]`` and ``[0; I]`` place each direction in its half, as torch concatenates.
"""

from __future__ import annotations

import numpy as np
import yaml

from graphrnn.errors import SpecError
from graphrnn.frontend.network import Network
from graphrnn.frontend.spec import load_spec

KINDS = ("RNN", "LSTM", "GRU")
#: torch's gate order in ``weight_ih``/``weight_hh`` and our node for each row block
GATES = {"RNN": ("h",), "LSTM": ("i", "f", "g", "o"), "GRU": ("r", "z", "n")}


def spec_text(spec: dict) -> str:
    """A spec dictionary as the YAML text of a spec file (as ``onnx_import.spec_text``, which
    cannot be imported without onnx)."""
    return yaml.safe_dump(spec, sort_keys=False, default_flow_style=None)


def _options(module) -> dict:
    """The options of a torch RNN/LSTM/GRU module that decide the spec."""
    kind = type(module).__name__
    import torch
    if not isinstance(module, torch.nn.RNNBase) or kind not in KINDS:
        raise SpecError(f"from_torch converts torch.nn.RNN, LSTM and GRU, not {kind}",
                        type(module).__module__ + "." + kind)
    mode = getattr(module, "mode", kind)
    return {"kind": kind, "input_size": module.input_size, "hidden": module.hidden_size,
            "layers": module.num_layers, "bidirectional": bool(module.bidirectional),
            "proj": int(getattr(module, "proj_size", 0)), "bias": bool(module.bias),
            "batch_first": bool(module.batch_first), "dropout": float(module.dropout),
            "nonlinearity": "relu" if mode == "RNN_RELU" else "tanh"}


def _key(src: str, dst: str, delay: int = 0) -> str:
    return f"{src}->{dst}" + (f"@{delay}" if delay else "")


class _Build:
    """A spec under construction and the map from its parameters to torch's."""

    def __init__(self, opts: dict):
        self.o, self.nodes, self.edges = opts, {}, []
        #: graphrnn key -> list of (torch name, row slice, column slice or None, role)
        self.links: dict[str, list] = {}

    def node(self, name, size, activation="identity", combine="sum", bias=None, **extra):
        spec = {"size": size, "activation": activation, "combine": combine, **extra}
        if bias is False:
            spec["bias"] = False
        self.nodes[name] = spec
        return name

    def edge(self, src, dst, delay=0, weight="identity", **extra):
        self.edges.append({"from": src, "to": dst, "delay": delay, "weight": weight, **extra})
        return _key(src, dst, delay)

    def link(self, key, torch_name, rows, cols=None, role="weight"):
        self.links.setdefault(key, []).append((torch_name, rows, cols, role))


def _layer(b: _Build, layer: int, d: int, reads: list) -> str:
    """Add one layer's chain in direction ``d``; ``reads`` is ``[(node, column slice)]`` of the
    layer's input. Return the name of its output node (``h_l{layer}{sfx}``)."""
    o = b.o
    kind, hid, sfx = o["kind"], o["hidden"], "_reverse" if d else ""
    tsfx, lag = f"_l{layer}{sfx}", -1 if d else 1
    out = o["proj"] or hid
    h, c = f"h{tsfx}", f"c{tsfx}"
    bias = None if o["bias"] else False

    def gate(name, k, activation, recurrent=True):
        rows = slice(k * hid, (k + 1) * hid)
        b.node(name, hid, activation, bias=bias)
        for src, cols in reads:
            b.link(b.edge(src, name, 0, "full"), f"weight_ih{tsfx}", rows, cols)
        if recurrent:
            b.link(b.edge(h, name, lag, "full"), f"weight_hh{tsfx}", rows)
        if o["bias"]:
            b.link(f"{name}.bias", f"bias_ih{tsfx}", rows, role="bias")
            if recurrent:
                b.link(f"{name}.bias", f"bias_hh{tsfx}", rows, role="bias")
        return name

    if kind == "RNN":
        gate(h, 0, o["nonlinearity"])
        return h
    if kind == "GRU":
        r, z = gate(f"r{tsfx}", 0, "sigmoid"), gate(f"z{tsfx}", 1, "sigmoid")
        hn, rows = f"hn{tsfx}", slice(2 * hid, 3 * hid)
        b.node(hn, hid, bias=bias)                         # W_hn h[t-1] + b_hn
        b.link(b.edge(h, hn, lag, "full"), f"weight_hh{tsfx}", rows)
        if o["bias"]:
            b.link(f"{hn}.bias", f"bias_hh{tsfx}", rows, role="bias")
        rhn = b.node(f"rhn{tsfx}", hid, combine="product")  # r * (W_hn h[t-1] + b_hn)
        b.edge(r, rhn), b.edge(hn, rhn)
        n = gate(f"n{tsfx}", 2, "tanh", recurrent=False)    # tanh(W_in x + b_in + rhn)
        b.edge(rhn, n)
        dd = b.node(f"d{tsfx}", hid)                         # h[t-1] - n
        b.edge(h, dd, lag), b.edge(n, dd, scale=-1.0)
        zd = b.node(f"zd{tsfx}", hid, combine="product")     # z * (h[t-1] - n)
        b.edge(z, zd), b.edge(dd, zd)
        b.node(h, hid)
        b.edge(n, h), b.edge(zd, h)
        return h
    i, f = gate(f"i{tsfx}", 0, "sigmoid"), gate(f"f{tsfx}", 1, "sigmoid")
    g, og = gate(f"g{tsfx}", 2, "tanh"), gate(f"o{tsfx}", 3, "sigmoid")
    fc, ig = b.node(f"fc{tsfx}", hid, combine="product"), b.node(f"ig{tsfx}", hid,
                                                                 combine="product")
    b.edge(f, fc), b.edge(c, fc, lag), b.edge(i, ig), b.edge(g, ig)
    b.node(c, hid)
    b.edge(fc, c), b.edge(ig, c)
    tc = b.node(f"tc{tsfx}", hid, "tanh")
    b.edge(c, tc)
    m = b.node(f"m{tsfx}" if o["proj"] else h, hid, combine="product")  # o * tanh(c)
    b.edge(og, m), b.edge(tc, m)
    if o["proj"]:
        b.node(h, out, bias=False)                           # W_hr (o * tanh(c))
        b.link(b.edge(m, h, 0, "full"), f"weight_hr{tsfx}", slice(None))
    return h


def _build(opts: dict) -> _Build:
    b = _Build(opts)
    out = opts["proj"] or opts["hidden"]
    dirs = 2 if opts["bidirectional"] else 1
    reads = [("x", None)]
    for layer in range(opts["layers"]):
        tops = [_layer(b, layer, d, reads) for d in range(dirs)]
        if opts["dropout"] > 0 and layer < opts["layers"] - 1:
            for top in tops:
                b.nodes[top]["dropout"] = opts["dropout"]
        reads = [(top, slice(d * out, (d + 1) * out)) for d, top in enumerate(tops)]
    if dirs == 1:
        b.node("y", out)
        b.edge(reads[0][0], "y")
    else:
        b.node("y", 2 * out, bias=False)
        for d, (top, _) in enumerate(reads):
            b.link(b.edge(top, "y", 0, "full", trainable=False), "", slice(d * out, (d + 1) * out),
                   role="place")
    return b


def _spec(opts: dict, b: _Build) -> dict:
    name = f"torch_{opts['kind'].lower()}"
    return {"name": name, "inputs": {"x": opts["input_size"]}, "nodes": b.nodes,
            "edges": b.edges, "outputs": ["y"]}


def torch_spec(module) -> tuple[dict, dict]:
    """The spec (as a dictionary, see :func:`spec_text`) and params of :func:`from_torch`."""
    opts = _options(module)
    b = _build(opts)
    tensors = {k: v.detach().cpu().numpy() for k, v in module.named_parameters()}
    dtype = np.float64 if next(iter(tensors.values())).dtype == np.float64 else np.float32
    params = {}
    for key, links in b.links.items():
        value = 0
        for torch_name, rows, cols, role in links:
            if role == "place":
                size = b.nodes["y"]["size"]
                block = np.zeros((size, size // 2))
                block[rows] = np.eye(size // 2)
                value = block
            else:
                w = tensors[torch_name][rows]
                value = value + (w if cols is None else w[:, cols])
        params[key] = np.ascontiguousarray(value, dtype=dtype)
    return _spec(opts, b), params


def from_torch(module) -> tuple[Network, dict]:
    """Convert a ``torch.nn.RNN``, ``LSTM`` or ``GRU`` to a graphrnn network and params.

    Parameters
    ----------
    module : torch.nn.RNN, torch.nn.LSTM or torch.nn.GRU
        Any options: ``num_layers``, ``bidirectional``, ``proj_size``, ``bias``,
        ``nonlinearity``, ``batch_first`` (graphrnn is time-major: pass ``x.transpose(0, 1)``
        and transpose ``y`` back; the network is the same), ``dropout`` (between layers:
        the node key ``dropout: p`` on each layer's hidden nodes but the last, applied with
        ``train=True``).

    Returns
    -------
    network : graphrnn.Network
        Input ``x``, output ``y`` (= torch's ``output``), hidden/cell nodes ``h_l{l}``,
        ``c_l{l}`` (``..._reverse``): torch's ``h_n[2l+d]`` is the final state ``h_l{l}`` or
        ``h_l{l}_reverse@+1``. ``spec_text(torch_spec(module)[0])`` is its spec file.
    params : dict
        Name -> array, float64 for a double module, else float32; torch's two biases per gate
        are summed (``b_ih + b_hh``), except the GRU's ``b_hn`` (the bias of node ``hn``).

    Raises
    ------
    SpecError
        A module that is not RNN/LSTM/GRU.
    """
    spec, params = torch_spec(module)
    net = load_spec(spec_text(spec))
    missing = set(net.params) ^ set(params)
    if missing:  # the converter's own mistake, never the user's
        raise RuntimeError(f"from_torch built params that do not match the spec: {missing}")
    return net, params


def parameter_map(module) -> dict[str, list[tuple[str, slice, slice | None]]]:
    """graphrnn parameter -> ``[(torch name, rows, columns), ...]`` it is made of (a sum when
    more than one: the two biases); the fixed placement edges into ``y`` are left out."""
    b = _build(_options(module) | {"dropout": 0.0})
    return {k: [(n, r, c) for n, r, c, role in v if role != "place"]
            for k, v in b.links.items() if v[0][3] != "place"}


def _network_options(net: Network) -> dict:
    """The torch options a network built by :func:`from_torch` was built from (a guess from
    its node names, checked by :func:`to_torch` against a rebuilt spec)."""
    nodes = net.nodes
    kind = "LSTM" if "c_l0" in nodes else "GRU" if "r_l0" in nodes else "RNN"
    gate = {"LSTM": "i_l0", "GRU": "r_l0", "RNN": "h_l0"}[kind]
    if gate not in nodes or "x" not in net.inputs or net.outputs != ("y",):
        raise SpecError(f"to_torch: {net.name} is not a torch.nn.RNN/LSTM/GRU (it needs input "
                        f"x, output y and the nodes from_torch makes, e.g. {gate})",
                        net.source or net.name)
    layers = 0
    while f"h_l{layers}" in nodes:
        layers += 1
    proj = nodes["h_l0"].size if "m_l0" in nodes else 0
    return {"kind": kind, "input_size": net.inputs["x"], "hidden": nodes[gate].size,
            "layers": layers, "bidirectional": "h_l0_reverse" in nodes, "proj": proj,
            "bias": f"{gate}.bias" in net.params, "batch_first": False,
            "dropout": float(getattr(nodes["h_l0"], "dropout", None) or 0.0),
            "nonlinearity": nodes["h_l0"].activation if kind == "RNN" else "tanh"}


def _signature(net: Network) -> tuple[dict, list]:
    from dataclasses import replace
    nodes = {n: replace(v, line=None, bias=f"{n}.bias" in net.params)
             for n, v in net.nodes.items()}
    edges = sorted((replace(e, line=None, init=None) for e in net.edges), key=repr)
    return nodes, edges


def _difference(net: Network, want: Network) -> str | None:
    """What of ``net`` the torch module rebuilt as ``want`` cannot express, or None."""
    (have_nodes, have_edges), (want_nodes, want_edges) = _signature(net), _signature(want)
    for name, node in have_nodes.items():
        if name not in want_nodes:
            return f"node {name}"
        if node != want_nodes[name]:
            return f"node {name} as written ({node}; torch's is {want_nodes[name]})"
    for name in want_nodes:
        if name not in have_nodes:
            return f"a network without node {name}"
    for edge in have_edges:
        if edge not in want_edges:
            return f"edge {edge.label} ({edge.weight})"
        want_edges.remove(edge)
    if want_edges:
        return f"a network without edge {want_edges[0].label}"
    if net.inputs != want.inputs:
        return f"inputs {net.inputs}"
    return None


def to_torch(network: Network, params: dict, *, batch_first: bool = False):
    """Rebuild the ``torch.nn.RNN``/``LSTM``/``GRU`` that :func:`from_torch` converted.

    Parameters
    ----------
    network : graphrnn.Network
        A network made by :func:`from_torch`, or one structurally equal to such a network
        (the same nodes, edges and options; comments and line numbers do not matter).
    params : dict
        Its parameters (NumPy arrays). Each summed bias goes to ``bias_ih``; ``bias_hh`` is
        zero there (the GRU's ``b_hn`` is ``hn_l{l}.bias``), which computes the same function.
    batch_first : bool
        The module's ``batch_first`` (the network itself is time-major either way).

    Returns
    -------
    torch.nn.RNN, torch.nn.LSTM or torch.nn.GRU
        float64 when the params are, else float32; in training mode, as a new module is.

    Raises
    ------
    SpecError
        One line naming what torch cannot express (an extra node or edge, a changed node).
    """
    try:
        import torch
    except ModuleNotFoundError:
        raise ImportError("to_torch needs torch: pip install 'graphrnn[torch]'") from None
    opts = _network_options(network) | {"batch_first": bool(batch_first)}
    b = _build(opts)
    want = load_spec(spec_text(_spec(opts, b)))
    what = _difference(network, want)
    if what is not None:
        raise SpecError(f"to_torch: torch.nn.{opts['kind']} cannot express {what}",
                        network.source or network.name)
    for key, links in b.links.items():
        if links[0][3] == "place":
            place = np.zeros(want.params[key].shape)
            place[links[0][1]] = np.eye(place.shape[1])
            if not np.array_equal(np.asarray(params[key]), place):
                raise SpecError(f"to_torch: torch.nn.{opts['kind']} cannot express {key} "
                                f"other than the fixed placement [I; 0] / [0; I] of its output",
                                network.source or network.name)
    double = any(np.asarray(v).dtype == np.float64 for v in params.values())
    dtype = torch.float64 if double else torch.float32
    kw = {"proj_size": opts["proj"]} if opts["kind"] == "LSTM" else {}
    if opts["kind"] == "RNN":
        kw["nonlinearity"] = opts["nonlinearity"]
    module = getattr(torch.nn, opts["kind"])(
        opts["input_size"], opts["hidden"], num_layers=opts["layers"], bias=opts["bias"],
        batch_first=opts["batch_first"], dropout=opts["dropout"],
        bidirectional=opts["bidirectional"], dtype=dtype, **kw)
    values = {k: np.zeros(tuple(v.shape)) for k, v in module.named_parameters()}
    for key, links in b.links.items():
        torch_name, rows, cols, role = links[0]  # a summed bias: all of it into bias_ih
        if role == "place":
            continue
        target = values[torch_name][rows]
        target[(slice(None),) if cols is None else (slice(None), cols)] = np.asarray(params[key])
    with torch.no_grad():
        for name, p in module.named_parameters():
            p.copy_(torch.from_numpy(values[name]))
    return module
