"""Losses over time-major outputs and their gradients, with optional per-step masks."""

from __future__ import annotations

import numpy as np

from graphrnn.backends import array_module

LOSSES = ("mse", "cross_entropy")
#: elements of a ``(rows, C)`` block of logits that cross_entropy handles at once
CHUNK_ELEMENTS = 1 << 20


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
        return _cross_entropy(xp, y, target, m, count)
    raise ValueError(f"unknown loss {kind!r}; choose one of {', '.join(LOSSES)}")



def _cross_entropy(xp, y, target, m, count, chunk_elements: int | None = None):
    """Mean ``-log softmax(y)[label]`` over the masked steps and its gradient, a block of rows
    at a time, in place in the gradient (the size of ``y``): beyond it only ``(rows,)``
    vectors, so a large vocabulary C costs no ``(T, B, C)`` temporaries."""
    classes = y.shape[-1]
    flat = y.reshape(-1, classes)
    labels = xp.asarray(target).astype(xp.int64).ravel()
    weights = (m / count).ravel()
    grad = xp.empty_like(y)
    flat_grad = grad.reshape(-1, classes)
    rows = max(1, (chunk_elements or CHUNK_ELEMENTS) // classes)
    total = 0.0
    for lo in range(0, flat.shape[0], rows):
        hi = min(lo + rows, flat.shape[0])
        block, out, w = flat[lo:hi], flat_grad[lo:hi], weights[lo:hi]
        here = xp.arange(hi - lo)
        top = block.max(axis=-1, keepdims=True)
        xp.subtract(block, top, out=out)
        picked = out[here, labels[lo:hi]]  # shifted logit of each label (a copy)
        xp.exp(out, out=out)
        norm = out.sum(axis=-1, keepdims=True)
        total += float((w * (xp.log(norm[:, 0]) - picked)).sum())
        out /= norm
        out[here, labels[lo:hi]] -= 1
        out *= w[:, None]
    return total, grad
