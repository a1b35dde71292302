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


# -- training-time masks: a counter-based generator (the same numbers on every backend) --------

_M64 = (1 << 64) - 1
_GOLDEN, _MIX1, _MIX2 = 0x9E3779B97F4A7C15, 0xBF58476D1CE4E5B9, 0x94D049BB133111EB


def _mix(xp, z):
    """SplitMix64's finaliser on a uint64 array (wrapping arithmetic)."""
    z = (z ^ (z >> xp.uint64(30))) * xp.uint64(_MIX1)
    z = (z ^ (z >> xp.uint64(27))) * xp.uint64(_MIX2)
    return z ^ (z >> xp.uint64(31))


def _mix_int(z: int) -> int:
    z = ((z ^ (z >> 30)) * _MIX1) & _M64
    z = ((z ^ (z >> 27)) * _MIX2) & _M64
    return z ^ (z >> 31)


def stream_key(seed: int, stream: str) -> int:
    """The 64-bit key of one named stream of one seed (a CRC of the name, mixed)."""
    import zlib
    return _mix_int((_mix_int(int(seed) & _M64) ^ zlib.crc32(stream.encode())) + _GOLDEN & _M64)


def counter_uniforms(seed: int, stream: str, shape: tuple[int, ...], xp=np, first: int = 0):
    """Uniforms in [0, 1), float64, shaped ``shape``: element ``i`` (C order, counting from
    ``first``) is ``mix(key + (i + 1) * golden) >> 11`` times 2**-53, a pure function of
    ``(seed, stream, i)``. Any NumPy-like ``xp`` (CuPy: made on the device) gives the same
    numbers."""
    n = int(np.prod(shape, dtype=np.int64))
    i = xp.arange(first + 1, first + n + 1, dtype=xp.uint64)
    z = xp.uint64(stream_key(seed, stream)) + i * xp.uint64(_GOLDEN)
    u = (_mix(xp, z) >> xp.uint64(11)).astype(xp.float64) * (2.0 ** -53)
    return u.reshape(shape)


@dataclass(frozen=True)
class Masks:
    """The training-time masks of one call (``train=True``), float64 arrays of ``xp``.

    ``node_dropout[node]`` ``(T, B, size)``: 0 or ``1 / (1 - p)`` (inverted dropout), fresh
    at every step; ``zoneout[node]`` ``(T, B, size)``: 1 where the unit keeps its previous
    value (probability p), else 0; ``edge_dropout[i]`` ``(B, size of the source)`` for edge
    ``net.edges[i]``: 0 or ``1 / (1 - p)``, the same at every step; ``weight_dropout[param]``
    shaped like the matrix: 0 or ``1 / (1 - p)``. Streams are named ``dropout:NODE``,
    ``zoneout:NODE``, ``edge-dropout:I``, ``weight-dropout:PARAM`` (see
    :func:`counter_uniforms`); a unit is dropped where its uniform is below p.
    """

    node_dropout: dict
    zoneout: dict
    edge_dropout: dict
    weight_dropout: dict


def _keep(u, p: float):
    return (u >= p) * (1.0 / (1.0 - p))


def draw_masks(net: Network, steps: int, batch: int, seed: int, xp=np) -> Masks:
    """The masks of one training call of ``steps`` steps on a batch of ``batch``."""
    node_dropout, zoneout, edge_dropout, weight_dropout = {}, {}, {}, {}
    for name, node in net.nodes.items():
        shape = (steps, batch, node.size)
        if node.dropout:
            node_dropout[name] = _keep(counter_uniforms(seed, f"dropout:{name}", shape, xp),
                                       node.dropout)
        if node.zoneout:
            u = counter_uniforms(seed, f"zoneout:{name}", shape, xp)
            zoneout[name] = (u < node.zoneout).astype(xp.float64)
    for i, edge in enumerate(net.edges):
        if edge.dropout:
            shape = (batch, net.size(edge.src))
            edge_dropout[i] = _keep(counter_uniforms(seed, f"edge-dropout:{i}", shape, xp),
                                    edge.dropout)
        if edge.weight_dropout and edge.param not in weight_dropout:
            shape = net.params[edge.param].shape
            weight_dropout[edge.param] = _keep(
                counter_uniforms(seed, f"weight-dropout:{edge.param}", shape, xp),
                edge.weight_dropout)
    return Masks(node_dropout, zoneout, edge_dropout, weight_dropout)
