"""The reference interpreter: the unrolled DAG, one vertex at a time, in float64 (the oracle)."""

from __future__ import annotations

import networkx as nx
import numpy as np

from graphrnn.frontend.network import NORM_EPS, Network, boundary_key
from graphrnn.frontend.unroll import unroll, vertex_id
from graphrnn.noise import Masks, Noise, draw_masks, draw_noise
from graphrnn.ops.activations import REGISTRY


def _reference(record):
    """``f(x, u, temperature, alpha=None, beta=None)``: a record's float64 reference."""
    return lambda x, u, temp, alpha=None, beta=None: record.reference(
        x, record.params(alpha, beta, temp, u))


#: the reference activations by name, one per record of :mod:`graphrnn.ops.activations`
ACTIVATIONS = {name: _reference(record) for name, record in REGISTRY.items()}


def state_key(name: str, t: int) -> str:
    """The state key of the initial-state vertex ``name@t`` (t < 0): ``name`` or ``name@-k``."""
    return boundary_key(name, -t)


def reference_forward(net: Network, params: dict, inputs: dict, state: dict | None = None,
                      steps: int | None = None, seed: int = 0,
                      train: bool = False, lengths=None) -> tuple[dict, dict]:
    """Run ``net`` by walking its unrolled DAG in topological order.

    Same arguments and results as ``Model.forward`` (arrays time-major), always float64.
    Slow by design: it exists to define what every faster path must compute. With ``train``
    the training-time noise applies, with the masks of :func:`graphrnn.noise.draw_masks`;
    without, zoneout is its expectation and dropout is off. With ``lengths``, by its
    definition: each sequence b alone over its own ``lengths[b]`` steps (with the random
    numbers and masks of its row), outputs past its end zeros.
    """
    state = state or {}
    if inputs:
        steps, batch = next(iter(inputs.values())).shape[:2]
    else:
        batch = next(iter(state.values())).shape[0] if state else 1
    noise = draw_noise(net, steps, batch, seed)
    masks = draw_masks(net, steps, batch, seed) if train else Masks({}, {}, {}, {})
    if lengths is None:
        return _walk(net, params, inputs, state, steps, batch, noise, masks, train)
    outputs = {o: np.zeros((steps, batch, net.size(o))) for o in net.outputs}
    finals: dict[str, list] = {key: [] for key, _, _ in net.boundaries}
    for b, n in enumerate(int(v) for v in lengths):
        alone = Noise({k: u[:n, b:b + 1] for k, u in noise.uniforms.items()},
                      {k: o[:n] for k, o in noise.orders.items()})
        row = Masks({k: m[:n, b:b + 1] for k, m in masks.node_dropout.items()},
                    {k: m[:n, b:b + 1] for k, m in masks.zoneout.items()},
                    {k: m[b:b + 1] for k, m in masks.edge_dropout.items()},
                    masks.weight_dropout)
        out, final = _walk(net, params, {k: v[:n, b:b + 1] for k, v in inputs.items()},
                           {k: np.asarray(v)[b:b + 1] for k, v in state.items()}, n, 1, alone,
                           row, train)
        for o in net.outputs:
            outputs[o][:n, b] = out[o][:, 0]
        for key in finals:
            finals[key].append(final[key][0])
    return outputs, {key: np.stack(v) for key, v in finals.items()}


def _walk(net, params, inputs, state, steps, batch, noise, masks, train) -> tuple[dict, dict]:
    """:func:`reference_forward` of one batch whose sequences all have ``steps`` steps."""
    dag = unroll(net, steps=steps)
    p = {k: np.asarray(v, dtype=np.float64) for k, v in params.items()}
    for name, m in masks.weight_dropout.items():
        p[name] = p[name] * m
    values: dict[str, np.ndarray] = {}
    for vertex in nx.topological_sort(dag):
        attrs = dag.nodes[vertex]
        name, t = attrs["node"], attrs["t"]
        if attrs["op"] == "input" and name in net.tokens:
            values[vertex] = np.asarray(inputs[name][t]).astype(np.intp)
        elif attrs["op"] == "input":
            values[vertex] = np.asarray(inputs[name][t], dtype=np.float64)
        elif attrs["op"] == "init":
            key = attrs["state_key"]
            values[vertex] = _initial(net, p, state, name, key, batch)
        else:
            values[vertex] = _node_value(net, dag, p, values, noise, masks, train, vertex,
                                         batch)
    outputs = {o: np.stack([_seen(masks, values, f"{o}@{t}", o, t, 0) for t in range(steps)])
               for o in net.outputs}
    final = {key: values[vertex_id(name, steps - k if k > 0 else -k - 1, steps)]
             for key, name, k in net.boundaries}
    return outputs, final


