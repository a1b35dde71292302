"""Training-time noise as plain networks: the evaluation network and the masked training one."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from graphrnn.frontend.network import Edge, Network, Node


def eval_network(net: Network) -> Network:
    """``net`` as ``train=False`` runs it: dropout off, zoneout its expectation.

    A zoneout node computes ``p * v[t-1] + (1 - p) * new``, with ``new`` its leak-mix
    ``(1 - a) * v[t-1] + a * act``: that is a leak of ``(1 - p) * a`` (``a = 1`` without a leak).
    A network without noise is returned as it is.
    """
    if not net.has_training_noise:
        return net
    nodes = {}
    for name, node in net.nodes.items():
        leak = node.leak
        if node.zoneout:
            leak = (1.0 - node.zoneout) * (1.0 if leak is None else leak)
        nodes[name] = replace(node, leak=leak, dropout=None, zoneout=None)
    edges = tuple(replace(e, dropout=None, weight_dropout=None) for e in net.edges)
    return replace(net, nodes=nodes, edges=edges)


@dataclass(frozen=True)
class TrainPlan:
    """How a training network maps to the spec's.

    ``masks``: extra input name -> ``(kind, key)`` with kind ``node_dropout`` (key: node),
    ``edge_dropout`` (key: edge index), ``zone_prev`` / ``zone_new`` (key: node: the factors of
    ``v[t-1]`` and of the new value); ``outputs``: spec output -> the training network's node
    that carries it; ``params``: training-network parameter -> spec parameter (only the
    renamed ones: a zoneout node's bias).
    """

    masks: dict[str, tuple[str, object]] = field(default_factory=dict)
    outputs: dict[str, str] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)


def train_network(net: Network) -> tuple[Network, TrainPlan]:
    """``net`` as ``train=True`` runs it, its masks as extra inputs (see :class:`TrainPlan`).

    Edge dropout on ``s -> d @k``: a node ``s~edropI = s[t-k] * mask`` that the edge reads at
    delay 0. Zoneout on ``h``: ``h~act`` computes the node's activation (its in-edges, bias and
    activation), and ``h = A * h[t-1] + B * h~act`` with ``A = z + (1 - z)(1 - a)``,
    ``B = (1 - z) a`` (z the keep mask, a the leak or 1): ``h`` keeps its name, state and
    initial state. Node dropout on ``h``: a node ``h~drop = h * mask`` that every delay-0
    reader of ``h`` and the output read; delayed readers keep reading ``h``. Each new node is
    element-wise, so the fusion pass runs it inside its neighbours' fused step.
    """
    plan = TrainPlan(outputs={o: o for o in net.outputs})
    inputs, edges = dict(net.inputs), list(net.edges)
    groups: dict[str, list[Node]] = {name: [node] for name, node in net.nodes.items()}

    def product(name: str, size: int, a: Edge, mask: str, kind: str, key) -> Node:
        inputs[mask] = size
        plan.masks[mask] = (kind, key)
        edges.extend([a, Edge(mask, name, weight="identity")])
        return Node(name, size, combine="product", bias=False)

    for i, e in enumerate(net.edges):
        if e.dropout:
            x = f"{e.src}~edrop{i}"
            node = product(x, net.size(e.src), Edge(e.src, x, e.delay, "identity"),
                           f"{x}:mask", "edge_dropout", i)
            edges[i] = replace(e, src=x, delay=0, dropout=None, weight_dropout=None)
            owner = e.src if e.src in groups else e.dst
            groups[owner].insert(0, node) if owner == e.dst else groups[owner].append(node)
    for name, node in net.nodes.items():
        if not node.zoneout:
            continue
        act = f"{name}~act"
        edges = [replace(e, dst=act) if e.dst == name else e for e in edges]
        if net.has_bias(name):
            plan.params[f"{act}.bias"] = f"{name}.bias"
        computed = replace(node, name=act, leak=None, zoneout=None, dropout=None,
                           init_state="zeros", bias=net.has_bias(name))
        prev = product(f"{name}~zprev", node.size, Edge(name, f"{name}~zprev", 1, "identity"),
                       f"{name}~zprev:mask", "zone_prev", name)
        new = product(f"{name}~znew", node.size, Edge(act, f"{name}~znew", 0, "identity"),
                      f"{name}~znew:mask", "zone_new", name)
        edges += [Edge(prev.name, name, weight="identity"), Edge(new.name, name,
                                                                 weight="identity")]
        mixed = replace(node, activation="identity", combine="sum", bias=False, leak=None,
                        zoneout=None, temperature=1.0, alpha=None, beta=None)
        at = groups[name].index(node)
        groups[name][at:at + 1] = [computed, prev, new, mixed]
    for name, node in net.nodes.items():
        if not node.dropout:
            continue
        drop = f"{name}~drop"
        edges = [replace(e, src=drop) if e.src == name and e.delay == 0 else e for e in edges]
        groups[name].append(product(drop, node.size, Edge(name, drop, 0, "identity"),
                                    f"{drop}:mask", "node_dropout", name))
        if name in plan.outputs:
            plan.outputs[name] = drop
    nodes = {n.name: replace(n, dropout=None, zoneout=None)
             for group in groups.values() for n in group}
    edges = [replace(e, dropout=None, weight_dropout=None) for e in edges]
    out = replace(net, inputs=inputs, nodes=nodes, edges=tuple(edges),
                  outputs=tuple(plan.outputs[o] for o in net.outputs))
    return out, plan


def mask_inputs(plan: TrainPlan, masks, net: Network, steps: int, xp) -> dict:
    """The extra inputs of :func:`train_network`'s network for one call's
    :class:`~graphrnn.noise.Masks` (arrays of ``xp``)."""
    out = {}
    for name, (kind, key) in plan.masks.items():
        if kind == "node_dropout":
            out[name] = masks.node_dropout[key]
        elif kind == "edge_dropout":
            m = masks.edge_dropout[key]
            out[name] = xp.broadcast_to(m, (steps, *m.shape))
        else:
            keep, node = masks.zoneout[key], net.nodes[key]
            a = 1.0 if node.leak is None else node.leak
            out[name] = keep + (1 - keep) * (1 - a) if kind == "zone_prev" else (1 - keep) * a
    return out
