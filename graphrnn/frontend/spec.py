"""Load a spec (a YAML file or YAML text) into a validated Network, keeping every key's line."""

from __future__ import annotations

import math
import os
import re
from pathlib import Path

import yaml

from graphrnn import checks
from graphrnn.errors import SpecError
from graphrnn.frontend.bundled import read_spec_text
from graphrnn.frontend.names import did_you_mean
from graphrnn.frontend.network import Edge, Network, Node, default_param_name
from graphrnn.frontend.validate import validate
from graphrnn.frontend.yaml_safe import compose

#: Top-level sections of a spec (``inputs`` may be left out; ``name`` is optional).
SECTIONS = ("name", "inputs", "nodes", "edges", "outputs")
#: Keys of a node mapping.
NODE_KEYS = ("size", "activation", "combine", "bias", "leak", "init_state", "update",
             "temperature", "alpha", "beta", "dropout", "zoneout", "norm")
#: Keys of an edge mapping.
EDGE_KEYS = ("from", "to", "delay", "weight", "scale", "name", "trainable", "init", "transpose",
             "dropout", "weight_dropout")
#: Edge keys that only make sense for an edge with a parameter (not ``identity``).
PARAM_KEYS = ("name", "init", "transpose", "trainable")
EDGE_SYNTAX = "SRC -> DST [@DELAY] [full|diagonal|identity]"
#: Keys of a token input's mapping (``tok: {vocab: 256}``).
TOKEN_KEYS = ("vocab",)


def load_spec(path_or_text: str | os.PathLike) -> Network:
    """Read, parse and validate a spec.

    Parameters
    ----------
    path_or_text : str or os.PathLike
        A path (a ``Path``, a string naming an existing file, or a string ending in
        ``.yaml``/``.yml``), the name of a bundled spec (``"lstm"``: a word without a path
        separator or suffix that is not an existing file; see :func:`.spec_path`), or the
        spec's YAML text itself.

    Returns
    -------
    Network
        The validated network; ``net.source`` is the path (``None`` for text).

    Raises
    ------
    SpecError
        For a spec that is not valid, or one whose parameters or delays alone need more memory
        than the limit (``GRAPHRNN_MAX_MEMORY``, default the memory available); the message
        carries the file, line and key.
    OSError
        When a path cannot be read.
    """
    text, source = read_spec_text(path_or_text)
    parser = _Parser(source)
    net = parser.parse(text)
    validate(net, parser.lines)
    _check_limits(net, parser.lines)
    return net


def _short(text: str, most: int = 40) -> str:
    """``text``, cut to ``most`` characters with an ellipsis (for messages)."""
    return text if len(text) <= most else text[:most] + "..."


def _line(node: yaml.Node) -> int:
    return node.start_mark.line + 1


def _is_empty(node: yaml.Node) -> bool:
    if isinstance(node, yaml.ScalarNode):
        return node.tag == "tag:yaml.org,2002:null"
    return not node.value


