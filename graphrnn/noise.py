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

_M64, _M32 = (1 << 64) - 1, (1 << 32) - 1
_GOLDEN64, _MIX1, _MIX2 = 0x9E3779B97F4A7C15, 0xBF58476D1CE4E5B9, 0x94D049BB133111EB
_GOLDEN32, _FMIX1, _FMIX2 = 0x9E3779B9, 0x85EBCA6B, 0xC2B2AE35


def _mix64(z: int) -> int:
    """SplitMix64's finaliser (Python integers)."""
    z = ((z ^ (z >> 30)) * _MIX1) & _M64
    z = ((z ^ (z >> 27)) * _MIX2) & _M64
    return z ^ (z >> 31)


def stream_key(seed: int, stream: str) -> int:
    """The 32-bit key of one named stream of one seed: SplitMix64 of the seed and the CRC-32
    of the name, folded."""
    import zlib
    z = _mix64((_mix64((int(seed) & _M64) + _GOLDEN64) ^ zlib.crc32(stream.encode()))
               + _GOLDEN64 & _M64)
    return (z ^ (z >> 32)) & _M32


def counter_bits(seed: int, stream: str, shape: tuple[int, ...], xp=np, first: int = 0):
    """32 random bits per element, uint32, shaped ``shape``: element ``i`` (C order, counting
    from ``first``) is MurmurHash3's finaliser of ``key + i * 0x9E3779B9`` (mod 2**32), a
    pure function of ``(seed, stream, i)``, so any NumPy-like ``xp`` (CuPy: on the device)
    and a CUDA or C kernel computing it inline give the same bits."""
    n = int(np.prod(shape, dtype=np.int64))
    u32 = xp.uint32
    z = xp.arange(first, first + n, dtype=u32) * u32(_GOLDEN32) + u32(stream_key(seed, stream))
    z ^= z >> u32(16)
    z *= u32(_FMIX1)
    z ^= z >> u32(13)
    z *= u32(_FMIX2)
    z ^= z >> u32(16)
    return z.reshape(shape)


def counter_uniforms(seed: int, stream: str, shape: tuple[int, ...], xp=np, first: int = 0):
    """:func:`counter_bits` as uniforms in [0, 1): ``bits / 2**32`` (float64)."""
    return counter_bits(seed, stream, shape, xp, first).astype(xp.float64) * 2.0 ** -32


def threshold(p: float) -> int:
    """The bits below which a unit is dropped with probability ``p``: ``ceil(p * 2**32)``
    (``bits >= threshold(p)`` exactly when ``bits / 2**32 >= p``)."""
    return min(int(np.ceil(p * 2.0 ** 32)), 1 << 32)


@dataclass(frozen=True)
class Masks:
    """The training-time masks of one call (``train=True``), arrays of ``xp``.

    ``node_dropout[node]`` ``(T, B, size)``: 0 or ``1 / (1 - p)`` (inverted dropout), fresh
    at every step; ``zoneout[node]`` ``(T, B, size)``: 1 where the unit keeps its previous
    value (probability p), else 0; ``edge_dropout[i]`` ``(B, size of the source)`` for edge
    ``net.edges[i]``: 0 or ``1 / (1 - p)``, the same at every step; ``weight_dropout[param]``
    shaped like the matrix: 0 or ``1 / (1 - p)``. Streams are named ``dropout:NODE``,
    ``zoneout:NODE``, ``edge-dropout:I``, ``weight-dropout:PARAM`` (see
    :func:`counter_bits`); a unit is dropped (zoneout: keeps its past) where its uniform
    ``bits / 2**32`` is below p.
    """

    node_dropout: dict
    zoneout: dict
    edge_dropout: dict
    weight_dropout: dict


def _keep(xp, bits, p: float, dtype):
    keep = (bits >= xp.uint32(threshold(p))).astype(dtype)
    keep *= dtype(1.0 / (1.0 - p))
    return keep


