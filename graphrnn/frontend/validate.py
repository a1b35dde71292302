"""Every check a network must pass (names, kinds, sizes, delays, tying, noise), as SpecErrors."""

from __future__ import annotations

import math
import re

from graphrnn.errors import SpecError
from graphrnn.frontend.names import did_you_mean, is_identifier, unknown_choice
from graphrnn.frontend.network import (
    ACTIVATIONS,
    COMBINES,
    INIT_STATES,
    INITS,
    NORMS,
    UPDATES,
    WEIGHT_KINDS,
    Edge,
    Network,
)
from graphrnn.frontend.validate_graph import (
    check_asynchronous,
    check_directions,
    check_loops,
    warn_unused,
)
from graphrnn.ops.activations import REGISTRY


def _parent(key: str) -> str:
    """``nodes.h.size`` -> ``nodes.h`` -> ``nodes`` -> ``""``; ``edges[2]`` -> ``edges``."""
    m = re.match(r"(.*?)(\.[^.\[\]]+|\[\d+\])$", key)
    return m.group(1) if m else ""


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    if not isinstance(value, int | float) or isinstance(value, bool):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an int beyond any float
        return False


class _Checker:
    """Raises the first problem found, with the file, line and key it concerns."""

    def __init__(self, net: Network, lines: dict[str, int] | None):
        self.net, self.lines = net, lines or {}

    def fail(self, where: str | tuple[str, int | None], message: str) -> None:
        key, fallback = where if isinstance(where, tuple) else (where, None)
        probe = key
        while probe and probe not in self.lines:
            probe = _parent(probe)
        line = self.lines.get(probe, fallback)
        raise SpecError(message, self.net.source, line, probe or key)

    def node_key(self, name: str, field: str | None = None) -> tuple[str, int | None]:
        key = f"nodes.{name}" + (f".{field}" if field else "")
        return key, self.net.nodes[name].line

    def edge_key(self, i: int, field: str | None = None) -> tuple[str, int | None]:
        key = f"edges[{i}]" + (f".{field}" if field else "")
        return key, self.net.edges[i].line


def validate(net: Network, lines: dict[str, int] | None = None) -> None:
    """Check ``net`` and raise :class:`SpecError` for the first problem found.

    Parameters
    ----------
    net : Network
        A network from :func:`graphrnn.load_spec` or built in code.
    lines : dict[str, int], optional
        1-based line of each spec key (``"nodes.h.activation"``, ``"edges[2]"``), for messages.

    Raises
    ------
    SpecError
        For the first problem found; its message says what would fix it.

    Warns
    -----
    UserWarning
        For nodes whose value reaches no output and inputs that nothing reads.
    """
    c = _Checker(net, lines)
    for check in (_check_names, _check_inputs, _check_nodes, _check_edge_fields,
                  _check_endpoints, _check_tokens, _check_sizes, _check_duplicates, _check_params,
                  _check_incoming, _check_outputs, check_loops, check_directions,
                  check_asynchronous, _check_noise):
        check(c)
    warn_unused(c)


def _check_names(c: _Checker) -> None:
    net = c.net
    for name in net.inputs:
        if not is_identifier(name):
            c.fail((f"inputs.{name}", net.input_lines.get(name)), f"input name {name!r} is not "
                   "an identifier; use letters, digits and _ (not starting with a digit)")
    for name in net.nodes:
        if not is_identifier(name):
            c.fail(c.node_key(name), f"node name {name!r} is not an identifier; use "
                   "letters, digits and _ (not starting with a digit)")
        if name in net.inputs:
            first = net.input_lines.get(name)
            at = f" (line {first})" if first else ""
            c.fail(c.node_key(name), f"node {name!r} has the same name as an input{at}; "
                   "rename one of them")


def _check_inputs(c: _Checker) -> None:
    for name, size in c.net.inputs.items():
        if name in c.net.tokens and (not _is_int(size) or size < 1):
            c.fail((f"inputs.{name}.vocab", c.net.input_lines.get(name)), f"token input "
                   f"{name} needs a positive integer vocab, got {size!r}")
        if not _is_int(size) or size < 1:
            c.fail((f"inputs.{name}", c.net.input_lines.get(name)), f"input {name} needs a "
                   f"positive integer size, got {size!r}")


