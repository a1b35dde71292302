"""Runs a model keeps across its calls (where the backend `reuses_runs`), and parameter checks
reduced to what can have changed since the last call."""

from __future__ import annotations

import copy
import operator
from collections import OrderedDict
from functools import partial

import numpy as np

from graphrnn import checks, config
from graphrnn.backends.base import BufferPool
from graphrnn.backends.host_rows import FiniteScan, vouched_params
from graphrnn.compiler.ir import InitState
from graphrnn.executor import Run

#: Runs a model keeps for the next call of the same shapes (the least recently used dropped;
#: a packed call with lengths runs a few chunks of shapes of their own)
RUNS_KEPT = 12
#: a Run whose buffers are larger than this is not kept (its setup is small beside its work)
RUN_KEPT_BYTES = 64 * 2**20


class KeptRuns:
    """Mixin of :class:`~graphrnn.model.Model`: its kept Runs (``_runs``, ``_tape_runs``,
    by :meth:`_kept_key`) and its last checked parameters (``_checked``)."""

    def __init__(self):
        #: Runs by (shapes, given state rows, program, loop knobs), for the next such call
        self._runs: OrderedDict = OrderedDict()
        #: idle Runs for recorded calls (each with buffers of its own), by the same keys
        self._tape_runs: OrderedDict = OrderedDict()
        #: the buffer pool of the last dropped tape's Run too large to keep, for the next
        #: recorded call (a pool serves one live Run at a time; its memory is warm)
        self._idle_tape_pool: BufferPool | None = None
        #: the last call's parameters that passed every check: ``(names, arrays, (shape,
        #: strides, dtype) of each, their FiniteScans by the names each leaves out)``
        self._checked: tuple | None = None
        #: the parameters the last call's Run checked by its products, and those this call's
        #: check left to its Run, with the caller's parameters (:meth:`_check_by_products`)
        self._vouched: frozenset = frozenset()
        self._unscanned: tuple = (frozenset(), None)
        #: ``(program, the nodes its InitState ops write)``, for the program of the last call
        self._learned: tuple = (None, frozenset())

    def _learned_states(self) -> frozenset:
        """The nodes whose initial state ``self.program``'s InitState ops write (learned)."""
        if self._learned[0] is not self.program:
            self._learned = (self.program, frozenset(
                op.out for _, op in self.program.ops() if isinstance(op, InitState)))
        return self._learned[1]

    def _kept_key(self, steps: int, batch: int, given: set, lease=None, remat=None) -> tuple:
        """The key of a kept Run: shapes, given state rows, loop knobs, remat, lease."""
        key = (steps, batch, frozenset(given), config.LOOP_THREADS, config.LOOP_MAX_MACS, remat)
        return key if lease is None else (*key, *lease)

    def _has_kept_run(self, steps: int, batch: int, given: set, lease=None, remat=None,
                      backward: bool = False) -> bool:
        """Whether the next :meth:`_kept_run` of these arguments reuses a Run that a call
        with ``backward`` ran on before (its buffers exist, so it needs no memory check)."""
        key = self._kept_key(steps, batch, given, lease, remat)
        run = (self._runs if lease is None else self._tape_runs).get(key)
        return (run is not None and run.prog is self.program
                and (not backward or getattr(run, "ran_backward", False)))

    def _check_params(self, params: dict) -> None:
        """:func:`checks.check_params`, but where ``params`` holds the very arrays of the last
        call that passed it (same names, shapes, strides and dtypes), only what an in-place
        update can change: that every value is finite, by one exact C scan over their memory
        (:class:`~graphrnn.backends.host_rows.FiniteScan`; the full check where it fails, for
        its message), but for the parameters the last call's Run checked by its products
        (:func:`~graphrnn.backends.host_rows.vouched_params`): :meth:`_kept_run` has the Run
        of this call check them (or scans those it does not)."""
        self._unscanned = (frozenset(), None)
        if self._io_net is not None:
            return  # a training network's: the spec's model checked them (see _training_call)
        last = self._checked
        if last is not None and type(params) is dict and len(params) == len(last[0]):
            arrays = tuple(params.values())
            if (tuple(params) == last[0] and all(map(operator.is_, arrays, last[1]))
                    and [(a.shape, a.strides, a.dtype) for a in arrays] == last[2]):
                skip = self._vouched
                scan = last[3].get(skip)
                if scan is None:
                    scan = last[3][skip] = FiniteScan(a for k, a in zip(last[0], arrays,
                                                                         strict=True)
                                                      if k not in skip)
                if scan():
                    self._unscanned = (skip, params) if skip else self._unscanned
                    return
        self._checked = None
        checks.check_params(self.net, params)
        if all(isinstance(v, np.ndarray) for v in params.values()):
            arrays = tuple(params.values())
            self._checked = (tuple(params), arrays,
                             [(a.shape, a.strides, a.dtype) for a in arrays], {})

    def _check_by_products(self, run: Run) -> None:
        """Give ``run`` the parameters :meth:`_check_params` left to its products (its
        ``param_check``: the exact check its products run where they are not finite), scan
        those its products do not check; remember what it checks, for the next call."""
        cached = getattr(run, "vouched", None)
        if cached is None or cached[0] is not run.kernels:
            cached = run.vouched = (run.kernels, vouched_params(run))
        vouched = cached[1]
        skipped, params = self._unscanned
        self._unscanned = (frozenset(), None)
        run.param_check = None
        if skipped:
            missing = skipped - vouched
            if missing and not FiniteScan(params[k] for k in missing)():
                checks.check_params(self.net, params)  # names the first NaN or inf
            if skipped & vouched:
                run.param_check = partial(checks.check_params, self.net, params)
        self._vouched = vouched

    def _kept_run(self, params: dict, steps: int, batch: int, noise, given: set,
                  lease=None, remat: int | None = None) -> Run:
        """The Run of the last call of these shapes, rebound to ``params``
        (:meth:`Run.rebind`), or a new one (kept where the backend reuses Runs, the network
        draws no noise and its buffers are not large).

        ``lease``: a recorded call's ``("tape", input_grads)``: the Run is taken out of the
        idle tape Runs (its buffers its own, not the pool's that other calls share) and comes
        back when its tape is dropped (:meth:`_return_tape_run`). ``remat``: a Run recomputing
        loop rows (:meth:`gradients`) is kept apart from the others."""
        key = self._kept_key(steps, batch, given, lease, remat)
        if lease is not None:
            run = self._tape_runs.pop(key, None)
        else:
            run = self._runs.get(key)
        if run is not None and run.prog is self.program:
            if lease is None:
                self._runs.move_to_end(key)
            run.rebind(params)
        else:
            trainable = {k for k, p in self.net.params.items() if p.trainable}
            backend = self.backend
            if lease is not None and getattr(backend, "pool", None) is not None:
                backend = copy.copy(backend)  # kernels' caches shared, the buffers its own
                backend.pool = self._idle_tape_pool or BufferPool(backend.xp,
                                                                  backend.pool.limit)
                self._idle_tape_pool = None
            run = Run(self.program, backend, params, steps, batch, self.dtype, noise,
                      trainable, given, input_grads=lease is not None and lease[-1])
            run.remat = remat  # fixed for the Run: its gradients lie in donated memory or not
            run.keepable = (getattr(self.backend, "reuses_runs", False) and not noise.uniforms
                            and not noise.orders
                            and sum(a.nbytes for a in run.arrays.values()) <= RUN_KEPT_BYTES)
            if run.keepable and lease is None:
                self._runs[key] = run
                while len(self._runs) > RUNS_KEPT:
                    self._runs.popitem(last=False)
        run.lease_key = key
        self._check_by_products(run)
        return run

    def _return_tape_run(self, run: Run) -> None:
        """A dropped tape's Run: kept for the next recorded call of its shapes, or (too large
        to keep) its buffer pool kept for the next recorded call's Run."""
        if run.keepable and run.prog is self.program:
            self._tape_runs[run.lease_key] = run
            while len(self._tape_runs) > RUNS_KEPT:
                self._tape_runs.popitem(last=False)
        elif getattr(run.backend, "pool", None) is not None:
            self._idle_tape_pool = run.backend.pool  # the last call's shapes are the next's


def boundary_row(run: Run, name: str, k: int, grad: bool = False):
    """Boundary row ``k`` of ``name`` (:attr:`Network.boundaries`): step ``-k`` before the
    first (k > 0) or ``|k| - 1`` steps after the last (k < 0), a ``(B, size)`` view."""
    t = -k if k > 0 else run.steps - k - 1
    return run.rows(name, t, t + 1, grad=grad)[0]
