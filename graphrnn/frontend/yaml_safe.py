"""YAML safety limits for specs: bounded nesting, and composing text into nodes as SpecErrors."""

from __future__ import annotations

import re

import yaml

from graphrnn.errors import SpecError

#: The deepest nesting of lists and mappings a spec may have.
MAX_DEPTH = 32


_FLOW_CHARS = re.compile(r"""[\[\]{}'"\n]|(?:^|(?<=\s))#""")


def too_deep(text: str) -> int | None:
    """The line where ``[``/``{`` brackets first nest deeper than :data:`MAX_DEPTH` (outside
    quotes and comments), or None. A cheap pass before YAML's scanner, which looks ahead over
    every open bracket for a possible key: 0.1 s for a thousand of them."""
    depth, line, quote, comment = 0, 1, "", False
    for m in _FLOW_CHARS.finditer(text):
        c = m.group()
        if c == "\n":
            line, comment = line + 1, False
            if quote == "'":  # a quoted scalar may span lines; a plain one cannot hold '
                continue
        elif comment:
            continue
        elif quote:
            quote = "" if c == quote else quote
        elif c in "'\"":
            quote = c if m.start() == 0 or text[m.start() - 1] in " \t[{,:\n-" else ""
        elif c == "#":
            comment = True
        elif c in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                return line
        elif c in "]}":
            depth = max(depth - 1, 0)
    return None


class DepthLimitedLoader(yaml.SafeLoader):
    """The safe loader, refusing nesting deeper than :data:`MAX_DEPTH` as it reads (a spec
    nests four levels; scanning 20,000 brackets to a RecursionError took 0.6 s)."""

    def __init__(self, stream):
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent, index):
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise yaml.composer.ComposerError(
                    None, None, f"nested more than {MAX_DEPTH} levels deep",
                    self.peek_event().start_mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def compose(text: str, source: str | None) -> yaml.Node | None:
    """Compose YAML ``text`` into nodes with :class:`DepthLimitedLoader` (None when empty).

    Every YAML error, and nesting deeper than :data:`MAX_DEPTH`, is a one-line
    :class:`~graphrnn.errors.SpecError` naming ``source`` and the line.
    """
    deep = too_deep(text)
    if deep:
        raise SpecError(f"not valid YAML: brackets nested more than {MAX_DEPTH} levels deep",
                        source, deep)
    try:
        return yaml.compose(text, Loader=DepthLimitedLoader)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        what = "; ".join(str(p) for p in (e.context, e.problem) if p)
        raise SpecError(f"not valid YAML: {what}; check the indentation, quotes and "
                        "brackets here", source,
                        mark.line + 1 if mark else None) from None
    except yaml.reader.ReaderError as e:
        line = text.count("\n", 0, e.position) + 1 if isinstance(e.position, int) else None
        raise SpecError(f"not valid YAML: {' '.join(str(e).split())}", source,
                        line) from None
    except yaml.YAMLError as e:
        raise SpecError(f"not valid YAML: {' '.join(str(e).split())}",
                        source) from None
    except RecursionError:
        raise SpecError("YAML nested too deeply", source) from None
