"""GRAPHRNN_DEBUG levels: 1 passes and timings, 2 the schedule, 3 the IR after each pass."""

from __future__ import annotations

import pytest

import graphrnn as gr
from graphrnn import config
from tests.helpers import SPECS

SPEC = SPECS / "elman.yaml"


@pytest.mark.parametrize("level, present, absent", [
    (1, ["hoist_input_projections:", "compile:"], ["stage 0"]),
    (2, ["stage 1 for t in 0..T-1:"], ["--- after"]),
    (3, ["--- after merge_shared_input_gemms"], []),
])
def test_debug_levels(monkeypatch, capsys, level, present, absent):
    monkeypatch.setattr(config, "DEBUG", level)
    gr.compile(gr.load_spec(SPEC))
    err = capsys.readouterr().err
    assert all(p in err for p in present), err
    assert not any(a in err for a in absent), err
