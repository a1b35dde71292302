"""Fused: a chain of element-wise NodeUpdates; here run member by member (the NumPy twin)."""

from __future__ import annotations

from graphrnn.compiler.ir import Fused
from graphrnn.ops.node_update import NodeUpdateKernel


class FusedKernel:
    """Runs a Fused chain as its members in order (and reversed back)."""

    def __init__(self, op: Fused, run):
        self.members = [NodeUpdateKernel(o, run) for o in op.ops]

    def forward(self, lo: int, hi: int) -> None:
        for k in self.members:
            k.forward(lo, hi)

    def backward(self, lo: int, hi: int) -> None:
        for k in reversed(self.members):
            k.backward(lo, hi)

    @property
    def windowed_grads(self) -> bool:
        """Whether :meth:`param_grads` takes a window of steps."""
        return all(k.windowed_grads for k in self.members)

    def param_grads(self, lo: int = 0, hi: int | None = None) -> None:
        for k in self.members:
            k.param_grads() if hi is None else k.param_grads(lo, hi)