def _check_nodes(c: _Checker) -> None:
    for name, node in c.net.nodes.items():
        def bad(field: str, message: str, name: str = name) -> None:
            c.fail(c.node_key(name, field), message)

        if not _is_int(node.size) or node.size < 1:
            bad("size", f"node {name} needs a positive integer size, got {node.size!r}")
        for field, valid in (("activation", ACTIVATIONS), ("combine", COMBINES),
                             ("init_state", INIT_STATES), ("update", UPDATES)):
            value = getattr(node, field)
            if not isinstance(value, str) or value not in valid:
                bad(field, unknown_choice(field.replace("_", " "), value, valid))
        if node.bias is not None and not isinstance(node.bias, bool):
            bad("bias", f"bias must be true or false, got {node.bias!r}")
        if node.leak is not None and not (_is_number(node.leak) and 0 < node.leak <= 1):
            bad("leak", f"leak must be a number in (0, 1] (1 means no leak), got {node.leak!r}")
        if not (_is_number(node.temperature) and node.temperature > 0):
            bad("temperature", f"temperature must be a number > 0, got {node.temperature!r}")
        if node.norm is not None:
            if not isinstance(node.norm, str) or node.norm not in NORMS:
                bad("norm", unknown_choice("norm", node.norm, NORMS))
            if node.update == "asynchronous":
                bad("norm", f"node {name}: norm: layer needs the whole step's net input at "
                    "once; it cannot go with update: asynchronous")
        takes = REGISTRY[node.activation].keys
        for key in ("alpha", "beta"):
            value = getattr(node, key)
            if value is None:
                continue
            if key not in takes:
                with_key = [n for n, a in REGISTRY.items() if key in a.keys]
                bad(key, f"activation {node.activation} takes no {key}; remove it (it applies "
                    f"to {', '.join(with_key)})")
            if not _is_number(value):
                bad(key, f"{key} must be a finite number (the default for "
                    f"{node.activation} is {takes[key]!r}), got {value!r}")


def _check_edge_fields(c: _Checker) -> None:
    for i, e in enumerate(c.net.edges):
        if not _is_int(e.delay):
            c.fail(c.edge_key(i, "delay"), f"delay must be an integer number of steps "
                   f"(0 = same step), got {e.delay!r}")
        if not isinstance(e.weight, str) or e.weight not in WEIGHT_KINDS:
            c.fail(c.edge_key(i, "weight"), unknown_choice("weight kind", e.weight,
                                                            WEIGHT_KINDS))
        if not _is_number(e.scale):
            c.fail(c.edge_key(i, "scale"), f"scale must be a finite number, got {e.scale!r}")
        for field in ("trainable", "transpose"):
            if not isinstance(getattr(e, field), bool):
                c.fail(c.edge_key(i, field), f"{field} must be true or false, got "
                       f"{getattr(e, field)!r}")
        if e.init is not None and (not isinstance(e.init, str) or e.init not in INITS):
            c.fail(c.edge_key(i, "init"), unknown_choice("init", e.init, INITS))
        if e.weight == "identity":
            if e.param is not None:
                c.fail(c.edge_key(i, "name"), "an identity edge has no parameter, so it "
                       "cannot be named; remove 'name' or use weight: full")
            if e.transpose or e.init is not None:
                c.fail(c.edge_key(i), "an identity edge has no parameter; remove "
                       "'transpose'/'init' or use weight: full")
        elif not isinstance(e.param, str) or not e.param:
            c.fail(c.edge_key(i, "name"), f"parameter name must be a non-empty string, got "
                   f"{e.param!r}")
        if e.transpose and e.weight != "full":
            c.fail(c.edge_key(i, "transpose"), f"transpose applies to full edges only, "
                   f"not {e.weight}; remove it")


