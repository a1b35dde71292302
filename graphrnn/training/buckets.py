"""Gradient buckets of a data-parallel step: all-reduces started as BPTT finishes each stage."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence

import numpy as np

from graphrnn.training.distributed import N_SLOTS, DistributedError

__all__ = ["Bucket", "BucketedSum", "plan_buckets", "stage_params"]


@dataclasses.dataclass(frozen=True)
class Bucket:
    """Parameters whose gradients one all-reduce sums: ``flat[lo:hi]``, started once BPTT
    has finished stage ``after`` (None: after the whole gradient call, with the slots)."""

    after: int | None
    keys: tuple[str, ...]
    lo: int
    hi: int


def stage_params(stage, names: frozenset[str]) -> set[str]:
    """The parameters among ``names`` that any op of ``stage`` names (in any field, nested
    ops and blocks included): the parameters whose gradients that stage adds to."""
    found: set[str] = set()
    todo: list = list(stage.ops)
    while todo:
        item = todo.pop()
        if isinstance(item, str):
            if item in names:
                found.add(item)
        elif isinstance(item, tuple | list | frozenset | set):
            todo.extend(item)
        elif dataclasses.is_dataclass(item) and not isinstance(item, type):
            todo.extend(getattr(item, f.name) for f in dataclasses.fields(item))
    return found


def plan_buckets(stages: Sequence, keys: Sequence[str], sizes: Sequence[int],
                 bucket_bytes: int, itemsize: int = 8) -> list[Bucket]:
    """Buckets of the flat gradient buffer in the order BPTT finishes them (the same on every
    rank: it depends on the program only).

    A parameter's gradient is final after the last stage, in backward order (stages from the
    last to the first), that names it; a bucket closes at the stage where its gradients
    reach ``bucket_bytes``. What is left (parameters no stage names, the last open bucket)
    and the ``N_SLOTS`` slots form the last bucket, summed after the gradient call.
    """
    names = frozenset(keys)
    size = dict(zip(keys, sizes, strict=True))
    final_at: dict[str, int] = {}
    for i in range(len(stages) - 1, -1, -1):
        for name in stage_params(stages[i], names):
            final_at[name] = i  # a stage BPTT reaches later (a smaller i) wins
    buckets, at, open_keys = [], 0, []
    for i in range(len(stages) - 1, -1, -1):
        open_keys += [k for k in keys if final_at.get(k) == i]
        n = sum(size[k] for k in open_keys)
        if open_keys and n * itemsize >= bucket_bytes and i > 0:
            buckets.append(Bucket(i, tuple(open_keys), at, at + n))
            at, open_keys = at + n, []
    rest = open_keys + [k for k in keys if k not in final_at]
    n = sum(size[k] for k in rest)
    buckets.append(Bucket(None, tuple(rest), at, at + n + N_SLOTS))
    return buckets


class BucketedSum:
    """One gradient call's sum over the ranks, bucket by bucket.

    :meth:`stage_done` is the executor's hook (:attr:`graphrnn.executor.Run.stage_grads_done`):
    when BPTT of ``program`` finishes a bucket's last stage, that bucket's scaled gradients are
    copied into the flat buffer and its non-blocking all-reduce starts. :meth:`finish` starts
    the rest in order (from the call's gradients, zeros on a rank that computed none), waits
    for all of them with the deadline, and returns the summed buffer. Every rank starts the
    same buckets in the same order whatever its data, so the collectives always match; the
    sums are element-wise, so they equal one all-reduce of the whole buffer.
    """

    def __init__(self, dist, program, buckets: list[Bucket], sizes: dict[str, int],
                 scale: float, what: str):
        self.dist, self.program, self.buckets, self.scale = dist, program, buckets, scale
        self.sizes, self.what = sizes, what
        self.flat = np.zeros(buckets[-1].hi)
        self.out = np.empty_like(self.flat)
        self.requests: list = []
        self.started = 0  # buckets whose all-reduce has started
        self.early: list[Bucket] = []  # started during the backward pass
        self.closed = False  # the first matching Run's BPTT is over: later Runs are not ours

    def offsets(self) -> dict[str, tuple[int, int]]:
        """Each parameter's ``(lo, hi)`` in the flat buffer."""
        spans = {}
        for b in self.buckets:
            at = b.lo
            for k in b.keys:
                spans[k] = (at, at + self.sizes[k])
                at += self.sizes[k]
        return spans

    def _fill(self, bucket: Bucket, grads) -> None:
        at = bucket.lo
        for k in bucket.keys:
            n = self.sizes[k]
            g = None if grads is None else grads.get(k)
            if g is None:
                self.flat[at:at + n] = 0
            else:
                np.multiply(np.ravel(g), self.scale, out=self.flat[at:at + n])
            at += n

    def _start(self, bucket: Bucket) -> None:
        lo, hi = bucket.lo, bucket.hi
        self.requests.append(self.dist.comm.Iallreduce(self.flat[lo:hi], self.out[lo:hi],
                                                       op=self.dist.MPI.SUM))
        self.started += 1

    def stage_done(self, run, i: int) -> None:
        """The executor's hook: start the buckets that stage ``i`` completes."""
        if self.closed or run.prog is not self.program:
            return
        while (self.started < len(self.buckets) - 1
               and self.buckets[self.started].after == i):
            bucket = self.buckets[self.started]
            self._fill(bucket, run.param_grads)
            self._start(bucket)
            self.early.append(bucket)
            self.dist.early_bytes += 8 * (bucket.hi - bucket.lo)
        if self.requests:
            self.dist.MPI.Request.Testall(self.requests)  # lets MPI progress the sums
        if i == 0:
            self.closed = True

    def check_early(self, grads) -> DistributedError | None:
        """An error (to report as this rank's failure) when a bucket started during BPTT
        does not hold the gradients the call returned (the hook saw another pass than the
        one they came from, or they were changed since); None when all match."""
        for bucket in self.early:
            if not self._matches(bucket, grads):
                return DistributedError(f"the gradients of {', '.join(bucket.keys)} summed "
                                        "during the backward pass are not the call's")
        return None

    def finish(self, grads, slots: Sequence[float]) -> np.ndarray:
        """Start the remaining buckets from ``grads`` (None: this rank has none) and
        ``slots``, wait for every bucket, and return the summed flat buffer."""
        t0 = time.perf_counter()
        while self.started < len(self.buckets):
            bucket = self.buckets[self.started]
            self._fill(bucket, grads)
            if self.started == len(self.buckets) - 1:
                self.flat[bucket.hi - N_SLOTS:bucket.hi] = slots
            self._start(bucket)
        for request in self.requests:
            self.dist.wait(request, self.what)
        self.dist.reduce_seconds += time.perf_counter() - t0
        self.dist.reduce_bytes += self.flat.nbytes
        self.dist.reduces += 1
        return self.out

    def _matches(self, bucket: Bucket, grads) -> bool:
        at = bucket.lo
        for k in bucket.keys:
            n = self.sizes[k]
            again = np.zeros(n)
            if grads.get(k) is not None:
                np.multiply(np.ravel(grads[k]), self.scale, out=again)
            if not np.array_equal(again, self.flat[at:at + n]):
                return False
            at += n
        return True
