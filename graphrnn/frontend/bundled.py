"""The specs shipped with graphrnn: their names, their files, and reading a spec's text."""

from __future__ import annotations

import os
import re
from pathlib import Path

from graphrnn.errors import SpecError
from graphrnn.frontend.names import did_you_mean

#: The specs shipped with the package (``gr.spec_path("lstm")``, ``graphrnn check lstm``).
BUNDLED = Path(__file__).resolve().parents[1] / "specs"


def bundled_names() -> list[str]:
    """The names of the specs shipped with graphrnn (``lstm``, ``gru``, ...), sorted."""
    return sorted(p.stem for p in BUNDLED.glob("*.yaml"))


def spec_path(name: str) -> Path:
    """The file of a bundled spec.

    Parameters
    ----------
    name : str
        A bundled spec's name, e.g. ``"lstm"`` (``"lstm.yaml"`` also works).

    Returns
    -------
    pathlib.Path
        The spec file inside the installed package.

    Raises
    ------
    SpecError
        For a name that is not bundled; it suggests the closest and lists them all.
    """
    stem = str(name).removesuffix(".yaml")
    path = BUNDLED / f"{stem}.yaml"
    if re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]*", stem) and path.is_file():
        return path
    names = bundled_names()
    hint = did_you_mean(stem, names)
    hint = f"{hint} " if hint.startswith("did") else ""
    raise SpecError(f"no file or bundled spec named {str(name)!r}; {hint}bundled specs: "
                    f"{', '.join(names)}", str(name))


def is_bundled_name(s: str) -> bool:
    """Whether ``s`` reads as a bundled spec's name: one word, no separator, no suffix."""
    return (re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_-]*", s) is not None
            and not is_file(s))


def read_spec_text(path_or_text: str | os.PathLike) -> tuple[str, str | None]:
    """The YAML text of a path, bundled spec name or spec text, and its file (None for text)."""
    if isinstance(path_or_text, os.PathLike):
        path = Path(path_or_text)
        if is_bundled_name(str(path_or_text)):
            path = spec_path(str(path_or_text))
    elif isinstance(path_or_text, str):
        s = path_or_text
        if is_bundled_name(s):
            path = spec_path(s)
        elif "\n" in s or not (s.strip().endswith((".yaml", ".yml")) or is_file(s)):
            return s, None
        else:
            path = Path(s)
    else:
        raise TypeError(f"load_spec takes a path or spec text, not {type(path_or_text).__name__}")
    data = path.read_bytes()
    try:
        return data.decode("utf-8"), str(path)
    except UnicodeDecodeError as e:
        raise SpecError(f"not UTF-8 text (byte {e.start}); save the spec as UTF-8",
                        str(path), data.count(b"\n", 0, e.start) + 1) from None


def is_file(s: str) -> bool:
    try:
        return len(s) < 4096 and Path(s).is_file()
    except (OSError, ValueError):
        return False
