"""The house's import rules, read from the source: imports run downhill."""

from __future__ import annotations

import ast

import pytest

from tests.helpers import ROOT

PACKAGE = ROOT / "graphrnn"
FILES = sorted(PACKAGE.rglob("*.py"))


def imported(path) -> set[str]:
    """Every module ``path`` imports (at any depth: lazy imports count too)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_only_the_backends_import_cupy(path):
    if path.relative_to(PACKAGE).parts[0] == "backends":
        return
    assert not {m for m in imported(path) if m.split(".")[0] in ("cupy", "cupyx")}


@pytest.mark.parametrize("path", sorted((PACKAGE / "frontend").rglob("*.py")),
                         ids=lambda p: p.name)
def test_the_front_end_imports_no_backend_training_or_cli(path):
    uphill = ("graphrnn.backends", "graphrnn.training", "graphrnn.cli", "graphrnn.model")
    assert not {m for m in imported(path) if m.startswith(uphill)}


def test_the_top_level_keeps_at_most_15_modules():
    assert len(list(PACKAGE.glob("*.py"))) <= 15, sorted(p.name for p in PACKAGE.glob("*.py"))
