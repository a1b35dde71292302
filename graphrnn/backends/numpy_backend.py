"""The NumPy backend: always available; fused element-wise chains compiled to C where it can."""

from __future__ import annotations

import numpy as np

from graphrnn import config
from graphrnn.backends import host_loop, native
from graphrnn.backends.base import Backend, BufferPool
from graphrnn.backends.host_loop import CompiledLoopKernel, plan_loop
from graphrnn.backends.host_ops import FusedHostKernel, compiled_kernel_applies
from graphrnn.backends.host_rows import RowsMatMulKernel, rows_gemm_applies
from graphrnn.compiler.fusion import group_normalised
from graphrnn.compiler.ir import MatMul, StageKind
from graphrnn.compiler.passes import PASSES, fold_biases_into_projections


class NumpyBackend(Backend):
    """Runs Programs with NumPy on the CPU.

    GEMMs are NumPy's (its BLAS), but for batched ones over a few rows (C dot products over
    the weights in place: :mod:`graphrnn.backends.host_rows`). Fused element-wise chains and
    lone element-wise nodes run as C compiled on first use (:mod:`graphrnn.backends.host_ops`)
    when a C compiler works and ``compiled`` is not False, else as NumPy ufuncs; both compute
    the same function. Run buffers come from a pool
    (:class:`~graphrnn.backends.base.BufferPool`): the next call of the same shape reuses the
    memory, warm, instead of faulting in fresh pages; a model keeps its Runs
    (``reuses_runs``), so such a call also skips building kernels and tables.
    """

    name = "numpy"
    xp = np
    reuses_runs = True

    def __init__(self, compiled: bool | None = None):
        if compiled is None:
            compiled = native.available()
        elif compiled and not native.available():
            raise ValueError(f"compiled CPU kernels are not usable here: {native.why_not()}")
        self.compiled = compiled
        self.name = "numpy" if compiled else "numpy-ufuncs"
        self.pool = BufferPool(np, int(config.POOL_MB * 2**20))
        self._sources: dict = {}
        self._plans: dict = {}
        config.debug(1, f"[graphrnn] numpy backend: element-wise chains "
                        f"{'compiled to C' if compiled else 'as NumPy ufuncs'}")
        if compiled:
            config.debug(1, "[graphrnn] recurrent loops: " + (
                "step by step (GRAPHRNN_THREADS=0)" if not config.LOOP_THREADS else
                f"compiled, on up to {config.LOOP_THREADS} threads" if config.LOOP_MAX_MACS is None
                else f"compiled on 1 thread where a step is at most {config.LOOP_MAX_MACS:,} "
                     "multiply-adds, else step by step: NumPy was imported before graphrnn, so "
                     "OpenBLAS's idle threads spin (import graphrnn first, or set "
                     "OPENBLAS_THREAD_TIMEOUT or GRAPHRNN_THREADS)"))

    def passes(self):
        """The standard pipeline; with compiled kernels biases stay in the nodes (a compiled
        chain adds them for free), not in the input projections (a pass of their own)."""
        if not self.compiled:
            return list(PASSES)
        return [p for p in PASSES if p is not fold_biases_into_projections] + [group_normalised]

    def stage_kernels(self, stage, run) -> list:
        """Step-by-step kernels, or, with compiled kernels, one C call a pass for a loop of GEMMs
        and element-wise chains (:mod:`graphrnn.backends.host_loop`)."""
        kernels = super().stage_kernels(stage, run)
        plan = (self._loop_plan(stage, run) if self.compiled and stage.kind == StageKind.LOOP
                else None)
        if plan is None or not host_loop.available(run.dtype):
            return kernels
        return [CompiledLoopKernel(plan, run, kernels)]

    def _loop_plan(self, stage, run):
        """:func:`plan_loop` under the current knobs, once per stage and batch size (keyed on
        its ops' uids; a replaced Program's different stage under the same uids plans anew)."""
        key = (tuple(op.uid for op in stage.ops), run.batch, config.LOOP_THREADS,
               config.LOOP_MAX_MACS)
        hit = self._plans.get(key)
        if hit is None or hit[0] != stage:
            plan = (plan_loop(stage, run.prog, config.LOOP_THREADS, run.batch)
                    if config.LOOP_THREADS > 0 else None)
            if plan and config.LOOP_MAX_MACS is not None and plan.macs > config.LOOP_MAX_MACS:
                plan = None
            hit = self._plans[key] = (stage, plan)
            config.debug(2, f"[graphrnn] loop of {len(stage.ops)} ops, batch {run.batch}: " + (
                f"compiled, {plan.threads} thread(s), chain columns split at {plan.bounds}"
                if plan else "step by step"))
        return hit[1]

    def kernel(self, op, run):
        if self.compiled and compiled_kernel_applies(op, run.prog.buffers):
            return FusedHostKernel(op, run, self._sources)
        if self.compiled and isinstance(op, MatMul) and rows_gemm_applies(op, run):
            return RowsMatMulKernel(op, run)  # BLAS still, on many rows
        return super().kernel(op, run)
