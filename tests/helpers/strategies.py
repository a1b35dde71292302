"""Hypothesis strategies: random valid spec texts (for every stage's tests) and broken ones."""

from __future__ import annotations

import networkx as nx
from hypothesis import strategies as st

ACTS = ("identity", "tanh", "sigmoid", "relu", "softmax")
SIZES = st.integers(1, 4)


@st.composite
def _structures(draw, max_nodes: int = 5, max_inputs: int = 2, tokens: bool = False) -> dict:
    """A random valid network as plain data: inputs, token inputs (vocabularies), nodes
    (options), edges (options), outputs.

    Nodes are ``n0..nK`` in an order that every delay-0 edge follows (so there is no
    algebraic loop); edges against that order, and self-edges, get delays 1-3 in magnitude.
    Time runs both ways: the nodes split into a leading and a trailing group, one causal (its
    delays >= 0) and, often, one anti-causal (delays <= 0: it reads the future, and has no
    leak or learned state); edges go from the leading group to the trailing one only, with
    the sign of the group they enter, so no loop mixes signs. Inputs are read at any delay
    from -3 to 3.
    With ``tokens``, sometimes token inputs with embedding edges (see :func:`_add_tokens`).
    """
    inputs = {f"x{i}": draw(SIZES) for i in range(draw(st.integers(0, max_inputs)))}
    names = [f"n{i}" for i in range(draw(st.integers(1, max_nodes)))]
    split = draw(st.integers(0, len(names)))
    lead_sign = draw(st.sampled_from((1, 1, -1)))
    trail_sign = draw(st.sampled_from((1, -1))) if split else lead_sign
    sign = {n: lead_sign if i < split else trail_sign for i, n in enumerate(names)}
    nodes = {}
    for name in names:
        opts = {"size": draw(SIZES), "activation": draw(st.sampled_from(ACTS))}
        if draw(st.integers(0, 3)) == 0:
            opts["combine"] = "product"
        if draw(st.integers(0, 4)) == 0 and sign[name] > 0:
            opts["leak"] = draw(st.sampled_from((0.25, 0.5, 1.0)))
        read_ahead = sign[name] < 0 or (names.index(name) < split and trail_sign < 0)
        if draw(st.integers(0, 4)) == 0 and not read_ahead:  # no learned state after the end
            opts["init_state"] = "learned"
        if draw(st.integers(0, 5)) == 0:
            opts["bias"] = draw(st.booleans())
        nodes[name] = opts
    size = {**inputs, **{n: o["size"] for n, o in nodes.items()}}
    sources = [*inputs, *names]
    edges: dict[tuple[str, str, int], dict] = {}

    def delay_for(src: str, dst: str) -> int | None:
        """A delay for ``src -> dst`` keeping loops one-signed (None: no such edge)."""
        if src in inputs:
            return draw(st.integers(-3, 3))
        i, j = names.index(src), names.index(dst)
        if (i >= split) != (j >= split) and i >= split:
            return None  # trailing -> leading would join the groups in a loop
        back = i >= j
        return sign[dst] * draw(st.integers(1, 3) if back else st.integers(0, 3))

    def add(src: str, dst: str) -> None:
        delay = delay_for(src, dst)
        if delay is None or (src, dst, delay) in edges:
            return
        kinds = ["full"] + (["diagonal", "identity"] if size[src] == size[dst] else [])
        opts = {"weight": draw(st.sampled_from(kinds))}
        if opts["weight"] == "full" and draw(st.integers(0, 5)) == 0:
            opts["transpose"] = True
        if draw(st.integers(0, 4)) == 0:
            opts["scale"] = draw(st.sampled_from((-1.0, 0.5, 2.0)))
        edges[(src, dst, delay)] = opts

    for dst in names:
        for _ in range(draw(st.integers(1, 3))):
            add(draw(st.sampled_from(sources)), dst)
        if not any(d == dst for _, d, _ in edges):  # every node needs an in-edge
            src = draw(st.sampled_from([*inputs, *names[:names.index(dst) + 1]]))
            back = src == dst
            kinds = ["full"] + (["diagonal", "identity"] if size[src] == size[dst] else [])
            edges[(src, dst, sign[dst] if back else 0)] = {
                "weight": draw(st.sampled_from(kinds))}
    for x in inputs:  # every input is read
        if not any(s == x for s, _, _ in edges):
            add(x, draw(st.sampled_from(names)))
            if not any(s == x for s, _, _ in edges):
                edges[(x, names[-1], 3)] = {"weight": "full"}
    _tie(draw, edges, size)
    room = max_inputs - len(inputs)  # token inputs count as inputs
    vocab = (_add_tokens(draw, names, edges, size, room, delay_for) if tokens and room > 0
             else {})
    outputs = draw(st.lists(st.sampled_from(names), min_size=1, max_size=len(names),
                            unique=True))
    g = nx.DiGraph([(s, d) for s, d, _ in edges])
    g.add_nodes_from(names)
    for name in names:  # every node reaches an output (no 'unused node' warnings)
        if not (nx.descendants(g, name) | {name}) & set(outputs):
            outputs.append(name)
    return {"inputs": inputs, "tokens": vocab, "nodes": nodes, "edges": edges,
            "outputs": outputs}


