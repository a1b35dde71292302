"""NumPy twins of the hand-written CUDA kernels in ``kernels/``, step for step.

``softmax.cu`` -> :func:`softmax_forward`, :func:`softmax_backward`; ``hopfield_async.cu`` ->
:func:`hopfield_async_step`; ``embedding.cu`` -> :func:`gather_rows`, :func:`scatter_add_sorted`.
The generated fused kernels' twin is
:class:`graphrnn.ops.fused.FusedKernel` (the members run in order). The tests check each twin
against the reference semantics (:mod:`~graphrnn.frontend.reference`) and each CUDA kernel,
compiled for the host, against its twin.
"""

from __future__ import annotations

import numpy as np

from graphrnn.ops.activations import activate


def softmax_forward(x: np.ndarray, prev: np.ndarray | None = None,
                    leak: float | None = None) -> np.ndarray:
    """Row softmax of ``x`` (last axis); with a leak ``a``: ``a softmax(x) + (1 - a) prev``.

    Parameters
    ----------
    x : numpy.ndarray
        ``(..., cols)`` net inputs.
    prev : numpy.ndarray, optional
        The previous values, same shape (only with ``leak``).
    leak : float, optional

    Returns
    -------
    numpy.ndarray
        Same shape and dtype as ``x``.
    """
    m = x.max(axis=-1, keepdims=True)
    e = np.exp(x - m)
    y = e / e.sum(axis=-1, keepdims=True)
    if leak is not None:
        y = y * x.dtype.type(leak) + prev * x.dtype.type(1 - leak)
    return y


def softmax_backward(x: np.ndarray, y: np.ndarray, g: np.ndarray,
                     leak: float | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """``d x`` of :func:`softmax_forward` given ``d y = g``, and the share of ``prev``.

    With a leak ``a``: ``d prev = (1 - a) g`` and ``g <- a g``, and ``s = softmax(x)`` is
    recomputed; else ``s = y``. Then ``dx = g s - s sum(g s)``.

    Returns
    -------
    dx : numpy.ndarray
    dprev : numpy.ndarray or None
        ``None`` without a leak.
    """
    real = x.dtype.type
    if leak is not None:
        dprev = real(1 - leak) * g
        g = g * real(leak)
        s = softmax_forward(x)
    else:
        dprev, s = None, y
    dot = (g * s).sum(axis=-1, keepdims=True)
    return g * s - s * dot, dprev


def hopfield_async_step(prev: np.ndarray, net: np.ndarray, w: np.ndarray, order: np.ndarray,
                        activation: str, uniforms: np.ndarray | None = None,
                        leak: float | None = None,
                        temperature: float = 1.0, alpha: float | None = None,
                        beta: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """One asynchronous update step of a batch of states.

    Parameters
    ----------
    prev : numpy.ndarray
        ``(B, N)`` states at the previous step.
    net : numpy.ndarray
        ``(B, N)`` the node's other terms plus bias at this step.
    w : numpy.ndarray
        ``(N, N)``: neuron ``i`` adds ``w[i] @ s`` (the node's own delay-1 edges).
    order : numpy.ndarray
        ``(N,)`` the order in which neurons update (shared by the batch).
    activation : str
        Any element-wise activation (:data:`graphrnn.ops.activations.ELEMENTWISE`).
    uniforms : numpy.ndarray, optional
        ``(B, N)`` draws of bernoulli units.
    leak : float, optional
        ``s_i = a act(net_i) + (1 - a) prev_i``.
    temperature : float
        Of bernoulli units.
    alpha, beta : float, optional
        The node's activation keys (``None``: the activation's default).

    Returns
    -------
    s : numpy.ndarray
        ``(B, N)`` the new states.
    net : numpy.ndarray
        ``(B, N)`` the full net inputs (other terms + bias + own), as the kernel leaves them.
    """
    real = prev.dtype.type
    s, h = prev.copy(), net.copy()
    for i in order:
        h[:, i] = h[:, i] + s @ w[i]
        a = np.empty_like(h[:, i:i + 1])
        u = None if uniforms is None else uniforms[:, i:i + 1]
        activate(np, activation, h[:, i:i + 1], a, temperature, u, alpha, beta)
        if leak is not None:
            a = a * real(leak) + prev[:, i:i + 1] * real(1 - leak)
        s[:, i] = a[:, 0]
    return s, h


def gather_rows(ids: np.ndarray, table: np.ndarray, scale: float = 1.0) -> np.ndarray:
    """``out[r] = scale * table[ids[r]]``: the embedding's forward, one row per token.

    Parameters
    ----------
    ids : numpy.ndarray
        ``(R,)`` token ids (any numeric dtype holding whole numbers in ``0..V-1``).
    table : numpy.ndarray
        ``(V, C)`` the embedding table.
    scale : float

    Returns
    -------
    numpy.ndarray
        ``(R, C)``, the table's dtype.
    """
    return table.dtype.type(scale) * table[ids.astype(np.int64)]


def scatter_add_sorted(ids: np.ndarray, rows: np.ndarray, vocab: int,
                       scale: float = 1.0) -> np.ndarray:
    """``g[v] = scale * sum of rows[r] over r with ids[r] = v``, summed as ``embedding.cu`` does.

    The rows are ordered by token with a stable sort; each token's rows are then added one by
    one in that order (a left fold from zero) and the sum multiplied by ``scale`` once, so the
    CUDA kernel's result is this one bit for bit.

    Parameters
    ----------
    ids : numpy.ndarray
        ``(R,)`` token ids.
    rows : numpy.ndarray
        ``(R, C)`` the gradients of the gathered rows.
    vocab : int
        ``V``, the table's row count.
    scale : float

    Returns
    -------
    numpy.ndarray
        ``(V, C)``; rows of tokens that never occur are zero.
    """
    ids = ids.astype(np.int64)
    real = rows.dtype.type
    grad = np.zeros((vocab, rows.shape[1]), rows.dtype)
    order = np.argsort(ids, kind="stable")
    k = 0
    while k < order.size:
        v, acc = ids[order[k]], np.zeros(rows.shape[1], rows.dtype)
        while k < order.size and ids[order[k]] == v:
            acc = acc + rows[order[k]]
            k += 1
        grad[v] = real(scale) * acc
    return grad