def _check_endpoints(c: _Checker) -> None:
    net = c.net
    known = [*net.inputs, *net.nodes]
    for i, e in enumerate(net.edges):
        if e.src not in net.inputs and e.src not in net.nodes:
            c.fail(c.edge_key(i, "from"), f"edge {e.label}: unknown node or input "
                   f"{e.src!r}; {did_you_mean(e.src, known)}")
        if e.dst in net.inputs:
            c.fail(c.edge_key(i, "to"), f"edge {e.label}: {e.dst!r} is an input, and inputs "
                   "are given, not computed; point the edge at a node")
        if e.dst not in net.nodes:
            c.fail(c.edge_key(i, "to"), f"edge {e.label}: unknown node {e.dst!r}; "
                   f"{did_you_mean(e.dst, net.nodes)}")


def _check_sizes(c: _Checker) -> None:
    net = c.net
    for i, e in enumerate(net.edges):
        src, dst = net.size(e.src), net.size(e.dst)
        if e.weight in ("full", "embedding") or src == dst:
            continue
        if net.nodes[e.dst].combine == "product" and e.weight == "identity":
            c.fail(c.edge_key(i), f"product node {e.dst} (size {dst}) multiplies terms of its "
                   f"own size, but {e.src} has size {src}; use a full edge or match the sizes")
        article = "an" if e.weight == "identity" else "a"
        c.fail(c.edge_key(i, "weight"), f"{article} {e.weight} edge needs equal sizes, but {e.src} "
               f"has {src} and {e.dst} has {dst}; use weight: full")


def _check_duplicates(c: _Checker) -> None:
    seen: dict[tuple[str, str, int], int] = {}
    for i, e in enumerate(c.net.edges):
        key = (e.src, e.dst, e.delay)
        if key in seen:
            first = c.net.edges[seen[key]]
            at = f"line {first.line}" if first.line else f"edges[{seen[key]}]"
            c.fail(c.edge_key(i), f"duplicate edge {e.label} (also at {at}); merge them, or "
                   "give one another delay")
        seen[key] = i


def _shape(net: Network, e: Edge) -> tuple[int, ...]:
    src, dst = net.size(e.src), net.size(e.dst)
    if e.weight == "diagonal":
        return (dst,)
    if e.weight == "embedding":
        return (src, dst)
    return (src, dst) if net.reads_transposed(e) else (dst, src)


def _check_tokens(c: _Checker) -> None:
    """Token inputs are read by ``embedding`` edges only, at the same step; those read tokens."""
    net = c.net
    for name in net.tokens:
        if name not in net.inputs:
            c.fail("inputs", f"token input {name!r} is not among the inputs; declare it "
                   f"'{name}: {{vocab: V}}'")
    for i, e in enumerate(net.edges):
        if e.weight == "embedding" and e.src not in net.tokens:
            c.fail(c.edge_key(i, "weight"), f"edge {e.label}: an embedding edge reads a token "
                   f"input (declared '{e.src}: {{vocab: V}}'), but {e.src!r} is not one; use "
                   "weight: full")
        if e.src in net.tokens and e.weight != "embedding":
            c.fail(c.edge_key(i, "weight"), f"edge {e.label}: {e.src!r} is a token input, read "
                   f"through an embedding edge; write '{e.src} -> {e.dst} embedding'")
        if e.weight == "embedding" and e.delay != 0:
            c.fail(c.edge_key(i, "delay"), f"edge {e.label}: an embedding edge reads the token "
                   f"of the same step (delay 0), got {e.delay!r}; delay a node after the "
                   "embedding instead")
        if e.weight == "full" and e.param in net.embedding_params and e.transpose is not True:
            c.fail(c.edge_key(i, "transpose"), f"edge {e.label} shares the embedding table "
                   f"{e.param!r} as a tied read-out, which reads the table transposed; add "
                   "'transpose: true'")


def _check_tied_embedding(c: _Checker, i: int, e: Edge, other: Edge, at: str) -> None:
    """A full edge may share an embedding table as a tied read-out (``transpose: true``)."""
    if {e.weight, other.weight} != {"full", "embedding"}:
        c.fail(c.edge_key(i, "weight"), f"parameter {e.param!r} is tied to {at}, a "
               f"{other.weight} edge, but this edge is {e.weight}; tied edges need the "
               "same weight kind (or a full read-out tied to an embedding)")