def _initial(net, params, state, name, key, batch):
    if key in state:
        return np.asarray(state[key], dtype=np.float64)
    if name in net.nodes and net.nodes[name].init_state == "learned":
        return np.broadcast_to(params[f"{name}.init"], (batch, net.size(name))).copy()
    return np.zeros((batch, net.size(name)))


def _term(params, edge, x):
    if edge["weight"] == "full":
        w = params[edge["param"]]
        return edge["scale"] * (x @ (w if edge["transpose"] else w.T))
    if edge["weight"] == "diagonal":
        return edge["scale"] * params[edge["param"]] * x
    if edge["weight"] == "embedding":
        return edge["scale"] * params[edge["param"]][x]
    return edge["scale"] * x


def layer_norm(x: np.ndarray) -> np.ndarray:
    """``x`` normalised over its last axis: ``(x - mean) / sqrt(var + eps)``, the biased
    variance and eps ``1e-5`` of ``torch.nn.LayerNorm`` (no gain, no shift)."""
    mean = x.mean(axis=-1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    return (x - mean) / np.sqrt(var + NORM_EPS)



def _seen(masks: Masks, values: dict, vertex: str, name: str, t: int, delay: int):
    """``vertex`` (``name`` at step ``t``) as a reader at ``delay`` sees it: a same-step
    reader (and the output) sees node dropout's mask applied; a delayed one the undropped
    value."""
    value = values[vertex]
    if delay == 0 and name in masks.node_dropout:
        return value * masks.node_dropout[name][t]
    return value


def _node_value(net, dag, params, values, noise, masks, train, vertex, batch):
    name, t = dag.nodes[vertex]["node"], dag.nodes[vertex]["t"]
    node = net.nodes[name]
    def act(x, u, temp):
        return ACTIVATIONS[node.activation](x, u, temp, node.alpha, node.beta)
    bias = params[f"{name}.bias"] if net.has_bias(name) else 0.0
    prev = values.get(f"{name}@{t - 1}")
    asynchronous = node.update == "asynchronous"
    terms, own = [], []
    for src, _, edge in dag.in_edges(vertex, data=True):
        if edge["weight"] == "state":
            continue
        if asynchronous and edge["delay"] == 1 and dag.nodes[src]["node"] == name:
            own.append(edge)
        else:
            x = _seen(masks, values, src, dag.nodes[src]["node"], dag.nodes[src]["t"],
                      edge["delay"])
            if edge["edge"] in masks.edge_dropout:
                x = x * masks.edge_dropout[edge["edge"]]
            terms.append(_term(params, edge, x))
    combine = np.prod if node.combine == "product" else np.sum
    other = combine(terms, axis=0) if terms else np.zeros((batch, node.size))
    if node.norm == "layer":
        other = layer_norm(other) * params[f"{name}.gain"]
    u = noise.uniforms[name][t] if name in noise.uniforms else None
    leak = node.leak if node.leak is not None else 1.0
    if not asynchronous:
        value = act(other + bias, u, node.temperature)
        value = value if node.leak is None else (1 - leak) * prev + leak * value
        if not node.zoneout:
            return value
        keep = masks.zoneout[name][t] if train else node.zoneout
        return keep * prev + (1 - keep) * value
    s = prev.copy()
    for i in noise.orders[name][t]:
        net_i = other[:, i] + sum(_term(params, e, s)[:, i] for e in own) + np.broadcast_to(
            bias, (node.size,))[i]
        ui = None if u is None else u[:, i]
        s[:, i] = (1 - leak) * prev[:, i] + leak * act(net_i, ui, node.temperature)
    return s
