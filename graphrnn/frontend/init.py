"""Parameter initialisation: sensible defaults per role, overridable per edge with ``init:``."""

from __future__ import annotations

import numpy as np

from graphrnn.frontend.network import STRAIGHT_THROUGH, Network, Param


def default_init(net: Network, param: Param) -> str:
    """The initialisation a parameter gets when its edges name none.

    Hopfield-style self-weights (a full self-edge of a sign/step/bernoulli or asynchronous
    node) are ``symmetric`` with a zero diagonal; square recurrent matrices (a self-edge or
    any delayed edge) are ``orthogonal``; other matrices ``glorot`` (Xavier uniform);
    diagonal weights ``uniform``; embedding tables ``normal``; biases and learned initial
    states ``zeros``; LayerNorm gains ``ones``.
    """
    if param.role == "gain":
        return "ones"
    if param.role in ("bias", "init"):
        return "zeros"
    if param.role == "embedding":
        return "normal"
    if param.role == "diagonal":
        return "uniform"
    square = param.shape[0] == param.shape[1]
    if square and any(e.src == e.dst for e in param.edges):
        node = net.nodes[param.edges[0].dst]
        if node.activation in STRAIGHT_THROUGH or node.update == "asynchronous":
            return "symmetric"
    if square and any(e.delay > 0 or e.src == e.dst for e in param.edges):
        return "orthogonal"
    return "glorot"


def initialise(kind: str, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """One array of ``shape`` drawn by the named rule (float64)."""
    fan_out, fan_in = (shape[0], shape[-1]) if len(shape) == 2 else (shape[0], shape[0])
    if kind == "zeros":
        return np.zeros(shape)
    if kind == "ones":
        return np.ones(shape)
    if kind == "uniform":
        bound = 1 / np.sqrt(fan_in)
        return rng.uniform(-bound, bound, shape)
    if kind == "normal":
        return rng.normal(0, 1 / np.sqrt(fan_in), shape)
    if kind == "glorot":
        bound = np.sqrt(6 / (fan_in + fan_out))
        return rng.uniform(-bound, bound, shape)
    if len(shape) != 2 or shape[0] != shape[1]:
        raise ValueError(f"init {kind!r} needs a square matrix, not shape {shape}")
    if kind == "identity":
        return np.eye(shape[0])
    if kind == "orthogonal":
        q, r = np.linalg.qr(rng.normal(size=shape))
        return q * np.sign(np.diag(r))
    if kind == "symmetric":
        a = rng.normal(0, 1 / np.sqrt(shape[0]), shape)
        w = (a + a.T) / 2
        np.fill_diagonal(w, 0)
        return w
    raise ValueError(f"unknown init {kind!r}")


def init_params(net: Network, seed: int = 0) -> dict[str, np.ndarray]:
    """Every parameter of ``net``, drawn in a fixed order from ``default_rng(seed)``."""
    rng = np.random.default_rng(seed)
    return {name: initialise(p.init or default_init(net, p), p.shape, rng)
            for name, p in net.params.items()}