def _check_params(c: _Checker) -> None:
    net = c.net
    reserved = {f"{n}.{role}": (n, role) for n in net.nodes for role in ("bias", "init")}
    reserved.update({f"{n}.gain": (n, "gain") for n, node in net.nodes.items() if node.norm})
    first: dict[str, int] = {}
    for i, e in enumerate(net.edges):
        if e.weight == "identity":
            continue
        if e.param in reserved:
            node, role = reserved[e.param]
            c.fail(c.edge_key(i, "name"), f"parameter name {e.param!r} is reserved for node "
                   f"{node}'s {role}; choose another name")
        if e.param not in first:
            first[e.param] = i
            continue
        j = first[e.param]
        other = net.edges[j]
        at = f"{other.label} (line {other.line})" if other.line else other.label
        if other.weight != e.weight:
            _check_tied_embedding(c, i, e, other, at)
        mine, theirs = _shape(net, e), _shape(net, other)
        if mine != theirs:
            c.fail(c.edge_key(i, "name"), f"parameter {e.param!r} is tied to {at} with shape "
                   f"{theirs}, but this edge needs {mine}; give it its own name or fix the "
                   "sizes")
        if e.init is not None and other.init is not None and e.init != other.init:
            c.fail(c.edge_key(i, "init"), f"parameter {e.param!r} is tied to {at} with init "
                   f"{other.init!r}, but this edge says {e.init!r}; give one init")


def _check_incoming(c: _Checker) -> None:
    for name in c.net.nodes:
        if not c.net.in_edges(name):
            c.fail(c.node_key(name), f"node {name} has no incoming edge, so nothing computes "
                   f"it; add an edge 'SRC -> {name}' or remove the node")


def _check_outputs(c: _Checker) -> None:
    net = c.net
    if not net.outputs:
        c.fail("outputs", "no outputs; list at least one node under outputs")
    seen: set[str] = set()
    for i, name in enumerate(net.outputs):
        key = f"outputs[{i}]"
        if name in net.inputs:
            c.fail(key, f"output {name!r} is an input; outputs must be nodes")
        if name not in net.nodes:
            c.fail(key, f"output {name!r} is not a node; {did_you_mean(name, net.nodes)}")
        if name in seen:
            c.fail(key, f"output {name!r} is listed twice; list it once")
        seen.add(name)


def _rate(value: object) -> bool:
    return value is None or (_is_number(value) and 0 <= value < 1)


def _check_noise(c: _Checker) -> None:
    """Dropout, zoneout and weight-dropout rates in [0, 1), where they apply (DESIGN.md)."""
    net = c.net
    for name, node in net.nodes.items():
        for key in ("dropout", "zoneout"):
            value = getattr(node, key)
            if not _rate(value):
                c.fail(c.node_key(name, key), f"{key} must be a probability in [0, 1), got "
                       f"{value!r}")
            if value and node.update == "asynchronous":
                c.fail(c.node_key(name, key), f"node {name} updates asynchronously; {key} "
                       "applies to synchronous nodes only")
    for i, e in enumerate(net.edges):
        for key in ("dropout", "weight_dropout"):
            value = getattr(e, key)
            if not _rate(value):
                c.fail(c.edge_key(i, key), f"{key} must be a probability in [0, 1), got "
                       f"{value!r}")
        if e.weight_dropout and e.weight != "full":
            c.fail(c.edge_key(i, "weight_dropout"), f"weight_dropout drops entries of a full "
                   f"matrix, but edge {e.label} is {e.weight}; use dropout instead")
        if e.dropout and net.nodes[e.dst].update == "asynchronous" and e.src == e.dst:
            c.fail(c.edge_key(i, "dropout"), f"edge {e.label} is an asynchronous node's "
                   "Hopfield self-edge; dropout does not apply to it")
    rates: dict[str, tuple[int, float]] = {}
    for i, e in enumerate(net.edges):
        if e.weight != "full":
            continue
        rate = e.weight_dropout or 0.0
        j, other = rates.setdefault(e.param, (i, rate))
        if other != rate:
            c.fail(c.edge_key(i, "weight_dropout"), f"parameter {e.param!r} is tied to "
                   f"{net.edges[j].label} with weight_dropout {other:g}, but this edge has "
                   f"{rate:g}; one matrix has one mask, so give tied edges the same rate")