def _add_tokens(draw, names: list, edges: dict, size: dict, room: int, delay_for) -> dict:
    """Sometimes add up to ``room`` (at most 2) token inputs ``t0``, ``t1`` (vocabularies
    2-5), each read by one embedding edge (delay 0, optional scale) into a random node;
    sometimes a read-out tied to that embedding (``transpose: true``) where two nodes have
    the sizes it needs (at a delay from ``delay_for``, so no loop mixes signs).

    Token edges come after every other edge (the broken-spec mutations edit the first one).
    """
    count = min(draw(st.sampled_from((0, 0, 1, 2))), room)
    vocab = {f"t{i}": draw(st.integers(2, 5)) for i in range(count)}
    for k, (tok, v) in enumerate(vocab.items()):
        size[tok] = v
        dst = draw(st.sampled_from(names))
        opts: dict = {"weight": "embedding"}
        if draw(st.integers(0, 3)) == 0:
            opts["scale"] = draw(st.sampled_from((-1.0, 0.5, 2.0)))
        pairs = [(a, b) for a in names for b in names
                 if size[a] == size[dst] and size[b] == v]
        if pairs and draw(st.booleans()):  # y = E . h, E the (v, size dst) table
            src, out = draw(st.sampled_from(pairs))
            delay = delay_for(src, out)  # keeps loops one-signed
            if delay is not None and (src, out, delay) not in edges:
                opts["name"] = f"E{k}"
                edges[(src, out, delay)] = {"weight": "full", "name": f"E{k}", "transpose": True}
        edges[(tok, dst, 0)] = opts
    return vocab


def _tie(draw, edges: dict, size: dict) -> None:
    """Give some edges with the same parameter shape and kind one shared name."""
    groups: dict[tuple, list[tuple]] = {}
    for (src, dst, delay), opts in edges.items():
        kind = opts["weight"]
        if kind == "identity":
            continue
        if kind == "diagonal":
            shape = (size[dst],)
        else:
            shape = (size[src], size[dst]) if opts.get("transpose") else (size[dst], size[src])
        groups.setdefault((kind, shape), []).append((src, dst, delay))
    for k, members in enumerate(groups.values()):
        if len(members) > 1 and draw(st.booleans()):
            for key in draw(st.lists(st.sampled_from(members), min_size=2, unique=True)):
                edges[key]["name"] = f"W{k}"


