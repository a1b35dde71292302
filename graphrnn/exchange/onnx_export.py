"""``to_onnx``: a network as an ONNX model: batched stages as plain ops, time loops as ``Scan``.

The graph: inputs are the spec's inputs ``(T, B, size)`` (or an int64 scalar ``steps`` for a
network without inputs), then ``state.KEY`` ``(B, size)`` per state key (each defaults to the
node's initial state, so it may be left out); outputs are the spec's outputs, then
``final.KEY``. Each strongly connected component of the network is one stage, in topological
order: one without a cycle is computed for all T steps at once (``MatMul`` over ``(T, B, F)``);
a time loop becomes one ``Scan`` whose body is one step, the terms it reads from outside the
loop hoisted before it; an anti-causal loop (delays <= 0) is a ``Scan`` from the last step down
(``scan_input_directions``/``scan_output_directions`` 1), starting from the boundary states
``state.NODE@+k``, and ``final.NODE@+k`` is the value at step k - 1. A loop that is exactly an
ONNX ``RNN``, ``GRU`` or ``LSTM`` is emitted as that op (``direction=reverse`` when
anti-causal; a forward and a reverse one on the same input merge into one
``direction=bidirectional`` op). Token inputs are int64 ``(T, B)`` ids, an embedding edge a
``Gather`` on its table. The model's size does not depend on T unless ``unrolled`` asks for
the loop written out step by step.
"""

from __future__ import annotations

import networkx as nx
import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from graphrnn.errors import SpecError
from graphrnn.exchange.onnx_bidirectional import merge_bidirectional
from graphrnn.exchange.onnx_graph import Graph, activate
from graphrnn.exchange.onnx_ops import emit_gru, emit_lstm, emit_rnn
from graphrnn.files import write_atomic
from graphrnn.frontend.network import NORM_EPS, Network
from graphrnn.frontend.training_noise import eval_network

OPSET = 17


def refusal(net: Network) -> SpecError | None:
    """Why ``net`` cannot be exported (one line naming the node and key), or ``None``."""
    for name, node in net.nodes.items():
        if node.update == "asynchronous":
            return SpecError("asynchronous updates cannot be exported to ONNX (its seeded "
                             "neuron-by-neuron order has no ONNX op)", net.source, node.line,
                             f"nodes.{name}.update")
        if node.activation == "bernoulli":
            return SpecError("bernoulli (a stochastic unit) cannot be exported to "
                             "ONNX", net.source, node.line, f"nodes.{name}.activation")
    return None


