"""The backend interface: an array module, host transfers, kernels for ops, the time loop."""

from __future__ import annotations

from collections import OrderedDict

import numpy as np

from graphrnn.compiler.ir import Fused, Gather, InitState, MatMul, NodeUpdate
from graphrnn.ops.fused import FusedKernel
from graphrnn.ops.gather import GatherKernel
from graphrnn.ops.init_state import InitStateKernel
from graphrnn.ops.matmul import MatMulKernel
from graphrnn.ops.node_update import NodeUpdateKernel


class BufferPool:
    """Arrays kept for the next run of the same shape, least recently used dropped first past
    ``limit`` bytes: the CPU then touches warm memory instead of faulting in fresh pages, the
    GPU keeps the device addresses a captured CUDA graph was recorded with."""

    def __init__(self, xp, limit: int):
        self.xp, self.limit, self.bytes = xp, limit, 0
        self.arrays: OrderedDict = OrderedDict()

    def get(self, key: tuple, shape: tuple, dtype):
        """The pool's array for ``key``, this shape and dtype: the same memory as last time."""
        k = (key, tuple(shape), np.dtype(dtype).str)
        array = self.arrays.get(k)
        if array is not None:
            self.arrays.move_to_end(k)
            return array
        array = self.arrays[k] = self.xp.empty(shape, dtype=dtype)
        self.bytes += array.nbytes
        while self.bytes > self.limit and len(self.arrays) > 1:
            _, old = self.arrays.popitem(last=False)  # a live run keeps its own reference
            self.bytes -= old.nbytes
        return array

    def has(self, key: tuple, shape: tuple, dtype) -> bool:
        return (key, tuple(shape), np.dtype(dtype).str) in self.arrays


class Backend:
    """What a backend provides. Subclasses set ``name`` and ``xp`` and override what they speed up.

    ``kernel(op, run)`` returns an object with ``forward(lo, hi)``, ``backward(lo, hi)`` and
    ``param_grads()``; the defaults work for any NumPy-compatible ``xp``.
    """

    name = "base"
    xp = np
    #: run buffers kept for the next run of the same shape (None: fresh memory every run)
    pool: BufferPool | None = None
    #: whether a model keeps its Runs for the next call of the same shapes (its kernels then
    #: see the parameters through :meth:`~graphrnn.executor.Run.rebind`)
    reuses_runs = False

    def asarray(self, array, dtype):
        return self.xp.asarray(array, dtype=dtype)

    def to_numpy(self, array) -> np.ndarray:
        return np.asarray(array)

    def export(self, array) -> np.ndarray:
        """A NumPy array the caller owns: a copy where ``array`` is pool memory that the next
        run of the model will overwrite."""
        return np.array(self.to_numpy(array), copy=self.pool is not None)

    def empty(self, key: tuple, shape: tuple, dtype):
        """An array for a run's buffer ``key`` (``("buf", name)``, ``("grad", name)``): from the
        pool (the same memory as the last run of this shape) where the backend keeps one."""
        if self.pool is None:
            return self.xp.empty(shape, dtype=dtype)
        return self.pool.get(key, shape, dtype)

    def zeros(self, key: tuple, shape: tuple, dtype):
        """As :meth:`empty`, filled with zeros."""
        if self.pool is None:
            return self.xp.zeros(shape, dtype=dtype)
        array = self.pool.get(key, shape, dtype)
        array.fill(0)
        return array

    def kernel(self, op, run):
        if isinstance(op, MatMul):
            return MatMulKernel(op, run)
        if isinstance(op, NodeUpdate):
            return NodeUpdateKernel(op, run)
        if isinstance(op, Fused):
            return FusedKernel(op, run)
        if isinstance(op, InitState):
            return InitStateKernel(op, run)
        if isinstance(op, Gather):
            return GatherKernel(op, run)
        raise TypeError(f"no kernel for {type(op).__name__}")

    def stage_kernels(self, stage, run) -> list:
        """The kernels of ``stage``'s ops, in order. A backend may instead return one kernel
        with ``whole_loop = True`` for a loop stage: its ``forward(0, T)`` and
        ``backward(0, T)`` then run every step themselves."""
        return [self.kernel(op, run) for op in stage.ops]

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
