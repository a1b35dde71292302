"""The backend interface: an array module, host transfers, kernels for ops, the time loop."""

from __future__ import annotations

import numpy as np

from graphrnn.ir import Fused, MatMul, NodeUpdate
from graphrnn.ops.fused import FusedKernel
from graphrnn.ops.matmul import MatMulKernel
from graphrnn.ops.node_update import NodeUpdateKernel


class Backend:
    """What a backend provides. Subclasses set ``name`` and ``xp`` and override what they speed up.

    ``kernel(op, run)`` returns an object with ``forward(lo, hi)``, ``backward(lo, hi)`` and
    ``param_grads()``; the defaults work for any NumPy-compatible ``xp``.
    """

    name = "base"
    xp = np

    def asarray(self, array, dtype):
        return self.xp.asarray(array, dtype=dtype)

    def to_numpy(self, array) -> np.ndarray:
        return np.asarray(array)

    def empty(self, key: tuple, shape: tuple, dtype):
        """An array for a run's buffer ``key`` (``("buf", name)``, ``("grad", name)``). A backend
        may hand out the same memory to the next run of the same shape (CUDA graphs need stable
        addresses); the default is fresh memory."""
        return self.xp.empty(shape, dtype=dtype)

    def zeros(self, key: tuple, shape: tuple, dtype):
        """As :meth:`empty`, filled with zeros."""
        return self.xp.zeros(shape, dtype=dtype)

    def kernel(self, op, run):
        if isinstance(op, MatMul):
            return MatMulKernel(op, run)
        if isinstance(op, NodeUpdate):
            return NodeUpdateKernel(op, run)
        if isinstance(op, Fused):
            return FusedKernel(op, run)
        raise TypeError(f"no kernel for {type(op).__name__}")

    def passes(self):
        """The compiler passes this backend wants (``None``: the standard pipeline)."""
        return None

    def loop(self, steps_fns, steps: int, reverse: bool) -> None:
        """Run ``fn(t, t + 1)`` for each fn, for every step (from the last one if ``reverse``)."""
        for t in (range(steps - 1, -1, -1) if reverse else range(steps)):
            for fn in steps_fns:
                fn(t, t + 1)

    def synchronize(self) -> None:
        """Wait for queued work (a no-op on the CPU)."""
