"""The NumPy backend: always available; fused element-wise chains compiled to C where it can."""

from __future__ import annotations

import numpy as np

from graphrnn import config, native
from graphrnn.backends.base import Backend, BufferPool
from graphrnn.backends.host_ops import FusedHostKernel, compiled_kernel_applies
from graphrnn.passes import PASSES, fold_biases_into_projections


class NumpyBackend(Backend):
    """Runs Programs with NumPy on the CPU.

    GEMMs are NumPy's (its BLAS). Fused element-wise chains and lone element-wise nodes run as
    C compiled on first use (:mod:`graphrnn.backends.host_ops`) when a C compiler works and
    ``compiled`` is not False, else as NumPy ufuncs; both compute the same function. Run
    buffers come from a pool (:class:`~graphrnn.backends.base.BufferPool`): the next call of
    the same shape reuses the memory, warm, instead of faulting in fresh pages.
    """

    name = "numpy"
    xp = np

    def __init__(self, compiled: bool | None = None):
        if compiled is None:
            compiled = native.available()
        elif compiled and not native.available():
            raise ValueError(f"compiled CPU kernels are not usable here: {native.why_not()}")
        self.compiled = compiled
        self.name = "numpy" if compiled else "numpy-ufuncs"
        self.pool = BufferPool(np, int(config.POOL_MB * 2**20))
        self._sources: dict = {}
        config.debug(1, f"[graphrnn] numpy backend: element-wise chains "
                        f"{'compiled to C' if compiled else 'as NumPy ufuncs'}")

    def passes(self):
        """The standard pipeline; with compiled kernels biases stay in the nodes (a compiled
        chain adds them for free), not in the input projections (a pass of their own)."""
        return [p for p in PASSES if p is not fold_biases_into_projections or not self.compiled]

    def kernel(self, op, run):
        if self.compiled and compiled_kernel_applies(op, run.prog.buffers):
            return FusedHostKernel(op, run, self._sources)
        return super().kernel(op, run)
