"""Gather: an embedding's rows looked up per token, and their gradient scatter-added back."""

from __future__ import annotations

import numpy as np

from graphrnn.compiler.ir import Gather


def token_ids(xp, tokens):
    """The token ids held (as numbers) in a token input's rows ``(T, B, 1)``, flat, as ints."""
    return tokens.reshape(-1).astype(xp.int64)


def scatter_add_rows(xp, table_shape: tuple, ids, rows, dtype):
    """``g[ids[i]] += rows[i]`` for every i: the gradient of a row gather, a ``table_shape``
    array.

    Deterministic: the rows are sorted by id (a stable sort) and each id's run summed in
    order (``np.add.reduceat``), so the result does not depend on threads or timing. NumPy
    arrays only: the CuPy backend runs the Gather with its own sorted kernels
    (``backends/kernels/embedding.cu``), so this twin never sees device arrays.
    """
    grad = xp.zeros(table_shape, dtype=dtype)
    if ids.size == 0:
        return grad
    if xp is not np:
        raise TypeError("scatter_add_rows takes NumPy arrays (the CuPy backend has its own "
                        "embedding kernels)")
    order = np.argsort(ids, kind="stable")
    ordered = ids[order]
    starts = np.flatnonzero(np.concatenate(([True], ordered[1:] != ordered[:-1])))
    grad[ordered[starts]] = np.add.reduceat(rows[order], starts, axis=0)
    return grad


class GatherKernel:
    """Runs one Gather on the arrays of a run (any NumPy-like ``xp``: NumPy or CuPy)."""

    def __init__(self, op: Gather, run):
        self.op, self.run = op, run
        self.tokens = run.window(op.src)
        self.out = run.window(op.out)

    def forward(self, lo: int, hi: int) -> None:
        """``out[t, b] = scale * table[tok[t, b]]`` for the steps ``[lo, hi)``."""
        run, op = self.run, self.op
        out = self.out(lo, hi)
        flat = out.reshape(-1, out.shape[-1])
        run.xp.take(run.params[op.param], token_ids(run.xp, self.tokens(lo, hi)), axis=0,
                    out=flat)
        if op.scale != 1:
            flat *= op.scale

    def backward(self, lo: int, hi: int) -> None:
        """Nothing to send on: tokens have no gradient."""

    def param_grads(self) -> None:
        """``d table[v] = scale * sum over (t, b) with tok[t, b] = v of d out[t, b]``."""
        run, op = self.run, self.op
        if op.param not in run.trainable:
            return
        dout = run.rows(op.out, 0, run.steps, grad=True)
        rows = dout.reshape(-1, dout.shape[-1])
        ids = token_ids(run.xp, run.rows(op.src, 0, run.steps))
        table = run.params[op.param]
        grad = scatter_add_rows(run.xp, table.shape, ids, rows, table.dtype)
        if op.scale != 1:
            grad *= op.scale
        run.add_param_grad(op.param, grad)
