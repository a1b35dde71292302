"""benchmarks/lengths.py runs end to end on tiny sizes (no timing is asserted)."""

from __future__ import annotations

import pytest

from benchmarks import lengths


def test_lengths_bench_runs_on_tiny_sizes(capsys):
    pytest.importorskip("torch")
    sizes = "lstm,forward,6,4,8,3;lstm,train,6,4,8,3"
    assert lengths.main(["--rounds", "2", "--sizes", sizes]) == 0
    out = capsys.readouterr().out
    assert "| LSTM forward T=6, B=4, H=8, I=3 |" in out and "packed / torch" in out
