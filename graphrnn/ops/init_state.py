"""InitState: a learned initial state written into a buffer's history rows, and its gradient."""

from __future__ import annotations

from graphrnn.compiler.ir import InitState


class InitStateKernel:
    """Runs one InitState on the arrays of a run (any NumPy-like ``xp``: NumPy or CuPy).

    The rows of the buffer's history that the caller passed a state for (``run.given_rows``)
    are left as the caller set them, and take no share of the gradient.
    """

    def __init__(self, op: InitState, run):
        self.op, self.run = op, run
        #: the history offsets ``k`` (row ``-k``) this op owns in this run
        self.offsets = [k for k in range(1, op.rows + 1) if (op.out, k) not in run.given_rows]

    def forward(self, lo: int, hi: int) -> None:
        """Row ``-k`` of every batch row = the learned vector (the window does not matter:
        the op writes no step)."""
        run, op = self.run, self.op
        value = run.params[op.param]
        for k in self.offsets:
            run.rows(op.out, -k, -k + 1)[0][...] = value

    def backward(self, lo: int, hi: int) -> None:
        """Nothing to send on: the op reads no buffer (its gradient is in :meth:`param_grads`)."""

    def param_grads(self) -> None:
        """``d init = sum_k sum_b d out[-k][b]``: the history rows' gradient, summed."""
        run, op = self.run, self.op
        if op.param not in run.trainable:
            return
        for k in self.offsets:
            run.add_param_grad(op.param, run.rows(op.out, -k, -k + 1, grad=True)[0].sum(axis=0))