class _Parser:
    """Turns composed YAML into a :class:`Network`, recording each key's line in ``lines``."""

    def __init__(self, source: str | None):
        self.source = source
        self.lines: dict[str, int] = {}
        #: the inputs declared ``{vocab: V}``, in order
        self.tokens: list[str] = []
        self._loader = yaml.SafeLoader("")

    def fail(self, message: str, node: yaml.Node | None, key: str | None = None) -> None:
        raise SpecError(message, self.source, _line(node) if node is not None else None, key)

    def parse(self, text: str) -> Network:
        root = compose(text, self.source)
        if root is None:
            raise SpecError("the spec is empty; it needs the sections nodes, edges and "
                            "outputs (and inputs, if the network reads any)", self.source, 1)
        if not isinstance(root, yaml.MappingNode):
            self.fail("a spec is a mapping with the sections inputs, nodes, edges and outputs",
                      root)
        sections = {}
        for name, key, value in self.items(root, "", "section"):
            if name not in SECTIONS:
                self.fail(f"unknown section {name!r}; {did_you_mean(name, SECTIONS)} (sections: "
                          f"{', '.join(SECTIONS)})", key, name)
            self.lines[name] = _line(key)
            sections[name] = (key, value)
        for name in ("nodes", "edges", "outputs"):
            if name not in sections:
                self.fail(f"missing section {name!r}; a spec needs nodes, edges and outputs",
                          root, name)
        inputs = self.inputs(*sections["inputs"]) if "inputs" in sections else {}
        nodes = self.nodes(*sections["nodes"])
        edges = self.edges(*sections["edges"])
        outputs = self.outputs(*sections["outputs"])
        if "name" in sections:
            name = self.scalar(sections["name"][1], "name")
            if not isinstance(name, str) or not name.strip():
                self.fail("name must be a non-empty string", sections["name"][1], "name")
        else:
            name = Path(self.source).stem if self.source else "network"
        input_lines = {k: v for k, v in ((k, self.lines.get(f"inputs.{k}")) for k in inputs)
                       if v is not None}
        return Network(name=name, inputs=inputs, nodes=nodes, edges=tuple(edges),
                       outputs=tuple(outputs), source=self.source, input_lines=input_lines,
                       tokens=tuple(self.tokens))

    # -- YAML helpers -------------------------------------------------------------------------

    def items(self, node: yaml.MappingNode, prefix: str, what: str):
        """``(name, key node, value node)`` of a mapping; duplicate keys are errors."""
        seen: dict[str, int] = {}
        out = []
        for key, value in node.value:
            if not isinstance(key, yaml.ScalarNode):
                self.fail(f"a {what} name must be a plain word", key, prefix.rstrip(".") or None)
            name = key.value
            if name in seen:
                self.fail(f"duplicate {what} {name!r} (first at line {seen[name]}); each "
                          f"{what} may appear once", key, f"{prefix}{name}")
            seen[name] = _line(key)
            out.append((name, key, value))
        return out

    def scalar(self, node: yaml.Node, key: str):
        """The Python value of a scalar node (int, float, bool, str, None)."""
        if not isinstance(node, yaml.ScalarNode):
            self.fail("expected a single value here, not a list or mapping", node, key)
        try:
            return self._loader.construct_object(node, deep=True)
        except yaml.YAMLError as e:
            self.fail(f"cannot read this value: {' '.join(str(e.problem or e).split())}",
                      node, key)
        except Exception as e:  # noqa: BLE001 - a tag's constructor failing on this text
            if "digits" in str(e):
                self.fail(f"the number {_short(node.value)} ({len(node.value):,} characters) "
                          "is too long to read", node, key)
            tag = node.tag.replace("tag:yaml.org,2002:", "!!")
            reason = " ".join(str(e).split())[:100]
            self.fail(f"cannot read {_short(node.value)!r} as {tag} ({type(e).__name__}: "
                      f"{reason}); drop the tag or write a plain value", node, key)

    def section(self, key: yaml.Node, value: yaml.Node, name: str, kind, example: str):
        if _is_empty(value):
            self.fail(f"section {name!r} is empty; {example}", key, name)
        if not isinstance(value, kind):
            shape = "a mapping NAME: ..." if kind is yaml.MappingNode else "a list"
            self.fail(f"section {name!r} must be {shape}; {example}", value, name)

    # -- sections -----------------------------------------------------------------------------

    def inputs(self, key: yaml.Node, value: yaml.Node) -> dict[str, int]:
        if _is_empty(value):
            return {}
        if not isinstance(value, yaml.MappingNode):
            self.fail("section 'inputs' must be a mapping NAME: SIZE, e.g. 'x: 8'", value,
                      "inputs")
        out = {}
        for name, k, v in self.items(value, "inputs.", "input"):
            self.lines[f"inputs.{name}"] = _line(k)
            if isinstance(v, yaml.MappingNode):
                out[name] = self.token_input(name, v)
                continue
            if not isinstance(v, yaml.ScalarNode):
                self.fail(f"input {name} takes just its size, e.g. '{name}: 8', or a "
                          f"vocabulary, e.g. '{name}: {{vocab: 256}}'", v, f"inputs.{name}")
            out[name] = self.scalar(v, f"inputs.{name}")
        return out

    def token_input(self, name: str, value: yaml.MappingNode) -> int:
        """A token input ``NAME: {vocab: V}``: its vocabulary V (recorded in ``self.tokens``)."""
        path = f"inputs.{name}"
        opts = {}
        for opt, ok, ov in self.items(value, f"{path}.", "key"):
            if opt not in TOKEN_KEYS:
                self.fail(f"unknown key {opt!r} in input {name}; a token input is "
                          f"'{name}: {{vocab: V}}'", ok, f"{path}.{opt}")
            self.lines[f"{path}.{opt}"] = _line(ok)
            opts[opt] = self.scalar(ov, f"{path}.{opt}")
        if "vocab" not in opts:
            self.fail(f"token input {name} needs its vocabulary size, e.g. "
                      f"'{name}: {{vocab: 256}}'", value, path)
        self.tokens.append(name)
        return opts["vocab"]

    def nodes(self, key: yaml.Node, value: yaml.Node) -> dict[str, Node]:
        self.section(key, value, "nodes", yaml.MappingNode,
                     "declare nodes as 'h: {size: 16, activation: tanh}' or 'y: 4'")
        out = {}
        for name, k, v in self.items(value, "nodes.", "node"):
            path = f"nodes.{name}"
            self.lines[path] = _line(k)
            opts = {}
            if isinstance(v, yaml.MappingNode):
                for opt, ok, ov in self.items(v, f"{path}.", "option"):
                    if opt not in NODE_KEYS:
                        self.fail(f"unknown key {opt!r} in node {name}; "
                                  f"{did_you_mean(opt, NODE_KEYS)} (keys: {', '.join(NODE_KEYS)})",
                                  ok, f"{path}.{opt}")
                    self.lines[f"{path}.{opt}"] = _line(ok)
                    opts[opt] = self.scalar(ov, f"{path}.{opt}")
                if "size" not in opts:
                    self.fail(f"node {name} needs a size, e.g. '{name}: {{size: 16}}'", k, path)
            elif isinstance(v, yaml.ScalarNode) and not _is_empty(v):
                opts["size"] = self.scalar(v, path)
            else:
                self.fail(f"node {name} needs a size: write '{name}: 16' or "
                          f"'{name}: {{size: 16, activation: tanh}}'", k, path)
            out[name] = Node(name=name, line=_line(k), **opts)
        return out

    def edges(self, key: yaml.Node, value: yaml.Node) -> list[Edge]:
        self.section(key, value, "edges", yaml.SequenceNode,
                     f"list edges as '- {EDGE_SYNTAX}' or '- {{from: x, to: h}}'")
        out = []
        for i, item in enumerate(value.value):
            path = f"edges[{i}]"
            self.lines[path] = _line(item)
            if isinstance(item, yaml.MappingNode):
                out.append(self.edge_mapping(item, path))
            elif isinstance(item, yaml.ScalarNode) and isinstance(self.scalar(item, path), str):
                out.append(self.edge_string(item, path))
            else:
                self.fail(f"an edge is '{EDGE_SYNTAX}' or a mapping {{from: SRC, to: DST, ...}}",
                          item, path)
        return out

    def edge_string(self, item: yaml.ScalarNode, path: str) -> Edge:
        text = item.value
        src, arrow, rest = text.partition("->")
        words = re.sub(r"@\s*", " @", rest).split()
        if not arrow or len(src.split()) != 1 or not words or words[0].startswith("@"):
            self.fail(f"cannot read edge {text!r}; write it as '{EDGE_SYNTAX}'", item, path)
        if "->" in rest:
            self.fail(f"edge {text!r} has two arrows; write one edge per list item", item, path)
        delay, weight = 0, "full"
        seen: set[str] = set()
        for word in words[1:]:
            what = "delay" if word.startswith("@") else "weight"
            if what in seen:
                self.fail(f"edge {text!r}: unexpected {word!r}; write it as '{EDGE_SYNTAX}'",
                          item, path)
            seen.add(what)
            if what == "weight":
                weight = word
                continue
            number = word[1:]
            if re.fullmatch(r"[+-]?\d+", number):
                if len(number) > 30:
                    self.fail(f"edge {_short(text)!r}: delay {_short(word)} is far too long "
                              "(more than 30 digits)", item, path)
                delay = int(number)
            elif re.fullmatch(r"[+-]?(\d+\.\d*|\.\d+)([eE][+-]?\d+)?", number):
                delay = float(number)
            else:
                self.fail(f"edge {text!r}: delay {word!r} must be '@' and a whole number of "
                          "steps, e.g. '@1'", item, path)
        src, dst = src.strip(), words[0]
        param = None if weight == "identity" else default_param_name(src, dst, delay)
        return Edge(src=src, dst=dst, delay=delay, weight=weight, param=param, line=_line(item))

    def edge_mapping(self, item: yaml.MappingNode, path: str) -> Edge:
        opts, nodes = {}, {}
        for opt, k, v in self.items(item, f"{path}.", "key"):
            if opt not in EDGE_KEYS:
                self.fail(f"unknown key {opt!r} in an edge; {did_you_mean(opt, EDGE_KEYS)} "
                          f"(keys: {', '.join(EDGE_KEYS)})", k, f"{path}.{opt}")
            self.lines[f"{path}.{opt}"] = _line(k)
            value = self.scalar(v, f"{path}.{opt}")
            if opt in ("from", "to", "name"):
                if value is None or value == "":
                    self.fail(f"'{opt}' needs a name", k, f"{path}.{opt}")
                value = v.value
            opts[opt], nodes[opt] = value, k
        for needed in ("from", "to"):
            if needed not in opts:
                self.fail(f"an edge mapping needs '{needed}', e.g. {{from: x, to: h}}", item,
                          path)
        weight = opts.get("weight", "full")
        if weight == "identity":
            for opt in PARAM_KEYS:
                if opt in opts:
                    self.fail(f"an identity edge has no parameter, so {opt!r} does not apply; "
                              "remove it or use weight: full", nodes[opt], f"{path}.{opt}")
        delay = opts.get("delay", 0)
        if "name" in opts:
            param = opts["name"]
        else:
            param = None if weight == "identity" else default_param_name(
                opts["from"], opts["to"], delay)
        scale = opts.get("scale", 1.0)
        if isinstance(scale, int) and not isinstance(scale, bool) and abs(scale) < 2**1023:
            scale = float(scale)
        return Edge(src=opts["from"], dst=opts["to"], delay=delay, weight=weight, scale=scale,
                    param=param, trainable=opts.get("trainable", True), init=opts.get("init"),
                    transpose=opts.get("transpose", False), line=_line(item),
                    dropout=opts.get("dropout"), weight_dropout=opts.get("weight_dropout"))

    def outputs(self, key: yaml.Node, value: yaml.Node) -> list[str]:
        if isinstance(value, yaml.ScalarNode) and not _is_empty(value):
            items = [value]
        else:
            self.section(key, value, "outputs", yaml.SequenceNode,
                         "list the nodes to return, e.g. 'outputs: [y]'")
            items = value.value
        out = []
        for i, item in enumerate(items):
            self.lines[f"outputs[{i}]"] = _line(item)
            if not isinstance(item, yaml.ScalarNode):
                self.fail("an output is a node name", item, f"outputs[{i}]")
            out.append(item.value)
        return out


