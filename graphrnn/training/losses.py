"""Losses over time-major outputs and their gradients, with optional per-step masks."""

from __future__ import annotations

import numpy as np

from graphrnn.backends import array_module

LOSSES = ("mse", "cross_entropy")


def loss_and_grad(kind: str, y: np.ndarray, target: np.ndarray, mask=None):
    """The loss of one output and ``d loss / d y``.

    ``mse``: mean of squared errors over every element (``mask`` (T, B) weights the steps;
    the mean is then over the masked elements). ``cross_entropy``: ``y`` are logits
    ``(T, B, C)``, ``target`` integer labels ``(T, B)``; the mean of ``-log softmax`` over the
    (masked) steps, as ``torch.nn.functional.cross_entropy``.
    """
    xp = array_module(y)
    m = xp.ones(y.shape[:2], dtype=y.dtype) if mask is None else xp.asarray(mask, dtype=y.dtype)
    count = m.sum()
    if count == 0:
        return 0.0, xp.zeros_like(y)
    if kind == "mse":
        diff = y - target
        n = count * y.shape[-1]
        return float((m[..., None] * diff * diff).sum() / n), (2 / n) * m[..., None] * diff
    if kind == "cross_entropy":
        shifted = y - y.max(axis=-1, keepdims=True)
        logp = shifted - xp.log(xp.exp(shifted).sum(axis=-1, keepdims=True))
        flat = logp.reshape(-1, y.shape[-1])
        rows = xp.arange(flat.shape[0])
        labels = xp.asarray(target).astype(xp.int64).ravel()
        picked = flat[rows, labels].reshape(y.shape[:2])
        grad = xp.exp(logp)
        grad.reshape(-1, y.shape[-1])[rows, labels] -= 1
        return float(-(m * picked).sum() / count), grad * (m / count)[..., None]
    raise ValueError(f"unknown loss {kind!r}; choose one of {', '.join(LOSSES)}")

