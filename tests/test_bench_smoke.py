"""The benchmark script runs end to end on tiny sizes (no timing is asserted)."""

from __future__ import annotations

import pytest

from graphrnn.cli.main import main


def test_bench_runs_on_tiny_sizes(tmp_path, capsys):
    pytest.importorskip("torch")
    out = tmp_path / "results.md"
    code = main(["bench", "--quick", "--sizes", "4,2,3,2", "--no-overhead", "--no-jax",
                 "--cells", "elman", "--out", str(out)])
    assert code == 0
    text = out.read_text()
    assert "| elman | 4,2,3,2 |" in text and "torch.nn" in text


def test_bench_bad_arguments_exit_2(capsys):
    assert main(["bench", "--sizes", "nonsense"]) == 2
    assert capsys.readouterr().err.count("\n") == 1
