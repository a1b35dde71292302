"""Seeded randomness of one run: uniforms for stochastic units, orders for asynchronous ones."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from graphrnn.frontend.network import Network


@dataclass(frozen=True)
class Noise:
    """Every random number a run of ``steps`` steps on a batch of ``batch`` uses.

    ``uniforms[node]`` has shape ``(T, B, size)`` (``bernoulli`` units fire where
    ``u < sigmoid(net / temperature)``); ``orders[node]`` has shape ``(T, size)``: the order in
    which an asynchronous node updates its neurons at each step (shared by the batch).
    Both are drawn in node order from ``numpy.random.default_rng(seed)``, so the reference
    interpreter and every backend see the same numbers.
    """

    uniforms: dict[str, np.ndarray]
    orders: dict[str, np.ndarray]


def draw_noise(net: Network, steps: int, batch: int, seed: int) -> Noise:
    """Draw the random numbers of one run (see :class:`Noise`)."""
    uniforms, orders = {}, {}
    if not any(n.activation == "bernoulli" or n.update == "asynchronous"
               for n in net.nodes.values()):
        return Noise(uniforms, orders)  # nothing to draw (making a generator costs ~30 us)
    rng = np.random.default_rng(seed)
    for name, node in net.nodes.items():
        if node.activation == "bernoulli":
            uniforms[name] = rng.random((steps, batch, node.size))
        if node.update == "asynchronous":
            orders[name] = np.argsort(rng.random((steps, node.size)), axis=1)
    return Noise(uniforms, orders)
