"""benchmarks/small.py: the torch loop the torch.compile rows time is graphrnn's LSTM."""

from __future__ import annotations

import argparse

import numpy as np
import pytest

from benchmarks import common, small

torch = pytest.importorskip("torch")


def test_the_lstm_loop_computes_graphrnns_lstm():
    model = common.build("lstm", 8, 5)
    params = model.init_params(3)
    x = np.random.default_rng(1).standard_normal((4, 1, 5)).astype(np.float32)
    ours = model.forward(params, {"x": x})[0]["y"]
    with torch.no_grad():
        theirs = small.lstm_loop(torch, params, 4, 1)(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(theirs, ours, rtol=1e-5, atol=1e-6)


def test_step_lists_parse_and_bad_ones_are_refused():
    assert small._steps_list("1,10, 100") == (1, 10, 100)
    for bad in ("", "0", "a,2"):
        with pytest.raises(argparse.ArgumentTypeError):
            small._steps_list(bad)
