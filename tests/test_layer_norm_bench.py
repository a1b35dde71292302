"""``graphrnn bench --layer-norm``: the paired LN-LSTM comparison runs and agrees with torch."""

from __future__ import annotations

import pytest

from benchmarks import layer_norm


def test_layer_norm_bench_runs_and_matches_the_torch_loop():
    torch = pytest.importorskip("torch")
    record = layer_norm.run((3, 2, 8, 4), budget=0.0, reps=(1, 1), torch=torch)
    assert record["check"] < 1e-4  # float32: graphrnn's LN-LSTM output is the torch loop's
    assert set(record["others"]) == {"graphrnn LSTM", "torch LN loop"}
