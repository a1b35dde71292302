"""Activations and their local derivatives, written once for any NumPy-like array module."""

from __future__ import annotations


def activate(xp, name: str, net, out, temperature: float = 1.0, uniforms=None) -> None:
    """``out[...] = act(net)``; ``uniforms`` are the run's draws for ``bernoulli`` units."""
    if name == "identity":
        xp.copyto(out, net)
    elif name == "tanh":
        xp.tanh(net, out=out)
    elif name == "sigmoid":
        _sigmoid(xp, net, out)
    elif name == "relu":
        xp.maximum(net, 0, out=out)
    elif name == "softmax":
        xp.subtract(net, net.max(axis=-1, keepdims=True), out=out)
        xp.exp(out, out=out)
        out /= out.sum(axis=-1, keepdims=True)
    elif name in ("sign", "step"):
        xp.copyto(out, net >= 0)
        if name == "sign":
            out *= 2
            out -= 1
    elif name == "bernoulli":
        xp.multiply(net, 1.0 / temperature, out=out)
        _sigmoid(xp, out, out)
        xp.copyto(out, uniforms < out)
    else:  # pragma: no cover - validation rejects unknown activations
        raise ValueError(f"unknown activation {name!r}")


def _sigmoid(xp, x, out) -> None:
    """``1 / (1 + exp(-x))``: one ``exp`` (cheaper than ``tanh`` on CPUs); exp overflowing
    to inf for very negative x gives exactly 0, so the caller silences overflow warnings."""
    xp.negative(x, out=out)
    xp.exp(out, out=out)
    out += 1
    xp.reciprocal(out, out=out)


def local_grad(xp, name: str, g, value, net, dnet, temperature: float = 1.0) -> None:
    """``dnet[...] = g * act'(net)``, given ``value = act(net)``; only ``bernoulli`` reads
    ``net`` (the others need just ``value``).

    ``sign``, ``step`` and ``bernoulli`` have no useful derivative: they use the
    straight-through estimator, passing ``g`` through as if the unit were the identity
    (``sign``/``step``) or its firing probability ``sigmoid(net / T)`` (``bernoulli``).
    """
    if name in ("identity", "sign", "step"):
        xp.copyto(dnet, g)
    elif name == "tanh":
        xp.multiply(value, value, out=dnet)
        xp.subtract(1, dnet, out=dnet)
        dnet *= g
    elif name == "sigmoid":
        xp.subtract(1, value, out=dnet)
        dnet *= value
        dnet *= g
    elif name == "relu":
        xp.multiply(g, value > 0, out=dnet)
    elif name == "softmax":
        xp.multiply(g, value, out=dnet)
        dnet -= value * dnet.sum(axis=-1, keepdims=True)
    elif name == "bernoulli":
        xp.multiply(net, 1.0 / temperature, out=dnet)
        _sigmoid(xp, dnet, dnet)
        dnet *= 1 - dnet
        dnet *= g / temperature
    else:  # pragma: no cover
        raise ValueError(f"unknown activation {name!r}")