#: the C twin of :func:`counter_bits` followed by a threshold: ``out[i] = hi`` where element
#: ``i``'s bits are ``>= thr``, else ``lo`` (one pass, no temporaries)
_MASK_C = """#include <stdint.h>
#define GR_MASK(NAME, T) \\
void NAME(uint32_t key, uint32_t first, long n, uint64_t thr, T hi, T lo, T* out) { \\
    for (long i = 0; i < n; ++i) { \\
        uint32_t z = (uint32_t)(first + (uint32_t)i) * 0x9E3779B9u + key; \\
        z ^= z >> 16; z *= 0x85EBCA6Bu; z ^= z >> 13; z *= 0xC2B2AE35u; z ^= z >> 16; \\
        out[i] = (uint64_t)z >= thr ? hi : lo; \\
    } \\
}
GR_MASK(gr_mask_float, float)
GR_MASK(gr_mask_double, double)
"""
_MASK_FNS: dict = {}


def _mask_function(dtype):
    """The compiled mask drawer for ``dtype`` (float32/float64), or None (no C compiler)."""
    name = {np.float32: "float", np.float64: "double"}.get(dtype)
    if name is None:
        return None
    if name not in _MASK_FNS:
        import ctypes

        from graphrnn.backends import native
        fn = None
        if native.available():
            fn = getattr(native.build(_MASK_C), f"gr_mask_{name}")
            real = ctypes.c_float if name == "float" else ctypes.c_double
            fn.argtypes = [ctypes.c_uint32, ctypes.c_uint32, ctypes.c_long, ctypes.c_uint64,
                           real, real, ctypes.c_void_p]
            fn.restype = None
        _MASK_FNS[name] = fn
    return _MASK_FNS[name]


def _mask(xp, seed: int, stream: str, shape: tuple[int, ...], p: float, dtype,
          dropout: bool = True, first: int = 0):
    """A dropout mask (0 or ``1 / (1 - p)``) or, ``dropout=False``, a zoneout one (1 where
    the bits are below ``threshold(p)``) of ``shape``: :func:`counter_bits` compared with the
    threshold, in one compiled pass on the host where a C compiler works (the same numbers:
    the same integer arithmetic), else (and on other ``xp``) with array operations."""
    fn = _mask_function(dtype) if xp is np else None
    if fn is None:
        bits = counter_bits(seed, stream, shape, xp, first)
        if dropout:
            return _keep(xp, bits, p, dtype)
        return (bits < xp.uint32(threshold(p))).astype(dtype)
    out = np.empty(shape, dtype)
    hi, lo = (dtype(1.0 / (1.0 - p)), dtype(0)) if dropout else (dtype(0), dtype(1))
    fn(stream_key(seed, stream), first & _M32, out.size, threshold(p), hi, lo,
       out.ctypes.data)
    return out


def draw_masks(net: Network, steps: int, batch: int, seed: int, xp=np,
               dtype=np.float64, *, rows: slice | None = None) -> Masks:
    """The masks of one training call of ``steps`` steps on a batch of ``batch``; with
    ``rows``, only those rows (sequences) of that batch's per-row masks (a data-parallel
    rank's shard of the global batch; ``weight_dropout`` is per call: the whole mask)."""
    if rows is not None:
        full = draw_masks(net, steps, batch, seed, xp, dtype)
        return Masks({k: xp.ascontiguousarray(v[:, rows]) for k, v in full.node_dropout.items()},
                     {k: xp.ascontiguousarray(v[:, rows]) for k, v in full.zoneout.items()},
                     {k: xp.ascontiguousarray(v[rows]) for k, v in full.edge_dropout.items()},
                     full.weight_dropout)
    dtype = np.dtype(dtype).type
    node_dropout, zoneout, edge_dropout, weight_dropout = {}, {}, {}, {}
    for name, node in net.nodes.items():
        shape = (steps, batch, node.size)
        if node.dropout:
            node_dropout[name] = _mask(xp, seed, f"dropout:{name}", shape, node.dropout, dtype)
        if node.zoneout:
            zoneout[name] = _mask(xp, seed, f"zoneout:{name}", shape, node.zoneout, dtype,
                                  dropout=False)
    for i, edge in enumerate(net.edges):
        if edge.dropout:
            shape = (batch, net.size(edge.src))
            edge_dropout[i] = _mask(xp, seed, f"edge-dropout:{i}", shape, edge.dropout, dtype)
        if edge.weight_dropout and edge.param not in weight_dropout:
            shape = net.params[edge.param].shape
            weight_dropout[edge.param] = _mask(xp, seed, f"weight-dropout:{edge.param}", shape,
                                               edge.weight_dropout, dtype)
    return Masks(node_dropout, zoneout, edge_dropout, weight_dropout)
