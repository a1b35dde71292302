"""Names in specs: what an identifier is, and hints for an unknown name or choice."""

from __future__ import annotations

import difflib
import re

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def is_identifier(name: object) -> bool:
    """Whether ``name`` is a valid node or input name (``[A-Za-z_][A-Za-z0-9_]*``)."""
    return isinstance(name, str) and bool(_IDENTIFIER.match(name))


def did_you_mean(name: object, known) -> str:
    """A hint for an unknown ``name``: ``"did you mean 'h'?"`` or the list of known names.

    Parameters
    ----------
    name : object
        The unknown name as written.
    known : iterable of str
        The names that would be accepted.

    Returns
    -------
    str
        A short phrase to append to an error message (empty when nothing is known).
    """
    known = list(known)
    close = difflib.get_close_matches(str(name), known, n=1, cutoff=0.5)
    if close:
        return f"did you mean '{close[0]}'?"
    if not known:
        return ""
    shown = ", ".join(known[:12]) + (", ..." if len(known) > 12 else "")
    return f"known: {shown}"


def unknown_choice(what: str, value: object, valid) -> str:
    """The message for a value outside a fixed set: the closest valid one and all of them."""
    hint = did_you_mean(value, valid) if isinstance(value, str) else ""
    hint = f" {hint}" if hint.startswith("did") else ""
    return f"unknown {what} {value!r};{hint} valid: {', '.join(valid)}"
