"""``graphrnn bench --torch-module`` runs on tiny sizes, both ways computing the same gradients."""

from __future__ import annotations

import pytest

from graphrnn.cli.main import main

pytest.importorskip("torch")


def test_torch_module_bench_rows_agree_on_the_gradients(capsys):
    assert main(["bench", "--torch-module", "--quick"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines()
            if line.startswith("| ") and "T=4" in line]
    assert [r.split(" T=")[0] for r in rows] == ["| lstm", "| gru", "| elman"]
    for r in rows:  # timing is not asserted; the gradients of the two timed calls are
        module_ms, gradients_ms, _, diff, floor = (c.strip()
                                                   for c in r.strip("|").split("|")[1:])
        assert float(module_ms) > 0 and float(gradients_ms) > 0 and float(floor) > 0
        assert float(diff) < 1e-5  # float32