def render(net: dict) -> str:
    """Spec text for a structure from ``_structures``; plain edges as strings, others mappings."""
    out = ["name: random"]
    if net["inputs"]:
        out += ["inputs:"] + [f"  {k}: {v}" for k, v in net["inputs"].items()]
    if net.get("tokens"):
        out += [] if net["inputs"] else ["inputs:"]
        out += [f"  {k}: {{vocab: {v}}}" for k, v in net["tokens"].items()]
    out.append("nodes:")
    for name, opts in net["nodes"].items():
        if set(opts) <= {"size", "activation"} and opts.get("activation") == "identity":
            out.append(f"  {name}: {opts['size']}")
        else:
            out.append(f"  {name}: {{{', '.join(f'{k}: {_yaml(v)}' for k, v in opts.items())}}}")
    out.append("edges:")
    for (src, dst, delay), opts in net["edges"].items():
        if set(opts) <= {"weight"}:
            at = f" @{delay}" if delay else ""
            out.append(f"  - {src} -> {dst}{at} {opts.get('weight', 'full')}")
        else:
            fields = {"from": src, "to": dst, "delay": delay, **opts}
            out.append(f"  - {{{', '.join(f'{k}: {_yaml(v)}' for k, v in fields.items())}}}")
    out.append(f"outputs: [{', '.join(net['outputs'])}]")
    return "\n".join(out) + "\n"


def _yaml(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str) and not value.isidentifier():
        return f'"{value}"'
    return str(value)


def valid_networks(max_nodes: int = 5, max_inputs: int = 2,
                   tokens: bool = True) -> st.SearchStrategy[str]:
    """Random valid spec TEXT (load it with ``graphrnn.load_spec``).

    1-``max_nodes`` nodes of sizes 1-4, 0-``max_inputs`` inputs, delays -3..3 with no delay-0
    cycle and no loop mixing signs (causal and anti-causal groups: see ``_structures``),
    weight kinds full/diagonal/identity where the sizes allow, combine sum/product,
    activations identity/tanh/sigmoid/relu/softmax, optional leak, learned initial state,
    bias override, scale, transposed edges, and tied parameters (names ``W0``, ``W1``...).
    With ``tokens``, sometimes token inputs ``t0``, ``t1`` (vocabularies 2-5; counted in
    ``max_inputs``) read by embedding edges, and read-outs tied to an embedding (``E0``,
    ``E1``). Every node has an
    in-edge and reaches an output; every input is read.
    """
    return _structures(max_nodes=max_nodes, max_inputs=max_inputs, tokens=tokens).map(render)


# -- broken specs ------------------------------------------------------------------------------

