"""Embedded Reber accuracy: now ``graphrnn accuracy`` (graphrnn.training.accuracy); this stays
for ``python -m benchmarks.reber_accuracy`` and for benchmarks/tasks.py's imports.

    graphrnn accuracy specs/reber_lstm.yaml out/reber_params.npz --train out/reber.npz
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, any cwd
from graphrnn.cli.main import main as graphrnn_main  # noqa: E402
from graphrnn.training.accuracy import score, strings  # noqa: E402

__all__ = ["main", "score", "strings"]


def main(argv: list[str] | None = None) -> int:
    """``graphrnn accuracy`` with these arguments."""
    return graphrnn_main(["accuracy", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