class _Exporter:
    """Builds the ONNX graph of one network with one set of parameters."""

    def __init__(self, net: Network, params: dict, unrolled_steps: int | None):
        self.net, self.unrolled = net, unrolled_steps
        self.params = {k: np.asarray(v, dtype=np.float32) for k, v in params.items()}
        self.g = Graph([0], {})
        self.seq: dict[str, str] = {}       # node or input -> its (T, B, size) tensor
        self.init: dict[str, list[str]] = {}  # name -> [(B, size) at t = -1, -2, ...]
        self.ahead: dict[str, list[str]] = {}  # name -> [(B, size) at t = T, T + 1, ...]
        self.inputs: list[onnx.ValueInfoProto] = []
        self.defaults: list[onnx.TensorProto] = []
        self.last: dict[str, str] = {}  # state key -> its (B, size) final value, where no sequence
        self.loop_members: set[str] = set()

    # -- graph inputs, batch and time ---------------------------------------------------------

    def start(self) -> None:
        net, g = self.net, self.g
        time_dim = self.unrolled or "T"
        for name, size in net.inputs.items():
            self.inputs.append(helper.make_tensor_value_info(
                name, *((TensorProto.INT64, [time_dim, "B"]) if name in net.tokens
                        else (TensorProto.FLOAT, [time_dim, "B", size]))))
            self.seq[name] = name
        shapes = []
        for key, name, k in net.boundaries:
            self.inputs.append(helper.make_tensor_value_info(
                f"state.{key}", TensorProto.FLOAT, ["B", net.size(name)]))
            learned = (k > 0 and name in net.nodes
                       and net.nodes[name].init_state == "learned")
            default = (self.params[f"{name}.init"] if learned
                       else np.zeros(net.size(name), np.float32))
            self.defaults.append(numpy_helper.from_array(default.reshape(1, -1), f"state.{key}"))
            shapes.append(g.op("Shape", [f"state.{key}"], "shape", start=0, end=1))
        if net.inputs:
            first = next(iter(net.inputs))
            self.batch = g.op("Shape", [first], "batch", start=1, end=2)
            self.time = g.op("Shape", [first], "time", start=0, end=1)
        else:
            self.inputs.insert(0, helper.make_tensor_value_info("steps", TensorProto.INT64, []))
            self.time = g.op("Reshape", ["steps", g.const([1], "one", np.int64)], "time")
            self.batch = (g.op("Max", shapes, "batch") if shapes
                          else g.const([1], "one", np.int64))
        for key, name, k in net.boundaries:  # k = 1, 2, ... then -1, -2, ... per name
            shape = g.op("Concat", [self.batch, g.const([net.size(name)], "size", np.int64)],
                         axis=0)
            rows = self.init if k > 0 else self.ahead
            rows.setdefault(name, []).append(g.op("Expand", [f"state.{key}", shape], key))

    # -- terms ---------------------------------------------------------------------------------

    def weight(self, g: Graph, edge, x: str) -> str:
        if edge.weight == "full":
            w = self.params[edge.param]
            w = w if self.net.reads_transposed(edge) else w.T
            out = g.op("MatMul", [x, self.g.const(w, "w")], "mm")
        elif edge.weight == "embedding":  # row tok[t, b] of the (V, size) table
            out = g.op("Gather", [self.g.const(self.params[edge.param], "emb"), x], "emb")
        elif edge.weight == "diagonal":
            out = g.op("Mul", [x, self.g.const(self.params[edge.param], "w")], "diag")
        else:
            out = x
        return out if edge.scale == 1.0 else g.op("Mul", [out, self.g.const(edge.scale)])

    def shifted(self, src: str, delay: int) -> str:
        """``src`` read ``delay`` steps back (ahead, ``delay < 0``), for all T steps: initial
        rows, then the sequence (the sequence, then the boundary rows after its end)."""
        g = self.g
        if delay == 0:
            return self.seq[src]
        zero = g.const([0], "zero", np.int64)
        if delay < 0:
            rows = [g.op("Unsqueeze", [r, zero]) for r in self.ahead[src][:-delay]]
            buf = g.op("Concat", [self.seq[src], *rows], "ahead", axis=0)
            start = g.const([-delay], "k", np.int64)
            end = g.op("Add", [self.time, start], "end")
            return g.op("Slice", [buf, start, end, zero], "shifted")
        rows = [g.op("Unsqueeze", [self.init[src][k - 1], zero]) for k in range(delay, 0, -1)]
        buf = g.op("Concat", [*rows, self.seq[src]], "hist", axis=0)
        return g.op("Slice", [buf, zero, self.time, zero], "shifted")

    def combine(self, g: Graph, node, terms: list[str], like: str | None) -> str:
        if not terms:
            return g.op("Mul", [like, g.const(0.0)], "zeros")
        out = terms[0]
        for term in terms[1:]:
            out = g.op("Mul" if node.combine == "product" else "Add", [out, term])
        return out

    def bias(self, g: Graph, name: str, x: str) -> str:
        """``x`` plus the node's bias; a ``norm: layer`` node's ONNX ``LayerNormalization``
        (opset 17: over the last axis, eps 1e-5) with its gain as scale and its bias (or
        zeros) as shift."""
        node = self.net.nodes[name]
        if node.norm:
            shift = (self.params[f"{name}.bias"] if self.net.has_bias(name)
                     else np.zeros(node.size, np.float32))
            return g.op("LayerNormalization", [x, self.g.const(self.params[f"{name}.gain"],
                                                               "gain"),
                                                self.g.const(shift, "b")], "normed",
                        axis=-1, epsilon=NORM_EPS)
        if not self.net.has_bias(name):
            return x
        return g.op("Add", [x, self.g.const(self.params[f"{name}.bias"], "b")], "biased")

    # -- stages --------------------------------------------------------------------------------

    def zeros_seq(self, size: int) -> str:
        g = self.g
        shape = g.op("Concat", [self.time, self.batch, g.const([size], "size", np.int64)],
                     axis=0)
        return g.op("ConstantOfShape", [shape], "zeros",
                    value=numpy_helper.from_array(np.zeros(1, np.float32)))

    def batched(self, name: str) -> None:
        node, g = self.net.nodes[name], self.g
        terms = [self.weight(g, e, self.shifted(e.src, e.delay)) for e in self.net.in_edges(name)]
        like = None if terms else self.zeros_seq(node.size)
        value = activate(g, node, self.bias(g, name, self.combine(g, node, terms, like)))
        self.seq[name] = g.op("Identity", [value], f"v.{name}")

    def loop(self, members: list[str]) -> None:
        net, g = self.net, self.g
        inside = set(members)
        reverse = net.anti_causal(members)
        depth = {m: max([abs(e.delay) for e in net.edges if e.src == m and e.dst in inside]
                        + [1 if net.reads_own_past(m) else 0]) for m in members}
        self.loop_members, self.lag = inside, -1 if reverse else 1
        normed = any(net.nodes[m].norm for m in members)  # no ONNX RNN/LSTM/GRU has one
        if not self.unrolled and not normed and (emit_rnn(self, members, depth)
                                                 or emit_lstm(self, members)
                                                 or emit_gru(self, members)):
            return
        hoisted = {}
        for m in members:
            node = net.nodes[m]
            ext = [self.weight(g, e, self.shifted(e.src, e.delay))
                   for e in net.in_edges(m) if e.src not in inside]
            if ext:
                pre = self.combine(g, node, ext, None)
                hoisted[m] = (self.bias(g, m, pre) if node.combine == "sum" and not node.norm
                              else pre)  # a norm needs the whole sum: in the step
        order = _step_order(net, members)
        rows = self.ahead if reverse else self.init
        carried = {m: rows.get(m, [])[:depth[m]] for m in members}
        if self.unrolled:
            self.unrolled_loop(members, order, carried, hoisted, reverse)
            return
        body = Graph(self.g.counter, self.g.consts)
        b_carried = {m: [body.fresh(f"in.{m}") for _ in range(depth[m])] for m in members}
        b_slices = {m: body.fresh(f"x.{m}") for m in hoisted}
        clock = body.fresh("clock")
        values = self.step(body, order, b_carried, b_slices)
        new_carried = [body.op("Identity", [v]) for m in members
                       for v in ([values[m]] + b_carried[m])[:depth[m]]]
        outs = [body.op("Identity", [values[m]]) for m in members]
        info = [helper.make_tensor_value_info(n, TensorProto.FLOAT, None)
                for n in [n for m in members for n in b_carried[m]] + list(b_slices.values())]
        info.append(helper.make_tensor_value_info(clock, TensorProto.FLOAT, None))
        out_info = [helper.make_tensor_value_info(n, TensorProto.FLOAT, None)
                    for n in new_carried + outs]
        graph = helper.make_graph(body.nodes, f"step.{members[0]}", info, out_info)
        clock_seq = g.op("ConstantOfShape", [self.time], "clock",
                         value=numpy_helper.from_array(np.zeros(1, np.float32)))
        n_state = len(new_carried)
        outputs = [g.fresh("final") for _ in range(n_state)] + [g.fresh(f"v.{m}")
                                                                for m in members]
        directions = {} if not reverse else {  # from the last step down, outputs in order
            "scan_input_directions": [1] * (len(b_slices) + 1),
            "scan_output_directions": [1] * len(members)}
        g.op("Scan", [n for m in members for n in carried[m]] + [hoisted[m] for m in b_slices]
             + [clock_seq], outputs=outputs, body=graph, num_scan_inputs=len(b_slices) + 1,
             **directions)
        for m, out in zip(members, outputs[n_state:], strict=True):
            self.seq[m] = out

    def step(self, g: Graph, order, carried: dict, slices: dict) -> dict:
        """One step of a loop in ``g``: each member's value from ``carried`` and ``slices``."""
        net, values = self.net, {}
        for m in order:
            node = net.nodes[m]
            terms = [slices[m]] if m in slices else []
            for e in net.in_edges(m):
                if e.src in carried:
                    x = values[e.src] if e.delay == 0 else carried[e.src][abs(e.delay) - 1]
                    terms.append(self.weight(g, e, x))
            like = (carried[m] or [v for vs in carried.values() for v in vs])[0]
            pre = self.combine(g, node, terms, like)
            if node.combine == "product" or m not in slices or node.norm:
                pre = self.bias(g, m, pre)
            value = activate(g, node, pre)
            if node.leak is not None:
                kept = g.op("Mul", [carried[m][0], g.const(1 - node.leak)])
                value = g.op("Add", [kept, g.op("Mul", [value, g.const(node.leak)])], "leaky")
            values[m] = value
        return values

    def unrolled_loop(self, members, order, carried, hoisted, reverse) -> None:
        g, outs = self.g, {m: [] for m in members}
        zero = g.const([0], "zero", np.int64)
        steps = range(self.unrolled - 1, -1, -1) if reverse else range(self.unrolled)
        for t in steps:
            index = g.const(t, "t", np.int64)
            slices = {m: g.op("Gather", [hoisted[m], index], "slice") for m in hoisted}
            values = self.step(g, order, carried, slices)
            carried = {m: ([values[m]] + carried[m])[:len(carried[m])] for m in members}
            for m in members:
                outs[m].append(g.op("Unsqueeze", [values[m], zero]))
        for m in members:
            outs[m] = outs[m][::-1] if reverse else outs[m]
            self.seq[m] = g.op("Concat", outs[m], f"v.{m}", axis=0)

    # -- the whole graph -----------------------------------------------------------------------

    def finals(self) -> list[onnx.ValueInfoProto]:
        """``final.KEY`` per state key: the value at step ``T - k`` (past row k) or ``k - 1``
        (``NODE@+k``), read from the rows before or after the sequence where T is short."""
        net, g, out = self.net, self.g, []
        zero = g.const([0], "zero", np.int64)
        for key, name, k in net.boundaries:
            if key in self.last:
                g.op("Identity", [self.last[key]], outputs=[f"final.{key}"])
            elif k > 0:
                depth = net.history[name]
                rows = [g.op("Unsqueeze", [self.init[name][j - 1], zero])
                        for j in range(depth, 0, -1)]
                buf = g.op("Concat", [*rows, self.seq[name]], "hist", axis=0)
                g.op("Gather", [buf, g.const(-k, "k", np.int64)], outputs=[f"final.{key}"])
            else:
                rows = [g.op("Unsqueeze", [r, zero]) for r in self.ahead[name]]
                buf = g.op("Concat", [self.seq[name], *rows], "ahead", axis=0)
                g.op("Gather", [buf, g.const(-k - 1, "k", np.int64)], outputs=[f"final.{key}"])
            out.append(helper.make_tensor_value_info(f"final.{key}", TensorProto.FLOAT,
                                                     ["B", net.size(name)]))
        return out

    def build(self) -> onnx.ModelProto:
        net, g = self.net, self.g
        self.start()
        cond = nx.condensation(net.graph)
        loops = {frozenset(loop): loop for loop in net.time_loops}
        for c in nx.topological_sort(cond):
            members = cond.nodes[c]["members"]
            if frozenset(members) in loops:
                self.loop(loops[frozenset(members)])
            elif next(iter(members)) in net.nodes:
                self.batched(next(iter(members)))
        merge_bidirectional(g)
        outputs = []
        for name in net.outputs:
            g.op("Identity", [self.seq[name]], outputs=[name])
            outputs.append(helper.make_tensor_value_info(
                name, TensorProto.FLOAT, [self.unrolled or "T", "B", net.size(name)]))
        outputs += self.finals()
        graph = helper.make_graph(g.nodes, net.name, self.inputs, outputs,
                                  initializer=self.defaults + list(g.consts.values()))
        model = helper.make_model(graph, producer_name="graphrnn",
                                  opset_imports=[helper.make_opsetid("", OPSET)])
        model.ir_version = 8
        return model