def _mutations(draw, net: dict) -> tuple[str, str]:
    """Break ``net`` in one random way; return the spec text and a fragment of the message."""
    names = list(net["nodes"])
    edges = net["edges"]
    kind = draw(st.sampled_from((
        "activation", "unknown_src", "unknown_dst", "self_loop", "mixed_signs",
        "fraction_delay", "duplicate_edge", "drop_section", "unknown_output", "size",
        "node_key", "edge_key", "no_in_edge", "bad_name", "duplicate_node", "weight",
        "identity_size", "garbage", "combine", "leak", "input_as_output")))
    n = draw(st.sampled_from(names))
    first = next(iter(edges))
    if kind == "activation":
        net["nodes"][n]["activation"] = "tahn"
        return render(net), "unknown activation 'tahn'"
    if kind == "combine":
        net["nodes"][n]["combine"] = "max"
        return render(net), "unknown combine 'max'"
    if kind == "leak":
        net["nodes"][n]["leak"] = draw(st.sampled_from((0, -0.5, 1.5)))
        return render(net), "leak must be a number in (0, 1]"
    if kind == "unknown_src":
        edges[("zz_unknown", n, 1)] = {"weight": "full"}
        return render(net), "unknown node or input 'zz_unknown'"
    if kind == "unknown_dst":
        edges[(n, "zz_unknown", 1)] = {"weight": "full"}
        return render(net), "unknown node 'zz_unknown'"
    if kind == "self_loop":
        if (n, n, 0) in edges:
            return render(net), "algebraic loop"
        edges[(n, n, 0)] = {"weight": "full"}
        return render(net), f"algebraic loop {n} -> {n}"
    if kind == "mixed_signs":  # a node reading both its past and its future: no direction
        n = draw(st.sampled_from(names))
        edges[(n, n, draw(st.integers(1, 3)))] = {"weight": "full"}
        edges[(n, n, -draw(st.integers(1, 3)))] = {"weight": "full"}
        return render(net), "reads both the past (delay > 0) and the future (delay < 0)"
    if kind == "fraction_delay":
        edges[(first[0], first[1], 1.5)] = {"weight": "full"}
        return render(net), "delay must be an integer"
    if kind == "duplicate_edge":
        text = render(net).replace("edges:\n", f"edges:\n  - {first[0]} -> {first[1]} "
                                   f"@{first[2]}\n", 1)
        return text, "duplicate edge"
    if kind == "drop_section":
        section = draw(st.sampled_from(("nodes", "edges", "outputs")))
        lines = render(net).splitlines(keepends=True)
        keep, skipping = [], False
        for line in lines:
            if line.startswith(f"{section}:"):
                skipping = not line.rstrip().endswith("]")
                continue
            if skipping and line.startswith(" "):
                continue
            skipping = False
            keep.append(line)
        return "".join(keep), f"missing section '{section}'"
    if kind == "unknown_output":
        net["outputs"].append("zz_out")
        return render(net), "output 'zz_out' is not a node"
    if kind == "input_as_output":
        if not net["inputs"]:
            net["outputs"].append("zz_out")
            return render(net), "is not a node"
        net["outputs"].append(next(iter(net["inputs"])))
        return render(net), "is an input"
    if kind == "size":
        net["nodes"][n]["size"] = draw(st.sampled_from((0, -2, "big", 2.5)))
        return render(net), "needs a positive integer size"
    if kind == "node_key":
        net["nodes"][n]["activaton"] = "tanh"
        return render(net), "unknown key 'activaton'"
    if kind == "edge_key":
        edges[first] = {**edges[first], "delai": 1}
        return render(net), "unknown key 'delai'"
    if kind == "weight":
        edges[first] = {**edges[first], "weight": "diag"}
        return render(net), "unknown weight kind 'diag'"
    if kind == "no_in_edge":
        net["nodes"]["zz_lonely"] = {"size": 2, "activation": "tanh"}
        net["outputs"].append("zz_lonely")
        return render(net), "node zz_lonely has no incoming edge"
    if kind == "bad_name":
        return render(net).replace(f"  {n}:", "  9bad:", 1), "is not an identifier"
    if kind == "duplicate_node":
        text = render(net).replace("nodes:\n", f"nodes:\n  {n}: 3\n", 1)
        return text, f"duplicate node '{n}'"
    if kind == "identity_size":
        net["nodes"]["zz_a"] = {"size": 2, "activation": "tanh"}
        net["nodes"]["zz_b"] = {"size": 3, "activation": "tanh"}
        edges[(n, "zz_a", 1)] = {"weight": "full"}
        edges[("zz_a", "zz_b", 0)] = {"weight": draw(st.sampled_from(("identity", "diagonal")))}
        net["outputs"] += ["zz_b"]
        return render(net), "needs equal sizes"
    garbage = draw(st.text(alphabet="abc:-[]{}@>#,'\" \n\t0123456789", max_size=60))
    return "\n" + garbage, ""


@st.composite
def _broken(draw, with_expect: bool):
    text, expect = _mutations(draw, draw(_structures()))
    return (text, expect) if with_expect else text


def broken_specs(with_expect: bool = False) -> st.SearchStrategy:
    """Random invalid spec TEXT: a valid random network broken in one way (or YAML garbage).

    With ``with_expect=True`` each example is ``(text, fragment)``, where ``fragment`` is part
    of the message the SpecError must carry (empty for garbage, which may fail anywhere).
    """
    return _broken(with_expect)
