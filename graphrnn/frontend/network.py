"""The network model: nodes, delayed weighted edges, and the cyclic graph they form."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import networkx as nx

from graphrnn.ops.activations import NAMES
from graphrnn.ops.activations import STRAIGHT_THROUGH as STRAIGHT_THROUGH

#: Activations a spec may name: the records of :mod:`graphrnn.ops.activations`.
ACTIVATIONS = NAMES
COMBINES = ("sum", "product")
WEIGHT_KINDS = ("full", "diagonal", "identity")
INIT_STATES = ("zeros", "learned")
UPDATES = ("synchronous", "asynchronous")
#: Normalisations a node may name (``norm:``); ``None``: none.
NORMS = ("layer",)
#: LayerNorm's epsilon (``torch.nn.LayerNorm``'s default)
NORM_EPS = 1e-5
#: Parameter initialisations a spec may name per edge (``init:``).
INITS = ("glorot", "orthogonal", "normal", "uniform", "zeros", "ones", "identity",
         "symmetric")


@dataclass(frozen=True)
class Node:
    """A layer of ``size`` units computing ``act(combine(W_e src_e[t - d_e]) + bias)``.

    ``bias`` is ``None`` for the default rule (a bias when a ``sum`` node has at least one
    ``full`` or ``diagonal`` in-edge), or an explicit ``True``/``False``. ``alpha`` and
    ``beta`` are the activation's parameters (``leaky_relu``, ``elu``, ...; ``None``: ONNX's
    default for that activation). ``norm="layer"`` layer-normalises the combined net input
    over the node's units (per step and sequence, as ``torch.nn.LayerNorm``) and scales it by
    the gain ``NODE.gain`` before the bias and activation.
    """

    name: str
    size: int
    activation: str = "identity"
    combine: str = "sum"
    bias: bool | None = None
    leak: float | None = None
    init_state: str = "zeros"
    update: str = "synchronous"
    temperature: float = 1.0
    line: int | None = None
    alpha: float | None = None
    beta: float | None = None
    norm: str | None = None


@dataclass(frozen=True)
class Edge:
    """A weighted connection ``src -> dst`` read ``delay`` steps in the past.

    ``param`` is the resolved parameter name (``None`` for ``identity`` edges), shared by every
    edge with the same name (weight tying). ``transpose`` uses the tied matrix transposed, so
    ``W_e = P.T`` with ``P`` of shape ``(src_size, dst_size)``.
    """

    src: str
    dst: str
    delay: int = 0
    weight: str = "full"
    scale: float = 1.0
    param: str | None = None
    trainable: bool = True
    init: str | None = None
    transpose: bool = False
    line: int | None = None

    @property
    def label(self) -> str:
        """``src -> dst @delay`` as a person writes it."""
        return f"{self.src} -> {self.dst}" + (f" @{self.delay}" if self.delay else "")


@dataclass(frozen=True)
class Param:
    """A learnable (or frozen) array: its shape, role and the edges that share it."""

    name: str
    shape: tuple[int, ...]
    role: str  # "full" | "diagonal" | "bias" | "init" | "gain"
    trainable: bool = True
    init: str | None = None
    edges: tuple[Edge, ...] = ()


@dataclass(frozen=True)
class Network:
    """A validated recurrent network: the value ``load_spec`` returns.

    Attributes
    ----------
    name : str
    inputs : dict[str, int]
        External sequences and their sizes.
    nodes : dict[str, Node]
        Computed layers, in spec order.
    edges : tuple[Edge, ...]
    outputs : tuple[str, ...]
    source : str or None
        The spec file it came from (for messages).
    """

    name: str
    inputs: dict[str, int]
    nodes: dict[str, Node]
    edges: tuple[Edge, ...]
    outputs: tuple[str, ...]
    source: str | None = None
    input_lines: dict[str, int] = field(default_factory=dict, compare=False)

    def size(self, name: str) -> int:
        """The size of a node or input."""
        return self.nodes[name].size if name in self.nodes else self.inputs[name]

    def in_edges(self, node: str) -> tuple[Edge, ...]:
        """The edges into ``node``, in spec order."""
        return self._in_edges.get(node, ())

    @cached_property
    def _in_edges(self) -> dict[str, tuple[Edge, ...]]:
        grouped: dict[str, list[Edge]] = {}
        for edge in self.edges:
            grouped.setdefault(edge.dst, []).append(edge)
        return {k: tuple(v) for k, v in grouped.items()}

    def has_bias(self, node: str) -> bool:
        """Whether ``node`` adds a bias ``NODE.bias`` (see DESIGN.md)."""
        n = self.nodes[node]
        if n.bias is not None:
            return n.bias
        return n.combine == "sum" and any(e.weight != "identity" for e in self.in_edges(node))

    def reads_own_past(self, node: str) -> bool:
        """Leaky and asynchronous nodes read their own previous value implicitly."""
        n = self.nodes[node]
        return n.leak is not None or n.update == "asynchronous"

    @cached_property
    def history(self) -> dict[str, int]:
        """How many past steps of each node or input are read (0: none).

        These are the rows of initial state a history buffer holds, and the state keys:
        ``name`` for t = -1 and ``name@-k`` for earlier steps.
        """
        depth = {name: 0 for name in (*self.inputs, *self.nodes)}
        for edge in self.edges:
            depth[edge.src] = max(depth[edge.src], edge.delay)
        for name in self.nodes:
            if self.reads_own_past(name):
                depth[name] = max(depth[name], 1)
        return depth

    @cached_property
    def state_keys(self) -> tuple[str, ...]:
        """The keys of ``state`` dictionaries, in a stable order."""
        keys = []
        for name, depth in self.history.items():
            keys += [name] + [f"{name}@-{k}" for k in range(2, depth + 1)] if depth else []
        return tuple(keys)

    @cached_property
    def params(self) -> dict[str, Param]:
        """Every parameter by name: edge weights (tied ones once), biases, learned states."""
        out: dict[str, Param] = {}
        for edge in self.edges:
            if edge.weight == "identity":
                continue
            shape = _edge_param_shape(edge, self.size(edge.src), self.size(edge.dst))
            prior = out.get(edge.param)
            edges = (prior.edges if prior else ()) + (edge,)
            trainable = edge.trainable and (prior.trainable if prior else True)
            init = edge.init or (prior.init if prior else None)
            out[edge.param] = Param(edge.param, shape, edge.weight, trainable, init, edges)
        for name, node in self.nodes.items():
            if node.norm is not None:
                out[f"{name}.gain"] = Param(f"{name}.gain", (node.size,), "gain")
            if self.has_bias(name):
                out[f"{name}.bias"] = Param(f"{name}.bias", (node.size,), "bias")
            if node.init_state == "learned":
                out[f"{name}.init"] = Param(f"{name}.init", (node.size,), "init")
        return out

    @cached_property
    def graph(self) -> nx.MultiDiGraph:
        """The cyclic graph: vertices are nodes and inputs, one edge per spec edge.

        Vertex attributes: ``kind`` ("input" | "node"), ``size`` and, for nodes, the
        :class:`Node` fields. Edge attributes: the :class:`Edge` fields (key = edge index).
        Leaky and asynchronous nodes also get an implicit delay-1 self-edge ``weight="state"``.
        """
        g = nx.MultiDiGraph(name=self.name)
        for name, size in self.inputs.items():
            g.add_node(name, kind="input", size=size)
        for name, node in self.nodes.items():
            g.add_node(name, kind="node", **{k: v for k, v in vars(node).items() if k != "name"})
        for i, edge in enumerate(self.edges):
            g.add_edge(edge.src, edge.dst, key=i, **vars(edge))
        for name in self.nodes:
            if self.reads_own_past(name):
                g.add_edge(name, name, key=f"{name}.state", src=name, dst=name, delay=1,
                           weight="state", param=None)
        return g

    @cached_property
    def time_loops(self) -> list[list[str]]:
        """Strongly connected components that contain a cycle, in topological order."""
        cond = nx.condensation(self.graph)
        loops = []
        for c in nx.topological_sort(cond):
            members = cond.nodes[c]["members"]
            if len(members) > 1 or any(self.graph.has_edge(m, m) for m in members):
                loops.append(sorted(members, key=self._order.__getitem__))
        return loops

    @cached_property
    def _order(self) -> dict[str, int]:
        return {name: i for i, name in enumerate((*self.inputs, *self.nodes))}


def _edge_param_shape(edge: Edge, src_size: int, dst_size: int) -> tuple[int, ...]:
    if edge.weight == "diagonal":
        return (dst_size,)
    return (src_size, dst_size) if edge.transpose else (dst_size, src_size)


def default_param_name(src: str, dst: str, delay: int) -> str:
    """``SRC->DST`` for delay 0, ``SRC->DST@D`` otherwise (DESIGN.md)."""
    return f"{src}->{dst}" + (f"@{delay}" if delay else "")