def _step_order(net: Network, members: list[str]) -> list[str]:
    """The members of a loop in the order one step computes them (delay-0 edges first)."""
    same_step = nx.DiGraph()
    same_step.add_nodes_from(members)
    same_step.add_edges_from((e.src, e.dst) for e in net.edges
                             if e.delay == 0 and e.src in same_step and e.dst in same_step)
    return list(nx.lexicographical_topological_sort(same_step, key=members.index))


def to_onnx(model, params: dict, path=None, *, unrolled: bool = False,
            steps: int | None = None) -> onnx.ModelProto:
    """Export a compiled network and its parameters as an ONNX model (float32).

    Parameters
    ----------
    model : graphrnn.Model or graphrnn.Network
        What to export (a Model's network).
    params : dict
        Name -> array, as ``init_params`` returns.
    path : str or os.PathLike, optional
        Where to write the ``.onnx`` file (atomically); ``None``: only return the model.
    unrolled : bool
        Write each time loop out step by step for ``steps`` steps (size grows with T).
    steps : int, optional
        The sequence length of an unrolled model.

    Returns
    -------
    onnx.ModelProto
        Checked with ``onnx.checker``.

    Raises
    ------
    SpecError
        One line naming what ONNX cannot express (asynchronous updates, stochastic units).
        Training-time noise is left out: the model is the network as
        ``train=False`` runs it.
    """
    net = eval_network(getattr(model, "net", model))  # dropout off, zoneout its expectation
    why = refusal(net)
    if why:
        raise why
    if unrolled and (steps is None or steps < 1):
        raise ValueError("an unrolled export needs steps >= 1")
    missing = sorted(set(net.params) - set(params))
    if missing:
        raise ValueError(f"params lack {', '.join(missing)}")
    proto = _Exporter(net, params, steps if unrolled else None).build()
    onnx.checker.check_model(proto)
    if path is not None:
        write_atomic(path, proto.SerializeToString())
    return proto
