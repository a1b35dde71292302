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
WEIGHT_KINDS = ("full", "diagonal", "identity", "embedding")
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
    #: training-time noise (DESIGN.md): inverted dropout on the value delay-0 readers see, and
    #: zoneout (keep the previous value with probability ``zoneout``); ``None``: none
    dropout: float | None = None
    zoneout: float | None = None
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
    #: training-time noise: variational dropout of the source values (one mask a sequence)
    #: and DropConnect of the full matrix (one mask a call); ``None``: none
    dropout: float | None = None
    weight_dropout: float | None = None

    @property
    def label(self) -> str:
        """``src -> dst @delay`` as a person writes it."""
        return f"{self.src} -> {self.dst}" + (f" @{self.delay}" if self.delay else "")


@dataclass(frozen=True)
class Param:
    """A learnable (or frozen) array: its shape, role and the edges that share it."""

    name: str
    shape: tuple[int, ...]
    role: str  # "full" | "diagonal" | "embedding" | "bias" | "init" | "gain"
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
        External sequences and their sizes (for a token input, its vocabulary V).
    nodes : dict[str, Node]
        Computed layers, in spec order.
    edges : tuple[Edge, ...]
    outputs : tuple[str, ...]
    source : str or None
        The spec file it came from (for messages).
    tokens : tuple[str, ...]
        The inputs declared ``{vocab: V}``: integer arrays ``(T, B)`` with values ``0..V-1``,
        read by ``embedding`` edges (a token is the one-hot vector of size V).
    """

    name: str
    inputs: dict[str, int]
    nodes: dict[str, Node]
    edges: tuple[Edge, ...]
    outputs: tuple[str, ...]
    source: str | None = None
    input_lines: dict[str, int] = field(default_factory=dict, compare=False)
    tokens: tuple[str, ...] = ()

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
        """Leaky, zoneout and asynchronous nodes read their own previous value implicitly."""
        n = self.nodes[node]
        return n.leak is not None or n.update == "asynchronous" or bool(n.zoneout)

    @cached_property
    def has_training_noise(self) -> bool:
        """Whether some node or edge has dropout, zoneout or weight dropout (``train=``)."""
        return (any(n.dropout or n.zoneout for n in self.nodes.values())
                or any(e.dropout or e.weight_dropout for e in self.edges))

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
    def future(self) -> dict[str, int]:
        """How many steps past the current one each node or input is read (0: none).

        An edge ``@-k`` reads its source k steps ahead; the rows past the last step come from
        the boundary state, keys ``name@+1`` .. ``name@+k`` (k steps after the last step).
        """
        depth = {name: 0 for name in (*self.inputs, *self.nodes)}
        for edge in self.edges:
            if isinstance(edge.delay, int) and edge.delay < 0:
                depth[edge.src] = max(depth[edge.src], -edge.delay)
        return depth

    @cached_property
    def boundaries(self) -> tuple[tuple[str, str, int], ...]:
        """Every boundary row as ``(key, name, k)``: ``k >= 1`` the past row ``t = -k`` (key
        ``name`` or ``name@-k``), ``k <= -1`` the row ``|k|`` steps after the last (``name@+|k|``).

        Its final value is the node's at step ``T - k`` (past) or ``|k| - 1`` (future), so a
        call's final state continues the next chunk (past) or the previous one (future).
        """
        out = []
        for name in (*self.inputs, *self.nodes):
            out += [(boundary_key(name, k), name, k) for k in range(1, self.history[name] + 1)]
            out += [(boundary_key(name, -k), name, -k) for k in range(1, self.future[name] + 1)]
        return tuple(out)

    @cached_property
    def state_keys(self) -> tuple[str, ...]:
        """The keys of ``state`` dictionaries, in a stable order."""
        return tuple(key for key, _, _ in self.boundaries)

    @cached_property
    def embedding_params(self) -> frozenset[str]:
        """The parameters of ``embedding`` edges: ``(V, size)`` tables, as
        ``torch.nn.Embedding.weight``."""
        return frozenset(e.param for e in self.edges if e.weight == "embedding")

    def reads_transposed(self, edge: Edge) -> bool:
        """Whether a ``full`` edge multiplies by its parameter transposed (``W_e = P.T``).

        A read-out tied to an embedding table says ``transpose: true``: the embedding adds
        row ``P[tok]`` (that is ``P.T`` times the one-hot token), the tied read-out applies
        ``(P.T).T = P``, of shape ``(dst_size, src_size) = (V, size)``, untransposed.
        """
        return edge.transpose != (edge.weight == "full" and edge.param in self.embedding_params)

    @cached_property
    def params(self) -> dict[str, Param]:
        """Every parameter by name: edge weights (tied ones once), biases, learned states."""
        out: dict[str, Param] = {}
        for edge in self.edges:
            if edge.weight == "identity":
                continue
            shape = _edge_param_shape(edge, self.size(edge.src), self.size(edge.dst),
                                      self.reads_transposed(edge))
            prior = out.get(edge.param)
            edges = (prior.edges if prior else ()) + (edge,)
            trainable = edge.trainable and (prior.trainable if prior else True)
            init = edge.init or (prior.init if prior else None)
            role = "embedding" if edge.param in self.embedding_params else edge.weight
            out[edge.param] = Param(edge.param, shape, role, trainable, init, edges)
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

    def anti_causal(self, members) -> bool:
        """Whether the time loop ``members`` runs from the last step down: its cycles read the
        future (delays <= 0, one < 0). Validation rejects loops mixing signs."""
        inside = set(members)
        return any(e.delay < 0 for e in self.edges if e.src in inside and e.dst in inside)

    @cached_property
    def _order(self) -> dict[str, int]:
        return {name: i for i, name in enumerate((*self.inputs, *self.nodes))}


def _edge_param_shape(edge: Edge, src_size: int, dst_size: int,
                      transposed: bool) -> tuple[int, ...]:
    if edge.weight == "diagonal":
        return (dst_size,)
    if edge.weight == "embedding":
        return (src_size, dst_size)
    return (src_size, dst_size) if transposed else (dst_size, src_size)


def boundary_key(name: str, k: int) -> str:
    """The state key of boundary row ``k`` of ``name`` (:attr:`Network.boundaries`): ``name``
    (k = 1), ``name@-k`` (k > 1) or ``name@+|k|`` (k < 0, after the last step)."""
    if k < 0:
        return f"{name}@+{-k}"
    return name if k == 1 else f"{name}@-{k}"


def default_param_name(src: str, dst: str, delay: int) -> str:
    """``SRC->DST`` for delay 0, ``SRC->DST@D`` otherwise (DESIGN.md)."""
    return f"{src}->{dst}" + (f"@{delay}" if delay else "")