def _check_limits(net: Network, lines: dict[str, int]) -> None:
    """Refuse delays and parameters that alone need more memory than the limit (a batch of
    one sequence, float32), before anything is allocated."""
    limit, source = checks.memory_limit()
    where = net.source

    def fail(message: str, key: str, line: int | None) -> None:
        raise SpecError(f"{message}, more than the {checks.format_bytes(limit)} limit ({source})",
                        where, lines.get(key, line), key)

    for i, e in enumerate(net.edges):
        need = abs(e.delay) * net.size(e.src) * 4
        if need > limit:
            fail(f"delay {e.delay:,} keeps {abs(e.delay):,} past steps of {e.src} (size "
                 f"{net.size(e.src):,}): {checks.format_bytes(need)} for one sequence",
                 f"edges[{i}]", e.line)
    sizes = {name: math.prod(p.shape) * 4 for name, p in net.params.items()}
    need = sum(sizes.values())
    if need > limit:
        biggest = max(sizes, key=sizes.get)
        edges = net.params[biggest].edges
        if edges:
            index = net.edges.index(edges[0])
            key, line = f"edges[{index}]", edges[0].line
        else:  # a bias or learned initial state NODE.bias / NODE.init
            node = net.nodes[biggest.rsplit(".", 1)[0]]
            key, line = f"nodes.{node.name}.size", node.line
        fail(f"the parameters need {checks.format_bytes(need)} in float32 (the largest, "
             f"{biggest!r}, has shape {net.params[biggest].shape})", key, line)
