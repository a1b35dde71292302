"""The compiled mask drawer: the very masks of the counter hash's array formula."""

from __future__ import annotations

import numpy as np
import pytest

from graphrnn import noise
from graphrnn.backends import native


@pytest.mark.skipif(not native.available(), reason="no C compiler: masks drawn with NumPy")
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("p", [0.3, 0.5, 1e-9, 1 - 1e-7])
@pytest.mark.parametrize("first", [0, 12345, 2**32 - 5])
def test_compiled_masks_are_the_array_formula_bit_for_bit(dtype, p, first):
    assert noise._mask_function(dtype) is not None
    shape = (7, 5, 13)
    bits = noise.counter_bits(3, "dropout:h", shape, np, first)
    drop = noise._mask(np, 3, "dropout:h", shape, p, dtype, first=first)
    expected = noise._keep(np, bits, p, dtype)
    assert drop.dtype == expected.dtype and drop.shape == shape
    assert np.array_equal(drop, expected)
    zone = noise._mask(np, 3, "dropout:h", shape, p, dtype, dropout=False, first=first)
    assert np.array_equal(zone, (bits < np.uint32(noise.threshold(p))).astype(dtype))


def test_draw_masks_uses_the_drawer_and_keeps_its_numbers(monkeypatch):
    import graphrnn as gr
    net = gr.load_spec("""
inputs: {x: 3}
nodes:
  h: {size: 4, activation: tanh, dropout: 0.4, zoneout: 0.2}
edges:
  - {from: x, to: h, dropout: 0.25}
  - {from: h, to: h, delay: 1, weight_dropout: 0.5}
outputs: [h]
""")
    fast = noise.draw_masks(net, 6, 3, seed=9, dtype=np.float32)
    monkeypatch.setattr(noise, "_mask_function", lambda dtype: None)  # the array formula
    slow = noise.draw_masks(net, 6, 3, seed=9, dtype=np.float32)
    for kind in ("node_dropout", "zoneout", "edge_dropout", "weight_dropout"):
        a, b = getattr(fast, kind), getattr(slow, kind)
        assert a.keys() == b.keys() and a
        for k in a:
            assert np.array_equal(a[k], b[k]), (kind, k)
