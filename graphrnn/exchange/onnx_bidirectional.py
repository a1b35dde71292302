"""A forward and a reverse ONNX ``RNN``/``GRU``/``LSTM`` on one input as one bidirectional op.

``to_onnx`` emits each loop of a bidirectional network (``bilstm.yaml``: a causal chain and
an anti-causal one reading the same input) as its own operator, ``direction=reverse`` for the
anti-causal one. Two such operators of one type, on the same input tensor, with the same
``hidden_size`` (and ``linear_before_reset``), are exactly one ``direction=bidirectional``
operator: its weights stacked forward first, its outputs split back into the two directions'
tensors (``Y`` on axis 1, ``Y_h``/``Y_c`` on axis 0), so nothing downstream changes.
"""

from __future__ import annotations

import heapq

import numpy as np
from onnx import helper, numpy_helper

RECURRENT = ("RNN", "GRU", "LSTM")
#: attributes that must agree for two directions to share one operator
_SHARED = ("hidden_size", "linear_before_reset", "clip", "input_forget", "layout")
_PER_DIRECTION = ("activations", "activation_alpha", "activation_beta")
#: input positions holding a per-direction weight (stacked on axis 0) or initial state
_WEIGHTS = (1, 2, 3, 7)
_STATES = (5, 6)


def _attrs(node) -> dict:
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _direction(node) -> str:
    d = _attrs(node).get("direction", b"forward")
    return d.decode() if isinstance(d, bytes) else d


def _pairable(fwd, rev) -> bool:
    if fwd.op_type != rev.op_type or fwd.input[0] != rev.input[0]:
        return False
    a, b = _attrs(fwd), _attrs(rev)
    return (all(a.get(k) == b.get(k) for k in _SHARED)
            and len(fwd.input) == len(rev.input) and fwd.input[4:5] == rev.input[4:5] == [""])


def merge_bidirectional(g) -> int:
    """Merge forward/reverse operator pairs of ``g`` (an exporter ``Graph``); return how many
    bidirectional operators it made."""
    tables = {t.name: t for t in g.consts.values()}
    forward = [n for n in g.nodes if n.op_type in RECURRENT and _direction(n) == "forward"]
    reverse = [n for n in g.nodes if n.op_type in RECURRENT and _direction(n) == "reverse"]
    merged = 0
    for fwd in forward:
        rev = next((r for r in reverse if _pairable(fwd, r)), None)
        if rev is None:
            continue
        reverse.remove(rev)
        _merge(g, tables, fwd, rev)
        merged += 1
    if merged:
        g.nodes[:] = _topological(g.nodes)
    return merged


def _merge(g, tables: dict, fwd, rev) -> None:
    inputs = list(fwd.input)
    for k in _WEIGHTS:
        if k < len(inputs) and inputs[k]:
            both = [numpy_helper.to_array(tables[n.input[k]]) for n in (fwd, rev)]
            inputs[k] = g.const(np.concatenate(both), "W" if k == 1 else "w")
    new_nodes = []
    for k in _STATES:
        if k < len(inputs) and inputs[k]:
            inputs[k] = g.fresh("state0")
            new_nodes.append(helper.make_node("Concat", [fwd.input[k], rev.input[k]],
                                              [inputs[k]], axis=0))
    outputs, splits = [], []
    for k in range(max(len(fwd.output), len(rev.output))):
        names = [n.output[k] if k < len(n.output) else "" for n in (fwd, rev)]
        if not any(names):
            outputs.append("")
            continue
        both = g.fresh("bi")
        outputs.append(both)
        targets = [name or g.fresh("unused") for name in names]
        splits.append(helper.make_node("Split", [both], targets, axis=1 if k == 0 else 0))
    a, b = _attrs(fwd), _attrs(rev)
    attrs = {k: v for k, v in a.items() if k not in (*_PER_DIRECTION, "direction")}
    for key in _PER_DIRECTION:
        values = list(a.get(key, [])) + list(b.get(key, []))
        if values:
            attrs[key] = [v.decode() if isinstance(v, bytes) else v for v in values]
    node = helper.make_node(fwd.op_type, inputs, outputs, direction="bidirectional", **attrs)
    earlier, later = sorted((fwd, rev), key=g.nodes.index)
    at = g.nodes.index(later)
    g.nodes[at:at + 1] = [*new_nodes, node, *splits]
    g.nodes.remove(earlier)


def _topological(nodes: list) -> list:
    """``nodes`` in an order ONNX accepts (each after the producers of its inputs), kept as
    close to the given order as that allows."""
    producer = {out: i for i, n in enumerate(nodes) for out in n.output if out}
    waiting = [sum(1 for x in set(n.input) if x in producer) for n in nodes]
    readers: dict[int, list[int]] = {}
    for i, n in enumerate(nodes):
        for x in set(n.input):
            if x in producer:
                readers.setdefault(producer[x], []).append(i)
    ready = [i for i, w in enumerate(waiting) if w == 0]
    heapq.heapify(ready)
    order = []
    while ready:
        i = heapq.heappop(ready)
        order.append(nodes[i])
        for j in readers.get(i, ()):
            waiting[j] -= 1
            if waiting[j] == 0:
                heapq.heappush(ready, j)
    return order
